"""Generated gRPC contracts of edgeloop. Do not edit: run proto/generate.py."""
