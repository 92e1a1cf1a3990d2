"""`python -m adapters` runs the chat-bridge command."""

from __future__ import annotations

import sys

from adapters.entry import main

sys.exit(main())
