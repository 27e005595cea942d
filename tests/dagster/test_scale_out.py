"""Scale-out: training fans out a step per model on the multiprocess executor and on dagster-dask
against a dask.distributed LocalCluster, and gives exactly the run that ``train_models`` gives in one
process."""

from __future__ import annotations

import json
import os

import dagster as dg
import pandas as pd
import pytest

from foxlive_core.config import CONFIG_ENV_VAR, HOME_ENV_VAR, load_config
from foxlive_core.models.store import ModelStore
from foxlive_core.models.training import STAGING, staging_dir, train_models, training_tasks
from foxlive_core.runtime import make_market
from foxlive_dagster.executors import scale_out_executor
from foxlive_core.errors import ConfigError
from tests.conftest import SMALL_TRAIN_END, write_config
from tests.dagster import scale_out_jobs

pytestmark = pytest.mark.slow

# Two horizons, two families and the barrier classifiers: 8 models. A row cap below the training rows,
# so every model fits on its own seeded subsample.
FAN_OUT = {
    "horizons": [{"name": "5m", "minutes": 5, "temperature": 0.75, "freshness_tau_s": 150},
                 {"name": "30m", "minutes": 30, "temperature": 1.0, "freshness_tau_s": 900}],
    "models": {"families": ["lightgbm", "ridge"], "training": {"sessions": 8, "max_rows": 2000},
               "lightgbm": {"num_boost_round": 8}},
}
SYMBOLS = 8
# Differ between any two runs by construction: the run's name, when its files were written, and the
# seals over both.
RUN_FIELDS = {"run_id", "created_at", "content_sha256"}


def _without_run_fields(x):
    if isinstance(x, dict):
        return {k: _without_run_fields(v) for k, v in x.items() if k not in RUN_FIELDS}
    if isinstance(x, list):
        return [_without_run_fields(v) for v in x]
    return x


def _run_contents(run_dir) -> dict:
    """Every file of a model run: JSON without its run fields, other files byte for byte."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file():
            rel = str(path.relative_to(run_dir))
            out[rel] = (_without_run_fields(json.loads(path.read_text())) if path.suffix == ".json"
                        else path.read_bytes())
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale_out")
    symbols = load_config(write_config(base / "cfg", FAN_OUT)).symbols[:SYMBOLS]
    cfg = load_config(write_config(base / "cfg", FAN_OUT, symbols=list(symbols)), home=base / "home")
    reference = train_models(cfg, make_market(cfg), pd.Timestamp(SMALL_TRAIN_END), progress=False)
    return cfg, reference


def _train_through_dagster(cfg, monkeypatch, executor: str, run_config: dict) -> str:
    monkeypatch.setenv(CONFIG_ENV_VAR, cfg.source_path)
    monkeypatch.setenv(HOME_ENV_VAR, str(cfg.home))
    config = {"ops": {"trained_models": {"config": {"end": SMALL_TRAIN_END}}}, **run_config}
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(getattr(scale_out_jobs, f"training_job_{executor}")), instance=instance,
                                run_config=config)
        assert result.success
        steps = {ev.step_key for ev in result.all_events if ev.event_type_value == "STEP_SUCCESS"}
        pids = {ev.pid for ev in result.all_events if ev.event_type_value == "STEP_START"}
        mats = {ev.asset_key.to_user_string(): ev for ev in result.get_asset_materialization_events()}
    fits = {f"trained_models.fit_{t.key}" for t in training_tasks(cfg)}
    assert fits <= steps and len(fits) == 8
    assert {"trained_models.prepare_training_data", "trained_models.assemble_training_run", "active_models"} <= steps
    run_id = mats["trained_models"].materialization.metadata["run_id"].value
    assert ModelStore(cfg.models_root).active_run()["run_id"] == run_id
    return run_id, pids


def _assert_same_run(cfg, reference, run_id):
    assert run_id != reference.run_id
    ours, theirs = _run_contents(cfg.models_root / run_id), _run_contents(reference.run_dir)
    assert sorted(ours) == sorted(theirs)
    assert any(name.endswith(".so") for name in ours)  # the compiled forests are compared too
    for name in theirs:
        assert ours[name] == theirs[name], name
    assert not staging_dir(cfg, run_id).exists() and not (cfg.models_root / run_id / STAGING).exists()


def test_training_fans_out_on_the_multiprocess_executor(home, monkeypatch):
    cfg, reference = home
    run_id, pids = _train_through_dagster(cfg, monkeypatch, "multiprocess",
                                          {"execution": {"config": {"max_concurrent": 2}}})
    assert os.getpid() not in pids
    _assert_same_run(cfg, reference, run_id)


def test_training_fans_out_on_a_dask_cluster(home, monkeypatch):
    from dask.distributed import Client, LocalCluster

    cfg, reference = home
    # The workers inherit the environment they start with: the code location's config and home.
    monkeypatch.setenv(CONFIG_ENV_VAR, cfg.source_path)
    monkeypatch.setenv(HOME_ENV_VAR, str(cfg.home))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
        run_id, pids = _train_through_dagster(
            cfg, monkeypatch, "dask", {"execution": {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}}})
    assert len(workers) == 2 and pids <= workers  # every step ran on one of the cluster's workers
    _assert_same_run(cfg, reference, run_id)


def test_the_scale_out_executor_is_named_or_refused():
    assert scale_out_executor("") is dg.multiprocess_executor
    assert scale_out_executor("in_process") is dg.in_process_executor
    assert scale_out_executor("dagster:multiprocess_executor") is dg.multiprocess_executor
    with pytest.raises(ConfigError, match="no_such_package:executor.*pip install"):
        scale_out_executor("no_such_package:executor")
    with pytest.raises(ConfigError, match="not an executor"):
        scale_out_executor("threads")
    with pytest.raises(ConfigError, match="not a Dagster executor definition"):
        scale_out_executor("dagster:AssetKey")
