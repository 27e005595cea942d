"""`foxlive demo`, the README's first command, end to end through Dagster on a small configuration."""

from __future__ import annotations

import dagster as dg

from foxlive_core.config import CONFIG_ENV_VAR, HOME_ENV_VAR, load_config
from foxlive_core.reports import load_report
from foxlive_core.state import StateStore
from foxlive_dagster.cli import main
from tests.conftest import SMALL_TRAINING, write_config


def test_the_dagster_demo_trains_replays_and_reports_in_its_own_instance(tmp_path, monkeypatch, capsys):
    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    path = write_config(tmp_path / "cfg", SMALL_TRAINING, symbols=[f"SYM{i:02d}" for i in range(12)])
    # The demo points these at its home and config; set here, they are restored after the test.
    for name, value in ((HOME_ENV_VAR, home), (CONFIG_ENV_VAR, path), ("DAGSTER_HOME", dagster_home)):
        monkeypatch.setenv(name, str(value))
    assert main(["--config", str(path), "demo", "--sessions", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1/3 training_job" in out and "2/3 trading_cycle_job: replay of 2 sessions on book 'demo'" in out
    assert (dagster_home / "dagster.yaml").is_file()  # the instance template, copied for `dg dev` afterwards

    cfg = load_config(path)
    store = StateStore(cfg.state_path)
    demo, oracle = load_report(cfg, store, "demo"), load_report(cfg, store, "demo_oracle")
    assert len(store.cycles("demo")) == len(store.cycles("demo_oracle")) == 2 * 78
    share = f"{demo.pnl / oracle.pnl:.0%}" if oracle.pnl > 0 else "n/a (the oracle earned nothing)"
    assert f"the models' book captured {share} of it" in out

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert {r.tags["foxlive/demo"] for r in runs} == {"training", "replay"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        replay = next(r for r in runs if r.tags["foxlive/demo"] == "replay")
        assert (replay.tags["dagster/asset_partition_range_start"], replay.tags["dagster/asset_partition_range_end"]) \
            == tuple(str(t.tz_convert("America/New_York").date()) for t in store.cycles("demo")["cycle_time"].iloc[[0, -1]])
