"""Questions deleted on their platform: not asked, and not kept.

A question deleted while it waits its turn is not sent to the chat API. The
platform adapter marks a question it holds itself (`ReplyTarget.withdrawn`),
but on a shared store the deletion may reach another replica than the one
holding the question (a load balancer sends each event to any of them). There
the adapter's call (`PlatformContext.deleted`) records it in the store, as an
event id of its own, pruned with the others after `limits.event_ttl`; the
replica holding the question looks for it just before asking the chat API.

A deletion known after that finds the answer begun: it is answered, as on one
replica, but its turn is not kept in the conversation's history (a stateless
API would be sent the deleted text again with every later question). One that
comes once the turn is kept has it forgotten (`Store.forget_question`).
"""

from __future__ import annotations

import logging
import time

from bridge.errors import BridgeError
from bridge.interfaces import Inbound, ReplyTarget
from bridge.store import Store

log = logging.getLogger("chat_bridge.relay")


def question_id(platform: str, workspace: str, channel: str, message_id: str) -> str:
    """The id a question's turn is kept under in a history, for its deletion to find."""
    return f"{platform}:{workspace}:{channel}:{message_id}"


def deletion_id(platform: str, workspace: str, channel: str, message_id: str) -> str:
    """The event id that stands for the deletion of a message."""
    return f"deleted:{question_id(platform, workspace, channel, message_id)}"


def asked(msg: Inbound) -> str:
    """The id `msg`'s turn is kept under (`question_id`)."""
    return question_id(msg.platform, msg.workspace, msg.channel, msg.message_id)


async def record_deletion(
    store: Store, platform: str, workspace: str, channel: str, message_id: str
) -> None:
    """A message was deleted: on a shared store, say so to the replica that may hold
    it as a question; and forget its turn where a history keeps it (answered)."""
    where = {"platform": platform, "channel": channel}
    if store.shared:
        try:
            await store.claim_event(
                deletion_id(platform, workspace, channel, message_id), time.time()
            )
        except BridgeError as exc:
            log.warning(
                "could not record the deletion of message %s: %s; if another replica "
                "holds it as a question waiting its turn, it is answered",
                message_id,
                exc,
                extra=where,
            )
    try:
        forgot = await store.forget_question(question_id(platform, workspace, channel, message_id))
    except BridgeError as exc:
        log.warning(
            "could not forget deleted message %s: %s; if it was a question answered, "
            "its conversation's history keeps it until a reset",
            message_id,
            exc,
            extra=where,
        )
        return
    if forgot:
        log.info(
            "deleted question %s forgotten from its conversation's history", message_id, extra=where
        )


async def deleted_elsewhere(store: Store, msg: Inbound) -> bool:
    """On a shared store, whether a deletion of `msg` was recorded (by any replica).
    With a store of the process's own, the platform's own targets know: False."""
    if not store.shared:
        return False
    return await store.event_claimed(
        deletion_id(msg.platform, msg.workspace, msg.channel, msg.message_id)
    )


async def taken_back(store: Store, msg: Inbound, target: ReplyTarget) -> bool:
    """Whether the question `msg` was deleted (or withdrawn) by now, here or, on a shared
    store, as told to another replica: asked once its answer is read, so that a
    question deleted while it was answered is not kept. A store that cannot say is
    taken to say no (logged): the answer is kept as it would have been."""
    if target.withdrawn():
        return True
    try:
        return await deleted_elsewhere(store, msg)
    except BridgeError as exc:
        log.warning(
            "could not look for a deletion of the question: %s; its turn is kept "
            "in the conversation's history",
            exc,
            extra={"platform": msg.platform},
        )
        return False
