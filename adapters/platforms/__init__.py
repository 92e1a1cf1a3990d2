"""Chat platforms, one package or module each; registered in adapters.registry."""
