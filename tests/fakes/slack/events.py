"""The fake Slack's events: what people do, as the bodies Slack delivers."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.fakes.slack.history import FakeMessage
from tests.fakes.slack.state import SlackState


class Events(SlackState):
    """Users' messages, edits, deletions and commands, as Slack's event bodies."""

    def user_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U0USER001",
        thread_ts: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
        files: tuple[str, ...] = (),
        attachments: tuple[dict[str, Any], ...] = (),
    ) -> list[dict[str, Any]]:
        """Someone posts `text` (with the files named `files` attached, a `file_share`;
        with `attachments`: a message forwarded, see `forwarded`, or a link's preview,
        see `unfurl`): it joins the history, and the event bodies Slack would send are
        returned (a mention in a channel comes twice: as `message` and as
        `app_mention`, both with the attachments)."""
        ts = self._next_ts()
        self.messages[channel].append(FakeMessage(channel, ts, text, user, bot_id, thread_ts))
        kind = self.channel_type(channel)
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": kind,
            "team": self.team_id,
        }
        if bot_id:
            event["bot_id"] = bot_id
        else:
            event["client_msg_id"] = str(uuid.uuid4())
        if files:
            subtype = subtype or "file_share"
            event["files"] = [
                {"id": f"F{uuid.uuid4().hex[:10].upper()}", "name": name, "mode": "hosted"}
                for name in files
            ]
        if attachments:
            event["attachments"] = [dict(a, id=i) for i, a in enumerate(attachments, 1)]
        if subtype:
            event["subtype"] = subtype
        if thread_ts:
            event["thread_ts"] = thread_ts
        bodies = [self.event_body(event)]
        if kind != "im" and f"<@{self.bot_user_id}>" in text and not subtype:
            mention = {k: v for k, v in event.items() if k not in ("channel_type", "type")}
            bodies.append(self.event_body({"type": "app_mention", **mention}))
        return bodies

    def forwarded(
        self, channel: str, ts: str, *, files: tuple[str, ...] = (), pasted: bool = False
    ) -> dict[str, Any]:
        """The attachment a message forwarding `channel`'s message `ts` carries (Slack's
        Forward, or Share message): the message's text as written, in markup, and its
        author; `files` are named as the message's files. `pasted`: the preview of a
        link to the message pasted in another, which Slack does not mark `is_share`."""
        message = self.find(channel, ts)
        assert message is not None, f"no message {ts} in {channel}"
        shared: dict[str, Any] = {
            "is_msg_unfurl": True,
            "fallback": f"[{ts}] {message.user}: {message.text}",
            "text": message.text,
            "author_id": message.user,
            "author_name": message.user.lower(),
            "channel_id": channel,
            "channel_team": self.team_id,
            "ts": ts,
            "from_url": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            "mrkdwn_in": ["text"],
            "footer": f"Posted in <#{channel}>",
        }
        if not pasted:
            shared["is_share"] = True
        if files:
            shared["files"] = [
                {"id": f"F{uuid.uuid4().hex[:10].upper()}", "name": name, "mode": "hosted"}
                for name in files
            ]
        return shared

    @staticmethod
    def unfurl(url: str, title: str, text: str) -> dict[str, Any]:
        """The attachment Slack adds to a message that links a web page: its preview."""
        return {
            "from_url": url,
            "original_url": url,
            "title": title,
            "title_link": url,
            "text": text,
            "fallback": f"{title}: {text}",
            "service_name": url.split("/")[2],
        }

    def user_edit(
        self, channel: str, ts: str, text: str, *, user: str = "U0USER001"
    ) -> list[dict[str, Any]]:
        """Someone edits their message `ts` to `text`: the event bodies Slack sends.

        A `message_changed` message event, and, when the new text mentions the
        bot outside a DM, an `app_mention` again: a new event id, the message's
        own `ts`, and an `edited` field.
        """
        [message] = [m for m in self.messages[channel] if m.ts == ts]
        before, message.text = message.text, text
        edit_ts = self._next_ts()
        edited = {"user": user, "ts": edit_ts}
        changed: dict[str, Any] = {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel,
            "channel_type": self.channel_type(channel),
            "ts": edit_ts,
            "event_ts": edit_ts,
            "message": {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts,
                "edited": edited,
                "team": self.team_id,
            },
            "previous_message": {
                "type": "message",
                "user": user,
                "text": before,
                "ts": ts,
                "team": self.team_id,
            },
        }
        if message.thread_ts:
            changed["message"]["thread_ts"] = message.thread_ts
        bodies = [self.event_body(changed)]
        if self.channel_type(channel) != "im" and f"<@{self.bot_user_id}>" in text:
            mention: dict[str, Any] = {
                "type": "app_mention",
                "channel": channel,
                "user": user,
                "text": text,
                "ts": ts,
                "event_ts": edit_ts,
                "edited": edited,
                "team": self.team_id,
            }
            if message.thread_ts:
                mention["thread_ts"] = message.thread_ts
            bodies.append(self.event_body(mention))
        return bodies

    def user_delete(self, channel: str, ts: str, *, tombstone: bool = False) -> dict[str, Any]:
        """Someone deletes their message `ts`: the `message_deleted` event body, or for
        a thread's first message that has replies (`tombstone`), the `message_changed`
        one that leaves "This message was deleted." in its place."""
        [message] = [m for m in self.messages[channel] if m.ts == ts]
        now = self._next_ts()
        if tombstone:
            message.text = "This message was deleted."
            return self.event_body(
                {
                    "type": "message",
                    "subtype": "message_changed",
                    "hidden": True,
                    "channel": channel,
                    "channel_type": self.channel_type(channel),
                    "ts": now,
                    "event_ts": now,
                    "message": {
                        "type": "message",
                        "subtype": "tombstone",
                        "hidden": True,
                        "text": "This message was deleted.",
                        "ts": ts,
                        "thread_ts": ts,
                        "user": "USLACKBOT",
                    },
                }
            )
        self.messages[channel].remove(message)
        return self.event_body(
            {
                "type": "message",
                "subtype": "message_deleted",
                "hidden": True,
                "channel": channel,
                "channel_type": self.channel_type(channel),
                "ts": now,
                "event_ts": now,
                "deleted_ts": ts,
                "previous_message": {
                    "type": "message",
                    "user": message.user,
                    "text": message.text,
                    "ts": ts,
                },
            }
        )

    def invite_bot(self, channel: str, *, inviter: str = "U0USER001") -> dict[str, Any]:
        """Someone invites the bot to `channel`: the body of the `member_joined_channel`
        event Slack sends an app subscribed to it."""
        self.outside.discard(channel)
        return self.event_body(
            {
                "type": "member_joined_channel",
                "user": self.bot_user_id,
                "channel": channel,
                "channel_type": "C" if self.channel_type(channel) == "channel" else "G",
                "team": self.team_id,
                "inviter": inviter,
            }
        )

    def event_body(self, event: dict[str, Any]) -> dict[str, Any]:
        """Wrap an event in an `event_callback` envelope with a fresh event_id."""
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._event_ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": event.get("channel") in self.shared,
        }

    def slash_command(
        self, command: str, channel: str, *, user: str = "U0USER001", text: str = ""
    ) -> dict[str, str]:
        """The form fields of a slash command invocation."""
        n = next(self._event_ids)
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel,
            # Slack names a DM and a private channel by their type, not their name.
            "channel_name": {"im": "directmessage", "group": "privategroup"}.get(
                self.channel_type(channel), "general"
            ),
            "user_id": user,
            "user_name": "someone",
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.base}/commands/response/{n}",
            "trigger_id": f"{n}.trigger",
        }
