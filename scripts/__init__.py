"""Developer tooling: the local stack supervisor and model training."""
