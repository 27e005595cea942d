"""The foxlive code location: ``defs`` for `dg dev` / `dagster dev` (see workspace.yaml).

It is named ``foxlive`` however it is started: workspace.yaml (``dagster dev``, ``dagster-webserver``),
``[tool.dagster]`` and ``[tool.dg.project]`` in pyproject.toml (``dg dev``) all say so. (Started as
``-m foxlive_dagster.definitions``, Dagster names a location after its module instead.)
"""

from __future__ import annotations

import functools
import warnings

import dagster as dg

from foxlive_core.config import load_config
from foxlive_dagster.assets.cycle import build_cycle_assets
from foxlive_dagster.assets.models import active_models, build_training_asset
from foxlive_dagster.assets.reports import build_report_assets
from foxlive_dagster.assets.sweep import build_sweep_assets
from foxlive_dagster.io_managers import CycleArraysIOManager
from foxlive_dagster.executors import scale_out_executor
from foxlive_dagster.jobs import build_sweep_job, build_training_job, end_of_day_job, trading_cycle_job
from foxlive_dagster.kill_switch import halt_book, kill_switch_spec, resume_book
from foxlive_dagster.partitions import session_partitions
from foxlive_dagster.resources import check_deployment, deployment_name, make_resources
from foxlive_dagster.schedules import build_schedules
from foxlive_dagster.sensors import build_failure_sensor, risk_sensor, stale_data_sensor

# Dagster's beta warnings about these definitions. It repeats them at every use (each cycle asset, each
# load; filters reset by libraries defeat the "once" action), so they are replaced by one of our own.
BETA_MESSAGES = [
    r"Parameter `backfill_policy` of function `asset`",      # BackfillPolicy, which single-run replays need
    r"Parameter `owners` of initializer `SensorDefinition",  # passed by Dagster itself, not by foxlive
]


@functools.cache
def warn_beta_once() -> None:
    """Say once per process that the cycle assets rely on a beta Dagster parameter."""
    warnings.warn(
        "foxlive's cycle assets use dagster.BackfillPolicy.single_run(), a beta parameter in dagster 1.13: a "
        "backfill over sessions is one run, one engine replay", dg.BetaWarning, stacklevel=3,
    )


def build_definitions(config_path: str = "", home: str = "", scale_out: str | None = None,
                      deployment: str | None = None) -> dg.Definitions:
    """Every definition of foxlive, for the configuration at ``config_path`` (default: the environment's).

    ``scale_out`` names the executor of the jobs that fan out (foxlive_dagster.executors; default:
    ``$FOXLIVE_SCALE_OUT_EXECUTOR``, else multiprocess); ``deployment`` the resource set
    (foxlive_dagster.resources; default: ``$FOXLIVE_DEPLOYMENT``, else local), whose rules the
    configuration must meet for the location to load.

    Only the YAML and the exchange calendar are read here (to lay out the
    partitions and schedules); models and market data load inside runs.
    """
    deployment = deployment_name(deployment)
    resources = make_resources(config_path, home, deployment)
    cfg = load_config(config_path or None, home=home or None)
    check_deployment(cfg, deployment)
    resources["cycle_io_manager"] = CycleArraysIOManager(config=resources["foxlive"])
    scale_out_def = scale_out_executor(scale_out)
    sweep = build_sweep_assets(cfg)
    warn_beta_once()
    with warnings.catch_warnings():
        for message in BETA_MESSAGES:
            warnings.filterwarnings("ignore", message=message, category=dg.BetaWarning)
        defs = dg.Definitions(
            assets=[build_training_asset(cfg), active_models, *build_cycle_assets(session_partitions(cfg)),
                    *build_report_assets(cfg), *sweep, kill_switch_spec],
            jobs=[trading_cycle_job, build_training_job(scale_out_def), end_of_day_job, halt_book, resume_book,
                  *([build_sweep_job(scale_out_def)] if sweep else [])],
            schedules=build_schedules(cfg),
            sensors=[risk_sensor, build_failure_sensor(), stale_data_sensor],
            resources=resources,
            # UI materialisations (__ASSET_JOB) run in process like the jobs: a live cycle in seconds.
            executor=dg.in_process_executor,
        )
        defs.get_repository_def()  # resolved inside the filter (Dagster caches it)
    return defs


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
