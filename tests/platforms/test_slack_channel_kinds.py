"""Who sees a Slack place: a channel's kind, learnt from the listing at start, an
invitation, an event's body or conversations.info, and counted as private while unknown."""

from __future__ import annotations

import logging

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platforms.slack import SlackPlatform, places
from tests.core.fakeplatform import wait_for
from tests.fakes.slack import FakeSlack
from tests.platforms.slack_support import CHANNEL, DM, Inbox, deliver, running


@pytest.fixture
def at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app_mention's channel is looked up without waiting for its message event."""
    monkeypatch.setattr(places, "MESSAGE_GRACE", 0.0)


@pytest.mark.usefixtures("at_once")
async def test_a_place_only_its_members_see_is_told_as_such(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # A private channel's id may start with C, and an app_mention does not say the
    # channel's type. Not known yet, a channel counts as private, and Slack is asked
    # once, in the background, for the questions after.
    fake = fake_slack
    fake.channels.update({"C0PRIVATE1": "group", "C0PRIVATE3": "group", "G0GROUPDM1": "mpim"})
    mention = f"<@{fake.bot_user_id}>"
    for channel in ("C0PRIVATE1", CHANNEL):  # app_mention alone
        [_, app_mention] = fake.user_message(channel, f"{mention} asked")
        await deliver(fake, [app_mention])
    kinds = socket_platform.kinds
    await wait_for(lambda: None not in (kinds.known("C0PRIVATE1"), kinds.known(CHANNEL)))
    for channel in ("C0PRIVATE1", CHANNEL):
        [_, app_mention] = fake.user_message(channel, f"{mention} asked again")
        await deliver(fake, [app_mention])
    await deliver(fake, fake.user_message("G0PRIVATE2", f"{mention} asked"))  # message first
    await deliver(fake, fake.user_message("G0GROUPDM1", f"{mention} asked")[:1])
    await deliver(fake, fake.user_message(DM, "asked"))
    await fake.wait_ack(
        await fake.send_envelope("slash_commands", fake.slash_command("/chat-reset", "C0PRIVATE3"))
    )
    got = await inbox.wait(8)
    assert [(m.channel, m.audience) for m in got[:4]] == [
        ("C0PRIVATE1", "members"),
        (CHANNEL, "members"),  # not known yet
        ("C0PRIVATE1", "members"),
        (CHANNEL, "channel"),
    ]
    assert sorted((m.channel, m.audience) for m in got[4:]) == sorted(
        [
            ("G0PRIVATE2", "members"),
            ("G0GROUPDM1", "members"),
            (DM, "channel"),
            ("C0PRIVATE3", "members"),  # a command in a private channel: its name says so
        ]
    )
    asked = [a["channel"] for m, a in fake.calls if m == "conversations.info"]
    assert asked == ["C0PRIVATE1", CHANNEL]


async def test_the_channels_the_bot_is_in_are_known_from_the_start(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    fake_slack.channels.update({f"C0PUB{i:05d}": "channel" for i in range(250)})
    fake_slack.channels["C0PRIVATE1"] = "group"
    async with running(fake_slack, inbox) as platform:
        await wait_for(lambda: platform.kinds.known("C0PRIVATE1") is not None)
        for channel in ("C0PUB00249", "C0PRIVATE1"):
            [_, app_mention] = fake_slack.user_message(
                channel, f"<@{fake_slack.bot_user_id}> asked"
            )
            await deliver(fake_slack, [app_mention])
        got = await inbox.wait(2)
    assert [m.audience for m in got] == ["channel", "members"]
    assert [m for m, _ in fake_slack.calls if m == "users.conversations"] == [
        "users.conversations"
    ] * 2  # 251 channels, 200 a page
    assert not [m for m, _ in fake_slack.calls if m == "conversations.info"]


async def test_a_channel_the_bot_is_invited_to_is_known_from_its_invitation(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fake_slack.channels.update({"C0NEWPUB01": "channel", "C0NEWPRIV1": "group"})
    for channel in ("C0NEWPUB01", "C0NEWPRIV1"):
        await deliver(fake_slack, [fake_slack.invite_bot(channel)])
    await wait_for(lambda: socket_platform.kinds.known("C0NEWPRIV1") is not None)
    assert socket_platform.kinds.known("C0NEWPUB01") == "channel"
    assert socket_platform.kinds.known("C0NEWPRIV1") == "members"


async def test_a_channel_shared_with_another_organisation_is_told_as_only_its_members(
    fake_slack: FakeSlack, inbox: Inbox
) -> None:
    # Slack Connect: people of another organisation read it, public as it is in this
    # workspace, and its events' channel_type says "channel". The listing at start
    # says it is shared, and so does every event's body (`is_ext_shared_channel`),
    # an app_mention's too: Slack need not be asked.
    fake = fake_slack
    fake.channels["C0LISTED01"] = "channel"
    fake.shared.update({"C0LISTED01", "C0MENTION1", "C0TOLD0001"})
    mention = f"<@{fake.bot_user_id}>"
    async with running(fake, inbox) as platform:
        kinds = platform.kinds
        await wait_for(lambda: kinds.known("C0LISTED01") is not None)
        [_, app_mention] = fake.user_message("C0MENTION1", f"{mention} asked")
        await deliver(fake, [app_mention])
        await deliver(fake, fake.user_message("C0TOLD0001", "no mention"))
        for channel in ("C0LISTED01", "C0TOLD0001"):
            [_, app_mention] = fake.user_message(channel, f"{mention} asked")
            await deliver(fake, [app_mention])
        got = await inbox.wait(4)
        assert {c: kinds.known(c) for c in ("C0LISTED01", "C0MENTION1", "C0TOLD0001")} == (
            dict.fromkeys(("C0LISTED01", "C0MENTION1", "C0TOLD0001"), "members")
        )
    assert [(m.channel, m.audience) for m in got] == [
        ("C0MENTION1", "members"),
        ("C0TOLD0001", "members"),  # the core answers or not
        ("C0LISTED01", "members"),
        ("C0TOLD0001", "members"),
    ]
    assert not [m for m, _ in fake.calls if m == "conversations.info"]


def test_a_channel_known_to_be_shared_stays_so() -> None:
    # Only an event's body says a channel is shared with another organisation: a
    # later event's type ("channel") does not say it no longer is, nor does the body
    # of one whose share is not accepted yet (Slack describes it as pending).
    kinds = places.ChannelKinds(AsyncWebClient(token="xoxb-1"), lambda work: work.close())
    kinds.learn("C0SHARED01", "channel", shared=True)
    kinds.learn("C0SHARED01", "channel")
    assert kinds.known("C0SHARED01") == "members"
    pending = {
        "id": "C0PENDING1",
        "is_channel": True,
        "is_private": False,
        "is_ext_shared": False,
        "is_pending_ext_shared": True,
    }
    assert places._audience(places._kind(pending)) == "members"


def test_the_channel_types_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # One entry per channel ever heard from, for ever: months in a large workspace
    # (DMs included) grew it without end. The longest quiet are forgotten (asked
    # about again if they speak), and DMs are not kept at all.
    monkeypatch.setattr(places, "MAX_KINDS", 3)
    kinds = places.ChannelKinds(AsyncWebClient(token="xoxb-1"), lambda work: work.close())
    kinds.learn("D0DM0001", "im")
    for channel in ("C1", "C2", "C3"):
        kinds.learn(channel, "channel")
    assert kinds.known("C1") == "channel"  # heard from again: kept over C2
    kinds.learn("G4", "group")
    assert [c for c in ("C1", "C2", "C3", "G4") if kinds.known(c)] == ["C1", "C3", "G4"]
    assert kinds.known("D0DM0001") is None


@pytest.mark.usefixtures("at_once")
async def test_questions_are_handed_over_in_order_while_their_channel_is_looked_up(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # A question was held for the lookup: the next, in a channel already known or
    # after it, overtook it (a question after /chat-reset went to the old session).
    fake_slack.slow["conversations.info"] = [1.0]
    mention = f"<@{fake_slack.bot_user_id}>"
    for text in ("first", "second"):
        [_, app_mention] = fake_slack.user_message(CHANNEL, f"{mention} {text}")
        await deliver(fake_slack, [app_mention])
    got = await inbox.wait(2)
    assert [m.text for m in got] == ["first", "second"]


@pytest.mark.usefixtures("at_once")
async def test_a_channel_slack_will_not_describe_counts_as_private(
    fake_slack: FakeSlack,
    socket_platform: SlackPlatform,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An app installed before it asked for channels:read: nothing said there can
    # reach another place's conversation, and the log says what to add.
    fake_slack.scopes.discard("channels:read")
    for _ in range(2):
        [_, app_mention] = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> hi")
        await deliver(fake_slack, [app_mention])
        await wait_for(lambda: not socket_platform.kinds._asking)
    got = await inbox.wait(2)
    assert [m.audience for m in got] == ["members", "members"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "channels:read" in warnings[0]
    assert fake_slack.bot_token not in caplog.text


@pytest.mark.usefixtures("at_once")
async def test_slack_failing_for_now_is_not_taken_for_missing_scopes(
    fake_slack: FakeSlack,
    socket_platform: SlackPlatform,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chat_bridge.slack")
    fake_slack.fail["conversations.info"] = ["internal_error"]
    [_, app_mention] = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> hi")
    await deliver(fake_slack, [app_mention])
    await inbox.wait(1)
    await wait_for(lambda: not socket_platform.kinds._asking)
    said = [r for r in caplog.records if "is private" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    assert "scopes" not in said[0].getMessage() and "internal_error" in said[0].getMessage()


@pytest.mark.usefixtures("at_once")
async def test_a_channel_slack_will_not_describe_is_not_asked_about_at_every_question(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    fake_slack.scopes.discard("channels:read")
    for _ in range(3):
        [_, app_mention] = fake_slack.user_message(CHANNEL, f"<@{fake_slack.bot_user_id}> hi")
        await deliver(fake_slack, [app_mention])
    got = await inbox.wait(3)
    assert [m.audience for m in got] == ["members"] * 3
    assert [m for m, _ in fake_slack.calls if m == "conversations.info"] == ["conversations.info"]


async def test_without_a_route_per_user_slack_is_not_asked_who_sees_a_channel(
    fake_slack: FakeSlack,
    socket_platform: SlackPlatform,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Only `session: user` keys a conversation by who sees its place: elsewhere the
    # lookup would cost a call, and nag an app without the scopes it does not need.
    socket_platform.kinds.enabled = False
    fake_slack.scopes.discard("channels:read")
    fake_slack.channels["C0PRIVATE1"] = "group"
    for channel in (CHANNEL, "C0PRIVATE1"):
        [_, app_mention] = fake_slack.user_message(channel, f"<@{fake_slack.bot_user_id}> hi")
        await deliver(fake_slack, [app_mention])
    got = await inbox.wait(2)
    assert [m.audience for m in got] == ["channel", "channel"]
    assert not [m for m, _ in fake_slack.calls if m == "conversations.info"]
    await deliver(fake_slack, [fake_slack.invite_bot("C0PRIVATE1")])  # nor kept
    await deliver(fake_slack, fake_slack.user_message("C0PRIVATE1", "no mention"))
    assert len(socket_platform.kinds._kinds) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_mention_whose_message_event_follows_asks_slack_nothing(
    fake_slack: FakeSlack, socket_platform: SlackPlatform, inbox: Inbox
) -> None:
    # Slack sends a channel mention as app_mention and as a message, in either order.
    # With the app_mention first, its channel was looked up at once: a burst of
    # mentions in new channels spent conversations.info's budget (and drew 429s) on
    # what the message events said a moment later.
    fake = fake_slack
    channels = [f"C0NEW{i:05d}" for i in range(10)]
    fake.channels.update({c: "group" for c in channels[::2]})
    mention = f"<@{fake.bot_user_id}>"
    for channel in channels:
        message, app_mention = fake.user_message(channel, f"{mention} asked")
        await deliver(fake, [app_mention, message])
    for channel in channels:
        [_, app_mention] = fake.user_message(channel, f"{mention} asked again")
        await deliver(fake, [app_mention])
    got = await inbox.wait(20)
    assert [m.audience for m in got[:10]] == ["members"] * 10  # not known yet
    assert [(m.channel, m.audience) for m in got[10:]] == [
        (c, "members" if i % 2 == 0 else "channel") for i, c in enumerate(channels)
    ]
    await wait_for(lambda: not socket_platform.kinds._asking)
    assert not [m for m, _ in fake.calls if m == "conversations.info"]


async def test_a_mention_alone_has_its_channel_looked_up_and_a_reset_does_not_wait(
    fake_slack: FakeSlack,
    socket_platform: SlackPlatform,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No message event follows (an app subscribed to app_mention alone): the channel
    # is looked up once the wait for one is over; a /chat-reset meanwhile asks at once.
    monkeypatch.setattr(places, "MESSAGE_GRACE", 0.2)
    mention = f"<@{fake_slack.bot_user_id}>"
    [_, app_mention] = fake_slack.user_message(CHANNEL, f"{mention} asked")
    await deliver(fake_slack, [app_mention])
    await wait_for(lambda: socket_platform.kinds.known(CHANNEL) is not None)
    assert socket_platform.kinds.known(CHANNEL) == "channel"
    monkeypatch.setattr(places, "MESSAGE_GRACE", 60.0)
    [_, app_mention] = fake_slack.user_message("C0PUBLIC02", f"{mention} asked")
    await deliver(fake_slack, [app_mention])
    await fake_slack.wait_ack(
        await fake_slack.send_envelope(
            "slash_commands", fake_slack.slash_command("/chat-reset", "C0PUBLIC02")
        )
    )
    got = await inbox.wait(3)
    assert [(m.channel, m.audience) for m in got] == [
        (CHANNEL, "members"),
        ("C0PUBLIC02", "members"),
        ("C0PUBLIC02", "channel"),  # the reset: the person's public conversation
    ]
    asked = [a["channel"] for m, a in fake_slack.calls if m == "conversations.info"]
    assert asked == [CHANNEL, "C0PUBLIC02"]


async def test_a_listing_cut_short_is_told(
    fake_slack: FakeSlack,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bot in more channels than the listing at start takes (an organisation-wide
    # install): those past it were left unknown without a word.
    monkeypatch.setattr(places, "LIST_PAGES", 2)
    fake_slack.channels.update({f"C0PUB{i:05d}": "channel" for i in range(450)})
    async with running(fake_slack, inbox) as platform:
        await wait_for(lambda: any("listed" in r.getMessage() for r in caplog.records))
        assert platform.kinds.known("C0PUB00399") == "channel"
        assert platform.kinds.known("C0PUB00400") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "more than 400 channels" in warnings[0] and "counts as private" in warnings[0]
    assert fake_slack.count("users.conversations") == 2
