"""Discord's slash commands, `/ask` and `/reset`: their registration, what a run of one
asks (`command_inbound`), and the watchdogs that keep a deferred "thinking…" from
hanging (an /ask nothing answers, or one still waiting its turn when Discord is about
to stop taking its answer)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from adapters.platforms.discord.failures import FAILURES, platform_error
from adapters.platforms.discord.readable import Names, author_roles, question_text
from adapters.platforms.discord.targets import ANSWER_MARGIN, TOKEN_LIFE, InteractionTarget
from bridge.errors import PlatformError
from bridge.interfaces import Audience, Inbound

log = logging.getLogger("chat_bridge.discord")

# Should nothing answer a slash command (the core tells a command without a
# route so), the deferred "thinking…" must not hang until the token expires.
UNANSWERED_AFTER = 60.0  # seconds; tests shorten it per platform
UNANSWERED_TEXT = "_No answer came. Questions may not be set up for this channel._"
# An /ask still waiting its turn when Discord is about to stop taking its answer.
GIVE_UP_AFTER = TOKEN_LIFE - ANSWER_MARGIN  # seconds after the command; tests shorten it
TOO_LATE_TEXT = (
    "_The assistant was too busy to answer this within the 15 minutes Discord gives a "
    "command. Please ask again._"
)

OnCommand = Callable[[discord.Interaction, str, str], Awaitable[None]]


def add_commands(tree: app_commands.CommandTree[Any], on_command: OnCommand) -> None:
    """Register `/ask` and `/reset`; each run is `on_command(interaction, name, text)`."""

    @tree.command(name="ask", description="Ask the assistant a question")
    @app_commands.describe(question="Your question")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await on_command(interaction, "ask", question)

    @tree.command(name="reset", description="Start a new conversation with the assistant")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def reset(interaction: discord.Interaction) -> None:
        await on_command(interaction, "reset", "")


def command_inbound(
    interaction: discord.Interaction,
    command: str,
    text: str,
    workspace: str,
    place: tuple[str, str | None],
    audience: Audience,
) -> Inbound:
    """What a command run in `place` (its channel and thread) asks: `text` is `/ask`'s
    question, read as a message's text is."""
    channel_id, thread_id = place
    me = interaction.client.user
    if text and me is not None:  # a mention typed in the option is markup too
        names = Names.of_interaction(interaction, place, private=audience == "asker")
        text = question_text(text, names, me)
    return Inbound(
        platform="discord",
        workspace=workspace,
        channel=channel_id,
        thread=thread_id,
        user=str(interaction.user.id),
        text=text,
        message_id=str(interaction.id),
        event_id=str(interaction.id),
        is_dm=interaction.guild_id is None,
        mentioned=True,
        roles=author_roles(interaction.user),
        command=command,
        received_at=time.time(),
        sent_at=interaction.created_at.timestamp(),
        audience=audience,
    )


async def sync_commands(tree: app_commands.CommandTree[Any]) -> None:
    """Register `/ask` and `/reset` with Discord, beside the start: Discord may make the
    registration wait (a 429 discord.py waits out, an hour even), and the bot answers
    mentions and DMs meanwhile. A refusal is one WARNING; the commands are then
    unavailable (or as the last registration left them) until a start registers them."""
    try:
        await tree.sync()
    except FAILURES as exc:  # refused, or the connection lost (aiohttp's own errors)
        error = platform_error("register /ask and /reset", exc)
        log.warning("slash commands unavailable: %s", error)


async def give_up(target: InteractionTarget) -> None:
    """An /ask still waiting its turn is dropped while the asker can be told: its
    answer could no longer show (nor would the credit it costs buy anything)."""
    place = {"platform": "discord", "channel": target.address.channel}
    try:
        if not await target.give_up(TOO_LATE_TEXT):
            return  # its answer began meanwhile
    except PlatformError as exc:
        log.warning(
            "not answering /ask: it waited past Discord's 15 minutes for its "
            "turn, and its asker could not be told: %s",
            exc,
            extra=place,
        )
        return
    if target.question.deleted:  # its place was lost, and its turn never came
        log.info("not answering /ask: %s Its asker is told", target.question.why, extra=place)
        return
    log.info(
        "not answering /ask: it waited past Discord's 15 minutes for its turn; "
        "its asker is told to ask again",
        extra=place,
    )


async def close_unanswered(target: InteractionTarget, after: float) -> None:
    """Tell a command's asker that no answer came, if nothing touched its reply within
    `after` seconds."""
    try:
        await asyncio.wait_for(target.touched.wait(), after)
    except TimeoutError:
        try:
            await target.notice(UNANSWERED_TEXT)
        except PlatformError as exc:
            log.debug("could not close an unanswered command: %s", exc)
