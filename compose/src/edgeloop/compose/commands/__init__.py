"""Command modules of the `edgeloop` CLI; each defines ``command`` (a click command or group)."""
