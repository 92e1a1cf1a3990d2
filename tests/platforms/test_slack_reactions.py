"""The Slack "thinking" reaction against the fake Slack at Slack's tiers: reactions.add
50 and reactions.remove 20 a minute per workspace. Whatever the load, a reaction put on
a question is taken off once its answer is done."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.platforms.slack import SlackPlatform, SlackTarget
from adapters.platforms.slack import reactions as reactions_module
from adapters.platforms.slack.reactions import FLUSH_SECONDS, Reaction, ThinkingReactions
from bridge.interfaces import Rate
from bridge.logs import AnswerFilter, log_answer
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import Inbox, asked, running, started

NAME = "hourglass_flowing_sand"


def shown(fake: FakeSlack) -> list[tuple[str, str]]:
    """The messages that show the thinking reaction."""
    return [key for key, names in fake.reactions.items() if NAME in names]


def question(target: SlackTarget) -> tuple[str, str]:
    return (target.address.channel, target.question_ts or "")


async def settled(*targets: SlackTarget) -> None:
    """Wait until each target's reaction was put on, or not."""
    for target in targets:
        await target._indicator_sent()


async def taken(fake: FakeSlack, inbox: Inbox, n: int, channels: int = 5) -> list[SlackTarget]:
    """`n` questions asked in `channels` channels of one workspace, each shown as taken."""
    targets = []
    for i in range(n):
        target = await asked(fake, inbox, channel=f"C0CHAN{i % channels:04d}", text=f"q{i}")
        target.accepted()
        targets.append(target)
    return targets


async def test_more_answers_a_minute_than_slack_removes_leave_no_reaction(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Past 20 answers a minute, each removal beyond was refused (429) and never tried
    # again: the question said "thinking" for good under its answer.
    async with running(fake_slack, inbox, thinking="reaction"):
        targets = await taken(fake_slack, inbox, 25)
        for target in targets:
            await target.end()
        await fake_slack.wait_for(
            lambda: (
                not shown(fake_slack)
                and fake_slack.count("reactions.remove") == fake_slack.count("reactions.add")
            ),
            timeout=5.0,
        )
        # Put on only where its removal fitted Slack's 20: the rest went without.
        assert fake_slack.count("reactions.add") == 20
        assert fake_slack.rate_limited["reactions.remove"] == 0


async def test_removals_slack_refuses_for_its_rate_go_after_its_retry_after(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack stricter than the bridge's budget (another replica spends it too), its
    # window shortened: 5 removals in 2 s.
    fake_slack.set_rate("reactions.remove", 5, 2.0)
    async with running(fake_slack, inbox, thinking="reaction") as platform:
        targets = await taken(fake_slack, inbox, 12)
        await fake_slack.wait_for(lambda: len(shown(fake_slack)) == 12)
        loop = asyncio.get_running_loop()
        began = loop.time()
        for target in targets:
            await target.end()
        await fake_slack.wait_for(lambda: not shown(fake_slack), timeout=15.0)
        took = loop.time() - began
        # The last removal's answer is read a moment after Slack has made it.
        await fake_slack.wait_for(lambda: platform.reactions.pending() == 0, timeout=5.0)
        limited = fake_slack.rate_limited["reactions.remove"]
        assert limited >= 1 and fake_slack.count("reactions.remove") == 12 + limited
        # Sent again only once Slack's Retry-After (a second at least) had passed.
        assert limited <= took + 1


async def test_the_end_of_an_answer_does_not_wait_for_its_reaction_to_go(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    async with running(fake_slack, inbox, thinking="reaction"):
        target = await asked(fake_slack, inbox)
        target.accepted()
        fake_slack.slow["reactions.remove"] = [2.0]  # Slack slow to answer
        async with asyncio.timeout(1.0):
            await target.end()
        await fake_slack.wait_for(lambda: not shown(fake_slack))


async def test_only_as_many_reactions_as_slack_can_remove_are_put_on(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    budget = {"count": 2, "per": 60}
    async with running(fake_slack, inbox, thinking="reaction", reaction_rate=budget):
        first, second, third = await taken(fake_slack, inbox, 3)
        await settled(first, second, third)
        assert shown(fake_slack) == [question(first), question(second)]
        await first.end()
        await fake_slack.wait_for(lambda: shown(fake_slack) == [question(second)])
        # Its removal counts for a minute: the next would not fit either.
        [fourth] = await taken(fake_slack, inbox, 1)
        await settled(fourth)
        assert fake_slack.count("reactions.add") == 2
        for target in (second, third, fourth):
            await target.end()
        await fake_slack.wait_for(lambda: not shown(fake_slack))
        assert fake_slack.count("reactions.remove") == 2


async def test_an_add_refused_for_its_rate_leaves_nothing_to_remove(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    fake_slack.set_rate("reactions.add", 1, 60.0)
    async with running(fake_slack, inbox, thinking="reaction") as platform:
        targets = await taken(fake_slack, inbox, 3)
        for target in targets:
            await target.end()
        await fake_slack.wait_for(
            lambda: platform.reactions.pending() == 0 and not shown(fake_slack)
        )
        # The second was refused (429), and the third not sent within its Retry-After.
        assert fake_slack.count("reactions.add") == 2
        assert fake_slack.rate_limited["reactions.add"] == 1
        assert fake_slack.count("reactions.remove") == 1  # the first's alone
        assert not fake_slack.rejected


async def test_an_app_without_reactions_write_says_so_once_and_answers_all_the_same(
    fake_slack: FakeSlack, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    # Refused for its scope, each question's reaction was tried again and the refusal
    # logged at DEBUG: the thinking reaction never showed, and nobody was told why.
    fake_slack.scopes.discard("reactions:write")
    async with running(fake_slack, inbox, thinking="reaction") as platform:
        now = [1000.0]
        platform.reactions._clock = lambda: now[0]
        targets = await taken(fake_slack, inbox, 3)
        await settled(*targets)
        assert fake_slack.count("reactions.add") == 1  # not tried again for a while
        for target in targets:  # answered as usual
            assert await target.begin() is not None
            await target.end()
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warned) == 1
        assert fake_slack.team_id in warned[0] and "reactions:write" in warned[0]
        # The app reinstalled with the scope: after the pause, reactions show again.
        fake_slack.scopes.add("reactions:write")
        now[0] += reactions_module.NO_SCOPE_SECONDS
        [target] = await taken(fake_slack, inbox, 1)
        await settled(target)
        assert shown(fake_slack) == [question(target)]
        await target.end()
        await fake_slack.wait_for(lambda: not shown(fake_slack))
        assert fake_slack.rejected == {"reactions.add:missing_scope": 1}


async def test_an_add_whose_answer_was_lost_is_taken_off_too(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack put it on; the bridge, never told, left it there.
    fake_slack.lose_answer["reactions.add"] = 1
    async with running(fake_slack, inbox, thinking="reaction"):
        target = await asked(fake_slack, inbox)
        target.accepted()
        await settled(target)
        assert shown(fake_slack) == [question(target)]
        await target.end()
        await fake_slack.wait_for(lambda: not shown(fake_slack))


async def test_a_stop_waits_out_a_short_retry_after_to_take_the_reactions_off(
    fake_slack: FakeSlack, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.set_rate("reactions.remove", 1, 1.0)
    platform = await started(fake_slack, inbox, thinking="reaction")
    try:
        targets = await taken(fake_slack, inbox, 2)
        for target in targets:
            await target.end()
        await fake_slack.wait_for(lambda: fake_slack.rate_limited["reactions.remove"] == 1)
    finally:
        await platform.aclose()
    assert not shown(fake_slack)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_stop_logs_the_reactions_slack_would_not_take_off_before_it(
    fake_slack: FakeSlack, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.set_rate("reactions.remove", 1, 60.0)
    platform: SlackPlatform = await started(fake_slack, inbox, thinking="reaction")
    try:
        targets = await taken(fake_slack, inbox, 2)
        for target in targets:
            await target.end()
        await fake_slack.wait_for(lambda: fake_slack.rate_limited["reactions.remove"] == 1)
    finally:
        async with asyncio.timeout(FLUSH_SECONDS):  # not waiting out Slack's minute
            await platform.aclose()
    assert shown(fake_slack) == [question(targets[1])]
    assert fake_slack.count("reactions.remove") == 2  # not asked again before its time
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"1 question(s) keep the :{NAME}: reaction" in warning


class _Accepting:
    """A Web API client that takes every reaction request."""

    async def reactions_add(self, **_: str) -> None:
        return None

    async def reactions_remove(self, **_: str) -> None:
        return None


async def test_the_workspaces_whose_reactions_are_all_off_are_forgotten() -> None:
    # An install across an organisation meets a workspace per team: each was kept
    # for good once it had had a reaction.
    now = [1000.0]
    reactions = ThinkingReactions(
        _Accepting(),
        Rate(20, 60.0),  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    try:
        for n in range(500):
            reaction = Reaction(f"T{n}", "C1", "1.0", "hourglass")
            assert await reactions.add(reaction)
            reactions.remove(reaction)
        async with asyncio.timeout(10):
            while reactions.pending():
                await asyncio.sleep(0.01)
        busy = Reaction("T-busy", "C1", "1.0", "hourglass")
        assert await reactions.add(busy)  # on, not yet taken off: kept
        now[0] += 61  # the removals leave the budget's window
        for n in range(500, 1000):
            assert await reactions.add(Reaction(f"T{n}", "C1", "1.0", "hourglass"))
        known = set(reactions._workspaces)
        assert "T-busy" in known and "T0" not in known
        assert len(known) <= 1 + 500
    finally:
        await reactions.aclose()


class _Noting:
    """A Web API client that logs each removal it is asked for."""

    async def reactions_add(self, **_: str) -> None:
        return None

    async def reactions_remove(self, *, channel: str, **_: str) -> None:
        logging.getLogger("tests.reactions").warning("removed in %s", channel)


async def test_the_workspaces_removals_are_logged_as_no_ones_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The workspace's worker was started in the answer that first took a reaction off,
    # and its lines about other conversations' reactions named that one.
    caplog.handler.addFilter(AnswerFilter())
    reactions = ThinkingReactions(_Noting(), Rate(20, 60.0))  # type: ignore[arg-type]

    async def answer(conversation: str, channel: str) -> None:
        log_answer(conversation=conversation, platform="slack")
        reaction = Reaction("T1", channel, "1.0", "hourglass")
        assert await reactions.add(reaction)
        reactions.remove(reaction)

    try:
        await asyncio.create_task(answer("first", "C_A"))
        await asyncio.create_task(answer("second", "C_B"))
        async with asyncio.timeout(10):
            while reactions.pending():
                await asyncio.sleep(0.01)
    finally:
        await reactions.aclose()
    removals = [r for r in caplog.records if r.getMessage().startswith("removed in")]
    assert len(removals) == 2
    assert all(getattr(r, "conversation", None) is None for r in removals)
