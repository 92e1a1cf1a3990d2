"""Discord's slash commands /ask and /reset: deferred and answered, in public or to the asker alone,
closed when nothing answers, marked by a stop, and left unasked when Discord did not take them."""

from __future__ import annotations

import pytest

from adapters.platforms.discord.targets import InteractionTarget
from bridge.interfaces import Address
from bridge.interruptions import INTERRUPTED
from tests.core.fakeplatform import wait_for
from tests.platforms.discord_support import (
    SOURCE,
    SOURCES_BLOCK,
    Setup,
    World,
    assert_never_pinged,
    running,
)


async def test_ask_command_is_deferred_then_answered_in_channel(world: World) -> None:
    async with running(world):
        iid = await world.fake.invoke(world.general, world.alice, "ask", {"question": "why?"})
        msg, target = await world.next()
        assert isinstance(target, InteractionTarget)
        # Interaction responses are outside the bot's global limit: never queued behind it.
        assert target.limits.global_bucket is None and target.limits.global_rate is None
        await target.begin()
        first = await target.post("because")
        second = await target.post("and more")
        await target.edit(first, "because, edited")
        await target.edit(second, "and more, edited")
        await target.end()
    assert (msg.command, msg.text, msg.mentioned, msg.event_id) == ("ask", "why?", True, iid)
    assert (msg.channel, msg.workspace, msg.roles) == (world.general, world.guild, (world.role,))
    fake = world.fake
    callback = fake.sent("POST", rf"/interactions/{iid}/.+/callback$")
    assert len(callback) == 1 and callback[0].body["type"] == 5
    assert not (callback[0].body.get("data") or {}).get("flags")
    original = fake.interactions[iid]["original"]
    assert first == original
    assert fake.messages[first]["content"] == "because, edited"
    assert fake.messages[second]["content"] == "and more, edited"
    assert not fake.messages[second]["flags"] & 64
    for write in fake.message_writes():
        assert write.body["allowed_mentions"]["parse"] == []


async def test_ask_can_be_ephemeral(world: World) -> None:
    async with running(world, ask_ephemeral=True):
        iid = await world.fake.invoke(world.general, world.alice, "ask", {"question": "q"})
        _, target = await world.next()
        await target.post("only for you")
        await target.post("still only for you")
    fake = world.fake
    assert fake.sent("POST", r"/callback$")[0].body["data"]["flags"] & 64
    assert all(m["flags"] & 64 for m in fake.channel_messages(world.general))
    assert fake.messages[fake.interactions[iid]["original"]]["content"] == "only for you"


async def test_reset_command_is_ephemeral_and_answered_by_notice(world: World) -> None:
    async with running(world):
        iid = await world.fake.invoke(world.general, world.bob, "reset")
        msg, target = await world.next()
        await target.notice("Started a new conversation.")
    assert (msg.command, msg.text) == ("reset", "")
    original = world.fake.messages[world.fake.interactions[iid]["original"]]
    assert original["content"] == "Started a new conversation."
    assert original["flags"] & 64


async def test_a_notice_for_a_public_ask_is_shown_to_the_asker_alone(world: World) -> None:
    async with running(world):
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "q"})
        _, target = await world.next()
        await target.notice("I am busy right now; please try again shortly.")
    fake = world.fake
    assert fake.interactions[iid]["original"] not in fake.messages  # the public thinking
    [notice] = fake.channel_messages(world.general)
    assert notice["content"] == "I am busy right now; please try again shortly."
    assert notice["flags"] & 64


async def test_command_in_a_dm(world: World) -> None:
    async with running(world):
        channel = world.fake.dm_channel(world.bob)
        await world.fake.invoke(channel, world.bob, "ask", {"question": "dm q"})
        msg, _ = await world.next()
    assert (msg.workspace, msg.channel, msg.is_dm, msg.text) == ("@dm", channel, True, "dm q")


async def test_command_in_a_thread_names_parent_and_thread(world: World) -> None:
    async with running(world):
        await world.fake.mention(world.general, world.alice, "open one")
        _, target = await world.next()
        opened = await target.open_thread("open one")
        assert opened is not None
        await world.fake.invoke(opened[0], world.alice, "reset")
        msg, inner = await world.next()
        await inner.notice("done")
    assert (msg.channel, msg.thread, msg.command) == (world.general, opened[0], "reset")
    assert inner.address == Address("discord", world.guild, world.general, opened[0])


async def test_unanswered_command_is_closed(world: World) -> None:
    async with running(world) as platform:
        platform.unanswered_after = 0.1
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "hello?"})
        await world.next()  # the handler keeps it and never answers (no route)
        [closed] = await world.fake.wait_until(
            lambda: [
                m
                for m in world.fake.channel_messages(world.general)
                if "not be set up" in m["content"]
            ]
        )
    assert closed["flags"] & 64  # told to the asker; the public thinking is gone
    assert world.fake.interactions[iid]["original"] not in world.fake.messages


async def test_a_command_whose_answer_is_queued_is_not_called_unanswered(world: World) -> None:
    async with running(world) as platform:
        platform.unanswered_after = 0.1
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "later?"})
        _, target = await world.next()
        target.accepted()  # the relay queued its answer behind another one
        await wait_for(lambda: not platform._watchdogs)
    assert not world.fake.edits.get(world.fake.interactions[iid]["original"] or "")


async def test_ask_command_answers_in_the_channel(setup: Setup) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Slash ", "answer."], sources=[SOURCE], token_delay=0.05)
    async with setup.bridge():
        iid = await fake.invoke(setup.ask, setup.bob, "ask", {"question": "via slash?"})
        await setup.command_answered(iid, SOURCES_BLOCK)
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == f"Slash answer.\n\n{SOURCES_BLOCK}"
    assert not original["flags"] & 64
    assert setup.chat.requests[0].json["message"] == "via slash?"
    assert_never_pinged(fake)


async def test_links_in_a_commands_answer_get_no_preview_cards(setup: Setup) -> None:
    # `/ask`'s first message is its deferred response, edited to the answer: that
    # edit did not carry the flag channel answers are posted with.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Verify at ", "https://evil.example/verify now."])
    async with setup.bridge():
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "How?"})
        answer = await setup.command_answered(iid, "now.")
        assert answer["flags"] & 4  # SUPPRESS_EMBEDS


async def test_a_stop_marks_slash_command_answers_through_their_own_webhooks(
    setup: Setup,
) -> None:
    # A command's messages are the interaction's: the channel's endpoints cannot
    # edit them, and a mark posted in the channel replied to nothing, in public.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Partial answer", " never shown"], hang_after=1)
    async with setup.bridge() as bridge:
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (
                (m := fake.messages.get(fake.interactions[first]["original"] or ""))
                and m["content"] == "Partial answer"
            )
        )
        queued = await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        await wait_for(lambda: len(bridge.relay._jobs) == 2)  # taken, waiting its turn
        sent = len(fake.requests)
        bridge.relay.hurry()  # no grace: the answer hangs
        await bridge.drain()
        stop = fake.requests[sent:]
    original = fake.messages[fake.interactions[first]["original"]]
    assert original["content"] == f"Partial answer\n\n{INTERRUPTED}"
    told = [m for m in fake.messages.values() if m["content"] == INTERRUPTED]
    assert len(told) == 1 and told[0]["flags"] & 64  # the queued one's asker, alone
    assert fake.interactions[queued]["original"] not in fake.messages  # its public thinking…
    assert [r for r in stop if "/channels/" in r.path and "/messages" in r.path] == []


async def test_a_slash_command_whose_turn_comes_during_a_stop_is_marked_unasked(
    setup: Setup,
) -> None:
    # Asked during the grace, its answer would have been paid for and most likely cut.
    fake = setup.discord
    setup.chat.enqueue(tokens=[f"w{i} " for i in range(20)], token_delay=0.05)
    async with setup.bridge() as bridge:
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (
                (m := fake.messages.get(fake.interactions[first]["original"] or ""))
                and m["content"].startswith("w0")
            )
        )
        await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        await wait_for(lambda: len(bridge.relay._jobs) == 2)  # taken, waiting its turn
        await bridge.drain()
    original = fake.messages[fake.interactions[first]["original"]]
    assert original["content"] == "".join(f"w{i} " for i in range(20))  # finished
    told = [m for m in fake.messages.values() if m["content"] == INTERRUPTED]
    assert len(told) == 1 and told[0]["flags"] & 64  # the queued one's asker, alone
    assert [r.json["message"] for r in setup.chat.requests] == ["slow one?"]


async def test_a_reset_discord_did_not_take_resets_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # Its asker sees "The application did not respond": the conversation goes on.
    fake = setup.discord
    for word in ("one", "two"):
        setup.chat.enqueue(tokens=[f"Answer {word}."])
    async with setup.bridge():
        await fake.mention(setup.general, setup.alice, "first")
        await setup.final(setup.general, "Answer one.")
        fake.drop.append(("POST", r"/interactions/\d+/[^/]+/callback$"))
        await fake.invoke(setup.general, setup.alice, "reset")
        await wait_for(
            lambda: any("could not take /reset" in r.getMessage() for r in caplog.records)
        )
        await fake.mention(setup.general, setup.alice, "second")
        await setup.final(setup.general, "Answer two.")
    one, two = setup.sessions()
    assert one == two


async def test_an_ask_discord_did_not_take_is_not_asked_when_its_turn_comes(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # Refused (or lost) there, it has nowhere to show an answer: it is not handed on.
    fake = setup.discord
    setup.chat.enqueue(tokens=["First "] * 20 + ["answer."], token_delay=0.05)
    async with setup.bridge() as bridge:
        await fake.mention(setup.general, setup.alice, "first question")
        await fake.wait_until(lambda: fake.sent("POST", rf"/channels/{setup.general}/typing$"))
        fake.drop.append(("POST", r"/interactions/\d+/[^/]+/callback$"))
        await fake.invoke(setup.general, setup.bob, "ask", {"question": "and me?"})
        await wait_for(lambda: any("could not take /ask" in r.getMessage() for r in caplog.records))
        await setup.final(setup.general, "answer.")
        await wait_for(lambda: not bridge.relay.records())
    assert [r.json["message"] for r in setup.chat.requests] == ["first question"]


async def test_a_lone_ask_discord_did_not_take_is_not_asked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # With nothing ahead of it, its turn came while the acknowledgement was on its
    # way: it was asked of the chat API (paid for) and could never show.
    fake = setup.discord
    setup.chat.enqueue(tokens=["Nobody "] * 5 + ["sees this."], token_delay=0.02)
    async with setup.bridge() as bridge:
        # Lost after a while: its turn comes first.
        fake.slow.append(("POST", r"/interactions/\d+/[^/]+/callback$", 0.5))
        fake.drop.append(("POST", r"/interactions/\d+/[^/]+/callback$"))
        await fake.invoke(setup.general, setup.bob, "ask", {"question": "lonely?"})
        await wait_for(lambda: any("could not take /ask" in r.getMessage() for r in caplog.records))
        assert not bridge.relay.records() and bridge.relay.ahead == 0
    assert setup.chat.requests == []
