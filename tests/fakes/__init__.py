"""Loopback fakes of third-party services we cannot reach from tests (never of our own code)."""
