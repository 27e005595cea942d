"""Broker credentials: read from the environment only, and never shown.

An adapter asks for the variables it needs with :func:`from_environment`; it
gets :class:`Secret` values whose ``repr``/``str`` show the variable's name and
``***``, so a credential cannot reach a log line, an error message, Dagster
metadata or a file by being printed. Configuration files never hold them.
"""

from __future__ import annotations

import os

from foxlive_core.errors import BrokerError


class Secret:
    """A credential from environment variable ``name``; :meth:`reveal` is the one way to its value."""

    __slots__ = ("name", "_value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def reveal(self) -> str:
        """The value, for the broker's API client only."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}=***)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError(f"Secret({self.name}) is not picklable: read it from the environment where it is needed")


def from_environment(*names: str) -> dict[str, Secret]:
    """The credentials held by the environment variables ``names``; every missing or empty one is an error."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise BrokerError(
            f"broker credential(s) {missing} are not set in the environment; export them before starting "
            "(credentials are read from the environment only, never from a file)",
            "missing_credentials",
        )
    return {n: Secret(n, os.environ[n]) for n in names}
