"""The `slack:` block of the config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.interfaces import PlatformOptions, Rate, clean_secret
from bridge.transport import plain_url


class RateOption(BaseModel):
    """At most `count` calls in any `per`-second window."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    count: int = Field(ge=1)
    per: float = Field(gt=0)

    def rate(self) -> Rate:
        return Rate(self.count, self.per)


class SlackOptions(PlatformOptions):
    """Settings of the Slack platform (`slack:` in the config).

    Exactly one connection mode: `app_token` (Socket Mode, the default for
    internal apps) or `signing_secret` (HTTP mode: Slack posts events to
    `events_path` on the daemon's HTTP listener).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    bot_token: SecretStr
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    api_url: str = "https://slack.com/api/"
    events_path: str = "/slack/events"

    mode: Literal["update", "native"] = "update"
    ignore_bots: bool = True
    reset_command: str = "/chat-reset"
    placeholder: str | None = None  # None: reply.thinking_text, else "_Thinking…_"
    thinking: Literal["auto", "status", "reaction", "none"] = "auto"
    thinking_reaction: str = "hourglass_flowing_sand"
    max_chars: int = Field(3900, ge=500, le=4000)

    # Budgets shared by every live reply: chat.update per workspace (Tier 3),
    # chat.postMessage per channel, chat.startStream per workspace (Tier 2; and
    # apart, chat.stopStream), chat.appendStream per workspace (Tier 4).
    update_rate: RateOption = RateOption(count=50, per=60)
    post_rate: RateOption = RateOption(count=1, per=1.0)
    stream_rate: RateOption = RateOption(count=20, per=60)
    append_rate: RateOption = RateOption(count=100, per=60)
    # reactions.remove per workspace (Tier 2): a thinking reaction is put on only
    # where its removal fits (adds, Tier 3, then stay within it too).
    reaction_rate: RateOption = RateOption(count=20, per=60)

    timeout: float = Field(30.0, gt=0, le=300)
    max_retries: int = Field(3, ge=0, le=10)
    ping_interval: float = Field(10.0, gt=0, le=120)

    @field_validator("app_token", "signing_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `${SLACK_APP_TOKEN:-}` expands to "" when the variable is unset.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        secret = clean_secret(value).get_secret_value()
        if not secret:
            raise ValueError(
                "is empty (is the environment variable it names set?); it takes the Bot "
                "User OAuth Token, xoxb-…"
            )
        if secret.startswith("xapp-"):
            raise ValueError(
                "is an app-level token (xapp-…); put it in slack.app_token and use the "
                "Bot User OAuth Token (xoxb-…) here"
            )
        if not secret.startswith(("xoxb-", "xoxe.xoxb-")):
            # Slack would refuse it at start: said here, by `check`, and never shown.
            kind = "a user token (xoxp-…)" if secret.startswith("xoxp-") else "not a bot token"
            raise ValueError(
                f"is {kind}; it takes the Bot User OAuth Token, which starts xoxb- "
                "(xoxe.xoxb- when tokens rotate): OAuth & Permissions in the app's settings"
            )
        return SecretStr(secret)

    @field_validator("app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        secret = clean_secret(value).get_secret_value()
        if secret.startswith("xapp-"):
            return SecretStr(secret)
        # Slack would refuse it at start: said here, by `check`, and never shown.
        if secret.startswith(("xoxb-", "xoxp-", "xoxe.")):
            kind = "a bot or user token"
        elif len(secret) == 32 and all(c in "0123456789abcdef" for c in secret):
            kind = "a signing secret, it seems (HTTP mode takes it: slack.signing_secret)"
        else:
            kind = "not an app-level token"
        raise ValueError(
            f"is {kind}; Socket Mode takes the app-level token, which starts xapp-: "
            "Basic Information → App-Level Tokens in the app's settings, with the "
            "connections:write scope"
        )

    @field_validator("signing_secret")
    @classmethod
    def _signing_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        # A secret file's trailing line break would fail every signature check.
        secret = clean_secret(value)
        if secret.get_secret_value().startswith(("xox", "xapp-")):
            # Every request Slack sends would be refused as of a wrong signature.
            raise ValueError(
                "is a token (xox…/xapp-…); HTTP mode takes the app's Signing Secret: "
                "Basic Information → App Credentials in the app's settings"
            )
        return secret

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL, e.g. https://slack.com/api/")
        return plain_url(value if value.endswith("/") else value + "/")

    @field_validator("reset_command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.startswith("/") or len(value) < 2 or " " in value:
            raise ValueError('must be a slash command such as "/chat-reset"')
        return value

    @field_validator("events_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError('must be a path starting with "/", e.g. /slack/events')
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> SlackOptions:
        if self.app_token is None and self.signing_secret is None:
            raise ValueError(
                "set slack.app_token (Socket Mode; export SLACK_APP_TOKEN=xapp-…) or "
                "slack.signing_secret (HTTP mode; export SLACK_SIGNING_SECRET)"
            )
        if self.app_token is not None and self.signing_secret is not None:
            raise ValueError(
                "set only one of slack.app_token (Socket Mode) and slack.signing_secret "
                "(HTTP mode), not both"
            )
        return self

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    def needs_listener(self) -> str | None:
        return None if self.socket_mode else "Slack HTTP mode (slack.signing_secret)"
