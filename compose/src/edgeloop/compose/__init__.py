"""The `edgeloop` command: the local topology and the operator CLI."""
