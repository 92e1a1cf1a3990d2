"""The `discord:` block of the config file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.interfaces import PlatformOptions, Rate, clean_secret
from bridge.transport import plain_url


class RateOption(BaseModel):
    """At most `count` operations in any window of `per` seconds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    # Both required: half a rate taking the other half from a default of another
    # rate (5 a second for `global_rate: {count: 20}`) would be no rate anyone meant.
    count: int = Field(ge=1, le=100)
    per: float = Field(gt=0, le=3600)

    def rate(self) -> Rate:
        return Rate(self.count, self.per)


class DiscordOptions(PlatformOptions):
    """Options of the Discord platform (`discord:` in the config file).

    token          the bot token (Developer Portal > Bot > Reset Token)
    api_url        REST base; REST proxies and test servers override it
    gateway_url    gateway websocket URL; None means Discord's own
    ask_ephemeral  `/ask` answers only the asker (true) or the channel (false)
    edit_rate      budget for message edits per channel (Discord: 5 per 5 s)
    post_rate      budget for new messages per channel (Discord: 5 per 5 s)
    global_rate    budget for every reply post and edit of the bot (Discord: 50 per s)
    shard_count    total shards; "auto" asks Discord; None runs one connection
    shard_ids      the shards this process runs (needs shard_count)
    message_content  ask for the privileged Message Content intent; without it
                   the bot reads only DMs and messages that mention it
    sync_commands  register /ask and /reset with Discord at start-up
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    token: SecretStr
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str | None = None
    ask_ephemeral: bool = False
    edit_rate: RateOption = RateOption(count=5, per=5.0)
    post_rate: RateOption = RateOption(count=5, per=5.0)
    # Discord allows a bot 50 requests per second in all; replies keep under it,
    # leaving room for typing, threads and commands.
    global_rate: RateOption = RateOption(count=40, per=1.0)
    shard_count: int | Literal["auto"] | None = None
    shard_ids: list[int] | None = None
    message_content: bool = True
    sync_commands: bool = True
    guild_ready_timeout: float = Field(2.0, ge=0, le=60)
    connect_timeout: float = Field(60.0, gt=0, le=600)

    def unmentioned_unread(self) -> str | None:
        if self.message_content:
            return None
        return (
            "without the Message Content intent (discord.message_content: false) they "
            "come without their text"
        )

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError(
                "is empty (is the environment variable it names set?); it takes the bot's "
                "token (Developer Portal, Bot, Reset Token)"
            )
        if value.get_secret_value().strip().lower().startswith(("bot ", "bearer ")):
            # discord.py adds "Bot " itself: Discord would refuse "Bot Bot …".
            raise ValueError(
                'starts with "Bot " or "Bearer "; give the token alone (the prefix is added)'
            )
        # A secret file's trailing line break would fail the login.
        token = clean_secret(value)
        parts = token.get_secret_value().split(".")
        if len(parts) != 3 or not all(parts):
            # A bot token is three base64 parts joined by dots; the portal's other
            # values (all digits, hex, one word) would be refused at login, as a
            # wrong token to reset.
            kind = (
                "is a Slack token (xox…/xapp-…)"
                if parts[0].startswith(("xox", "xapp-"))
                else "is not a bot token"
            )
            raise ValueError(
                f"{kind}; it takes the bot's token, three parts joined by dots: Developer "
                "Portal → Bot → Reset Token (not the Client Secret, Application ID or "
                "Public Key)"
            )
        return token

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local proxy)")
        return plain_url(value.rstrip("/"))

    @field_validator("gateway_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("wss://", "ws://")):
            raise ValueError("must start with wss:// (or ws:// for a local test server)")
        return value if value is None else plain_url(value)

    @field_validator("shard_count", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        # Checked here, in one message: the union's own errors name its branches
        # (`shard_count.int`, `shard_count.literal['auto']`), which are no keys.
        if value is None or value == "auto":
            return value
        number = value
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError('must be a number of shards (1 or more) or "auto"')
        return number

    @model_validator(mode="after")
    def _shards_fit(self) -> DiscordOptions:
        if self.shard_ids is None:
            return self
        if not isinstance(self.shard_count, int):
            raise ValueError("shard_ids needs a numeric shard_count (the total across processes)")
        bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if bad or not self.shard_ids or len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError(f"shard_ids must be distinct numbers from 0 to {self.shard_count - 1}")
        return self
