"""The local topology behind `edgeloop up/status/down`: parts, processes, state and health."""
