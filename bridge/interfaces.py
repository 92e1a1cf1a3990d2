"""The two small interfaces the core talks through, and the values that cross them.

Chat-API side: a `ChatAPI` class per dialect, registered by its `kind` name.
Platform side: a `Platform` per chat platform, which delivers `Inbound` messages
with a `ReplyTarget` to answer on.

Nothing here imports a third-party client; adapters implement these.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr

from bridge.errors import TimedOut
from bridge.flag import Flag

if TYPE_CHECKING:
    import httpx

    from bridge.budget import Budgets

# --------------------------------------------------------------------------- chat API side


@dataclass(frozen=True, slots=True)
class Source:
    """A cited source: where the answer came from."""

    url: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of answer text, to be appended."""

    text: str
    kind: Literal["token"] = "token"


@dataclass(frozen=True, slots=True)
class Sources:
    """Sources cited by the answer; may arrive more than once, the bridge dedupes by URL."""

    items: tuple[Source, ...]
    kind: Literal["sources"] = "sources"


@dataclass(frozen=True, slots=True)
class Status:
    """A progress note shown while no text is available yet ("Working… 6 s")."""

    text: str
    kind: Literal["status"] = "status"


@dataclass(frozen=True, slots=True)
class Session:
    """The session (thread) id the API assigned, as soon as it is known: kept even if
    the answer then fails, so the conversation's next question goes on in it."""

    session: str
    kind: Literal["session"] = "session"


@dataclass(frozen=True, slots=True)
class Done:
    """The terminal event of a stream.

    `text`, where the API sends the whole answer at the end, wins over the
    concatenated tokens. `session` is the API's session/thread id where the API
    assigns one. `usage` carries what the API says about cost or quota, and any
    other per-conversation value worth keeping (for example a conversation id).
    """

    text: str | None = None
    session: str | None = None
    usage: Mapping[str, Any] | None = None
    kind: Literal["done"] = "done"


ChatEvent = Token | Sources | Status | Session | Done


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a stored history, for stateless APIs. `asker`: who asked a
    question (the relay's user key, `slack:T1:U1`), where known."""

    role: Literal["user", "assistant"]
    content: str
    asker: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the bridge asks of a chat API. `history_turns`: the most turns of `history`
    a stateless API is sent (the route's `history`); None: the backend's own."""

    message: str
    session: str | None = None
    history: tuple[Turn, ...] = ()
    user_id: str | None = None
    history_turns: int | None = None

    def turns(self, backend_history: int) -> int:
        """The most turns of its history sent, and kept: the route's `history`, else
        `backend_history`, the backend's."""
        return backend_history if self.history_turns is None else self.history_turns


class DialectOptions(BaseModel):
    """Base of every dialect's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str
    url: str

    def warnings(self) -> list[str]:
        """What `check` and `run` point out about these options (they still load)."""
        return []


def clean_secret(secret: SecretStr) -> SecretStr:
    """`secret` without the line break a secret file or a YAML block leaves around it.

    A value with a line break or a character that is not printable ASCII inside
    (two lines of a file, a curly quote from a copy) cannot go in a header, and would
    fail every request with an error about something else; one in quotes would be
    refused as a wrong secret: a config error instead, which does not show the value.
    """
    value = secret.get_secret_value()
    stripped = value.strip()
    if not (stripped.isascii() and stripped.isprintable()):
        raise ValueError(
            "has a line break or a character that is not plain ASCII inside "
            "(a curly quote, say): copy the value again"
        )
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "\"'":
        # `KEY="..."` in a file for `docker --env-file`, which keeps the quotes.
        raise ValueError("is wrapped in quotes; remove them (docker --env-file keeps them)")
    return secret if stripped == value else SecretStr(stripped)


class PlatformOptions(BaseModel):
    """Base of every platform's options (each sets its own model_config)."""

    def needs_listener(self) -> str | None:
        """What in these options needs the daemon's HTTP listener, or None."""
        return None

    def unmentioned_unread(self) -> str | None:
        """Why a channel's messages that do not mention the bot come without their text
        (a setting, in words an admin can act on), or None where they are read."""
        return None


#: Set by the relay while it consumes an answer: a streaming dialect awaits it
#: before each network read after the first (and outside its own read
#: deadlines), so the reads keep time with the reply's edits and the tokens
#: that arrive meanwhile are taken in one read.
READ_GATE: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "chat_bridge_read_gate", default=None
)


class ChatAPI(ABC):
    """One chat-API dialect.

    Class attributes declare what the dialect can do:
      kind       the `kind:` name in the config
      stateful   True: the API keeps the conversation (the bridge sends a
                 session id); False: the bridge keeps and sends the history
      streams    True: answers arrive token by token; False: whole, at once.
                 For a reader only: the bridge shows what comes as it comes
                 either way, and reads it nowhere
      client_sessions  True: the bridge generates the session id
                 (`new_session()`); False: the API assigns one (`Done.session`)
      max_message_chars  the longest question the API accepts, or None
      Options    the pydantic model of this dialect's config block

    Errors are raised as `bridge.errors.ChatAPIError` subclasses only.
    """

    kind: ClassVar[str]
    stateful: ClassVar[bool]
    streams: ClassVar[bool] = True
    client_sessions: ClassVar[bool] = True
    max_message_chars: ClassVar[int | None] = None
    Options: ClassVar[type[DialectOptions]]

    def __init__(self, name: str, options: DialectOptions, http: httpx.AsyncClient) -> None:
        self.name = name
        self.options = options
        self.http = http

    @property
    def history_turns(self) -> int:
        """For a stateless API, the turns (a question and its answer) the bridge keeps
        and sends with each question, where its route sets none (`history_turns`)."""
        return 0

    @property
    def history_chars(self) -> int | None:
        """For a stateless API, the most characters of those turns sent with a question
        (None: no cap); the store keeps no more (`bridge.history`)."""
        return None

    def new_session(self) -> str:
        """A fresh session id for a new conversation (when `client_sessions`)."""
        import uuid

        return f"cb-{uuid.uuid4().hex}"

    @abstractmethod
    def stream(self, req: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        """Answer one message; yields events and ends with exactly one `Done`.

        Must be an async generator: closing it early closes the connection.
        """

    def health(self) -> Mapping[str, float]:
        """What the API last said of its quota: `ratelimit_remaining`, `credits_remaining`.

        Read after each answer for the metrics; a dialect whose API tells nothing of
        it keeps this {}.
        """
        return {}

    @property
    def probe_timeout(self) -> float:
        """The most seconds `probe()` waits for the answer to show the backend works."""
        return 60.0

    async def probe(self) -> None:
        """Send one short question; raise a ChatAPIError if the backend is not usable.

        Returns as soon as the answer shows the backend works (its first text, or
        its end) and closes the stream there: a long answer is not read, nor paid
        for, to its end. Raises TimedOut when that takes over `probe_timeout`
        seconds (a backend that only sends keep-alives never ends its answer).
        """
        wait = self.probe_timeout
        limit = asyncio.timeout(wait)
        try:
            async with limit, aclosing(self.stream(ChatRequest(message="ping"))) as events:
                async for event in events:
                    if isinstance(event, Done) or (isinstance(event, Token) and event.text):
                        return
        except TimeoutError as exc:
            if not limit.expired():
                raise
            raise TimedOut(
                f"The assistant did not begin an answer within {wait:g} s.", backend=self.name
            ) from exc


# --------------------------------------------------------------------------- platform side


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` operations in any window of `per` seconds."""

    count: int
    per: float


@dataclass(frozen=True, slots=True)
class Limits:
    """What a reply target may do, and which shared budget each operation draws on.

    Targets with the same bucket key share one budget (Discord: a channel;
    Slack chat.update: a workspace). `begin()` draws on the post budget when
    `begin_posts` is true (it posts a placeholder message), and `notice()` when
    `notices_post` is (it posts a message in the place, not an ephemeral one).
    Every post and edit also draws on `global_bucket` when set (Discord:
    requests per bot). `settle()` draws on `settle_bucket`, and is called only
    where it is set (Slack's native streams: a workspace's streams). An edit that
    only adds to the end of its message (`ReplyTarget.appends`) draws on
    `append_bucket` instead of `edit_bucket` where that is set (Slack's native
    streams: chat.appendStream, a budget of its own); any other edit, on
    `edit_bucket`.
    """

    max_chars: int
    edit_bucket: str
    edit_rate: Rate
    post_bucket: str
    post_rate: Rate
    begin_posts: bool = False
    notices_post: bool = False
    global_bucket: str | None = None
    global_rate: Rate | None = None
    settle_bucket: str | None = None
    settle_rate: Rate | None = None
    append_bucket: str | None = None
    append_rate: Rate | None = None


Audience = Literal["channel", "members", "thread", "asker"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """A normalized incoming message.

    `thread` is the thread root the message belongs to (None outside threads).
    `text` has the bot mention stripped. `event_id` is unique per delivery
    source (Slack event_id, Discord message id) and used for deduplication.
    `command` is set for commands ("reset", "ask") instead of plain questions.
    """

    platform: str
    workspace: str
    channel: str
    user: str
    text: str
    message_id: str
    event_id: str
    thread: str | None = None
    is_dm: bool = False
    mentioned: bool = False
    roles: tuple[str, ...] = ()
    command: str | None = None
    has_attachments: bool = False
    # When this process took it, by its own clock (which may be off): a message
    # without `sent_at` is placed by the store's clock, less the time since.
    received_at: float = 0.0
    # The platform's own time of the message (epoch seconds), the same in every
    # delivery of it: orders a conversation's messages across replicas.
    sent_at: float = 0.0
    # False where the bot may not post in the message's place itself (a channel for
    # threads only, or one closed to it): only a route answering in a new thread
    # answers it, where `may_thread` says one may open. `lacks` names what the bot
    # lacks to post there, as the platform calls it (a permission), for the log.
    may_post: bool = True
    may_thread: bool = True
    lacks: str = ""
    # Who sees the conversation, where fewer than everyone in the workspace do:
    # "members" (a place only its members see: a private channel, a group DM),
    # "thread" (a private thread: its members) or "asker" (an answer only the asker
    # sees). Its conversation is then never one that others' answers draw on.
    # "members" is told only where `PlatformContext.per_user` is set: elsewhere no
    # route reads it, and an adapter may not find it out (Slack would be asked).
    audience: Audience = "channel"
    # The message begins by addressing someone else (a mention of another person or
    # bot, not this one): in a thread the bot follows, it is no follow-up to the bot.
    addresses_other: bool = False
    # False where the platform does not deliver the place's messages that do not
    # mention the bot (Discord without the Message Content intent): nobody is then
    # told that one would be answered.
    follow_ups: bool = True


@dataclass(frozen=True, slots=True)
class Address:
    """Where a reply lives, stored with in-flight replies so a later process can edit it."""

    platform: str
    workspace: str
    channel: str
    thread: str | None = None


class ReplyTarget(ABC):
    """The place a reply goes, with the platform's primitives and limits.

    Text passed to `post`/`edit` is already formatted (`format_markdown`) and
    within `limits.max_chars`. Implementations must never ping anyone.
    """

    address: Address
    limits: Limits
    #: Only this target reaches its reply (a slash command's own webhook): a stop
    #: marks the reply interrupted through it, not through `address` later.
    marks_own_interruption: ClassVar[bool] = False
    #: A message the bridge does not take (a stop began) reaches the next process: its
    #: platform delivers it again until it is acknowledged (Slack's events). False
    #: where a message is delivered once (Discord's): one asking a question during a
    #: stop is told to ask again (`STOPPING_TEXT`), or it would be lost unsaid.
    redelivered: ClassVar[bool] = False

    @abstractmethod
    async def begin(self, text: str | None = None) -> str | None:
        """Show activity at once (typing, status, or a placeholder message).

        Returns the id of a placeholder message to edit, or None. Only where
        `limits.begin_posts` is set may `text` be given: the reply's first message
        (formatted, as `post`'s), which came while the placeholder waited for its
        post's budget (a burst in the place); the message posted shows it instead.
        """

    @abstractmethod
    async def post(self, text: str) -> str:
        """Send a new message in the reply's place; returns its id."""

    @abstractmethod
    async def edit(self, message_id: str, text: str) -> None:
        """Replace the text of a message this target posted."""

    def appends(self, message_id: str, text: str) -> bool:
        """Whether editing `message_id` to show `text` only adds to its end, a request
        of `limits.append_bucket`'s (asked where that is set, before the edit, to take
        its budget). Default: no edit is an append."""
        return False

    def accepted(self) -> None:  # noqa: B027 - optional hook
        """The bridge took the message: an answer will come, perhaps after a queue."""

    def withdrawn(self) -> bool:
        """The question was taken back (deleted), or can no longer be answered (it
        waited past the platform's time for an answer), before its answer began: the
        chat API is not asked it. Asked as its turn comes, perhaps more than once, and
        again once its answer is read (one deleted meanwhile is answered, and not kept
        in the conversation's history): a query that changes nothing. Default: never
        (a platform that does not say)."""
        return False

    def cut_at(self) -> tuple[float, str] | None:
        """When (epoch seconds) an answer still streaming here is stopped, and the note
        its text so far then ends with: the platform takes no more of the reply soon
        after (a slash command's token expires), and what it shows must say so while
        it can. Asked as the answer's stream begins. Default: None, never."""
        return None

    async def end(self) -> None:  # noqa: B027 - optional hook
        """The reply is complete: clear typing/status indicators."""

    async def settle(self, message_id: str) -> None:  # noqa: B027 - optional hook
        """Leave a message of a reply cut short showing as done (Slack: a native stream
        a stopped process left open ends), before the mark saying the reply was
        interrupted goes as a message of its own. Only where `limits.settle_bucket` is
        set, within that budget. Default: nothing to do."""

    async def open_thread(self, name: str) -> tuple[str, ReplyTarget] | None:
        """Open a platform thread for this reply (route option `reply_in_thread`).

        Returns the new thread's id and a target inside it, or None where the
        platform or place cannot have one.
        """
        return None

    @abstractmethod
    async def notice(self, text: str) -> None:
        """A short message for the asker (ephemeral where the platform has it)."""

    @abstractmethod
    def format_markdown(self, markdown: str) -> str:
        """Convert the API's Markdown into the platform's markup, neutralizing mentions."""

    @abstractmethod
    def format_sources(self, sources: Sequence[Source]) -> str:
        """The final sources block, in the platform's markup. `sources` are web pages
        (http, https), each once, as `bridge.sources.dedupe_sources` leaves them."""


#: Takes a message from a platform; returns at once, with a flag set once the bridge
#: has taken it (claimed its event and recorded it, or found it is not to be answered).
#: A platform that acknowledges deliveries waits for it, briefly, before acknowledging:
#: a delivery acknowledged earlier, and lost in a crash, is neither answered nor marked
#: interrupted.
Handler = Callable[[Inbound, ReplyTarget], Awaitable[Flag]]


class Platform(ABC):
    """A chat platform connection: delivers messages, and answers through targets.

    An async context manager: `start()` connects and begins delivering to the
    handler; `aclose()` disconnects.
    """

    name: ClassVar[str]
    Options: ClassVar[type[PlatformOptions]]
    #: How long after a message was sent the platform may deliver it again as a new
    #: event (an edit that adds the bot's mention): its event record is kept at least
    #: this long, whatever `limits.event_ttl` says, so it is not answered twice.
    redelivers_within: ClassVar[float] = 0.0

    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx

    @abstractmethod
    async def start(self, handler: Handler) -> None:
        """Connect and begin delivering messages. Returns once connected."""

    async def stop_receiving(self) -> None:  # noqa: B027 - optional hook
        """Stop taking new messages (a graceful stop); replies can still be sent."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop delivering and disconnect."""

    @abstractmethod
    def target(self, address: Address) -> ReplyTarget:
        """A reply target for an address (used to fix up replies after a restart)."""

    @property
    def connected(self) -> bool:
        """Whether the platform can deliver and answer now: False before it has
        connected, while its connection is down, and once closed. Read at every
        /healthz (keep it cheap); False makes `problem` "disconnected"."""
        return True

    @property
    def reset_command(self) -> str | None:
        """The command that starts a place's conversation afresh (`/reset`), for notices
        that tell how; None where the platform has none."""
        return None

    @property
    def problem(self) -> str | None:
        """What keeps the platform from answering now, in a word or two for /healthz;
        None when nothing does."""
        return None if self.connected else "disconnected"

    async def __aenter__(self) -> Platform:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HttpRoutes(Protocol):
    """The daemon's HTTP listener, for platforms that take webhooks.

    `handler` is an aiohttp handler (`async (aiohttp.web.Request) -> Response`).
    Routes must be added before the listener starts (in the platform's __init__); a
    platform made anew, its start tried again, adds its own in their place.
    """

    def add_route(self, method: str, path: str, handler: Callable[..., Awaitable[Any]]) -> None: ...


#: What a reply shows before its first words (`reply.thinking_text`).
THINKING_TEXT = "_Thinking…_"
#: What a question is told when it comes during a stop and its platform will not deliver
#: it again (`ReplyTarget.redelivered`), and a command run then, where its platform
#: answers commands.
STOPPING_TEXT = "The assistant is restarting; please try again in a moment."


@dataclass(frozen=True)
class PlatformContext:
    """What a platform is built with: `Platform(ctx)`."""

    options: Any  # the platform's validated Options model
    http: HttpRoutes | None = None
    # Called by the adapter each time the platform answers 429 (for /metrics).
    on_rate_limited: Callable[[], None] | None = None
    thinking_text: str = THINKING_TEXT  # `reply.thinking_text`
    # Whether a route of the platform keeps a person's conversation across places
    # (`session: user`): only there does who sees a place (`Inbound.audience`)
    # change which conversation a question belongs to.
    per_user: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    # Called by the adapter with (workspace, channel, message id) when a message is
    # deleted: a question of it already answered is forgotten from its conversation's
    # history, and on a shared store, where an event may reach another replica than
    # the one holding its question, one still waiting its turn is not answered
    # wherever it waits (see bridge/deletions.py).
    deleted: Callable[[str, str, str], Awaitable[None]] | None = None
    # Called by the adapter with (workspace, channel, message id, text, asks) when a
    # person's message is edited, `text` read as a question's `Inbound.text` would be
    # (the bot's mention gone, names in words; empty where the edit cannot be read),
    # `asks` whether the edit is itself a question (it mentions the bot): a question of
    # it still waiting its turn is asked as it reads now, and one answered (or being
    # answered) is kept in its conversation's history so, or not asked or forgotten if
    # nothing is left of it (see bridge/edits.py).
    edited: Callable[[str, str, str, str, bool], Awaitable[None]] | None = None
    # The channel ids the platform's routes list, each with where (`routes[0].channels`):
    # an adapter that sees its channels once connected may say which match nothing.
    route_channels: Mapping[str, str] = field(default_factory=dict)
    # The budgets every live reply draws on (by `Limits` bucket): a request the adapter
    # makes of its own for a reply (Slack: an answer's final text shown again over an
    # edit Slack made late) draws on the one the reply's own would. None: its own.
    budgets: Budgets | None = None


@dataclass(frozen=True)
class Registry:
    """The explicit tables of dialects and platforms, built outside the core.

    Values are zero-argument loaders, so a dialect's or platform's module is
    imported only when the config uses it.
    """

    dialects: Mapping[str, Callable[[], type[ChatAPI]]]
    platforms: Mapping[str, Callable[[], type[Platform]]]
