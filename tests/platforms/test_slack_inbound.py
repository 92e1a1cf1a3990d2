"""What the Slack adapter delivers of Slack's events over Socket Mode: the question's text,
workspace, thread and mentions, once; what it ignores; and what a stop overtakes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from adapters.platforms.slack import SlackPlatform
from bridge.interfaces import Address, Inbound
from tests.core.fakeplatform import wait_for
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, DM, Inbox, deliver, running


async def test_mention_in_channel_is_delivered_once(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> how do I  deploy?")
    assert [b["event"]["type"] for b in bodies] == ["message", "app_mention"]
    await deliver(fake_slack, bodies)
    [msg] = await inbox.wait(1)
    assert socket_platform.connected
    root = bodies[0]["event"]["ts"]
    assert msg == Inbound(
        platform="slack",
        workspace=fake_slack.team_id,
        channel=CHANNEL,
        user="U0USER001",
        text="how do I  deploy?",  # the asker's spaces are theirs; only the mention goes
        message_id=root,
        event_id=f"{CHANNEL}:{root}",
        thread=root,
        is_dm=False,
        mentioned=True,
        received_at=msg.received_at,
        sent_at=float(root),
    )
    # A later message proves nothing else was queued behind the duplicate.
    await deliver(fake_slack, fake_slack.user_message(CHANNEL, "unrelated chatter"))
    assert len(await inbox.wait(2)) == 2
    assert inbox.inbound[1].mentioned is False


async def test_a_mention_posted_with_a_file_is_delivered(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # With a file, Slack sends the message event alone: no app_mention to wait for.
    bodies = fake_slack.user_message(
        CHANNEL, f"<@{fake_slack.bot_user_id}> what is this error?", subtype="file_share"
    )
    assert [b["event"]["type"] for b in bodies] == ["message"]
    await deliver(fake_slack, bodies)
    [msg] = await inbox.wait(1)
    assert msg.text == "what is this error?" and msg.mentioned
    assert msg.event_id == f"{CHANNEL}:{bodies[0]['event']['ts']}"


async def test_the_bots_mention_within_a_question_is_its_name(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Taken out, it would leave "what can do for me?"; at the start or the end it
    # only says who is asked.
    me = f"<@{fake_slack.bot_user_id}>"
    asked = [
        f"what can {me} do for me?",
        f"ask <@U0OTHER01> and {me} about it",
        f"{me}, what is a bridge?",
        f"thanks {me}!",
    ]
    for n, text in enumerate(asked, 1):
        await deliver(fake_slack, fake_slack.user_message(CHANNEL, text))
        await inbox.wait(n)
    assert [m.text for m in inbox.inbound] == [
        "what can chat-bridge do for me?",
        "ask @U0OTHER01 and chat-bridge about it",
        "what is a bridge?",
        "thanks!",
    ]


async def test_a_questions_spaces_are_kept_but_around_the_bots_mention(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    me = f"<@{fake_slack.bot_user_id}>"
    yaml = "```\n  routes:\n    - platform: slack\n      backend: docs\n```"
    asked = [
        f"{me}  what is a bridge?",
        f"{me} is this valid?\n{yaml}",
        f"{me}\n```  indented first line\n\tand a tab```",
        "what  `x  =  1`  means,\tasked in\ttabs?",
    ]
    for n, text in enumerate(asked, 1):
        await deliver(fake_slack, fake_slack.user_message(CHANNEL, text))
        await inbox.wait(n)
    assert [m.text for m in inbox.inbound] == [
        "what is a bridge?",
        f"is this valid?\n{yaml}",
        "```  indented first line\n\tand a tab```",
        "what  `x  =  1`  means,\tasked in\ttabs?",
    ]


async def test_a_channel_shared_with_another_organisation_is_the_installs_workspace(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Slack Connect: the body's team_id is the channel maker's organisation; a
    # /reset there carries the asker's, this install's or the other one's. One
    # conversation, not two.
    [body] = fake_slack.user_message(CHANNEL, "in a shared channel", thread_ts="1.000001")
    body["team_id"] = body["context_team_id"] = "T0OTHERORG"
    await deliver(fake_slack, [body])
    fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", fields))
    external = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0EXTERNAL")
    external["team_id"] = "T0OTHERORG"  # a member of the other organisation
    await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", external))
    asked, reset, reset_by_external = await inbox.wait(3)
    assert asked.workspace == reset.workspace == reset_by_external.workspace == (fake_slack.team_id)
    assert inbox.items[2][1].address.workspace == fake_slack.team_id


async def test_an_org_wide_install_resets_in_the_workspace_its_messages_come_from(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Enterprise Grid, the app installed for the whole organisation: an event names the
    # workspace it came through (`authorizations`), a command the one it was run in
    # (`team_id`); auth.test names only one. A reset in any other was taken for
    # auth.test's workspace: it reset nothing, and a route for its own refused it.
    org, second = "E0ORG00001", "T0WSB00002"
    for team, channel in ((second, "C0WSBCHAN1"), (fake_slack.team_id, CHANNEL)):
        [body] = fake_slack.user_message(channel, "hello", thread_ts="1.000001")
        body["team_id"] = body["context_team_id"] = body["event"]["team"] = team
        body["enterprise_id"] = org
        body["authorizations"][0].update(
            team_id=team, enterprise_id=org, is_enterprise_install=True
        )
        await deliver(fake_slack, [body])
        fields = fake_slack.slash_command("/chat-reset", channel)
        fields.update(team_id=team, enterprise_id=org, is_enterprise_install="true")
        await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", fields))
    got = await inbox.wait(4)
    assert [(m.workspace, m.command) for m in got] == [
        (second, None),
        (second, "reset"),
        (fake_slack.team_id, None),
        (fake_slack.team_id, "reset"),
    ]
    assert inbox.items[1][1].address.workspace == second


async def test_thread_reply_without_mention_is_delivered_unmentioned(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    root = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> first")
    await deliver(fake_slack, root)
    root_ts = root[0]["event"]["ts"]
    follow_up = fake_slack.user_message(CHANNEL, "and a follow-up", thread_ts=root_ts)
    await deliver(fake_slack, follow_up)
    first, second = await inbox.wait(2)
    assert first.thread == second.thread == root_ts
    assert second.mentioned is False and second.text == "and a follow-up"
    _, target = inbox.items[1]
    assert target.address == Address("slack", fake_slack.team_id, CHANNEL, root_ts)


async def test_a_message_beginning_with_someone_elses_mention_says_so(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    me = f"<@{fake_slack.bot_user_id}>"
    texts = [
        "<@U0OTHERBOT> please summarise this thread",  # another bot, or a person
        " <!subteam^S0ONCALL|@oncall> can you look?",  # a user group
        f"<@U0OTHERBOT> what do you think, {me}?",  # the bot too: its own
        f"{me} and <@U0OTHERBOT>, what is it?",
        "thanks <@U0OTHERBOT>, and a question",  # not addressed to them first
        "a follow-up",
    ]
    bodies = [b for text in texts for b in fake_slack.user_message(CHANNEL, text, thread_ts="1.0")]
    await deliver(fake_slack, bodies)
    delivered = await inbox.wait(len(texts))
    assert [(m.addresses_other, m.mentioned) for m in delivered] == [
        (True, False),
        (True, False),
        (True, True),
        (False, True),
        (False, False),
        (False, False),
    ]


async def test_dm_is_delivered_as_dm_at_top_level(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    body = fake_slack.user_message(DM, "hello there")
    assert len(body) == 1
    await deliver(fake_slack, body)
    [msg] = await inbox.wait(1)
    assert msg.is_dm and msg.thread is None and msg.text == "hello there" and not msg.mentioned


async def test_own_and_other_bots_edits_and_subtypes_are_ignored(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fake = fake_slack
    ignored = [
        *fake.user_message(CHANNEL, "my own message", user=fake.bot_user_id, bot_id=fake.bot_id),
        *fake.user_message(CHANNEL, "another bot", user="U0OTHERBOT", bot_id="B0OTHER01"),
        *fake.user_message(CHANNEL, "joined", subtype="channel_join"),
        fake.event_body(
            {
                "type": "message",
                "subtype": "message_changed",
                "channel": CHANNEL,
                "hidden": True,
                "message": {"type": "message", "user": "U0USER001", "text": "edited", "ts": "1.1"},
                "ts": "1.2",
                "event_ts": "1.2",
                "channel_type": "channel",
            }
        ),
        fake.event_body(
            {
                "type": "message",
                "subtype": "message_deleted",
                "channel": CHANNEL,
                "hidden": True,
                "deleted_ts": "1.1",
                "ts": "1.3",
                "event_ts": "1.3",
                "channel_type": "channel",
            }
        ),
        fake.event_body(
            {
                "type": "reaction_added",
                "user": "U0USER001",
                "reaction": "eyes",
                "item": {"type": "message", "channel": CHANNEL, "ts": "1.1"},
            }
        ),
    ]
    await deliver(fake, ignored)
    await deliver(fake, fake.user_message(CHANNEL, "a person", user="U0PERSON1"))
    [msg] = await inbox.wait(1)
    assert msg.user == "U0PERSON1"
    # Every envelope was acknowledged, ignored or not.
    assert len(fake.acks) == len(ignored) + 1


async def test_other_bots_can_be_let_in(fake_slack: FakeSlack, inbox: Inbox) -> None:
    async with running(fake_slack, inbox, ignore_bots=False):
        fake = fake_slack
        mine = fake.user_message(CHANNEL, "mine", user=fake.bot_user_id, bot_id=fake.bot_id)
        theirs = fake.user_message(CHANNEL, "theirs", user="U0OTHERBOT", bot_id="B0OTHER01")
        legacy = fake.event_body(
            {
                "type": "message",
                "subtype": "bot_message",
                "channel": CHANNEL,
                "text": "hook",
                "bot_id": "B0HOOK001",
                "username": "ci",
                "ts": "1.5",
                "event_ts": "1.5",
                "channel_type": "channel",
            }
        )
        await deliver(fake, [*mine, *theirs, legacy])
        theirs_msg, hook = await inbox.wait(2)
        assert theirs_msg.text == "theirs" and theirs_msg.user == "U0OTHERBOT"
        assert hook.text == "hook" and hook.user == "B0HOOK001"


async def test_retried_envelope_keeps_its_event_id(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    [body] = fake_slack.user_message(DM, "once")
    await deliver(fake_slack, [body])
    env = await fake_slack.send_envelope(
        "events_api", body, retry_attempt=1, retry_reason="timeout"
    )
    await fake_slack.wait_ack(env)
    first, second = await inbox.wait(2)
    assert first.event_id == second.event_id == f"{DM}:{body['event']['ts']}"


async def test_stop_receiving_disconnects(
    fake_slack: FakeSlack, socket_platform: SlackPlatform
) -> None:
    await socket_platform.stop_receiving()
    assert not socket_platform.connected
    await fake_slack.wait_for(lambda: not fake_slack._sockets)


async def test_an_event_the_stop_overtakes_in_bolt_is_not_acknowledged(
    fake_slack: FakeSlack,
    socket_platform: SlackPlatform,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The stop begins while bolt dispatches an envelope: acked, nobody would
    # answer it and Slack would not send it again.
    platform, handler = socket_platform, socket_platform._handler
    overtaken = asyncio.Event()
    normalize = platform.messages.inbound

    def stop_begins(*args: Any, **kw: Any) -> Any:
        if not overtaken.is_set():
            platform._handler = None  # what stop_receiving() does first
            overtaken.set()
        return normalize(*args, **kw)

    platform.messages.inbound = stop_begins  # type: ignore[method-assign]
    [body] = fake_slack.user_message(DM, "asked as the deploy began")
    first = await fake_slack.send_envelope("events_api", body)
    await asyncio.wait_for(overtaken.wait(), 5)
    platform._handler = handler
    [later] = fake_slack.user_message(DM, "asked next")
    await fake_slack.wait_ack(await fake_slack.send_envelope("events_api", later))
    [msg] = await inbox.wait(1)
    assert msg.text == "asked next"
    assert first not in fake_slack.acks  # Slack sends it again
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_command_the_stop_overtakes_is_not_acknowledged(
    fake_slack: FakeSlack,
    socket_platform: SlackPlatform,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    socket_platform._handler = None  # the stop has begun; the socket is still open
    fields = fake_slack.slash_command("/chat-reset", CHANNEL, user="U0USER001")
    first = await fake_slack.send_envelope("slash_commands", fields)
    await wait_for(  # bolt answered the command (500: no ack)
        lambda: any("Unsuccessful Bolt execution" in r.getMessage() for r in caplog.records),
        timeout=5,
    )
    assert first not in fake_slack.acks  # Slack tells the user it failed: not silence
    assert inbox.items == []


@pytest.mark.parametrize("tombstone", [False, True])
async def test_a_deleted_question_is_withdrawn(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox, tombstone: bool
) -> None:
    # A thread's first message with replies is not deleted outright: Slack leaves a
    # tombstone in its place (message_changed), which withdraws the question too.
    bodies = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> my password is x")
    await deliver(fake_slack, bodies)
    await inbox.wait(1)
    [(_, target)] = inbox.items
    assert not target.withdrawn()
    ts = bodies[0]["event"]["ts"]
    await deliver(fake_slack, [fake_slack.user_delete(CHANNEL, ts, tombstone=tombstone)])
    await wait_for(target.withdrawn)
    assert len(inbox.items) == 1  # the deletion is no question
