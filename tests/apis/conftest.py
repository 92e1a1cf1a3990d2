"""The dialect tests' shared fixtures."""

from __future__ import annotations

from tests.apis.helpers import http  # noqa: F401  (a fixture, used by name)
