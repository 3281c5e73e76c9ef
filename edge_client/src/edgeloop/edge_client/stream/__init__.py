"""The robot's connection to the gateway: stream client, offline buffer, statistics."""
