"""The fake Slack's HTTP delivery: Events API and command requests, signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.fakes.slack.state import SlackState


class SignedHTTP(SlackState):
    """Delivering a body to the daemon over HTTP, signed as Slack signs it."""

    def sign(self, raw: str, timestamp: int, secret: str | None = None) -> str:
        key = (secret or self.signing_secret).encode()
        base = f"v0:{timestamp}:{raw}".encode()
        return "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()

    async def post_http(
        self,
        url: str,
        raw: str,
        content_type: str,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> tuple[int, str]:
        """POST a raw body to the daemon as Slack would; returns (status, body)."""
        assert self._client is not None
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": signature or self.sign(raw, stamp, secret),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        async with self._client.post(url, data=raw.encode(), headers=headers) as resp:
            return resp.status, await resp.text()

    async def post_event(self, url: str, body: dict[str, Any], **kw: Any) -> tuple[int, str]:
        return await self.post_http(url, json.dumps(body), "application/json", **kw)

    async def post_command(self, url: str, fields: dict[str, str], **kw: Any) -> tuple[int, str]:
        form = "application/x-www-form-urlencoded"
        return await self.post_http(url, urlencode(fields), form, **kw)
