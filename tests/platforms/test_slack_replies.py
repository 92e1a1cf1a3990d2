"""A Slack reply (`mode: update`): a placeholder edited into the answer, what Slack
takes, and its refusals, timeouts and rate limits."""

from __future__ import annotations

import pytest

from adapters.platforms.slack import SlackPlatform, SlackTarget
from adapters.platforms.slack.refusal import SlackRefused
from bridge.budget import Budgets
from bridge.errors import (
    PlaceGone,
    PlatformError,
    PlatformRefused,
    PlatformUnreachable,
)
from bridge.interfaces import Address, PlatformContext, Source
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.core.recording import escape_heavy_code, shown_words
from tests.fakes.slack import FakeMessage, FakeSlack
from tests.platforms.slack_support import (
    CHANNEL,
    DM,
    Inbox,
    asked,
    begun,
    deliver,
    options,
    running,
    started,
)


async def test_update_mode_reply_in_thread(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target = await asked(fake_slack, inbox)
    assert target.limits.begin_posts and target.limits.max_chars == 3900
    assert target.limits.edit_bucket == f"slack:update:{fake_slack.team_id}"
    assert target.limits.post_bucket == f"slack:post:{fake_slack.team_id}:{CHANNEL}"
    placeholder = await target.begin()
    assert placeholder is not None
    await target.edit(placeholder, target.format_markdown("Partial **answer**"))
    body = target.format_markdown("Partial **answer**, complete <!here>.")
    sources = target.format_sources([Source("https://d.example", "Docs")])
    await target.edit(placeholder, body + "\n\n" + sources)
    await target.end()
    root = target.address.thread
    assert root is not None
    [reply] = fake_slack.bot_replies(CHANNEL, root)
    assert reply.versions[0] == "_Thinking…_"
    assert reply.text == (
        "Partial *answer*, complete @\u2060here.\n\n_Sources:_ <https://d.example|Docs>"
    )
    assert fake_slack.pings == []
    # The question got a "thinking" reaction for the duration of the answer (taken
    # off in the background: the end does not wait for it).
    await fake_slack.wait_for(lambda: not fake_slack.reactions[(CHANNEL, root)])
    assert fake_slack.count("reactions.add") == 1 and fake_slack.count("reactions.remove") == 1


@pytest.mark.parametrize(
    ("thinking_text", "shown"),
    # Empty (shown nowhere on Discord): Slack refused every placeholder (no_text).
    [("**Working**", "*Working*"), ("", "_Thinking…_")],
)
async def test_placeholder_follows_the_core_thinking_text(
    fake_slack: FakeSlack, thinking_text: str, shown: str
) -> None:
    ctx = PlatformContext(options=options(fake_slack), thinking_text=thinking_text)
    platform = SlackPlatform(ctx)
    inbox = Inbox()
    await platform.start(inbox)
    try:
        target = await asked(fake_slack, inbox)
        ts = await target.begin()
        message = fake_slack.find(CHANNEL, ts or "")
        assert message is not None and message.text == shown
        await target.end()
    finally:
        await platform.aclose()


async def test_update_never_sends_more_than_slack_takes(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target, ts = await begun(fake_slack, inbox)
    await target.edit(ts, "x" * 5000)
    assert len(fake_slack.find(CHANNEL, ts).text) == 4000  # type: ignore[union-attr]
    assert not fake_slack.rejected


async def test_refusals_become_platform_errors(
    fake_slack: FakeSlack, socket_platform: SlackPlatform
) -> None:
    target = socket_platform.target(Address("slack", fake_slack.team_id, CHANNEL, "1.1"))
    fake_slack.fail["chat.postMessage"] = ["msg_too_long"]
    with pytest.raises(PlatformError, match="msg_too_long") as refused:
        await target.post("hello")
    assert not isinstance(refused.value, PlaceGone)
    # A message, or the question whose thread a reply goes in, that is gone ends
    # the reply: trying again cannot help.
    with pytest.raises(PlaceGone, match="message_not_found"):
        await target.edit("9.9", "hello")
    with pytest.raises(PlaceGone, match="thread_not_found"):
        await target.post("hello")
    # So does a token Slack no longer takes, and the error says what to look at.
    fake_slack.fail["chat.postMessage"] = ["token_revoked"]
    with pytest.raises(PlaceGone, match="token_revoked.*uninstalled") as locked_out:
        await target.post("hello")
    assert fake_slack.bot_token not in str(locked_out.value)


async def test_a_page_that_is_not_slacks_answer_means_slack_could_not_be_reached(
    fake_slack: FakeSlack, socket_platform: SlackPlatform
) -> None:
    # An outage's 503 or a proxy's 502 comes with a page, not Slack's JSON: reading an
    # error code from it raised AttributeError, and each failure was logged as that.
    target = socket_platform.target(Address("slack", fake_slack.team_id, CHANNEL, None))
    fake_slack.unavailable["chat.postMessage"] = [503]
    reached = r"could not be reached for chat.postMessage \(HTTP 503\)"
    with pytest.raises(PlatformUnreachable, match=reached) as caught:
        await target.post("hello")
    assert not isinstance(caught.value, SlackRefused | PlaceGone)  # tried again, not ended
    ts = await target.post("hello")
    fake_slack.unavailable["chat.update"] = [502]
    with pytest.raises(PlatformError, match=r"could not be reached for chat.update \(HTTP 502\)"):
        await target.edit(ts, "hello again")
    # Slack's own refusals are still read from its answer: a refusal of this very
    # request (tried again a few times only), or Slack failing on its side (it may
    # take the request later: a reply's end is tried again for minutes).
    fake_slack.fail["chat.update"] = ["msg_too_long"]
    with pytest.raises(PlatformRefused, match="msg_too_long") as refused:
        await target.edit(ts, "hello again")
    assert isinstance(refused.value, SlackRefused)
    fake_slack.fail["chat.update"] = ["internal_error"]
    with pytest.raises(PlatformError, match="internal_error") as failing:
        await target.edit(ts, "hello again")
    assert not isinstance(failing.value, PlatformRefused)


async def dm_thread_target(fake_slack: FakeSlack, inbox: Inbox) -> SlackTarget:
    """The target of a question asked in a thread of a DM (an assistant thread)."""
    [root] = fake_slack.user_message(DM, "start")
    await deliver(fake_slack, [root])
    in_thread = fake_slack.user_message(DM, "in thread", thread_ts=root["event"]["ts"])
    await deliver(fake_slack, in_thread)
    await inbox.wait(2)
    return inbox.items[1][1]


async def test_dm_thread_uses_assistant_status(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target = await dm_thread_target(fake_slack, inbox)
    ts = await target.begin()
    assert ts is not None
    await target.end()
    assert [s["status"] for s in fake_slack.statuses] == ["is thinking…", ""]
    assert fake_slack.count("reactions.add") == 0


async def test_rate_limited_call_is_retried_after_retry_after(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    target, ts = await begun(fake_slack, inbox)
    fake_slack.set_rate("chat.update", 1, 1.0)
    await target.edit(ts, "one")
    await target.edit(ts, "two")  # 429, Retry-After: 1, then retried
    assert fake_slack.rate_limited["chat.update"] == 1
    assert fake_slack.find(CHANNEL, ts).text == "two"  # type: ignore[union-attr]


async def test_a_429_that_ends_a_call_is_counted_too(fake_slack: FakeSlack, inbox: Inbox) -> None:
    limited: list[int] = []
    platform = await started(
        fake_slack, inbox, lambda: limited.append(1), max_retries=0, thinking="none"
    )
    try:
        target, ts = await begun(fake_slack, inbox)
        fake_slack.set_rate("chat.update", 1, 30.0)
        await target.edit(ts, "one")
        with pytest.raises(PlatformError, match="ratelimited"):
            await target.edit(ts, "two")  # 429, and no retry allowed
        assert len(limited) == fake_slack.rate_limited["chat.update"] == 1
    finally:
        await platform.aclose()


async def test_a_429_to_a_thinking_reaction_is_counted_and_not_waited_out(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The reactions' client had no handler at all: their 429s, the first under load,
    # were in no metric.
    seen: list[int] = []
    fake_slack.set_rate("reactions.add", 1, 60.0)
    async with running(fake_slack, inbox, lambda: seen.append(1), thinking="reaction"):
        for text in ("one", "two"):
            (await asked(fake_slack, inbox, text=text)).accepted()  # shows it is thinking
        await wait_for(lambda: fake_slack.rate_limited["reactions.add"] == 1 and seen == [1])
        assert fake_slack.count("reactions.add") == 2  # tried once: never waited out


async def test_an_escaped_answer_leaves_its_completed_messages_as_they_are_at_the_end(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack's escapes (`&` is `&amp;`) make a message longer than its Markdown: the
    # end split the answer again, elsewhere, rewrote each message already complete
    # (a chat.update of the workspace's ~50 a minute each) and posted one more.
    fast = {"count": 100_000, "per": 1.0}
    fake_slack.set_rate("chat.update", 100_000, 1.0)
    fake_slack.set_rate("chat.postMessage", 100_000, 1.0)
    async with running(
        fake_slack, inbox, thinking="none", max_chars=1000, update_rate=fast, post_rate=fast
    ):
        target = await asked(fake_slack, inbox)
        reply = LiveReply(target, Budgets(), edit_interval=0.0)
        await reply.start()
        text = escape_heavy_code(60)

        def shown() -> list[FakeMessage]:
            return fake_slack.bot_replies(CHANNEL, target.address.thread)

        for end in range(40, len(text) + 40, 40):
            reply.feed(text[end - 40 : end])
            fed = shown_words(text[:end])
            await wait_for(lambda: shown_words("\n".join(m.text for m in shown())) == fed)  # noqa: B023
        streamed = [(m.ts, m.text, m.edits) for m in shown()]
        assert len(streamed) > 2
        await reply.finish(None)
        final = [(m.ts, m.text, m.edits) for m in shown()]
        assert final[:-1] == streamed[:-1] and len(final) == len(streamed)


async def test_a_web_api_call_is_given_the_configured_timeout(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # The shared session's 30 s applied whatever `timeout` said.
    # (A post that times out is looked for before it is sent again: see
    # test_update_mode_a_post_slack_took_late_is_not_posted_twice.)
    async with running(fake_slack, inbox, thinking="none", timeout=0.5):
        target, ts = await begun(fake_slack, inbox)
        fake_slack.slow["chat.update"] = [3.0, 3.0, 3.0]  # slack-sdk retries twice
        with pytest.raises(PlatformUnreachable, match="could not be reached for chat.update"):
            await target.edit(ts, "Hello")
