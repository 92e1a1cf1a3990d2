"""A Discord question's markup in words (people, channels, roles, emoji, times), a channel named
only where everyone who reads the answer may see it, and who a place's readers are."""

from __future__ import annotations

import pytest

from tests.fakes.discord import VIEW_CHANNEL
from tests.platforms.discord_support import Setup, World, running

EMOJI = "<:partyparrot:112233445566778899> <a:blobwave:998877665544332211>"
NOVEMBER = "2023-11-14 22:13 UTC"  # <t:1700000000>, whatever its style


async def test_a_questions_markup_reaches_the_core_in_words(world: World) -> None:
    fake = world.fake
    carol = fake.add_user("carol", global_name="Carol Chen")
    fake.add_member(world.guild, carol, nick="caz")  # her nickname in this server
    dave = fake.add_user("dave", global_name="Dave D.")  # not in this server
    secret = fake.add_channel(world.guild, "secret-plans")
    fake.channels[secret]["permission_overwrites"] = [  # hidden from @everyone
        {"id": world.guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}
    ]
    elsewhere = fake.add_channel(fake.add_guild("Other"), "elsewhere")
    nobody = "1574615727560720392"  # no such user
    async with running(world):
        await fake.mention(
            world.general,
            world.bob,
            f"did <@{carol}> and <@!{world.alice}> or <@{dave}>, <@{nobody}> see <#{world.other}>, "
            f"<#{secret}>, <#{elsewhere}> or <#{world.general}>? ask <@&{world.role}> "
            f"<@&{world.guild}> @here {EMOJI} <t:1700000000:R> <t:1700000000> </ask:{nobody}> "
            f"with `<@{carol}> <t:1>` and\n```\n<#{world.other}> <:x:1>\n```\n<@{carol}>",
        )
        msg, _ = await world.next()
    assert msg.text == (
        f"did @caz and @alice or @Dave D., @user see #ask-ai, #channel, #channel or #general? "
        f"ask @helpers @everyone @here :partyparrot: :blobwave: {NOVEMBER} {NOVEMBER} /ask "
        f"with `<@{carol}> <t:1>` and\n```\n<#{world.other}> <:x:1>\n```\n@caz"
    )


async def test_a_dms_markup_names_users_but_no_servers_channels_or_roles(world: World) -> None:
    async with running(world):
        await world.fake.dm(
            world.bob, f"<@{world.alice}> in <#{world.general}> with <@&{world.role}> {EMOJI}"
        )
        msg, _ = await world.next()
    assert msg.text == "@alice in #channel with @role :partyparrot: :blobwave:"


async def test_ask_commands_text_is_in_words_too(world: World) -> None:
    fake = world.fake
    question = (
        f"<@{fake.app_id}> what did <@{world.bob}> and <@{world.alice}> post in "
        f"<#{world.other}> for <@&{world.role}> {EMOJI} at <t:1700000000:t>? `<#{world.other}>`"
    )
    async with running(world):
        await fake.invoke(world.general, world.alice, "ask", {"question": question})
        msg, _ = await world.next()
    # A string option carries no mentioned users: bob, not known to the bot, is a word.
    assert msg.text == (
        f"what did @user and @alice post in #ask-ai for @helpers :partyparrot: :blobwave: "
        f"at {NOVEMBER}? `<#{world.other}>`"
    )


def helpers_only(world: World, name: str) -> str:
    """A channel @everyone may not view and the helpers (alice) and the bot may."""
    channel = world.fake.add_channel(world.guild, name)
    world.fake.channels[channel]["permission_overwrites"] = [
        {"id": world.guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
        {"id": world.role, "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},
        {"id": world.fake.app_id, "type": 1, "allow": str(VIEW_CHANNEL), "deny": "0"},
    ]
    return channel


async def test_a_channel_is_named_only_where_everyone_who_reads_the_answer_may_see_it(
    world: World,
) -> None:
    fake = world.fake
    mods = helpers_only(world, "layoffs-q3")
    named = f"<#{mods}>, <#{world.other}> or <#{world.general}>?"
    async with running(world):
        # alice may see it, but bob reads #general, and its thread, and its history.
        await fake.mention(world.general, world.alice, named)
        in_general, _ = await world.next()
        # Where it was asked, every reader sees it, and its thread's parent.
        await fake.mention(mods, world.alice, named)
        in_mods, _ = await world.next()
        thread = await fake.add_thread(mods, "plans")
        await fake.mention(thread, world.alice, f"<#{thread}> of <#{mods}>?")
        in_thread, _ = await world.next()
    assert in_general.text == "#channel, #ask-ai or #general?"
    assert in_mods.text == "#layoffs-q3, #ask-ai or #general?"
    assert in_thread.text == "#plans of #layoffs-q3?"


async def test_a_place_only_its_members_see_is_told_as_such(world: World) -> None:
    # A channel @everyone may not view, and a public thread in it, are its members':
    # under `session: user`, what is said there stays there.
    fake = world.fake
    mods = helpers_only(world, "layoffs-q3")
    async with running(world):
        thread = await fake.add_thread(mods, "plans")
        private = await fake.add_thread(mods, "just us", private=True)
        public_thread = await fake.add_thread(world.general, "chat")
        for place in (world.general, mods, thread, private, public_thread):
            await fake.mention(place, world.alice, "hi")
        await fake.invoke(mods, world.alice, "reset")
        await fake.dm(world.alice, "hi")
        got = [(await world.next())[0] for _ in range(7)]
    told = {(m.command, m.channel, m.thread): m.audience for m in got}
    assert told == {
        (None, world.general, None): "channel",
        (None, mods, None): "members",
        (None, mods, thread): "members",
        (None, mods, private): "thread",
        (None, world.general, public_thread): "channel",
        ("reset", mods, None): "members",  # /reset there: the same place
        (None, fake.dm_channel(world.alice), None): "channel",  # the asker's already
    }


@pytest.mark.parametrize("ephemeral", [True, False])
async def test_an_answer_for_the_asker_alone_names_what_the_asker_may_see(
    world: World, ephemeral: bool
) -> None:
    fake = world.fake
    mods = helpers_only(world, "layoffs-q3")
    seen: list[str] = []
    async with running(world, ask_ephemeral=ephemeral):
        for asker in (world.alice, world.bob):
            await fake.invoke(world.general, asker, "ask", {"question": f"<#{mods}>?"})
            msg, _ = await world.next()
            seen.append(msg.text)
    # Only alice's private answer names it: she may see it, bob may not.
    assert seen == (["#layoffs-q3?", "#channel?"] if ephemeral else ["#channel?", "#channel?"])


async def test_a_questions_markup_reaches_the_chat_api_and_names_its_thread_in_words(
    setup: Setup,
) -> None:
    fake, setup.stateless = setup.discord, True
    carol = fake.add_user("carol", global_name="Carol Chen")
    fake.add_member(setup.guild, carol, nick="caz")
    for answer in ("First.", "Second.", "Third."):
        setup.chat.enqueue(tokens=[answer])
    async with setup.bridge():
        question = await fake.mention(
            setup.help,
            setup.bob,
            f"why did <@{carol}> say <a:blobwave:112233445566778899> in <#{setup.general}> "
            "on <t:1700000000:f>?",
        )
        await setup.final(question["id"], "First.")
        await fake.say(question["id"], setup.bob, f"and <@&{setup.role}>?")
        await setup.final(question["id"], "Second.")
        await setup.slash_ask(f"is <#{setup.help}> for <@{carol}>?")
    asked = "why did @caz say :blobwave: in #general on 2023-11-14 22:13 UTC?"
    assert fake.channels[question["id"]]["name"] == asked
    first, second, third = (
        [m["content"] for m in r.json["messages"] if m["role"] == "user"]
        for r in setup.chat.requests
    )
    # The history a stateless API is sent again holds the words too.
    assert (first, second) == ([asked], [asked, "and @moderators?"])
    assert third == ["is #help for @user?"]  # /ask: a typed option carries no users


async def test_a_thread_a_moderator_opens_in_public_does_not_name_a_hidden_channel(
    setup: Setup,
) -> None:
    fake = setup.discord
    hidden = fake.add_channel(setup.guild, "layoffs-q3")
    fake.channels[hidden]["permission_overwrites"] = [
        {"id": setup.guild, "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},  # @everyone
        {"id": setup.role, "type": 0, "allow": str(VIEW_CHANNEL), "deny": "0"},  # moderators
    ]
    setup.chat.enqueue(tokens=["Answer."])
    async with setup.bridge():
        # alice, a moderator, asks in #help, which bob reads too: he may not see the channel.
        question = await fake.mention(setup.help, setup.alice, f"what is <#{hidden}> for?")
        await setup.final(question["id"], "Answer.")
    assert fake.channels[question["id"]]["name"] == "what is #channel for?"
    assert setup.chat.requests[0].json["message"] == "what is #channel for?"
