"""edgeloop registry: devices and their tokens, deployments, MLflow model registry,
publishing to the model repository and model hosts."""
