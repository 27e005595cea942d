"""The one exception hierarchy of foxlive.

Every error raised on purpose by foxlive derives from :class:`FoxliveError`, so
a caller (the CLI, a Dagster asset) can catch foxlive's own failures without
swallowing programming errors. Messages name the offending value, the limit or
expectation it broke, and the fix.
"""

from __future__ import annotations


class FoxliveError(Exception):
    """Root of every error foxlive raises deliberately."""


class ConfigError(FoxliveError):
    """A configuration file or value is missing, malformed or out of range."""


class DataError(FoxliveError):
    """Market data is missing, malformed or inconsistent."""


class ModelError(FoxliveError):
    """A model artifact is missing, corrupt, mismatched or unsupported."""


class BrokerError(FoxliveError):
    """The broker rejected an order or could not be reached.

    ``reason`` is a short machine-readable code (``no_quote``, ``bad_side``,
    ``zero_quantity``, ``insufficient_cash``, ...) so callers can branch on it.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StateError(FoxliveError):
    """The persisted state is missing, corrupt, locked or inconsistent."""
