"""Helpers shared by the test suites (ports, action-server calls, the domain)."""
