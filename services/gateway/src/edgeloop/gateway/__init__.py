"""edgeloop gateway: robot-facing stream, device auth, deployment routing, model hosts,
durable forwarding to features."""
