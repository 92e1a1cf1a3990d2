"""Options and request pieces shared by the stateless dialects (the bridge keeps the history)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import ClassVar, Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from adapters.apis._http import HTTPDialect, HTTPOptions, log
from bridge.history import MOST_TURNS, recent
from bridge.interfaces import ChatRequest, DialectOptions, Turn


class StatelessOptions(HTTPOptions):
    """History, system prompt and end-user id handling.

    `history` is in turns (a question and its answer); a route's `history` wins over
    it for that route's questions. Of the latest `history` turns, the latest that come
    to at most `history_chars` characters are sent (null: no cap), and the store keeps
    no more (`bridge.history`): a few long
    answers would otherwise fill a model's context, and every later question of
    the conversation would be refused. `user_id`: `hashed` sends an HMAC-SHA256 of the
    platform user id keyed with `user_id_key` (default: the API key, else the
    backend's URL), `raw` sends it as is, `none` sends nothing.
    """

    history: int = Field(20, ge=0, le=MOST_TURNS)
    history_chars: int | None = Field(24000, ge=0)
    system_prompt: str | None = None
    user_id: Literal["hashed", "raw", "none"] = "hashed"
    user_id_key: SecretStr | None = None

    @field_validator("user_id_key")
    @classmethod
    def _key_given(cls, value: SecretStr | None) -> SecretStr | None:
        # Blank (its variable empty) is no key: the warning below says what that means.
        return value if value is None or value.get_secret_value().strip() else None

    def warnings(self) -> list[str]:
        if self.user_id == "hashed" and self.user_id_key is None and self.api_key is None:
            return [
                "user ids are hashed with the backend's URL as the key, which anyone who "
                "knows the URL can repeat: set user_id_key to a secret of your own"
            ]
        return []


class StatelessDialect(HTTPDialect):
    """Base of the dialects whose API keeps no conversation: the bridge keeps the
    history, and sends it with each question."""

    stateful: ClassVar[bool] = False
    client_sessions: ClassVar[bool] = False
    options: StatelessOptions

    def __init__(self, name: str, options: DialectOptions, http: httpx.AsyncClient) -> None:
        super().__init__(name, options, http)
        # The most characters in all (system prompt, history and question) of a
        # request the model was found to take after refusing more as too large: the
        # model's context is the backend's, so no request of any conversation is sent
        # more history than keeps it within that. Lost on restart.
        self._fits: int | None = None

    @property
    def history_turns(self) -> int:
        return self.options.history

    @property
    def history_chars(self) -> int | None:
        # What the store keeps: the config's. What is sent may be less (`sent_chars`).
        return self.options.history_chars

    def _besides_history(self, req: ChatRequest) -> int:
        """The characters `req` is sent with besides its history."""
        return len(self.options.system_prompt or "") + len(req.message)

    def sent_chars(self, req: ChatRequest) -> int | None:
        """The most characters of history sent with `req` (None: no cap): the config's,
        and no more than keeps the request within what the model was found to take
        (a long question leaves less room, a short one more)."""
        cap = self.options.history_chars
        if self._fits is None:
            return cap
        room = max(0, self._fits - self._besides_history(req))
        return room if cap is None else min(cap, room)

    def with_less_history(self, req: ChatRequest) -> tuple[ChatRequest, int] | None:
        # The newer half, in characters, of what would be sent: whole turns.
        sent = recent(req.history, 2 * req.turns(self.options.history), self.sent_chars(req))
        if not sent:
            return None
        half = sum(len(turn.content) for turn in sent) // 2
        return replace(req, history=recent(sent, len(sent), half)), (
            half + self._besides_history(req)
        )

    def took_history(self, chars: int) -> None:
        if self._fits is not None and chars >= self._fits:
            return  # another question found that the model takes less, meanwhile
        self._fits = chars
        log.warning(
            "the chat API refused a question as too large and took it with half the "
            "history, %d characters in all (system prompt, history and question): until "
            "the bridge restarts, no question to this backend is sent more history than "
            "keeps it within that; if the model's context is small, lower the backend's "
            "history_chars (the history a question may bring: well under %d)",
            chars,
            chars,
            extra={"backend": self.name},
        )


def chat_messages(
    req: ChatRequest,
    options: StatelessOptions,
    max_chars: int | None,
    *,
    names: Literal["name", "prefix"] = "name",
) -> list[dict[str, str]]:
    """`[{role, content}, ...]`: the system prompt, the kept history (of the latest
    `req.turns` turns, the latest within `max_chars` characters: the dialect's
    `sent_chars(req)`), then the question.

    Where the questions sent (the history's and this one) come from more than one
    asker (a thread or channel several people share), each is labelled with its
    asker's name in that request (`person-1`, `person-2`, ...), so that the model
    can tell "my account" of one from another's: OpenAI's per-message `name`
    (`names="name"`), or `[name] ` before the text where a message has only a
    role and content (`"prefix"`). A
    conversation of one asker's questions is sent unlabelled. (A question kept
    before the bridge recorded askers has none, and is not labelled.)
    """
    messages: list[dict[str, str]] = []
    if options.system_prompt:
        messages.append({"role": "system", "content": options.system_prompt})
    history = recent(req.history, 2 * req.turns(options.history), max_chars)
    asked = [*history, Turn("user", req.message, req.user_id)]
    # Named in the order they first ask in what is sent: the model reads one request at
    # a time, and a name of this request's own says nothing of the person elsewhere.
    names_of: dict[str, str] = {}
    for turn in asked:
        if turn.role == "user" and turn.asker:
            names_of.setdefault(turn.asker, f"person-{len(names_of) + 1}")
    for turn in asked:
        message = {"role": turn.role, "content": turn.content}
        if len(names_of) > 1 and turn.role == "user" and turn.asker:
            name = names_of[turn.asker]
            if names == "name":
                message["name"] = name
            else:
                message["content"] = f"[{name}] {turn.content}"
        messages.append(message)
    return messages


def end_user(req: ChatRequest, options: StatelessOptions) -> str | None:
    """The end-user id to send, per the `user_id` option."""
    if req.user_id is None or options.user_id == "none":
        return None
    if options.user_id == "raw":
        return req.user_id
    secret = options.user_id_key or options.api_key
    key = secret.get_secret_value() if secret is not None else options.url
    digest = hmac.new(key.encode(), req.user_id.encode(), hashlib.sha256).hexdigest()
    return f"u-{digest[:32]}"
