"""edgeloop gateway: robot-facing bidirectional stream, device auth, deployment routing, model hosts, durable forwarding to features."""
