"""Code shared by the CoCoPilot services: settings, schemas, Redis keys and NATS subjects."""

__version__ = "0.1.0"
