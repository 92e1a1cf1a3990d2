"""The conversation store: one interface, an embedded SQLite and a PostgreSQL implementation."""

from __future__ import annotations

from bridge.store.base import Conversation, InFlight, InFlightProgress, Store, open_store

__all__ = ["Conversation", "InFlight", "InFlightProgress", "Store", "open_store"]
