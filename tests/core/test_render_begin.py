"""A reply's first post where a placeholder is posted (Slack): text that came while
the post waited for its budget is what it shows."""

from __future__ import annotations

from bridge.budget import Budgets
from bridge.errors import PlatformError
from bridge.interfaces import Rate
from bridge.render import LiveReply
from tests.core.fakeplatform import wait_for
from tests.core.recording import RecordingTarget, use_slot

BUSY = Rate(1, 0.3)


def busy(target: RecordingTarget) -> Budgets:
    """Budgets whose post budget (the place's) was just spent by another reply."""
    budgets = Budgets()
    use_slot(budgets.get(target.limits.post_bucket, target.limits.post_rate))
    return budgets


async def test_an_answer_whole_before_its_placeholder_could_be_posted_is_posted_whole() -> None:
    target = RecordingTarget(placeholder=True, post_rate=BUSY)
    reply = LiveReply(target, busy(target), edit_interval=0.01)
    await reply.start()
    reply.feed("Here it is.")
    await reply.finish(None)
    assert [(op.kind, op.text) for op in target.ops] == [("post", "Here it is."), ("end", "")]
    assert reply.message_ids == ["m1"] and reply.stats.first_visible_at is not None


async def test_text_that_came_while_the_placeholder_waited_is_the_first_post() -> None:
    target = RecordingTarget(placeholder=True, post_rate=BUSY)
    reply = LiveReply(target, busy(target), edit_interval=0.01)
    await reply.start()
    reply.feed("Here ")
    await wait_for(lambda: bool(target.ops))
    assert target.ops[0].kind == "post" and target.ops[0].text.startswith("Here")
    assert reply.stats.first_visible_at is not None  # its next edits are "more words"
    reply.feed("it is.")
    await reply.finish(None)
    assert target.visible() == ["Here it is."]
    assert "…" not in [op.text for op in target.ops]


async def test_a_long_answer_that_came_first_is_posted_in_order_and_whole() -> None:
    target = RecordingTarget(placeholder=True, post_rate=BUSY, max_chars=60)
    reply = LiveReply(target, busy(target), edit_interval=0.01)
    await reply.start()
    words = [f"word{i:03d} " for i in range(40)]
    reply.feed("".join(words))
    await reply.finish(None)
    assert "".join(target.visible()).split() == "".join(words).split()
    assert len(target.visible()) > 2 and not any(op.kind == "edit" for op in target.ops)
    assert [op.kind for op in target.ops][-1] == "end"


async def test_a_first_post_of_the_answer_that_fails_is_made_again() -> None:
    class FailsOnce(RecordingTarget):
        failed = False

        async def begin(self, text: str | None = None) -> str | None:
            if text is not None and not self.failed:
                self.failed = True
                raise PlatformError("Slack could not be reached")
            return await super().begin(text)

    target = FailsOnce(placeholder=True, post_rate=BUSY)
    reply = LiveReply(target, busy(target), edit_interval=0.01)
    await reply.start()
    reply.feed("Here it is.")
    await reply.finish(None)
    assert target.failed and target.visible() == ["Here it is."]
