"""Discord threads: a thread's messages named by channel and thread, threads discord.py never saw,
threads the bot opens for its answers, and who a thread's follow-ups are said to."""

from __future__ import annotations

from bridge.intake import MENTION_HELP
from bridge.interfaces import Address
from tests.platforms.discord_support import SOURCE, SOURCES_BLOCK, Setup, World, running


async def test_thread_messages_name_parent_channel_and_thread(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "start a thread")
        question, target = await world.next()
        opened = await target.open_thread("start a thread")
        assert opened is not None
        thread_id, inner = opened
        assert thread_id == question.message_id  # Discord: same id as the message
        assert inner.address == Address("discord", world.guild, world.general, thread_id)
        assert inner.limits.edit_bucket == f"discord:edit:{thread_id}"
        await inner.post("in the thread")
        await world.fake.say(thread_id, world.alice, "a follow-up")
        follow, _ = await world.next()
    assert (follow.channel, follow.thread, follow.mentioned) == (world.general, thread_id, False)
    thread = world.fake.channels[thread_id]
    assert thread["name"] == "start a thread" and thread["parent_id"] == world.general
    assert [m["content"] for m in world.fake.channel_messages(thread_id)] == ["in the thread"]


async def unseen_thread(world: World) -> str:
    """A thread on a message in #general that discord.py never saw (no THREAD_CREATE
    reached it); its id."""
    await world.fake.say(world.general, world.alice, "root")
    root, _ = await world.next()
    thread = dict(world.fake.channels[world.general])
    thread.update(
        id=root.message_id,
        type=11,
        parent_id=world.general,
        owner_id=world.alice,
        name="t",
        message_count=0,
        member_count=1,
        flags=0,
        thread_metadata={
            "archived": False,
            "auto_archive_duration": 60,
            "archive_timestamp": "2024-01-01T00:00:00+00:00",
            "locked": False,
        },
    )
    world.fake.channels[root.message_id] = thread
    return root.message_id


async def test_uncached_thread_is_looked_up(world: World) -> None:
    async with running(world):
        thread_id = await unseen_thread(world)
        await world.fake.say(thread_id, world.bob, "inside")
        msg, _ = await world.next()
    assert (msg.channel, msg.thread) == (world.general, thread_id)
    assert world.fake.sent("GET", rf"/channels/{thread_id}$")


async def test_a_private_thread_open_before_the_bot_connected_is_known_to_it(
    world: World,
) -> None:
    # Discord lists every active thread under the server's `threads`, private ones too.
    private = await world.fake.add_thread(world.general, "hr", private=True)
    async with running(world):
        await world.fake.say(private, world.bob, "inside")
        msg, _ = await world.next()
    assert (msg.channel, msg.thread) == (world.general, private)
    assert not world.fake.sent("GET", rf"/channels/{private}$")  # no look-up


async def test_a_message_in_a_thread_that_cannot_be_looked_up_is_still_taken(
    world: World,
) -> None:
    async with running(world):
        thread_id = await unseen_thread(world)
        # The look-up's connection closes unanswered, and again when aiohttp retries it:
        # aiohttp's own error reaches the adapter, not discord.py's.
        world.fake.drop = [("GET", rf"/channels/{thread_id}$")] * 2
        await world.fake.say(thread_id, world.bob, "inside")
        msg, _ = await world.next()
    assert msg.text == "inside" and world.fake.drop == []


async def test_a_thread_keeps_its_channels_archive_setting(world: World) -> None:
    world.fake.channels[world.general]["default_auto_archive_duration"] = 60  # an hour
    async with running(world):
        await world.fake.mention(world.general, world.alice, "open one")
        _, target = await world.next()
        assert await target.open_thread("open one") is not None
    [opened] = world.fake.sent("POST", r"/threads$")
    assert opened.body["auto_archive_duration"] == 60


async def test_reply_in_thread_opens_a_thread_and_follow_ups_continue_it(setup: Setup) -> None:
    setup.chat.enqueue(tokens=["First ", "answer."], sources=[SOURCE])
    setup.chat.enqueue(tokens=["Second ", "answer."])
    async with setup.bridge():
        question = await setup.discord.mention(setup.help, setup.bob, "How long is the bridge?")
        thread_id = question["id"]
        await setup.final(thread_id, SOURCES_BLOCK)
        thread = setup.discord.channels[thread_id]
        assert thread["type"] == 11 and thread["parent_id"] == setup.help
        assert thread["name"] == "How long is the bridge?"
        await setup.discord.say(thread_id, setup.bob, "And how wide?")  # no mention
        msgs = await setup.final(thread_id, "Second answer.")
    assert [m["content"] for m in msgs] == [f"First answer.\n\n{SOURCES_BLOCK}", "Second answer."]
    assert setup.discord.channel_messages(setup.help) == []  # nothing in the channel itself
    first, second = setup.sessions()
    assert first and first == second
    assert setup.chat.requests[1].json["message"] == "And how wide?"


async def test_a_long_questions_thread_name_is_cut_between_graphemes(setup: Setup) -> None:
    # Cut at a code point, a flag lost its second half before the "…", a family its
    # last members, a thumbs up its skin tone.
    wholes = [
        "\U0001f1ef\U0001f1f5",  # a flag: two regional indicators
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family joined by ZWJ
        "\U0001f44d\U0001f3fd",  # a thumbs up with its skin tone
    ]
    for _ in wholes:
        setup.chat.enqueue(tokens=["Answered."])
    async with setup.bridge():
        for whole in wholes:
            question = await setup.discord.mention(
                setup.help, setup.bob, "x" * 96 + whole + " and what about it?"
            )
            await setup.final(question["id"], "Answered.")
            assert setup.discord.channels[question["id"]]["name"] == "x" * 96 + "…"


async def test_an_empty_mention_promises_an_answer_to_a_follow_up_only_in_a_thread(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Answered."])
    async with setup.bridge():
        # In the channel, only a mention would be answered (in a new thread).
        await fake.mention(setup.help, setup.bob, "")
        [told] = await setup.final(setup.help, "I will answer it.")
        # In a thread of the channel, the question then written there is answered.
        thread = await fake.add_thread(setup.help, "deploys")
        await fake.mention(thread, setup.bob, "")
        await setup.final(thread, "I will answer here.")
        await fake.say(thread, setup.bob, "how do I deploy?")  # no mention
        await setup.final(thread, "Answered.")
    assert told["content"] == MENTION_HELP
    assert [r.json["message"] for r in setup.chat.requests] == ["how do I deploy?"]


async def test_a_message_addressed_to_someone_else_in_a_followed_thread_is_not_answered(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First answer."])
    setup.chat.enqueue(tokens=["Second answer."])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = question["id"]
        await setup.final(thread, "First answer.")
        await fake.say(thread, setup.bob, f"<@{setup.alice}> can you check this?")
        await fake.say(thread, setup.bob, f"<@&{setup.role}> is this right?")
        await fake.say(thread, setup.bob, "And how wide?")
        await setup.final(thread, "Second answer.")
    assert [r.json["message"] for r in setup.chat.requests] == [
        "How long is the bridge?",
        "And how wide?",
    ]


async def test_a_reply_to_someone_else_in_a_followed_thread_is_not_a_follow_up(
    setup: Setup,
) -> None:
    # Discord's way to address a person is its Reply: in a thread the bot follows, a
    # reply to another member is said to them, as "@alice ..." is.
    fake = setup.discord
    for answer in ("First answer.", "To Alice.", "To the bot.", "Sentinel."):
        setup.chat.enqueue(tokens=[answer])
    async with setup.bridge():
        question = await fake.mention(setup.help, setup.bob, "How long is the bridge?")
        thread = question["id"]
        first = await setup.final(thread, "First answer.")
        alice = await fake.say(thread, setup.alice, "I measured it last week, 2 km")
        await setup.final(thread, "To Alice.")  # the thread's follow-ups are answered
        await fake.reply(thread, setup.bob, alice["id"], "thanks, that is what I needed")
        await fake.reply(thread, setup.bob, first[-1]["id"], "and its height?")
        await setup.final(thread, "To the bot.")
        await fake.mention(setup.general, setup.bob, "sentinel")
        await setup.final(setup.general, "Sentinel.")
    asked = [r.json["message"] for r in setup.chat.requests]
    assert asked == [
        "How long is the bridge?",
        "I measured it last week, 2 km",
        "and its height?",
        "sentinel",
    ]
