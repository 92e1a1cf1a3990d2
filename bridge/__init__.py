"""chat-bridge core: platform-agnostic; talks to the outside through bridge.interfaces."""
