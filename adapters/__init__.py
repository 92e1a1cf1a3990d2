"""Everything that speaks a foreign protocol: chat-API dialects and chat platforms."""
