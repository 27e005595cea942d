"""Shared fixtures: a configuration written to a temporary directory, with its own home."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from foxlive_core.config import DEFAULT_CONFIG_PATH, HOME_ENV_VAR, _deep_merge, load_config

REPO_CONFIG = DEFAULT_CONFIG_PATH.parent


def write_config(directory: Path, overrides: dict | None = None, symbols: list[str] | None = None) -> Path:
    """Copy the shipped YAML into ``directory`` with ``overrides`` merged in; returns its path."""
    raw = yaml.safe_load((REPO_CONFIG / "live_trading.yaml").read_text())
    if overrides:
        raw = _deep_merge(raw, overrides)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "live_trading.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    syms = symbols if symbols is not None else yaml.safe_load((REPO_CONFIG / "symbols.yaml").read_text())["symbols"]
    (directory / raw["paths"]["symbols"]).write_text(yaml.safe_dump({"symbols": syms}))
    return path


@pytest.fixture
def make_config(tmp_path, monkeypatch):
    """make_config(overrides=None, symbols=None) -> FoxliveConfig whose home is a fresh temporary directory."""
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "home"))
    counter = iter(range(1000))

    def _make(overrides: dict | None = None, symbols: list[str] | None = None):
        path = write_config(tmp_path / f"config{next(counter)}", overrides, symbols)
        return load_config(path)

    return _make
