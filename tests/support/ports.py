"""Free loopback ports for servers started by tests."""
from scripts.stack import free_port

__all__ = ["free_port"]
