"""Discord questions and /asks withdrawn or given up: where the bot lost its voice or its place,
and an /ask still waiting near the end of the 15 minutes Discord gives a command, its asker
told why, once."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from adapters.platforms.discord.commands import TOO_LATE_TEXT
from adapters.platforms.discord.targets import NOT_ANSWERED_TEXT, InteractionTarget
from bridge.errors import PlaceGone
from tests.core.fakeplatform import wait_for
from tests.fakes.discord import EPHEMERAL, LOADING, SEND_MESSAGES, SEND_MESSAGES_IN_THREADS
from tests.platforms.discord_support import Setup, World, running


async def test_a_question_waiting_where_the_bot_lost_send_messages_is_withdrawn(
    world: World,
) -> None:
    # Asked, the chat API would answer where Discord refuses the bot's messages (403).
    fake = world.fake
    async with running(world):
        await fake.mention(world.general, world.alice, "in the channel")
        _, target = await world.next()
        tid = await fake.add_thread(world.general, "aside")
        await fake.mention(tid, world.bob, "in a thread")
        _, in_thread = await world.next()
        assert not target.withdrawn() and not in_thread.withdrawn()
        await fake.deny_bot(world.general, SEND_MESSAGES)
        await wait_for(target.withdrawn)
        assert not in_thread.withdrawn()  # Send Messages in Threads still allowed
        await fake.deny_bot(world.general, SEND_MESSAGES_IN_THREADS)
        await wait_for(in_thread.withdrawn)


async def test_an_ask_in_a_deleted_thread_is_withdrawn_and_posts_nothing(world: World) -> None:
    fake = world.fake
    async with running(world):
        tid = await fake.add_thread(world.general, "aside")
        iid = await fake.invoke(tid, world.bob, "ask", {"question": "here?"})
        _, target = await world.next()
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        assert not target.withdrawn()
        await fake.delete_place(tid)
        await wait_for(target.withdrawn)
        sent = len(fake.requests)
        with pytest.raises(PlaceGone):
            await target.post("the answer")
        assert isinstance(target, InteractionTarget)
        assert not await target.give_up(TOO_LATE_TEXT)  # nobody to tell
        await target.end()  # its "thinking…" went with the thread
    assert fake.requests[sent:] == []


async def test_an_ask_where_the_bot_lost_access_tells_its_asker_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # Withdrawn (Discord refused another reply there, Missing Access), its public
    # "thinking…" stayed until the token ran out, and the log said the channel was
    # deleted.
    fake = world.fake
    caplog.set_level(logging.INFO, logger="chat_bridge.discord")
    async with running(world):
        await fake.mention(world.general, world.alice, "in the channel")
        _, target = await world.next()
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "here?"})
        _, ask = await world.next()
        assert isinstance(ask, InteractionTarget)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        fake.left.add(world.guild)  # the bot was removed, unseen
        with pytest.raises(PlaceGone):
            await target.post("the answer")
        assert ask.withdrawn()
        await ask.end()
        sent = len(fake.requests)
        await ask.end()
        assert not await ask.give_up(TOO_LATE_TEXT)
        await ask.notice("interrupted")
        assert fake.requests[sent:] == []  # said once
    assert fake.interactions[iid]["original"] not in fake.messages  # the public "thinking…"
    [told] = [m for m in fake.channel_messages(world.general) if m["flags"] & EPHEMERAL]
    assert told["content"] == (
        "_This was not answered: the bot can no longer reach the channel or thread it was "
        "asked in._"
    )
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"the bot cannot reach channel or thread {world.general}" in m for m in logged)
    assert not any("was deleted" in m for m in logged)


async def test_an_ask_given_up_where_the_bot_was_removed_says_why(world: World) -> None:
    # Its turn not come by its time (the bot busy elsewhere), the give-up said nothing.
    fake = world.fake
    async with running(world, ask_ephemeral=True):
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "here?"})
        _, ask = await world.next()
        assert isinstance(ask, InteractionTarget)
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        await fake.remove_bot(world.guild)
        await wait_for(ask.withdrawn)
        assert await ask.give_up(TOO_LATE_TEXT)
    original = fake.messages[fake.interactions[iid]["original"]]
    assert not original["flags"] & LOADING and original["flags"] & EPHEMERAL
    assert original["content"] == (
        "_This was not answered: the bot was removed from the server it was asked in._"
    )


async def test_an_ask_ended_unanswered_says_so_unless_a_stop_cut_it(world: World) -> None:
    # Its turn taken over elsewhere, say: "thinking…" must not stay. Cut by a stop,
    # it is the stop that says so.
    fake = world.fake
    async with running(world, ask_ephemeral=True):
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "one"})
        _, ask = await world.next()
        cut = await fake.invoke(world.general, world.bob, "ask", {"question": "two"})
        _, stopped = await world.next()
        await fake.wait_until(lambda: all(fake.interactions[i]["callback"] for i in (iid, cut)))
        started = asyncio.Event()

        async def answering() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await stopped.end()
                raise

        task = asyncio.create_task(answering())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not ask.withdrawn()
        await ask.end()
    original = fake.messages[fake.interactions[iid]["original"]]
    assert not original["flags"] & LOADING
    assert original["content"] == NOT_ANSWERED_TEXT
    assert fake.messages[fake.interactions[cut]["original"]]["flags"] & LOADING


async def test_an_ask_that_cannot_be_told_ends_all_the_same(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    fake = world.fake
    async with running(world):
        iid = await fake.invoke(world.general, world.bob, "ask", {"question": "here?"})
        _, ask = await world.next()
        await fake.wait_until(lambda: fake.interactions[iid]["callback"] is not None)
        fake.interactions[iid]["expired"] = True  # Discord refuses its webhook: 401
        await ask.end()  # raises nothing
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith("could not tell the asker of a command that it was not answered")


async def test_an_ask_given_up_says_nothing_more_and_is_withdrawn(world: World) -> None:
    async with running(world) as platform:
        platform.give_up_after = 0.1
        iid = await world.fake.invoke(world.general, world.bob, "ask", {"question": "later?"})
        _, target = await world.next()
        assert isinstance(target, InteractionTarget)
        target.accepted()  # queued behind another answer, which outlasts it
        await world.fake.wait_until(
            lambda: [
                m
                for m in world.fake.channel_messages(world.general)
                if m["content"] == TOO_LATE_TEXT
            ]
        )
        sent = len(world.fake.requests)
        await target.notice("interrupted")  # a stop's mark, say: the asker knows already
        assert target.withdrawn()  # its turn comes: the chat API is not asked
        assert world.fake.requests[sent:] == []
    assert world.fake.interactions[iid]["original"] not in world.fake.messages


async def test_an_ask_past_its_time_is_withdrawn_even_before_its_asker_is_told(
    world: World,
) -> None:
    # The loop too busy for the timer, or the clock moved: its time says enough.
    async with running(world) as platform:
        platform.give_up_after = 0.1
        await world.fake.invoke(world.general, world.bob, "ask", {"question": "later?"})
        _, target = await world.next()
        assert isinstance(target, InteractionTarget)
        await wait_for(lambda: target.timer is not None)  # once Discord took the command
        assert target.timer is not None
        target.timer.cancel()
        assert target.give_up_at is not None
        await wait_for(lambda: time.time() >= target.give_up_at)
        assert target.withdrawn()


async def test_an_ask_whose_answer_began_is_never_given_up(world: World) -> None:
    async with running(world) as platform:
        platform.give_up_after = 0.1
        await world.fake.invoke(world.general, world.bob, "ask", {"question": "now?"})
        _, target = await world.next()
        assert isinstance(target, InteractionTarget)
        await wait_for(lambda: target.timer is not None)
        timer = target.timer
        assert not target.withdrawn()  # its turn came in time
        assert not target.withdrawn()  # asking again changes nothing: the timer still runs
        assert target.timer is timer
        await target.begin()  # the answer begins: no more giving up
        assert target.timer is None
        assert not await target.give_up(TOO_LATE_TEXT)
        await target.post("the answer")
        rid = await world.fake.invoke(world.general, world.bob, "reset")
        _, reset = await world.next()
        assert isinstance(reset, InteractionTarget)
        await reset.notice("done")
    assert reset.give_up_at is None  # a /reset is not to be asked again
    assert world.fake.messages[world.fake.interactions[rid]["original"]]["content"] == "done"


async def test_an_ask_still_queued_near_discords_15_minutes_is_dropped_and_its_asker_told(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    # Sent on when its turn came, its answer could not have shown (the command's token
    # gone), its credit spent, and a stateful API's session kept a turn nobody saw.
    caplog.set_level(logging.INFO, logger="chat_bridge")
    fake = setup.discord
    setup.chat.enqueue(tokens=["First "] * 30 + ["answer."], token_delay=0.05)
    setup.chat.enqueue(tokens=["Later."])
    async with setup.bridge() as bridge:
        bridge.platforms["discord"].give_up_after = 0.5  # not 14 minutes
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (
                (m := fake.messages.get(fake.interactions[first]["original"] or ""))
                and m["content"].startswith("First")
            )
        )
        queued = await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        [told] = await fake.wait_until(
            lambda: [m for m in fake.messages.values() if m["content"] == TOO_LATE_TEXT]
        )
        await setup.command_answered(first, "answer.")
        later = await fake.invoke(setup.general, setup.bob, "ask", {"question": "later?"})
        await setup.command_answered(later, "Later.")
        metrics = bridge.metrics.render().decode()
    assert [r.json["message"] for r in setup.chat.requests] == ["slow one?", "later?"]
    assert setup.sessions()[0] == setup.sessions()[1]  # no turn in between nobody saw
    assert told["flags"] & 64  # to the asker alone; the public "thinking…" is gone
    assert fake.interactions[queued]["original"] not in fake.messages
    assert 'outcome="withdrawn",platform="discord"} 1.0' in metrics
    assert any("waited past Discord's 15 minutes" in r.getMessage() for r in caplog.records)


async def test_an_ask_begun_in_time_is_answered_past_the_point_a_queued_one_is_dropped(
    setup: Setup,
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["Word "] * 20 + ["end."], token_delay=0.05)  # 1 s
    async with setup.bridge() as bridge:
        bridge.platforms["discord"].give_up_after = 0.3
        iid = await fake.invoke(setup.general, setup.alice, "ask", {"question": "long?"})
        await setup.command_answered(iid, "end.")
    original = fake.messages[fake.interactions[iid]["original"]]
    assert original["content"] == "Word " * 20 + "end."
    assert [m for m in fake.messages.values() if m["content"] == TOO_LATE_TEXT] == []


async def test_an_ask_dropped_near_its_15_minutes_whose_asker_cannot_be_told_is_not_asked(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    fake = setup.discord
    setup.chat.enqueue(tokens=["First "] * 30 + ["answer."], token_delay=0.05)
    setup.chat.enqueue(tokens=["Later."])
    async with setup.bridge() as bridge:
        bridge.platforms["discord"].give_up_after = 0.5
        first = await fake.invoke(setup.general, setup.bob, "ask", {"question": "slow one?"})
        await fake.wait_until(
            lambda: (
                (m := fake.messages.get(fake.interactions[first]["original"] or ""))
                and m["content"].startswith("First")
            )
        )
        queued = await fake.invoke(setup.general, setup.alice, "ask", {"question": "and me?"})
        # Its token already refused (this host's clock behind Discord's, say).
        fake.interactions[queued]["expired"] = True
        await wait_for(
            lambda: any("could not be told" in r.getMessage() for r in caplog.records), timeout=10
        )
        await setup.command_answered(first, "answer.")
        later = await fake.invoke(setup.general, setup.bob, "ask", {"question": "later?"})
        await setup.command_answered(later, "Later.")
    assert [r.json["message"] for r in setup.chat.requests] == ["slow one?", "later?"]
