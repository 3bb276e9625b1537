"""feature-service: an event-driven streaming feature store."""

__version__ = "0.1.0"
