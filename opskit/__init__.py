"""opskit: nightly maintenance for Django deployments."""

__version__ = "0.1.0"
