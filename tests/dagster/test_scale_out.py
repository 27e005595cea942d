"""Scale-out: training fans out a step per model, and a replay sweep a step per variant, on the
multiprocess executor and on dagster-dask against a dask.distributed LocalCluster; each gives exactly
what the same work gives in one process (``train_models``; ``replay_variant`` one variant after another)."""

from __future__ import annotations

import json
import os

import dagster as dg
import pandas as pd
import pytest
import yaml

from foxlive_core.config import CONFIG_ENV_VAR, HOME_ENV_VAR, _deep_merge, load_config
from foxlive_core.models.store import ModelStore
from foxlive_core.models.training import STAGING, staging_dir, train_models, training_tasks
from foxlive_core.runtime import make_market, resolve_bar
from foxlive_core.state import StateStore
from foxlive_core.sweep import load_sweep, replay_variant
from foxlive_dagster.io_managers import load_arrays
from foxlive_dagster.executors import scale_out_executor
from foxlive_core.errors import ConfigError
from foxlive_dagster.definitions import build_definitions
from tests.conftest import ACTIVE, REPO_CONFIG, SMALL_TRAIN_END, write_config
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
SYMBOLS = 24
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


SWEEP = [{"name": "active", "overrides": ACTIVE},
         {"name": "rolling", "overrides": _deep_merge(ACTIVE, {"standardization": {"mode": "rolling"}})},
         {"name": "stricter", "overrides": _deep_merge(ACTIVE, {"arbitration": {"threshold_base_bps": 1.0}})}]
SWEEP_SESSION = "2025-05-01"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale_out")
    symbols = load_config(write_config(base / "cfg", FAN_OUT)).symbols[:SYMBOLS]
    path = write_config(base / "cfg", FAN_OUT, symbols=list(symbols))
    (path.parent / "sweep.yaml").write_text(yaml.safe_dump({"variants": SWEEP}))
    cfg = load_config(path, home=base / "home")
    # Two models fitted at once, on threads: the reference every other way of training must equal.
    reference = train_models(cfg, make_market(cfg), pd.Timestamp(SMALL_TRAIN_END), progress=False, workers=2)
    return cfg, reference


def _location_env(mp: pytest.MonkeyPatch, cfg) -> None:
    """The code location's environment: its config and home."""
    mp.setenv(CONFIG_ENV_VAR, cfg.source_path)
    mp.setenv(HOME_ENV_VAR, str(cfg.home))


@pytest.fixture(scope="module")
def dask_cluster(home):
    """A LocalCluster of two single-threaded worker processes on loopback, started in the code location's
    environment (a worker keeps the one it started with); yields (address, worker pids)."""
    from dask.distributed import Client, LocalCluster

    with pytest.MonkeyPatch.context() as mp:
        _location_env(mp, home[0])
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield cluster.scheduler_address, set(client.run(os.getpid).values())


@pytest.fixture
def location_env(home, monkeypatch):
    _location_env(monkeypatch, home[0])


# Dask runs capture no compute logs. In the full suite the workers came to ignore SIGTERM, and the `tail`
# process Dagster's local compute-log manager starts per step then outlived every step by two 30 s
# timeouts (975 s for the two dask tests, 16 s alone). What is tested here is the fan-out, not the logs.
NO_COMPUTE_LOGS = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager",
                                    "class": "NoOpComputeLogManager"}}


def _instance(executor: str):
    return dg.instance_for_test(overrides=NO_COMPUTE_LOGS if executor == "dask" else None)


def _train_through_dagster(cfg, executor: str, run_config: dict) -> str:
    config = {"ops": {"trained_models": {"config": {"end": SMALL_TRAIN_END}}}, **run_config}
    with _instance(executor) as instance:
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


def test_training_one_model_at_a_time_gives_the_run_of_two_at_once(home):
    cfg, reference = home
    serial = train_models(cfg, make_market(cfg), pd.Timestamp(SMALL_TRAIN_END), progress=False, activate=False,
                          workers=1)
    _assert_same_run(cfg, reference, serial.run_id)


def test_training_fans_out_on_the_multiprocess_executor(home, location_env):
    cfg, reference = home
    run_id, pids = _train_through_dagster(cfg, "multiprocess", {"execution": {"config": {"max_concurrent": 2}}})
    assert os.getpid() not in pids
    _assert_same_run(cfg, reference, run_id)


def test_training_fans_out_on_a_dask_cluster(home, dask_cluster, location_env):
    cfg, reference = home
    address, workers = dask_cluster
    run_id, pids = _train_through_dagster(cfg, "dask", {"execution": {"config": {"cluster": {"existing": {"address": address}}}}})
    assert len(workers) == 2 and pids <= workers  # every step ran on one of the cluster's workers
    _assert_same_run(cfg, reference, run_id)


def test_a_failed_fit_is_re_executed_from_failure_into_the_same_run(home, location_env, monkeypatch):
    """A fit step that fails (a worker lost, say) leaves the prepared data and the other models in place, so
    Dagster's re-execution from failure fits only what failed and assembles the run train_models gives."""
    from foxlive_dagster.assets import models as model_assets

    cfg, reference = home
    lost = training_tasks(cfg)[3]
    fit = model_assets.fit_training_task

    def fit_or_lose(cfg_, run_id, task):
        if task.key == lost.key:
            raise OSError(f"worker lost while fitting {task.key}")
        return fit(cfg_, run_id, task)

    job = dg.reconstructable(scale_out_jobs.training_job_in_process)
    config = {"ops": {"trained_models": {"config": {"end": SMALL_TRAIN_END}}}}
    with dg.instance_for_test() as instance:
        monkeypatch.setattr(model_assets, "fit_training_task", fit_or_lose)
        with dg.execute_job(job, instance=instance, run_config=config, raise_on_error=False) as failed:
            assert not failed.success
            failures = {ev.step_key for ev in failed.all_events if ev.event_type_value == "STEP_FAILURE"}
            assert failures == {f"trained_models.fit_{lost.key}"}
            run_id = failed.output_for_node("trained_models.prepare_training_data")
        data = staging_dir(cfg, run_id) / STAGING
        assert len(list(data.glob("*.entry.json"))) == len(training_tasks(cfg)) - 1
        monkeypatch.setattr(model_assets, "fit_training_task", fit)
        with dg.execute_job(job, instance=instance, reexecution_options=dg.ReexecutionOptions.from_failure(
                failed.run_id, instance)) as again:
            assert again.success
            ran = {ev.step_key for ev in again.all_events if ev.event_type_value == "STEP_SUCCESS"}
            assert ran == {f"trained_models.fit_{lost.key}", "trained_models.assemble_training_run", "active_models"}
    _assert_same_run(cfg, reference, run_id)


def test_replay_sweep_runs_its_variants_in_parallel_on_a_dask_cluster(home, dask_cluster, location_env):
    cfg, _ = home
    address, workers = dask_cluster
    run_id = ModelStore(cfg.models_root).active_run_id()
    start = resolve_bar(make_market(cfg), pd.Timestamp(SWEEP_SESSION), end_of_day=False)
    end = resolve_bar(make_market(cfg), pd.Timestamp(SWEEP_SESSION), end_of_day=True)
    # One process, one variant after another: the reference.
    reference = {v.name: replay_variant(cfg, v, start, end, run_id) for v in load_sweep(cfg)}
    assert all(r["orders"] > 0 for r in reference.values()), {n: r["orders"] for n, r in reference.items()}
    assert len({r["pnl"] for r in reference.values()}) == 3  # the variants trade differently

    with _instance("dask") as instance:
        result = dg.execute_job(
            dg.reconstructable(scale_out_jobs.replay_sweep_job_dask), instance=instance,
            run_config={"ops": {"replay_sweep": {"config": {"start": SWEEP_SESSION, "end": SWEEP_SESSION}}},
                        "execution": {"config": {"cluster": {"existing": {"address": address}}}}})
        assert result.success
        spans = {ev.step_key: ev.pid for ev in result.all_events
                 if ev.event_type_value == "STEP_START" and ev.step_key.startswith("replay_sweep.replay_")}
        mat = result.get_asset_materialization_events()[0].materialization
    assert sorted(spans) == [f"replay_sweep.replay_{v['name']}" for v in SWEEP]
    assert set(spans.values()) <= workers  # each variant replayed on a worker of the cluster
    stored = load_arrays(cfg.home / "dagster_values" / "replay_sweep" / "value.npz")
    assert stored["run_id"] == run_id and stored["variants"] == reference
    assert mat.metadata["variants"].value == 3
    rows = {r.data["variant"]: r.data for r in mat.metadata["comparison"].records}
    assert {n: rows[n]["orders"] for n in rows} == {n: r["orders"] for n, r in reference.items()}

    # A halted variant book refuses the sweep at its first step: no variant replays, the halt stays.
    store = StateStore(cfg.state_path)
    halted = load_sweep(cfg)[-1].book
    committed = {v.book: list(store.cycles(v.book)["committed_at"]) for v in load_sweep(cfg)}
    store.halt(halted, "variant under review", "pytest")
    with _instance("dask") as instance:
        refused = dg.execute_job(
            dg.reconstructable(scale_out_jobs.replay_sweep_job_dask), instance=instance, raise_on_error=False,
            run_config={"ops": {"replay_sweep": {"config": {"start": SWEEP_SESSION, "end": SWEEP_SESSION}}},
                        "execution": {"config": {"cluster": {"existing": {"address": address}}}}})
        assert not refused.success
        failures = {ev.step_key: ev.step_failure_data.error for ev in refused.all_events
                    if ev.event_type_value == "STEP_FAILURE"}
        succeeded = [ev.step_key for ev in refused.all_events if ev.event_type_value == "STEP_SUCCESS"]
    assert f"replay book '{halted}' is reducing (variant under review)" in failures["replay_sweep.pin_sweep"].cause.message
    # dagster-dask still starts the downstream steps, which fail loading the missing pin: none replays.
    assert succeeded == []
    assert {v.book: list(store.cycles(v.book)["committed_at"]) for v in load_sweep(cfg)} == committed
    assert store.resume(halted, "pytest", "review done")  # the module's other tests share this home


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


@pytest.mark.parametrize("executor, path, env", [
    ("dask", "dask.yaml", {"FOXLIVE_DASK_SCHEDULER": "tcp://127.0.0.1:8786"}),
    ("dagster_k8s:k8s_job_executor", "k8s.yaml", {"FOXLIVE_IMAGE": "registry/foxlive:0.1.0",
                                                  "FOXLIVE_K8S_NAMESPACE": "foxlive"}),
    ("dagster_celery:celery_executor", "celery.yaml", {"FOXLIVE_CELERY_BROKER": "pyamqp://guest@rabbitmq:5672//"}),
])
def test_the_deployment_run_configs_fit_their_executors(home, location_env, monkeypatch, executor, path, env):
    """The shipped run configs of docs/scale-out.md are valid for both fan-out jobs on the pinned executors."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run_config = yaml.safe_load((REPO_CONFIG / "dagster" / "scale-out" / path).read_text())
    defs = build_definitions(scale_out=executor)
    ops = {"training_job": {}, "replay_sweep_job": {"ops": {"replay_sweep": {"config": {"start": SWEEP_SESSION,
                                                                                     "end": SWEEP_SESSION}}}}}
    for job, job_config in ops.items():
        (executor_config,) = dg.validate_run_config(defs.resolve_job_def(job),
                                                    {**run_config, **job_config})["execution"].values()
        assert executor_config == {**executor_config, **_resolved(run_config, env)}
    celery_worker = yaml.safe_load((REPO_CONFIG / "dagster" / "scale-out" / "celery-worker.yaml").read_text())
    assert set(celery_worker) <= set(yaml.safe_load((REPO_CONFIG / "dagster" / "scale-out" / "celery.yaml").read_text())
                                     ["execution"]["config"])


def _resolved(run_config: dict, env: dict) -> dict:
    """The executor config of ``run_config`` with its {env: NAME} sources replaced by ``env``'s values."""
    def resolve(x):
        if isinstance(x, dict):
            return env[x["env"]] if set(x) == {"env"} else {k: resolve(v) for k, v in x.items()}
        if isinstance(x, list):
            return [resolve(v) for v in x]
        return x
    return resolve(run_config["execution"]["config"])
