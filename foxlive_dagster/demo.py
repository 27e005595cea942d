"""`foxlive demo` as Dagster materialisations in a local DAGSTER_HOME.

Trains and activates models (training_job, its fit steps in parallel processes
forked from a preloaded server), replays a month of simulated sessions on the
``demo`` book as one run over that range of session partitions
(trading_cycle_job: market_bars -> features -> predictions -> trading_cycle ->
portfolio_snapshot -> risk_report; one engine replay, one materialisation of
each asset per session), then prints the results and how to open the UI, where
the lineage of every step and the range's orders and top trades are visible.
"""

import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

from foxlive_core.config import DEFAULT_CONFIG_PATH, FoxliveConfig
from foxlive_core.models.training import training_workers
from foxlive_core.runtime import demo_window, make_market
from foxlive_dagster.partitions import session_key

DAGSTER_YAML_TEMPLATE = DEFAULT_CONFIG_PATH.parent / "dagster" / "dagster.yaml"
DEMO_BOOK = "demo"
# Dagster's console logger at DEBUG drowns the demo's own output; the full event log stays in the instance.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def demo_training_job() -> dg.JobDefinition:
    """``training_job`` on the multiprocess executor, rebuilt from ``FOXLIVE_CONFIG``/``FOXLIVE_HOME`` in each
    process that reconstructs it (the run's steps)."""
    from foxlive_dagster.definitions import build_definitions

    return build_definitions(scale_out="multiprocess").resolve_job_def("training_job")


def training_execution(workers: int) -> dict:
    """Run config of the demo's training: ``workers`` fit steps at once, each forked from a server that has
    imported foxlive and the model libraries once (a step then starts in about a second, not ten)."""
    preload = ["foxlive_dagster.definitions", "lightgbm", "xgboost", "tl2cgen"]
    return {"execution": {"config": {"max_concurrent": workers,
                                     "start_method": {"forkserver": {"preload_modules": preload}}}}}


def prepare_dagster_home(cfg: FoxliveConfig) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<foxlive home>/dagster_home``, holding the SQLite instance template."""
    home = Path(os.environ.get("DAGSTER_HOME") or cfg.home / "dagster_home").absolute()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(DAGSTER_YAML_TEMPLATE, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_demo(cfg: FoxliveConfig, args) -> int:
    from foxlive_core.cli import oracle_beside, print_capture, print_report
    from foxlive_core.models.store import ModelStore
    from foxlive_core.state import StateStore
    from foxlive_dagster.definitions import build_definitions

    if args.symbols:
        raise SystemExit("foxlive demo: --symbols is only for the plain demo (python -m foxlive_core.cli demo); "
                         "the Dagster demo trades the configured universe")
    dagster_home = prepare_dagster_home(cfg)
    os.environ["FOXLIVE_HOME"] = str(cfg.home)
    os.environ["FOXLIVE_CONFIG"] = cfg.source_path
    market = make_market(cfg)
    start, end = demo_window(cfg, market, args.sessions)
    defs = build_definitions(cfg.source_path, str(cfg.home))
    instance = dg.DagsterInstance.get()
    print(f"foxlive demo: {len(cfg.symbols)} symbols, {cfg.market.bar_interval} bars on {cfg.market.calendar}")
    print(f"  foxlive home {cfg.home}\n  DAGSTER_HOME {dagster_home}")

    print(f"1/3 training_job: trained_models -> active_models ({cfg.models.training.sessions} sessions before {start}) ...",
          flush=True)
    with dg.execute_job(
        dg.reconstructable(demo_training_job), instance=instance,
        run_config={**QUIET, **training_execution(training_workers(cfg)),
                    "ops": {"trained_models": {"config": {"end": (start - pd.Timedelta(seconds=1)).isoformat()}}}},
        tags={"foxlive/demo": "training"},
    ) as training:
        if not training.success:
            raise SystemExit(f"foxlive demo: the training run {training.run_id} failed; its steps' errors are in "
                             f"the run's event log (DAGSTER_HOME={dagster_home})")
    run_id = ModelStore(cfg.models_root).active_run_id()  # what active_models activated
    print(f"   active model run {run_id}")

    first_key, last_key = session_key(cfg, start), session_key(cfg, end)
    print(f"2/3 trading_cycle_job: replay of {args.sessions} sessions on book {DEMO_BOOK!r}, partitions "
          f"{first_key} .. {last_key}, one run (one engine replay) ...", flush=True)
    store = StateStore(cfg.state_path)
    with oracle_beside(cfg, market, cfg.symbols, run_id, start, end, DEMO_BOOK):
        defs.resolve_job_def("trading_cycle_job").execute_in_process(
            instance=instance,
            run_config={**QUIET, "ops": {"trading_cycle": {"config": {"book": DEMO_BOOK, "fresh": True}}}},
            tags={
                "dagster/asset_partition_range_start": first_key,
                "dagster/asset_partition_range_end": last_key,
                "foxlive/book": DEMO_BOOK,
                "foxlive/demo": "replay",
            },
        )
    print("3/3 results")
    report = print_report(cfg, store, DEMO_BOOK)
    print_capture(cfg, store, market, report)
    print(
        "\nOpen the UI on this instance and look at the lineage of these runs:\n"
        f"  DAGSTER_HOME={dagster_home} FOXLIVE_HOME={cfg.home} dg dev\n"
        "then Assets -> trading_cycle (metadata: the range's orders and fills, sessions, top trades explained).\n"
        f"Explain one decision here: foxlive explain {cfg.symbols[0]} --book {DEMO_BOOK}"
    )
    return 0
