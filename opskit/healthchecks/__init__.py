"""Healthchecks.io: pings, the management API, sync and audit, a job run's frame."""
