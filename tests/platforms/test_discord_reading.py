"""What the Discord adapter delivers of a message: who asked where, whether the bot was mentioned
or someone else addressed, and the messages it leaves out (against the fake Discord)."""

from __future__ import annotations

import pytest

from adapters.platforms.discord import DiscordPlatform
from adapters.platforms.discord import inbound as discord_inbound
from bridge.interfaces import Address, Inbound
from tests.fakes.discord import FakeDiscord
from tests.platforms.discord_support import World, build_world, running

DISCORD_EPOCH_MS = 1420070400000  # snowflake ids count milliseconds from 2015


async def test_mention_in_channel_is_normalized(world: World) -> None:
    async with running(world):
        sent = await world.fake.mention(world.general, world.alice, "what is a bridge?")
        msg, target = await world.next()
    assert msg == Inbound(
        platform="discord",
        workspace=world.guild,
        channel=world.general,
        thread=None,
        user=world.alice,
        text="what is a bridge?",
        message_id=sent["id"],
        event_id=sent["id"],
        is_dm=False,
        mentioned=True,
        roles=(world.role,),
        received_at=msg.received_at,
        # Discord's own time of the message, from its snowflake id: the same on every replica.
        sent_at=((int(sent["id"]) >> 22) + DISCORD_EPOCH_MS) / 1000,
    )
    assert target.address == Address("discord", world.guild, world.general, None)
    assert target.limits.max_chars == 2000
    assert target.limits.edit_bucket == f"discord:edit:{world.general}"
    assert target.limits.post_bucket == f"discord:post:{world.general}"
    assert not target.limits.begin_posts


async def test_plain_message_is_delivered_unmentioned(world: World) -> None:
    async with running(world):
        await world.fake.say(world.other, world.bob, "anyone around?")
        msg, _ = await world.next()
    assert (msg.channel, msg.text, msg.mentioned, msg.roles) == (
        world.other,
        "anyone around?",
        False,
        (),
    )


async def test_mention_of_the_bots_role_counts(world: World) -> None:
    bot_role = next(r["id"] for r in world.fake.guilds[world.guild]["roles"] if r["managed"])
    async with running(world):
        await world.fake.say(world.general, world.bob, f"<@&{bot_role}> hi")
        msg, _ = await world.next()
    assert msg.mentioned and msg.text == "hi"


async def test_the_bots_mention_within_a_question_is_its_name(world: World) -> None:
    # Taken out, it would leave "what can do for me?"; at the start or the end it
    # only says who is asked. Its name is the one its readers see: in a server, its
    # nickname there.
    fake = world.fake
    fake.guilds[world.guild]["members"][fake.app_id]["nick"] = "Helper"
    bot_role = next(r["id"] for r in fake.guilds[world.guild]["roles"] if r["managed"])
    me = f"<@{fake.app_id}>"
    asked = [
        f"what can {me} do for me?",
        f"ask <@{world.alice}> and <@&{bot_role}> about it",
        f"<@!{fake.app_id}>, what is a bridge?",
        f"thanks {me}!",
    ]
    async with running(world):
        got = []
        for text in asked:
            await fake.say(world.general, world.bob, text)
            got.append((await world.next())[0].text)
        await fake.dm(world.bob, f"what can {me} do?")
        got.append((await world.next())[0].text)
    assert got == [
        "what can Helper do for me?",
        "ask @alice and Helper about it",
        "what is a bridge?",
        "thanks!",
        "what can bridgebot do?",  # no server: its own name
    ]


async def test_a_message_edited_to_mention_the_bot_is_delivered_again_as_itself(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone forgot the mention, and edits the message to add it: the same event id,
    # so the bridge answers it once, whichever of the two it saw first.
    fake = world.fake
    me = f"<@{fake.app_id}>"
    async with running(world):
        sent = await fake.say(world.general, world.alice, "what is a bridge?")
        first, _ = await world.next()
        await fake.edit(sent["id"], f"{me} what is a bridge?")
        edited, target = await world.next()
        # Not taken: an edit that does not mention the bot, a link's preview filled in,
        # the bot's own answer edited, and a message older than the window.
        await fake.edit(sent["id"], "what is a bridge, really?")
        await fake.unfurl(sent["id"])
        answer = await target.post("an answer")
        await fake.edit(answer, f"{me} an answer")
        window = discord_inbound.EDIT_WINDOW
        monkeypatch.setattr(discord_inbound, "EDIT_WINDOW", 0.0)
        await fake.edit(sent["id"], f"{me} what is a bridge, then?")
        await fake.say(world.general, world.bob, "the next message")
        after, _ = await world.next()
    assert (first.mentioned, first.event_id) == (False, sent["id"])
    assert (edited.mentioned, edited.text, edited.event_id, edited.message_id) == (
        True,
        "what is a bridge?",
        sent["id"],
        sent["id"],
    )
    assert edited.sent_at == first.sent_at  # when it was sent, not edited
    assert after.text == "the next message"
    # Its event record outlives the window, whatever `limits.event_ttl` says.
    assert DiscordPlatform.redelivers_within >= window > 0


async def test_a_message_beginning_with_someone_elses_mention_says_so(world: World) -> None:
    bot_role = next(r["id"] for r in world.fake.guilds[world.guild]["roles"] if r["managed"])
    me = f"<@{world.fake.app_id}>"
    texts = [
        f"<@{world.alice}> can you check?",  # a person, or another bot
        f" <@!{world.alice}> can you check?",
        f"<@&{world.role}> is this right?",  # a role
        f"<@{world.alice}> what do you think, {me}?",  # the bot too: its own
        f"<@&{bot_role}> and <@{world.alice}>, what is it?",
        f"thanks <@{world.alice}>, and a question",  # not addressed to them first
    ]
    seen = []
    async with running(world):
        for text in texts:
            await world.fake.say(world.other, world.bob, text)
            msg, _ = await world.next()
            seen.append((msg.addresses_other, msg.mentioned))
    assert seen == [
        (True, False),
        (True, False),
        (True, False),
        (True, True),
        (False, True),
        (False, False),
    ]


async def test_a_reply_to_the_bot_is_a_mention_only_when_its_text_says_so(
    world: World,
) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "q")
        _, target = await world.next()
        answer = await target.post("an answer")
        seen = []
        for ping in (True, False):  # whatever the replier's client does with the ping
            await world.fake.reply(world.general, world.alice, answer, "thanks!", ping=ping)
            msg, _ = await world.next()
            seen.append(msg.mentioned)
        await world.fake.reply(world.general, world.bob, answer, f"<@{world.fake.app_id}> more?")
        asked, _ = await world.next()
    assert seen == [False, False]
    assert (asked.mentioned, asked.text) == (True, "more?")


async def test_roles_are_known_before_the_guild_is(fake_discord: FakeDiscord) -> None:
    world = build_world(fake_discord)
    fake_discord.late_guilds.add(world.guild)  # listed at READY, GUILD_CREATE not yet come
    async with running(world):
        await world.fake.say(world.general, world.alice, "from a member with a role")
        plain, _ = await world.next()
        await world.fake.invoke(world.general, world.alice, "ask", {"question": "q"})
        command, _ = await world.next()
    assert plain.roles == command.roles == (world.role,)
    # Who may view the channel cannot be told yet: it counts as its members'.
    assert plain.audience == command.audience == "members"


async def test_dm_is_normalized(world: World) -> None:
    async with running(world):
        sent = await world.fake.dm(world.bob, "private question")
        msg, target = await world.next()
    assert (msg.workspace, msg.channel, msg.thread, msg.is_dm) == (
        "@dm",
        sent["channel_id"],
        None,
        True,
    )
    assert msg.text == "private question"
    assert await target.open_thread("x") is None


async def test_bots_own_messages_are_not_delivered(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "first")
        _, target = await world.next()
        await target.post("an answer")  # the gateway echoes it back to the bot
        await world.fake.say(world.general, world.alice, "second")
        msg, _ = await world.next()
    assert msg.text == "second"


async def test_message_in_a_guild_not_yet_cached_is_not_a_dm(world: World) -> None:
    async with running(world):
        late = world.fake.add_guild("joined later")  # never sent to this connection
        channel = world.fake.add_channel(late, "lobby")
        role = world.fake.add_role(late, "regulars")
        world.fake.add_member(late, world.bob, [role])
        await world.fake.mention(channel, world.bob, "hello from a new guild")
        msg, target = await world.next()
    assert (msg.workspace, msg.channel, msg.thread, msg.is_dm) == (late, channel, None, False)
    assert msg.roles == (role,) and msg.mentioned
    assert target.address.workspace == late
