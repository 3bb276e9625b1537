"""Observability: JSON logs with request ids, the pipeline's numbers, Prometheus metrics."""
