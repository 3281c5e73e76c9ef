"""edgeloop console: the operators' web console, reading the services through their gRPC APIs."""
