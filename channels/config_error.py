"""The one error of a bad gateway setting (its own module so that the channels' configuration
modules, which :mod:`channels.config` loads, can raise it without importing that module)."""
from __future__ import annotations


class ConfigError(ValueError):
    """An environment variable (or a file it names) has a value the gateway cannot run with;
    ``python -m channels`` prints it on one line and exits 2."""
