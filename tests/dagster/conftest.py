"""Fixtures of the Dagster tests: a temporary foxlive home with the small run activated, and its definitions."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from foxlive_core.config import FoxliveConfig, load_config
from foxlive_core.cycle_table import CycleTableWriter
from foxlive_core.models.store import ModelStore
from foxlive_core.state import CycleRecord, StateStore
from foxlive_core.config import _deep_merge
from tests.conftest import ACTIVE, SMALL_TRAINING, SMALL_UNIVERSE, write_config

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

CYCLE_ASSETS = ["market_bars", "features", "predictions", "trading_cycle", "portfolio_snapshot", "risk_report"]
# Partition keys are session dates; a live cycle trades one bar close (UTC) of its partition's session.
S1 = "2025-05-01"  # the first session after the training end
B1 = "2025-05-01T13:35:00+00:00"  # its first bar close, 09:35 ET
B2 = "2025-05-01T13:40:00+00:00"


def bar_config(bar: str) -> dict:
    """Run config of a live cycle at ``bar``."""
    return {"ops": {"market_bars": {"config": {"bar_close": bar}}}}


@dataclass
class Env:
    cfg: FoxliveConfig
    config_path: Path
    home: Path
    run_id: str
    defs: dg.Definitions

    @property
    def resources(self) -> dict:
        return self.defs.resources

    def store(self) -> StateStore:
        return StateStore(self.cfg.state_path)

    def assets(self, keys=CYCLE_ASSETS) -> list:
        """The unbound asset definitions of ``keys`` (resolve_assets_def would bind the resources twice)."""
        wanted = set(keys)
        return [a for a in self.defs.assets if isinstance(a, dg.AssetsDefinition) and a.key.to_user_string() in wanted]

    def materialize_cycle(self, instance, partition_key: str | None = None, **kwargs):
        return dg.materialize(self.assets(), partition_key=partition_key, resources=self.resources, instance=instance,
                              **kwargs)

    def live_cycle(self, instance, bar: str, run_config: dict | None = None, **kwargs):
        """The live cycle at bar close ``bar``: a run of its session's partition, as the schedule launches it."""
        from foxlive_dagster.partitions import session_key

        return self.materialize_cycle(instance, session_key(self.cfg, bar),
                                      run_config=_deep_merge(bar_config(bar), run_config or {}), **kwargs)

    def job(self, name: str):
        return self.defs.resolve_job_def(name)


def make_env(directory: Path, small_run, overrides: dict | None = None) -> Env:
    """A config under ``directory`` (small training, the small universe), a home with the small run active."""
    from foxlive_dagster.definitions import build_definitions

    cfg0, _market, result = small_run
    symbols = list(cfg0.symbols[:SMALL_UNIVERSE])
    config_path = write_config(directory / "cfg", _deep_merge(SMALL_TRAINING, overrides or {}), symbols=symbols)
    home = directory / "home"
    cfg = load_config(config_path, home=home)
    shutil.copytree(result.run_dir, cfg.models_root / result.run_id)
    ModelStore(cfg.models_root).activate(result.run_id, by="pytest", reason="the small run", cfg=cfg)
    defs = build_definitions(config_path=str(config_path), home=str(home))
    return Env(cfg, config_path, home, result.run_id, defs)


@pytest.fixture
def env(small_run, tmp_path):
    """A fresh home and definitions per test."""
    return make_env(tmp_path, small_run)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def metadata_values(materialization) -> dict:
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture(scope="module")
def module_env(small_run, tmp_path_factory):
    """One home and its definitions shared by a test module (its tests build on each other's state)."""
    return make_env(tmp_path_factory.mktemp("dagster_home"), small_run, ACTIVE)


@pytest.fixture(scope="module")
def module_instance():
    with dg.instance_for_test() as inst:
        yield inst


def step_failure(result, step: str) -> str:
    """The error of ``step``'s failure in ``result`` with its causes, as text."""
    for ev in result.all_events:
        if ev.event_type_value == "STEP_FAILURE" and ev.step_key == step:
            return ev.step_failure_data.error.to_string()
    raise AssertionError(f"step {step} did not fail")


def write_cycle(store, book: str, t, daily_return: float = 0.0, drawdown: float = 0.0,
                high_water_mark: float | None = None) -> None:
    """Commit a cycle row of ``book`` at ``t`` with the given risk figures (the book's ledger unchanged)."""
    state = store.load(book)
    if high_water_mark is not None:
        state.high_water_mark = high_water_mark
    state.last_cycle_time = pd.Timestamp(t)
    state.cycle_count += 1
    value = state.cash
    store.commit_cycles(state, [CycleRecord(
        cycle_time=pd.Timestamp(t), portfolio_value=value, cash=state.cash, gross_exposure=0.0, net_exposure=0.0,
        drawdown=drawdown, daily_return=daily_return, n_trade=0, n_hold=0, n_blocked=0, n_orders=0, n_fills=0,
        fees=0.0, traded_notional=0.0, halted=False, summary={}, orders=[],
    )], columns=_no_decisions(t))


def _no_decisions(t) -> bytes:
    """The columnar decisions of a cycle over an empty universe."""
    table = CycleTableWriter((), (), ())
    none = np.array([], dtype=object)
    table.add(pd.Timestamp(t), "", SimpleNamespace(decision=none, reason=none, shares=np.array([], dtype=np.int64)), {})
    return table.to_parquet("test")
