"""edgeloop's robot program: camera, range sensor, parking controller, stream client, simulator."""
