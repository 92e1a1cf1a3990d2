"""The `chat-bridge` command: run, check, ask, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Sequence

from bridge.app import Bridge, build_backends
from bridge.config import Config, RouteConfig, load_config
from bridge.errors import (
    BadRequest,
    BridgeError,
    ChatAPIError,
    ConfigError,
    Forbidden,
    Overloaded,
    ProxyRefused,
    ProxyUnreachable,
    TimedOut,
    Unauthorized,
    Unavailable,
)
from bridge.interfaces import ChatAPI, ChatRequest, Done, Registry, Source, Sources, Status, Token
from bridge.logs import setup_logging, write_apart
from bridge.proxies import check_proxy_env
from bridge.resources import LoopExceptions, settle_heap
from bridge.routing import shadowed
from bridge.sources import dedupe_sources
from bridge.terminal import discard_output, printable
from bridge.text import TokenText, valid_text
from bridge.transport import check_tls_env, http_client

log = logging.getLogger("chat_bridge.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-bridge",
        description="Put hosted chatbots into Slack and Discord.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, help="the YAML config file")

    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--probe", action="store_true", help="also call each backend once")

    ask = sub.add_parser("ask", help="stream one answer from a backend in the terminal")
    ask.add_argument("-c", "--config", required=True)
    ask.add_argument("--backend", required=True, help="a name under `backends:`")
    ask.add_argument("question")

    demo = sub.add_parser("demo", help="a local stand-in chat API and a terminal conversation")
    demo.add_argument(
        "--question",
        action="append",
        default=None,
        help="ask this first (repeatable); default: one sample question",
    )
    demo.add_argument(
        "--no-input", action="store_true", help="do not read further questions from stdin"
    )
    return parser


def run_cli(argv: Sequence[str] | None, registry: Registry) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from bridge.demo import DEMO_QUESTION, run_demo

            logging.basicConfig(level=logging.WARNING)
            questions = args.question or [DEMO_QUESTION]
            read_stdin = not args.no_input and sys.stdin is not None and not sys.stdin.closed
            return asyncio.run(run_demo(registry, questions, read_stdin))
        config = load_config(args.config, registry=registry)
        check_proxy_env()
        check_tls_env()
        if args.command in ("check", "ask"):
            # Their requests log as the daemon's do: the backend named, secrets scrubbed.
            setup_logging(config.logging.level, config.logging.json_format, config.secrets())
        if args.command == "check":
            return asyncio.run(_check(config, registry, args.probe))
        if args.command == "ask":
            try:
                return asyncio.run(_ask(config, registry, args.backend, args.question))
            except BrokenPipeError:
                # Whoever read the answer went away (`| head`): stop without a traceback.
                discard_output(sys.stdout)
                return 1
        return _run(config, registry)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def config_warnings(config: Config) -> list[str]:
    """Options that load but that an admin should know about, with their key path."""
    found: list[str] = []
    for name, options in config.backends.items():
        found.extend(f"backends.{name}: {text}" for text in options.warnings())
    for i, route in enumerate(config.routes):
        if route.trigger != "all" or route.dm:
            continue
        for platform, platform_options in config.platforms.items():
            why = platform_options.unmentioned_unread() if route.serves(platform) else None
            if why:
                found.append(
                    f"routes[{i}]: trigger: all answers nothing in {platform} channels but "
                    f"messages that mention the bot: {why}; use trigger: mention"
                )
    found.extend(_route_warnings(config.routes))
    return found


def _route_warnings(routes: Sequence[RouteConfig]) -> list[str]:
    """Routes that load but do less than they say: a setting they ignore, or a route
    an earlier one leaves nothing to (first match wins)."""
    found: list[str] = []
    for i, route in enumerate(routes):
        if route.reply_in_thread and route.session != "thread":
            found.append(
                f"routes[{i}]: reply_in_thread: true opens no thread with session: "
                f"{route.session} (only with session: thread); drop it, or use session: thread"
            )
        elif route.reply_in_thread and route.dms_only:
            found.append(
                f"routes[{i}]: reply_in_thread: true opens no thread in DMs, and this route "
                "takes DMs only; drop it"
            )
    for later, earlier, workspaces in shadowed(routes):
        where = f" in workspace {', '.join(workspaces)}" if workspaces else ""
        found.append(
            f"routes[{later}] can never answer{where}: routes[{earlier}] takes every "
            f"message it would{' there' if where else ''}; move routes[{later}] above "
            f"routes[{earlier}]{_or_narrow(routes[earlier], routes[later], earlier)}"
        )
    return found


def _or_narrow(earlier: RouteConfig, later: RouteConfig, index: int) -> str:
    """The other way out of a shadowed route: take its ids out of the earlier route's
    first list that holds them (or the earlier route out, where they are all it lists)."""
    for key in ("channels", "users", "workspace", "roles"):
        listed: list[str] | None = getattr(earlier, key)
        theirs: list[str] | None = getattr(later, key)
        if listed is None or theirs is None:
            continue
        if set(listed) <= set(theirs):
            return f", or remove routes[{index}]"
        return f", or remove {', '.join(theirs)} from routes[{index}].{key}"
    return ""


async def _check(config: Config, registry: Registry, probe: bool) -> int:
    platforms = ", ".join(config.platforms) or "none"
    print(
        f"config ok: {len(config.backends)} backend(s), {len(config.routes)} route(s), "
        f"platforms: {platforms}"
    )
    for text in config_warnings(config):
        print(f"warning: {text}")
    if not config.platforms:
        print(
            "warning: no `slack:` or `discord:` block: `run` needs one to answer on "
            "(`ask` and `check --probe` do not)"
        )
    if not probe:
        return 0
    failed = False
    async with http_client() as client, asyncio.TaskGroup() as probes:
        # All at once: a slow backend holds back no other's probe, only the printing
        # of the verdicts after its own, which keep the config's order.
        verdicts = {
            name: probes.create_task(_probe(config, name, backend))
            for name, backend in build_backends(config, registry, client).items()
        }
        for name, verdict in verdicts.items():
            ok, text = await verdict
            failed = failed or not ok
            print(f"backend {name}: {text}", flush=True)
    return 1 if failed else 0


async def _probe(config: Config, name: str, backend: ChatAPI) -> tuple[bool, str]:
    """Whether `backend` works, and the verdict to print (bounded by its `probe_timeout`)."""
    try:
        await backend.probe()
    except ProxyRefused as exc:
        return False, f"proxy refused ({exc.user_message}){_to_check(config, name, exc)}"
    except (Unauthorized, Forbidden) as exc:
        return False, f"auth failed ({exc.user_message}){_to_check(config, name, exc)}"
    except (Unavailable, TimedOut) as exc:
        return False, f"unreachable ({exc.user_message}){_to_check(config, name, exc)}"
    except BridgeError as exc:
        return False, f"error ({exc.user_message}){_to_check(config, name, exc)}"
    return True, "ok"


async def _ask(config: Config, registry: Registry, name: str, question: str) -> int:
    if name not in config.backends:
        known = ", ".join(config.backends)
        raise ConfigError("--backend", f"no backend named {name!r} (known: {known})")
    out = sys.stdout
    async with http_client() as client:
        backend = build_backends(config, registry, client)[name]
        session = backend.new_session() if backend.stateful and backend.client_sessions else None
        sources: list[Source] = []
        shown = ""
        final: str | None = None
        tokens = TokenText()  # as the relay reads them: what a terminal can show
        try:
            async for event in backend.stream(ChatRequest(message=question, session=session)):
                if isinstance(event, Token):
                    # Without the control characters a terminal would act on (hide
                    # text, set the window's title, write the clipboard).
                    text = printable(tokens.clean(event.text))
                    shown += text
                    out.write(text)
                    out.flush()
                elif isinstance(event, Sources):
                    sources.extend(event.items)
                elif isinstance(event, Status):
                    print(f"[{printable(event.text)}]", file=sys.stderr)
                elif isinstance(event, Done):
                    final = printable(valid_text(event.text)) if event.text else event.text
            if tail := tokens.rest():
                shown += tail
                out.write(tail)
        except BridgeError as exc:
            out.write("\n")
            told = f"error: {exc.user_message}{_to_check(config, name, exc)}"
            print(printable(told), file=sys.stderr)  # it may quote the API
            return 1
        if final and final.strip() != shown.strip():
            out.write(("\n\n" if shown else "") + final)
        out.write("\n")
        picked = dedupe_sources(sources, config.reply.sources.max)
        if picked and config.reply.sources.show:
            out.write("\nSources:\n")
            for i, source in enumerate(picked, 1):
                line = f"  {i}. {source.title or source.url} — {source.url}"
                out.write(printable(valid_text(line)) + "\n")
        out.flush()
    return 0


def _to_check(config: Config, name: str, exc: BridgeError) -> str:
    """For the admin running `ask` or `check --probe`, a line on which key to look
    at, and where the URL leads (without its query, where a key may be)."""
    if isinstance(exc, ProxyRefused | ProxyUnreachable | Overloaded):  # not the backend's fault
        return f"\n  {exc}"
    where = f"\n  check backends.{name}"
    if isinstance(exc, (Unauthorized, Forbidden)):
        # What the API said is not logged where it was read (the relay logs it so).
        return f"{where}.api_key" + (f"\n  {exc.detail}" if exc.detail else "")
    url = str(getattr(config.backends[name], "url", "") or "")
    shown = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl() if url else ""
    status = exc.status if isinstance(exc, ChatAPIError) else None
    if isinstance(exc, TimedOut):
        # It may well be running: connected, it sent nothing but keep-alives.
        return (
            f"{where}.url ({shown}) and that the server answers in time (backends.{name}.timeouts)"
        )
    if isinstance(exc, Unavailable) and status is None:
        return f"{where}.url ({shown}) and that the server is running"
    if isinstance(exc, BadRequest) and status is not None and (status < 400 or status == 404):
        return f"{where}.url ({shown})"
    return ""


def _run(config: Config, registry: Registry) -> int:
    if not config.platforms:
        raise ConfigError("", "no platform to answer on: add a `slack:` or `discord:` block")
    setup_logging(config.logging.level, config.logging.json_format, config.secrets())
    # Lines are written from a thread of their own: a reader of the log that stalls
    # (a log driver down, a hung journald) holds back no answer, health check or stop.
    writer = write_apart()
    code = 1
    try:
        if config.store == "sqlite://":
            log.warning(
                "the store is in memory: conversations and processed events are "
                "forgotten at every restart (give `store:` a file)"
            )
        for text in config_warnings(config):
            log.warning("%s", text)
        code = asyncio.run(_serve(config, registry))
    finally:
        if not writer.stop():
            # The log's reader has stalled, and the stop is made: the interpreter's own
            # exit would wait for the reader forever (it flushes standard error).
            os._exit(code)
    return code


async def _until_stop(step: Awaitable[None], stop: asyncio.Event) -> bool:
    """Await a step of the start unless a stop signal comes first, which cancels it:
    whether it ended (a failed step raises here). Connecting to a slow platform can
    take a minute; marking the replies the last run left, longer."""
    task = asyncio.ensure_future(step)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, stopping, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True


async def _serve(config: Config, registry: Registry) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopExceptions())
    # SIGHUP: the terminal or SSH session that started the daemon closed; unless
    # it was started to outlive that (`nohup` sets SIGHUP to be ignored).
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals += (signal.SIGHUP,)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # The command holds them back while it starts (`chat-bridge run`): one sent
    # meanwhile is taken now, and ends the start.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    try:
        bridge = Bridge(config, registry)
        if not await _until_stop(bridge.open(), stop):  # (what it opened, it closed)
            log.info("stopped while starting")
            return 0
        try:
            if await _until_stop(bridge.recovered(), stop):
                settle_heap()
                port = f" on port {bridge.http_port}" if bridge.http_port else ""
                log.info(
                    "chat-bridge running%s", port, extra={"platforms": ",".join(config.platforms)}
                )
                await stop.wait()
            else:
                # The platforms answer from the start: what they took meanwhile gets
                # its grace, and its replies cut are marked, as after a start.
                log.warning(
                    "stopping before the replies the last run left were all marked "
                    "interrupted: the next start marks the rest"
                )
            log.info("stopping: finishing live replies (signal again to stop at once)")

            def hurry() -> None:
                log.warning("stopping at once: replies still running are marked interrupted")
                bridge.relay.hurry()

            for sig in signals:
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, hurry)
            clean = await bridge.drain()
        finally:
            await bridge.aclose()
    except BridgeError as exc:
        log.error("chat-bridge stopped: %s", exc.user_message)
        return 1
    log.info("stopped")
    return 0 if clean else 1
