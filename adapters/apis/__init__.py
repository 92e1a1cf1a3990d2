"""Chat-API dialects, one module each; registered in adapters.registry."""
