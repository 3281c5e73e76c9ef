"""edgeloop trainer: dataset snapshots, the Keras model family, Ray Tune sweeps,
MLflow tracking, registration and the Grafana webhook."""
