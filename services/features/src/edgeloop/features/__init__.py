"""edgeloop features: observation ingest, OpenCV image statistics, hypertable writes,
image objects, dataset queries, drift monitor."""
