"""Where a Discord reply goes: a channel (or thread, or DM), or a slash-command interaction.

Every send and every edit passes `allowed_mentions` none explicitly:
discord.py applies the client-wide default only when `content` is given, and
an answer must never ping anyone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord.http import handle_message_parameters
from discord.webhook.async_ import async_context

from adapters.platforms.discord import format as fmt
from adapters.platforms.discord import indicator
from adapters.platforms.discord.failures import (
    FAILURES,
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    THREAD_LOCKED,
    UNKNOWN_CHANNEL,
    platform_error,
)
from adapters.platforms.discord.indicator import Typist
from adapters.platforms.discord.permissions import ANYTHING, Allowed, Said, may_send
from adapters.platforms.discord.questions import Question, Questions
from bridge.errors import PlaceGone, PlatformError
from bridge.flag import Flag
from bridge.interfaces import Address, Limits, ReplyTarget, Source

if TYPE_CHECKING:
    from adapters.platforms.discord.options import DiscordOptions

log = logging.getLogger("chat_bridge.discord")

NO_MENTIONS = discord.AllowedMentions.none()
MAX_CHARS = 2000
DM_WORKSPACE = "@dm"
# An interaction's token (its answer's webhook) lasts 15 minutes: after, every request
# with it is refused (`failures.INVALID_WEBHOOK_TOKEN`).
TOKEN_LIFE = 15 * 60.0
# An /ask still waiting its turn this long before its token runs out is given up:
# its answer would have too little time to show anything, and the asker can still
# be told.
ANSWER_MARGIN = 60.0
# An answer still streaming this long before the token runs out is cut, while its
# last message can still say so: later than a waiting one is given up, so that one
# whose turn came just before has its minute to show.
CUT_MARGIN = 20.0
CUT_AFTER = TOKEN_LIFE - CUT_MARGIN  # seconds after the command; tests shorten it
# Under what an answer cut so showed (as a failure's note: italics, a warning sign).
CUT_TEXT = (
    "The answer was cut off here: Discord gives a command's answer 15 minutes. "
    "For long answers, mention the bot or send it a direct message."
)
# What the asker of an /ask dropped before its answer began is told, where no reason is known.
NOT_ANSWERED_TEXT = "_This was not answered. Please ask again._"


def _limits(
    key: str, options: DiscordOptions, *, bot_wide: bool = True, notices_post: bool = False
) -> Limits:
    """A target's budgets; `bot_wide`: its requests count against the bot's global limit
    (interaction responses and their webhooks do not)."""
    return Limits(
        max_chars=MAX_CHARS,
        edit_bucket=f"discord:edit:{key}",
        edit_rate=options.edit_rate.rate(),
        post_bucket=f"discord:post:{key}",
        post_rate=options.post_rate.rate(),
        begin_posts=False,
        notices_post=notices_post,
        global_bucket="discord:global" if bot_wide else None,
        global_rate=options.global_rate.rate() if bot_wide else None,
    )


class _Formatting:
    def format_markdown(self, markdown: str) -> str:
        return fmt.format_markdown(markdown)

    def format_sources(self, sources: Sequence[Source]) -> str:
        return fmt.format_sources(sources)


class ChannelTarget(_Formatting, ReplyTarget):
    """A reply in a channel, thread or DM: typing first, then messages edited in place.

    `question_id` is the message being answered: the first reply message
    references it, and `open_thread` opens the thread on it.
    """

    def __init__(
        self,
        client: discord.Client,
        options: DiscordOptions,
        address: Address,
        *,
        question_id: int | None = None,
        question: Question | None = None,
        allowed: Allowed = ANYTHING,
        questions: Questions | None = None,
        said: Said | None = None,
        typist: Typist | None = None,
    ) -> None:
        self.address = address
        self._client = client
        # Told when Discord says this place is gone (the other questions there stop).
        self._questions = questions
        self._options = options
        self._channel_id = int(address.thread or address.channel)
        guild_id = None if address.workspace == DM_WORKSPACE else int(address.workspace)
        self._guild_id = guild_id
        self._channel = client.get_partial_messageable(self._channel_id, guild_id=guild_id)
        self._question_id = question_id
        # The first message replies to the question, and each later one (the rest of a
        # long answer, a notice that did not fit) to the one before it, so that in a
        # busy channel the parts of an answer stay tied to their question: where the
        # bot may read the channel's history (Discord refuses a reply otherwise, to
        # the bot's own messages too).
        self._reply_to = question_id if allowed.reply else None
        # A notice here is a message in the channel, like an answer's.
        self.limits = _limits(str(self._channel_id), options, notices_post=True)
        self._typing: asyncio.Task[None] | None = None
        self._typing_stop = Flag()  # a slotted asyncio.Event: one per answer
        # (monotonic) The last typing asked for here, taken or not: one that failed is
        # tried again only a renewal later, as one that showed.
        self._typed_at: float | None = None
        self._typist = typist  # the bot's renewals (None: typing is shown once)
        # Shared with the thread opened on the question.
        self.question = question if question is not None else Question()
        self._posted: list[int] = []  # this answer's messages, deleted with its question
        # False in a channel for threads only: nothing is posted in it (a refusal,
        # which would be refused with 403, goes unsaid).
        self._may_post = allowed.post
        # False where no thread can open (a voice channel's chat, or threads denied):
        # none is asked for, and the answer goes in the channel.
        self._may_thread = allowed.thread
        self._lacks_thread = allowed.lacks_thread
        self._said = said  # the platform's: what was logged of which places

    def _failed(self, action: str, exc: Exception, *, posting: bool = False) -> PlatformError:
        """`platform_error`; a channel Discord no longer knows is gone for every question
        still waiting in it (the gateway's deletion event may never have come), and a
        post (or typing, which needs the same permission: `posting`) refused for a
        missing permission (or in a locked thread) refuses every other one there."""
        if isinstance(exc, discord.NotFound) and exc.code == UNKNOWN_CHANNEL:
            if self._questions is not None:
                self._questions.place_gone(self._channel_id)
        elif isinstance(exc, discord.Forbidden) and exc.code == MISSING_ACCESS:
            if self._questions is not None:
                self._questions.out_of_reach(self._channel_id)
        elif posting and (
            (isinstance(exc, discord.Forbidden) and exc.code == MISSING_PERMISSIONS)
            or (isinstance(exc, discord.HTTPException) and exc.code == THREAD_LOCKED)
        ):
            if self._questions is not None:
                self._questions.refused(self._channel_id)
        return platform_error(action, exc)

    def withdrawn(self) -> bool:
        if self.question.deleted:
            return True
        # A moderator may have taken the bot's Send Messages away here while the
        # question waited (CHANNEL_UPDATE): as on its arrival, the chat API is not
        # asked for an answer Discord would refuse. (A thread opened on it is the
        # target by now: its own permission counts.)
        guild = self._client.get_guild(self._guild_id) if self._guild_id is not None else None
        channel = guild.get_channel_or_thread(self._channel_id) if guild is not None else None
        return not may_send(channel, guild).post

    # -------------------------------------------------------------- typing

    def accepted(self) -> None:
        # A question waiting its turn shows typing, as Slack's shows its reaction: by
        # renewals (the reply's budgets are not yet its own), from a moment on, so
        # one answered at once shows only its reply's own first typing (`begin`).
        if not self._typing_stop.is_set():
            self._keep_typing(first_after=indicator.QUEUED_AFTER)

    async def begin(self, text: str | None = None) -> str | None:
        self.question.check()
        if not self._typing_stop.is_set():
            if not self._showing():
                await self._type_once()  # within the reply's budgets (the renderer's)
            self._keep_typing()
        return None

    def _showing(self) -> bool:
        """Whether typing shows here now, and for a renewal's time more (or was refused
        so recently that it is not asked for again yet)."""
        last = self._typed_at
        return last is not None and time.monotonic() < last + indicator.TYPING_RENEW

    def _keep_typing(self, first_after: float = 0.0) -> None:
        if self._typing is not None or self._typist is None:
            return
        self._typing = asyncio.create_task(
            self._typist.keep_up(
                self._type_once,
                lambda: self._typed_at,
                self._typing_stop,
                lambda: self.question.deleted,
                first_after=first_after,
            ),
            name="discord-typing",
        )

    async def _type_once(self) -> None:
        # Counted from the request, so the renewals and `begin` never send two at once;
        # and kept where it fails: Discord counts every request it refuses toward its
        # limit on invalid ones (past it, Cloudflare bans the bot's address a while).
        self._typed_at = time.monotonic()
        try:
            await self._channel.typing()
        except FAILURES as exc:  # typing is a courtesy; the reply matters more
            # Typing needs the Send Messages (in Threads) a post does: a place that
            # refuses it refuses the answers waiting there too.
            error = self._failed("show typing", exc, posting=True)
            if not (isinstance(exc, discord.Forbidden) or isinstance(error, PlaceGone)):
                log.debug("typing failed in %s: %s", self._channel_id, error)
                return
            # Trying again would not mend it: no more typing here for this answer.
            self._typing_stop.set()
            if not self.question.deleted:  # (else what stopped it was logged)
                log.info(
                    "not showing typing in %s any more: %s",
                    self._channel_id,
                    error,
                    extra={"platform": "discord", "channel": str(self._channel_id)},
                )

    async def _stop_typing(self) -> None:
        self._typing_stop.set()
        task, self._typing = self._typing, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def end(self) -> None:
        await self._stop_typing()
        if self.question.taken_back:
            # Deleted while answered (often a secret pasted by mistake): the answer
            # was drawn from it, and cut short would read as a whole one.
            await self._delete_posted()

    async def _delete_posted(self) -> None:
        posted, self._posted = self._posted, []
        for message_id in posted:
            try:
                await self._channel.get_partial_message(message_id).delete()
            except FAILURES as exc:  # the bot may delete its own; a place gone took it
                log.info(
                    "could not delete the answer to a deleted question in %s: %s",
                    self._channel_id,
                    platform_error("delete the reply", exc),
                    extra={"platform": "discord", "channel": str(self._channel_id)},
                )

    # -------------------------------------------------------------- messages

    async def post(self, text: str) -> str:
        await self._stop_typing()
        self.question.check()
        if not self._may_post:
            raise PlaceGone("Discord does not let the bot post in this channel, only in threads.")
        reference = None
        if self._reply_to is not None:
            reference = discord.MessageReference(
                message_id=self._reply_to,
                channel_id=self._channel_id,
                guild_id=self._guild_id,
                fail_if_not_exists=False,  # (one deleted meanwhile: a plain message)
            )
        try:
            message = await self._channel.send(
                content=text,
                allowed_mentions=NO_MENTIONS,
                reference=reference,  # type: ignore[arg-type]
                mention_author=False,
                # No preview cards under the answer (their title, text and picture are
                # the linked page's owner's), as Slack's are not unfurled either.
                suppress_embeds=True,
            )
        except FAILURES as exc:
            raise self._failed("post the reply", exc, posting=True) from exc
        if reference is not None:
            self._reply_to = message.id
        self.question.posted = True
        self._posted.append(message.id)
        return str(message.id)

    async def edit(self, message_id: str, text: str) -> None:
        self.question.check()
        partial = self._channel.get_partial_message(int(message_id))
        try:
            await partial.edit(content=text, allowed_mentions=NO_MENTIONS)
        except FAILURES as exc:
            raise self._failed("edit the reply", exc) from exc

    async def notice(self, text: str) -> None:
        if not self._may_post:
            log.info("not telling the asker in %s: the bot may not post there", self._channel_id)
            return
        # Channel messages cannot be ephemeral; answer the question in place.
        await self.post(text)

    async def open_thread(self, name: str) -> tuple[str, ReplyTarget] | None:
        if self._question_id is None or self.address.thread or self._guild_id is None:
            return None
        if not self._may_thread:
            if self._lacks_thread and (
                self._said is None or self._said.first("no thread", self._channel_id)
            ):
                # Else the admin sees `reply_in_thread: true` ignored, and no reason.
                log.info(
                    "answering in channel %s itself, not in a thread of its own "
                    "(reply_in_thread): the bot lacks %s there",
                    self._channel_id,
                    self._lacks_thread,
                    extra={"platform": "discord", "channel": str(self._channel_id)},
                )
            return None
        partial = self._channel.get_partial_message(self._question_id)
        # The channel's own "hide after inactivity", where the cache knows it
        # (discord.py would otherwise ask for 24 hours whatever the channel says).
        cached = self._client.get_channel(self._channel_id)
        known = getattr(cached, "default_auto_archive_duration", None)
        archive = {"auto_archive_duration": known} if known else {}
        try:
            thread = await partial.create_thread(name=fmt.thread_name(name), **archive)
        except FAILURES as exc:
            log.warning(
                "could not open a thread in %s, answering in the channel: %s",
                self._channel_id,
                platform_error("open a thread", exc),
            )
            return None
        await self._stop_typing()
        self.question.places |= {thread.id}
        self.question.replies_in = thread.id
        address = Address(
            platform="discord",
            workspace=self.address.workspace,
            channel=self.address.channel,
            thread=str(thread.id),
        )
        target = ChannelTarget(
            self._client,
            self._options,
            address,
            question=self.question,
            questions=self._questions,
            typist=self._typist,
        )
        return str(thread.id), target


class InteractionTarget(_Formatting, ReplyTarget):
    """The answer to a slash command: the deferred response, then follow-ups.

    The platform defers the interaction as soon as it arrives (Discord wants
    an acknowledgement within 3 s; the answer may take longer), which shows
    "thinking…". The first message fills the deferred response; later ones
    are follow-ups. `ephemeral` answers show only to the asker.
    """

    # Its messages are the interaction's: the channel's endpoints cannot edit them
    # (an ephemeral one is not even in the channel), and its token lasts 15 minutes.
    marks_own_interruption = True

    def __init__(
        self,
        interaction: discord.Interaction,
        options: DiscordOptions,
        address: Address,
        *,
        ephemeral: bool,
        give_up_at: float | None = None,
    ) -> None:
        self.address = address
        self._interaction = interaction
        self._ephemeral = ephemeral
        self._original: str | None = None
        self._dropped = False  # the public "thinking…" was deleted for a private notice
        self.touched = asyncio.Event()
        # When the question is given up if its answer has not begun (wall clock; None:
        # never), the timer that does it, and whether it was.
        self.give_up_at = give_up_at
        self.timer: asyncio.TimerHandle | None = None
        self.begun = False
        self._given_up = False
        # Deleted with the channel or thread it was asked in (the platform registers
        # its places once it knows them).
        self.question = Question()
        self._acknowledging: asyncio.Future[None] | None = None
        # Interaction responses are not bound by the bot's global rate limit, so an
        # acknowledgement never waits behind channel replies (it is due within 3 s).
        self.limits = _limits(f"interaction:{interaction.id}", options, bot_wide=False)

    def acknowledge_soon(self) -> asyncio.Future[None]:
        """Defer the response ("thinking…"), once: the request starts now, and every
        caller waits for that one (done when Discord took it)."""
        if self._acknowledging is None:
            self._acknowledging = asyncio.ensure_future(self._defer())
            # Retrieved whoever waits, so asyncio never logs it as forgotten.
            self._acknowledging.add_done_callback(lambda done: done.cancelled() or done.exception())
        return self._acknowledging

    async def acknowledge(self) -> None:
        await asyncio.shield(self.acknowledge_soon())

    async def _defer(self) -> None:
        if self._interaction.response.is_done():
            return
        try:
            await self._interaction.response.defer(ephemeral=self._ephemeral, thinking=True)
        except FAILURES as exc:
            raise platform_error("acknowledge the command", exc) from exc

    def accepted(self) -> None:
        self.touched.set()  # its answer is queued: not "unanswered"

    def _begin_answer(self) -> None:
        """The answer (or a notice in its place) begins: it is not given up any more."""
        self.begun = True
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def cut_at(self) -> tuple[float, str] | None:
        # Discord's clock: the command's id says when it was run. (Past the token's
        # life every request is refused: the text would stop mid-answer, unexplained,
        # and the chat API's stream run on until a failed edit was seen.)
        return self._interaction.created_at.timestamp() + CUT_AFTER, CUT_TEXT

    def withdrawn(self) -> bool:
        # A query only (asked as its turn comes, and by whoever wants to know): the
        # give-up timer stops when the answer begins.
        if self._given_up or self.question.deleted:
            return True
        # Past its time, the timer that tells the asker is due (if not run yet).
        return not self.begun and self.give_up_at is not None and time.time() >= self.give_up_at

    async def give_up(self, text: str) -> bool:
        """Drop the question if its answer has not begun (its token is about to run
        out): the asker alone is told `text` (or, where the bot lost its place
        meanwhile, that), and a public "thinking…" goes. Returns whether it was
        dropped; once it is, nothing else is said here. (Asked where it is gone,
        nobody would read it.)"""
        if self.begun or self._given_up:
            return False
        if self.question.deleted:
            if not self.question.place_shows:
                return False
            text = self._stopped_text()
        self._given_up = True
        self.timer = None
        await self._notice(text)
        return True

    def _stopped_text(self) -> str:
        return f"_This was not answered: {self.question.why}_"

    async def begin(self, text: str | None = None) -> str | None:
        if self._given_up:  # its give-up (or its end) ran just as its turn came
            raise PlaceGone("the asker was told it was not answered.")
        self.question.check()
        self.touched.set()
        self._begin_answer()
        await self.acknowledge()
        return None

    async def post(self, text: str) -> str:
        self.question.check()
        self.touched.set()
        self._begin_answer()
        await self.acknowledge()
        try:
            if self._original is None and not self._dropped:
                self._original = await edit_original(self._interaction, text)
                return self._original
            followup = await self._interaction.followup.send(
                content=text,
                allowed_mentions=NO_MENTIONS,
                ephemeral=self._ephemeral,
                wait=True,
                suppress_embeds=True,
            )
        except FAILURES as exc:
            raise platform_error("post the answer", exc) from exc
        return str(followup.id)

    async def edit(self, message_id: str, text: str) -> None:
        self.question.check()
        try:
            if message_id == self._original:
                await edit_original(self._interaction, text)
            else:
                await self._interaction.followup.edit_message(
                    int(message_id), content=text, allowed_mentions=NO_MENTIONS
                )
        except FAILURES as exc:
            raise platform_error("edit the answer", exc) from exc

    async def notice(self, text: str) -> None:
        if self._given_up:  # the asker was told it was dropped (an interruption, say)
            return
        self._begin_answer()
        await self._notice(text)

    async def end(self) -> None:
        """A question dropped before its answer began (the bot lost its place, say)
        must not show "thinking…" until the token runs out: the asker alone is told
        why, through the command's webhook (which needs no access to the channel).
        Nothing is said where its answer began, or something was said already. A
        failure is logged: the reply is over either way."""
        if self.begun or self._given_up:
            return
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return  # a stop cut it: the stop says so itself (`marks_own_interruption`)
        if self.question.deleted:
            if not self.question.place_shows:
                return  # its place went, "thinking…" with it: nobody would read it
            text = self._stopped_text()
        elif self.withdrawn():
            return  # past its time: the give-up timer, due, tells the asker
        else:  # (another replica took its turn over, say)
            text = NOT_ANSWERED_TEXT
        self._given_up = True
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        try:
            await self._notice(text)
        except PlatformError as exc:
            log.warning(
                "could not tell the asker of a command that it was not answered: %s",
                exc,
                extra={"platform": "discord", "channel": self.address.channel},
            )

    async def _notice(self, text: str) -> None:
        self.touched.set()
        await self.acknowledge()
        if self._original is None and not self._dropped:
            if self._ephemeral:  # the deferred response is the asker's alone
                try:
                    self._original = await edit_original(self._interaction, text)
                except FAILURES as exc:
                    raise platform_error("answer the command", exc) from exc
                return
            # A public "thinking…" would show the notice to the whole channel: the
            # asker alone gets it, and the thinking goes.
            try:
                await self._interaction.delete_original_response()
            except FAILURES as exc:
                raise platform_error("answer the command", exc) from exc
            self._dropped = True
        try:
            await self._interaction.followup.send(
                content=text, allowed_mentions=NO_MENTIONS, ephemeral=True
            )
        except FAILURES as exc:
            raise platform_error("answer the command", exc) from exc


_NO_PREVIEWS = discord.MessageFlags(suppress_embeds=True)


async def edit_original(interaction: discord.Interaction, text: str) -> str:
    """Edit a command's original response to `text`, with no pings and no preview
    cards under it; returns its message id. (discord.py's `edit_original_response`
    cannot set a message's flags: this is its request with SUPPRESS_EMBEDS, which
    Discord lets a webhook's edit set, as channel answers get it when posted.)"""
    hook = interaction.followup  # the command's webhook: its application and token
    with handle_message_parameters(
        content=text, allowed_mentions=NO_MENTIONS, flags=_NO_PREVIEWS
    ) as params:
        data = await async_context.get().edit_original_interaction_response(
            hook.id,
            hook.token or "",
            session=hook.session,
            proxy=hook.proxy,
            proxy_auth=hook.proxy_auth,
            payload=params.payload,
        )
    return str(data["id"])
