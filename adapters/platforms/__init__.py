"""Chat platforms, one package or module each; registered in adapters.registry."""

from __future__ import annotations

import logging


def never_below_info(*names: str) -> None:
    """Keep these library loggers at INFO or above, at DEBUG too: their debug lines
    hold what people write (event payloads, request bodies). A level of their own,
    too: some libraries format a debug line before the handler could drop it."""
    level = max(logging.INFO, logging.getLogger().getEffectiveLevel())
    for name in names:
        logging.getLogger(name).setLevel(level)
