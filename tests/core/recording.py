"""A reply target that records what a platform would have shown, with timestamps."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.budget import Budget
from bridge.interfaces import Address, Limits, Rate, ReplyTarget, Source

FAST = Rate(100, 1.0)


@dataclass
class Op:
    kind: str  # post | edit | begin | end | notice
    message_id: str | None
    text: str
    at: float = field(default_factory=time.monotonic)


class RecordingTarget(ReplyTarget):
    """Keeps messages by id and every operation made, like a platform would."""

    def __init__(
        self,
        *,
        max_chars: int = 2000,
        edit_rate: Rate = FAST,
        post_rate: Rate = FAST,
        bucket: str = "test",
        placeholder: bool = False,
        channel: str = "C1",
        notices_post: bool = False,
    ) -> None:
        self.address = Address("test", "W1", channel)
        self.limits = Limits(
            max_chars=max_chars,
            edit_bucket=f"{bucket}:edit",
            edit_rate=edit_rate,
            post_bucket=f"{bucket}:post",
            post_rate=post_rate,
            begin_posts=placeholder,
            notices_post=notices_post,
        )
        self.placeholder = placeholder
        self.messages: dict[str, str] = {}
        self.ops: list[Op] = []
        self.ended = asyncio.Event()
        self.notices: list[str] = []
        self.was_accepted = False
        self._next = 0

    def _id(self) -> str:
        self._next += 1
        return f"m{self._next}"

    def accepted(self) -> None:
        self.was_accepted = True

    async def begin(self, text: str | None = None) -> str | None:
        if not self.placeholder:
            self.ops.append(Op("begin", None, ""))
            return None
        if text is not None:
            return await self.post(text)
        message_id = self._id()
        self.messages[message_id] = "…"
        self.ops.append(Op("post", message_id, "…"))
        return message_id

    async def post(self, text: str) -> str:
        assert len(text) <= self.limits.max_chars, len(text)
        message_id = self._id()
        self.messages[message_id] = text
        self.ops.append(Op("post", message_id, text))
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        assert len(text) <= self.limits.max_chars, len(text)
        assert message_id in self.messages
        self.messages[message_id] = text
        self.ops.append(Op("edit", message_id, text))

    async def end(self) -> None:
        self.ops.append(Op("end", None, ""))
        self.ended.set()

    async def notice(self, text: str) -> None:
        self.notices.append(text)
        self.ops.append(Op("notice", None, text))
        self.ended.set()

    def format_markdown(self, markdown: str) -> str:
        return markdown

    def format_sources(self, sources: Sequence[Source]) -> str:
        return "Sources: " + ", ".join(f"[{s.title}]({s.url})" for s in sources)

    def visible(self) -> list[str]:
        return list(self.messages.values())

    def times(self, kinds: tuple[str, ...] = ("edit",)) -> list[float]:
        return [op.at for op in self.ops if op.kind in kinds]


def max_in_window(times: list[float], per: float) -> int:
    """The most operations that fall in any window of `per` seconds."""
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= per:
            start += 1
        best = max(best, end - start + 1)
    return best


def use_slot(budget: Budget) -> None:
    """Take a slot and make its request at once: the window counts it from now."""
    stamp = budget.try_acquire()
    assert stamp is not None
    budget.restamp(stamp)


def escape_heavy_code(lines: int) -> str:
    """An answer of C++ code, whose `&`, `<` and `>` Slack shows escaped."""
    code = []
    for i in range(lines):
        if i % 4 == 0:
            code.append(f"if (a({i}) < b && c > d) {{ x <<= 1; }}")
        elif i % 3 == 1:
            code.append(f"    value_{i} = compute(value_{i - 1})")
        else:
            code.append("    // " + "plain words " * (i % 6 + 1))
    return "Code:\n\n```cpp\n" + "\n".join(code) + "\n```\nThat is all & more."


_FENCE_LINE = re.compile(r"\s*```\w*\s*")


def shown_words(markdown: str) -> str:
    """What `markdown` (or Slack's markup of it) shows, but for its fence lines and
    spaces (a cut takes one): to compare an answer with the messages showing it."""
    lines = markdown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").split("\n")
    return re.sub(r"\s", "", "".join(line for line in lines if not _FENCE_LINE.fullmatch(line)))
