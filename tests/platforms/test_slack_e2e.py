"""End to end: the real Bridge, the real slack-bolt app, the fake Slack and the fake chat API.

Most tests run twice: over Socket Mode and over signed HTTP events.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.fakes.chatapi import FakeChatAPI
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, DM, GROUP_DM, Harness, assert_clean, open_harness

UNROUTED = "C0RANDOM01"


J = "\u2060"


async def test_mention_gets_a_threaded_progressive_reply_with_sources(harness: Harness) -> None:
    words = [f"word{i} " for i in range(30)]
    harness.chat.enqueue(
        tokens=["**Deploying**: ", *words, "done."],
        sources=[
            ("https://docs.example/deploy", "Deploy guide"),
            ("https://docs.example/ci", "CI"),
        ],
        token_delay=0.03,
    )
    root = await harness.ask(CHANNEL, "how do I deploy?")
    final = (
        "*Deploying*: " + "".join(words) + "done.\n\n"
        "_Sources:_ <https://docs.example/deploy|Deploy guide> · <https://docs.example/ci|CI>"
    )
    [reply] = await harness.answer(CHANNEL, root, final)
    assert reply.thread_ts == root and reply.text == final
    assert reply.versions[0] == "_Thinking…_"
    # Shown growing in place: several edits, each showing more of the answer.
    partial = [v for v in reply.versions[1:-1] if v.startswith("*Deploying*")]
    assert len(partial) >= 2
    assert all(len(a) <= len(b) for a, b in zip(partial, partial[1:], strict=False))
    assert harness.chat.requests[0].json["message"] == "how do I deploy?"
    # The "thinking" reaction came and went.
    await harness.slack.wait_for(lambda: harness.slack.count("reactions.remove") == 1)
    assert not harness.slack.reactions[(CHANNEL, root)]
    assert_clean(harness.slack)


async def test_follow_up_in_thread_without_mention_reuses_the_session(harness: Harness) -> None:
    harness.chat.enqueue(tokens=["First ", "answer."])
    harness.chat.enqueue(tokens=["Second ", "answer."])
    root = await harness.ask(CHANNEL, "first question")
    await harness.answer(CHANNEL, root, "First answer.")
    await harness.ask(CHANNEL, "and then?", thread_ts=root, mention=False)
    await harness.answer(CHANNEL, root, "Second answer.", n=2)
    first, second = harness.chat.requests
    assert second.json["message"] == "and then?"
    assert first.json["session_id"] == second.json["session_id"] is not None
    assert_clean(harness.slack)


async def test_a_dm_is_answered(harness: Harness) -> None:
    harness.chat.enqueue(tokens=["Hello ", "in private."])
    await harness.ask(DM, "hi there")
    [reply] = await harness.answer(DM, None, "Hello in private.")
    assert reply.thread_ts is None
    assert harness.chat.requests[0].json["message"] == "hi there"
    assert_clean(harness.slack)


async def test_code_in_a_question_reaches_the_chat_api_as_written(harness: Harness) -> None:
    # Indentation is what Python and YAML mean: squeezed, it is another question.
    code = "```\n    def f(x):\n        if x:\n            return 1\n        return 2\n```"
    question = (
        f"why does this fail?\n{code}\n"
        "see <https://docs.example/setup?a=1&amp;b=2#proxy|this step>, `a  &lt;  b`"
    )
    harness.chat.enqueue(tokens=["Answered."])
    root = await harness.ask(CHANNEL, f" {question}")  # "<@bot>  why …"
    await harness.answer(CHANNEL, root, "Answered.")
    assert harness.chat.requests[0].json["message"] == (
        f"why does this fail?\n{code}\n"
        "see [this step](https://docs.example/setup?a=1&b=2#proxy), `a  <  b`"
    )


async def test_unrouted_channel_is_ignored(harness: Harness) -> None:
    harness.chat.enqueue(tokens=["Routed."])
    await harness.ask(UNROUTED, "anyone?")
    await harness.ask(CHANNEL, "not in a thread, no mention", mention=False)
    root = await harness.ask(CHANNEL, "routed")
    await harness.answer(CHANNEL, root, "Routed.")
    assert len(harness.chat.requests) == 1
    assert harness.slack.bot_replies(UNROUTED) == []
    assert len(harness.slack.all_bot_messages()) == 1


async def test_long_answer_arrives_as_three_messages(harness: Harness) -> None:
    paragraph = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 9).strip()
    paragraphs = [f"{i}. {paragraph}" for i in range(18)]
    answer = "\n\n".join(paragraphs)
    assert 9000 <= len(answer) <= 9400
    tokens = [answer[i : i + 400] for i in range(0, len(answer), 400)]
    harness.chat.enqueue(tokens=tokens, sources=[("https://docs.example/x", "X")], token_delay=0.02)
    root = await harness.ask(CHANNEL, "tell me everything")
    replies = await harness.answer(CHANNEL, root, "<https://docs.example/x|X>", n=3)
    assert len(replies) == 3
    assert all(len(m.text) <= 4000 for m in replies)
    shown = "\n\n".join(m.text for m in replies)
    assert all(p in shown for p in paragraphs)
    assert_clean(harness.slack)


@pytest.mark.parametrize("app_mention_too", [True, False])
async def test_a_mention_in_a_group_dm_is_answered_once(
    harness: Harness, app_mention_too: bool
) -> None:
    harness.slack.channels[GROUP_DM] = "mpim"
    harness.chat.enqueue(tokens=["Group answer."])
    mention = f"<@{harness.slack.bot_user_id}>"
    bodies = harness.slack.user_message(GROUP_DM, f"{mention} for all of us?")
    # Whether Slack adds an app_mention to a group DM's message event is not
    # settled: the question is answered, once, either way.
    assert [b["event"]["type"] for b in bodies] == ["message", "app_mention"]
    for body in bodies if app_mention_too else bodies[:1]:
        await harness.send(body)
    root = bodies[0]["event"]["ts"]
    await harness.answer(GROUP_DM, root, "Group answer.")
    assert await harness.sentinel() == ["for all of us?", "sentinel"]
    assert len(harness.slack.bot_replies(GROUP_DM, root)) == 1


async def test_a_follow_up_waiting_its_turn_shows_at_once_that_it_was_taken(
    harness: Harness,
) -> None:
    slack = harness.slack
    # Thinking shows while the first answer still streams, not when its turn comes.
    root, follow_up = await harness.follow_up_while_streaming(40, then="Second answer.")
    [first] = slack.bot_replies(CHANNEL, root)  # no placeholder of its own yet
    assert "w39" not in first.text
    await harness.answer(CHANNEL, root, "Second answer.", n=2)
    await slack.wait_for(lambda: not slack.reactions[follow_up])


async def test_reset_command_starts_a_new_session(harness: Harness) -> None:
    harness.chat.enqueue(tokens=["One."])
    harness.chat.enqueue(tokens=["Two."])
    harness.chat.enqueue(tokens=["Three."])
    await harness.ask(DM, "first")
    await harness.answer(DM, None, "One.")
    await harness.ask(DM, "second")
    await harness.answer(DM, None, "Two.", n=2)
    await harness.command(harness.slack.slash_command("/chat-reset", DM))
    await harness.slack.wait_for(lambda: harness.slack.responses)
    assert harness.slack.responses == [
        {"response_type": "ephemeral", "text": "Started a new conversation."}
    ]
    await harness.ask(DM, "third")
    await harness.answer(DM, None, "Three.", n=3)
    sessions = [r.json["session_id"] for r in harness.chat.requests]
    assert sessions[0] == sessions[1] != sessions[2]
    # The DM keyword does the same, answered ephemerally too.
    await harness.ask(DM, "reset")
    await harness.slack.wait_for(lambda: harness.slack.ephemerals)
    assert harness.slack.ephemerals[0]["user"] == "U0USER001"
    assert len(harness.chat.requests) == 3


async def test_an_answer_with_channel_mentions_pings_nobody(harness: Harness) -> None:
    harness.chat.enqueue(
        tokens=["Hey <!channel> and ", "<!here|here>, ", "@here @everyone ", "<@U0SOMEONE1> done."],
        sources=[("https://x.example", "@channel notes")],
    )
    root = await harness.ask(CHANNEL, "ping test")
    [reply] = await harness.answer(CHANNEL, root, f"<https://x.example|@{J}channel notes>")
    assert reply.text.startswith(
        f"Hey @{J}channel and @{J}here, @{J}here @{J}everyone @{J}U0SOMEONE1 done."
    )
    for version in reply.versions:
        assert "<!" not in version and "<@" not in version
    assert_clean(harness.slack)


async def test_twenty_replies_at_once_cause_no_429(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path, mode: str
) -> None:
    # Slack's limits sped up 60 times: chat.update per workspace, chat.postMessage
    # per channel. The bridge's budgets sit a little under them, as the defaults
    # do under Slack's; squeezed into 1-second windows, the scheduling jitter of
    # a loaded test machine would otherwise count.
    fake_slack.set_rate("chat.update", 20, 1.0)
    fake_slack.set_rate("chat.postMessage", 3, 1.0)
    extra = "update_rate: {count: 18, per: 1.0}\n  post_rate: {count: 2, per: 1.0}"
    h, bridge = await open_harness(fake_slack, fake_chat_api, tmp_path, mode, extra)
    try:
        for _ in range(20):
            tokens = [f"part{i} " for i in range(15)] + ["end."]
            fake_chat_api.enqueue(tokens=tokens, token_delay=0.03)
        channels = [f"C0LOAD000{i}" for i in range(4)]
        roots = []
        for i in range(20):
            channel = channels[i % 4]
            # Twenty people: the core's per-user message limit stays out of the way.
            roots.append((channel, await h.ask(channel, f"question {i}", user=f"U0PERSON{i:02d}")))
        expected = "".join(f"part{i} " for i in range(15)) + "end."
        for channel, root in roots:
            [reply] = await h.answer(channel, root, expected)
            assert reply.text == expected
        assert fake_slack.count("chat.update") >= 20
        assert_clean(fake_slack)
    finally:
        await bridge.aclose()


@pytest.mark.parametrize("mode", ["socket"])
async def test_native_streaming_mode(
    fake_slack: FakeSlack, fake_chat_api: FakeChatAPI, tmp_path: Path, mode: str
) -> None:
    h, bridge = await open_harness(fake_slack, fake_chat_api, tmp_path, mode, "mode: native")
    try:
        fake_chat_api.enqueue(
            tokens=["Streamed ", "**natively** ", "<!here>."],
            sources=[("https://docs.example/s", "Streams")],
            token_delay=0.03,
        )
        root = await h.ask(CHANNEL, "stream it")
        final = f"Streamed **natively** @{J}here.\n\n_Sources:_ [Streams](https://docs.example/s)"
        [reply] = await h.answer(CHANNEL, root, final)
        assert reply.text == final and reply.markdown
        assert fake_slack.count("chat.startStream") == 1
        assert fake_slack.count("chat.appendStream") >= 1
        assert fake_slack.count("chat.stopStream") == 1
        assert fake_slack.count("chat.update") == 0
        assert_clean(fake_slack)
    finally:
        await bridge.aclose()


async def test_health_reports_the_slack_connection(harness: Harness) -> None:
    url = f"http://127.0.0.1:{harness.bridge.http_port}/healthz"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200
        # Draining: the platform stops taking events and says so.
        await harness.bridge.platforms["slack"].stop_receiving()  # type: ignore[attr-defined]
        async with session.get(url) as resp:
            assert resp.status == 503
            assert (await resp.json())["down"] == {"slack": "disconnected"}
