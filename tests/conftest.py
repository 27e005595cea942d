"""Shared fixtures: a configuration written to a temporary directory, with its own home."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import pytest
import yaml

from foxlive_core.config import DEFAULT_CONFIG_PATH, HOME_ENV_VAR, _deep_merge, load_config

REPO_CONFIG = DEFAULT_CONFIG_PATH.parent


def pytest_configure(config):
    """Give the suite's process the default SIGINT and SIGQUIT however it was started.

    Run in the background of a non-interactive shell (``cmd &``), a process starts with both ignored, and
    so does every process it starts. Dagster's processes then map SIGTERM to the ignored SIGINT, so
    `dagster dev` outlived the daemon test's SIGTERM by its 30 s wait, in each run.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _no_frozen_objects_after_a_test():
    """The CLI's run and replay commands freeze the process's objects (runtime.freeze_long_lived_objects);
    in the suite's process that would keep every later test's reference cycles out of the collector."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


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


SMALL_TRAINING = {
    "models": {"training": {"sessions": 20}, "lightgbm": {"num_boost_round": 40}, "xgboost": {"num_boost_round": 40}},
}
SMALL_TRAIN_END = "2025-04-30T20:00Z"  # models trained up to here; the tests trade the sessions after it
SMALL_UNIVERSE = 24
# Lower entry hurdles, so that the few cycles of a test trade (the defaults trade rarely, by design: their
# costs are honest and the small test models are weak).
ACTIVE = {"arbitration": {"threshold_base_bps": 0.0, "threshold_spread_mult": 0.0}, "costs": {"k2_volatility": 0.0},
          "broker": {"slippage_bps": 0.0, "fee_bps": 0.0}}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """(cfg, market, TrainingResult): a quick training run on 24 simulated symbols, shared by the whole session.

    The run lives in a session-wide models root; tests that need their own state
    use :func:`engine_home` to get a fresh home pointing at a copy of it.
    """
    import pandas as pd

    from foxlive_core.models.training import train_models
    from foxlive_core.runtime import make_market

    base = tmp_path_factory.mktemp("small_run")
    cfg = load_config(write_config(base / "cfg", SMALL_TRAINING), home=base / "home")
    symbols = cfg.symbols[:SMALL_UNIVERSE]
    market = make_market(cfg, symbols)
    result = train_models(cfg, market, pd.Timestamp(SMALL_TRAIN_END), symbols=symbols, progress=False)
    return cfg, market, result


@pytest.fixture
def engine_home(small_run, tmp_path):
    """make(overrides=None) -> TradingEngine on a fresh home whose models are the small run's."""
    import shutil

    from foxlive_core.engine import TradingEngine
    from foxlive_core.models.store import ModelStore
    from foxlive_core.state import StateStore

    cfg0, market, result = small_run

    def _make(overrides: dict | None = None, market_override=None):
        home = tmp_path / "home"
        cfg = load_config(write_config(tmp_path / "cfg", {**SMALL_TRAINING, **(overrides or {})}), home=home)
        if not (cfg.models_root / result.run_id).exists():
            shutil.copytree(result.run_dir, cfg.models_root / result.run_id)
        models = ModelStore(cfg.models_root).load(result.run_id, cfg)
        symbols = cfg0.symbols[:SMALL_UNIVERSE]
        return TradingEngine(cfg, market_override or market, models, StateStore(cfg.state_path), symbols=symbols)

    return _make
