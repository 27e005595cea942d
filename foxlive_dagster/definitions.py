"""The foxlive code location: ``defs`` for `dg dev` / `dagster dev` (see workspace.yaml)."""

from __future__ import annotations

import dagster as dg

from foxlive_core.config import load_config
from foxlive_dagster.assets.cycle import build_cycle_assets
from foxlive_dagster.assets.models import active_models, trained_models
from foxlive_dagster.assets.reports import build_report_assets
from foxlive_dagster.io_managers import CycleArraysIOManager
from foxlive_dagster.jobs import end_of_day_job, trading_cycle_job, training_job
from foxlive_dagster.kill_switch import halt_book, kill_switch_spec, resume_book
from foxlive_dagster.partitions import session_partitions
from foxlive_dagster.resources import make_resources
from foxlive_dagster.schedules import build_schedules
from foxlive_dagster.sensors import build_failure_sensor, risk_sensor, stale_data_sensor


def build_definitions(config_path: str = "", home: str = "") -> dg.Definitions:
    """Every definition of foxlive, for the configuration at ``config_path`` (default: the environment's).

    Only the YAML and the exchange calendar are read here (to lay out the
    partitions and schedules); models and market data load inside runs.
    """
    cfg = load_config(config_path or None, home=home or None)
    resources = make_resources(config_path, home)
    resources["cycle_io_manager"] = CycleArraysIOManager(config=resources["foxlive"])
    return dg.Definitions(
        assets=[trained_models, active_models, *build_cycle_assets(session_partitions(cfg)),
                *build_report_assets(cfg), kill_switch_spec],
        jobs=[trading_cycle_job, training_job, end_of_day_job, halt_book, resume_book],
        schedules=build_schedules(cfg),
        sensors=[risk_sensor, build_failure_sensor(), stale_data_sensor],
        resources=resources,
        # UI materialisations (__ASSET_JOB) run in process like the jobs: a live cycle in seconds.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
