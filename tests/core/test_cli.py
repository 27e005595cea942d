"""The command line: clear errors with exit status 2, and the commands doing what they say."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from foxlive_core.cli import main
from foxlive_core.config import HOME_ENV_VAR
from foxlive_core.sqlite import open_sqlite
from tests.conftest import SMALL_TRAINING, write_config


@pytest.fixture
def cli_env(tmp_path, monkeypatch, small_run):
    """A config with the small run's models activated in a fresh home; returns a runner of `foxlive ...`."""
    cfg0, _, result = small_run
    path = write_config(tmp_path / "cfg", SMALL_TRAINING, symbols=list(cfg0.symbols[:24]))
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV_VAR, str(home))
    shutil.copytree(result.run_dir, home / "models" / result.run_id)
    from foxlive_core.config import load_config
    from foxlive_core.models.store import ModelStore

    cfg = load_config(path)
    ModelStore(cfg.models_root).activate(result.run_id, by="pytest", reason="cli tests", cfg=cfg)
    return lambda *args: main(["--config", str(path), *args])


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--cycles", "-3"])
    assert info.value.code == 2
    assert "-3 must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["replay", "--start", "2025-05-01T10:00", "--end", "2025-05-02"])
    assert info.value.code == 2
    assert "has no time zone" in capsys.readouterr().err


def test_missing_config_file_is_a_clear_error(capsys, tmp_path):
    assert main(["--config", str(tmp_path / "nope.yaml"), "status"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_without_models_says_to_train(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "empty"))
    path = write_config(tmp_path / "cfg")
    assert main(["--config", str(path), "run", "--cycles", "1", "--no-wait"]) == 2
    assert "run `foxlive train` first" in capsys.readouterr().err


def test_replay_status_explain_halt_resume(cli_env, capsys):
    assert cli_env("replay", "--start", "2025-05-01", "--end", "2025-05-01", "--book", "rp", "--quiet") == 0
    out = capsys.readouterr().out
    assert "book rp: 78 cycles" in out and "Sharpe" in out and "max drawdown" in out and "turnover" in out
    assert "annualised from 78 bar returns" in out and "impact 0.00" in out
    assert cli_env("status", "--book", "rp") == 0
    assert "cycles: 78" in capsys.readouterr().out
    assert cli_env("explain", "AAPL", "--book", "rp") == 0
    text = capsys.readouterr().out
    assert "AAPL @ 2025-05-01T20:00:00+00:00" in text and "alpha bps" in text and "barrier gate" in text
    assert "data: quote 0 s old, newest real bar 0 s old" in text  # the quote is the cycle's own bar's
    assert cli_env("explain", "AAPL", "--book", "rp", "--at", "2025-05-01T15:02:00Z") == 0
    assert "AAPL @ 2025-05-01T15:00:00+00:00" in capsys.readouterr().out  # the last cycle at or before --at
    assert cli_env("attribution", "--book", "rp") == 0
    text = capsys.readouterr().out
    assert "signal attribution over 78 cycles" in text and "arbitrated" in text and "calibration of alpha" in text
    assert cli_env("attribution", "--book", "rp", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cycles"] == 78 and {r["stage"] for r in report["stage_ic"]} >= {"raw", "blend", "target_weight"}
    assert cli_env("attribution", "--book", "nobook") == 2
    assert "has no signal attribution; replay it first" in capsys.readouterr().err
    assert cli_env("explain", "ZZZZ", "--book", "rp") == 2
    assert "'ZZZZ' was not in book 'rp'" in capsys.readouterr().err
    assert cli_env("halt", "--reason", "manual check", "--book", "rp", "--operator", "bob") == 0
    assert cli_env("status", "--book", "rp") == 0
    assert "halted: YES: manual check (by bob" in capsys.readouterr().out
    assert cli_env("resume", "--book", "rp", "--operator", "bob", "--reason", "checked") == 0
    assert "resumed by bob" in capsys.readouterr().out
    assert cli_env("replay", "--start", "2025-05-01", "--end", "2025-05-01", "--book", "live", "--quiet") == 2
    assert "is the live book" in capsys.readouterr().err


def test_run_cycles_on_a_new_book(cli_env, capsys):
    import gc

    assert cli_env("run", "--cycles", "2", "--book", "paper1", "--start", "2025-05-01T14:35:00Z", "--no-wait") == 0
    assert gc.get_freeze_count() > 0  # the set-up's objects left the collector's full passes
    out = capsys.readouterr().out
    assert "2025-05-01 14:35:00+00:00" in out and "2025-05-01 14:40:00+00:00" in out
    assert cli_env("run", "--cycles", "1", "--book", "paper1", "--no-wait") == 0
    assert "2025-05-01 14:45:00+00:00" in capsys.readouterr().out


def test_ctrl_c_stops_a_replay_at_a_commit_and_resume_finishes_it(cli_env, tmp_path, capsys):
    from foxlive_core.state import StateStore

    config = str(tmp_path / "cfg" / "live_trading.yaml")
    home = os.environ[HOME_ENV_VAR]
    span = ["--start", "2025-05-01", "--end", "2025-05-12"]  # 8 sessions of 78 cycles
    assert cli_env("replay", *span, "--book", "whole", "--quiet") == 0
    child = subprocess.Popen([sys.executable, "-m", "foxlive_core.cli", "--config", config, "replay", *span,
                              "--book", "cut", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, HOME_ENV_VAR: home},
                             # A process that ignores SIGINT (a shell's background job, as CI may start the suite) hands that on.
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    store = StateStore(os.path.join(home, "state.sqlite"))
    # Ctrl-C once the first session is committed, while the store's write lock is held here: the child
    # cannot commit (or finish) anything more before the signal, however fast it runs or slow this poll is.
    watcher = open_sqlite(os.path.join(home, "state.sqlite"))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        watcher.execute("BEGIN IMMEDIATE")
        if watcher.execute("SELECT COUNT(*) FROM cycles WHERE book='cut'").fetchone()[0] >= 78:
            child.send_signal(signal.SIGINT)
            time.sleep(0.5)  # the child takes the signal while it waits for the lock
            watcher.execute("ROLLBACK")
            break
        watcher.execute("ROLLBACK")
        time.sleep(0.02)
    watcher.close()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err.decode()[-2000:]
    assert "interrupted: book cut is stored after its cycle at" in out.decode() and "--resume" in out.decode()
    stored = store.load("cut").cycle_count
    assert 78 <= stored < 8 * 78 and stored % 78 == 0  # at a session boundary, never mid-session
    assert cli_env("replay", *span, "--book", "cut", "--resume", "--quiet") == 0
    assert "resumed book cut after" in capsys.readouterr().out
    cols = ["cycle_time", "portfolio_value", "cash", "n_orders", "fees", "traded_notional"]
    whole, cut = store.cycles("whole")[cols], store.cycles("cut")[cols]
    assert len(cut) == 8 * 78
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), cut.reset_index(drop=True), check_exact=True)


def test_report_writes_json_and_plots_with_the_stores_figures(cli_env, capsys, tmp_path):
    from foxlive_core.config import load_config
    from foxlive_core.state import StateStore

    # The small run's models first trade on the second session.
    assert cli_env("replay", "--start", "2025-05-01", "--end", "2025-05-02", "--book", "rp", "--quiet") == 0
    capsys.readouterr()
    assert cli_env("report", "--book", "rp", "--json", str(tmp_path / "rp.json"), "--plots", str(tmp_path / "plots")) == 0
    out = capsys.readouterr().out
    assert "book rp: 156 cycles of 5m bars" in out and "signal attribution over 156 cycles" in out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["rp_equity.png", "rp_ic.png"]
    data = json.loads((tmp_path / "rp.json").read_text())
    cfg = load_config(str(tmp_path / "cfg" / "live_trading.yaml"))
    store = StateStore(cfg.state_path)
    cycles, orders = store.cycles("rp"), store.orders("rp")
    assert data["periods"] == 156 and data["final_value"] == pytest.approx(cycles["portfolio_value"].iloc[-1])
    assert data["costs"]["fees"] == pytest.approx(cycles["fees"].sum())
    assert data["traded_notional"] == pytest.approx(cycles["traded_notional"].sum())
    assert data["fills"] == int(cycles["n_fills"].sum()) > 0
    # The paper broker fills at ask x (1 + s) or bid x (1 - s): slippage is s / (1 +- s) of each fill's notional.
    s = cfg.broker.slippage_bps * 1e-4
    filled = orders[orders["filled_quantity"] > 0]
    notional = filled["filled_quantity"] * filled["price"]
    expected = (notional * s / (1 + s))[filled["side"] == "buy"].sum() + (notional * s / (1 - s))[filled["side"] == "sell"].sum()
    assert data["costs"]["slippage"] == pytest.approx(expected, rel=1e-4)
    assert data["costs"]["spread"] > 0 and data["costs"]["impact"] == 0.0
    assert cli_env("report", "--book", "nobook") == 2
    assert "book 'nobook' does not exist" in capsys.readouterr().err


def test_the_demo_trains_replays_and_says_what_the_book_captured(tmp_path, monkeypatch, capsys):
    """The plain demo end to end on a small config. Its oracle replays beside the models' replay in a process
    of its own: that book equals the same oracle replayed in this process, and the printed share is the
    ratio of the two books' P&L."""
    from foxlive_core.config import load_config
    from foxlive_core.models.store import ModelStore
    from foxlive_core.reports import load_report
    from foxlive_core.signal_capture import replay_oracle
    from foxlive_core.state import StateStore

    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "home"))
    path = write_config(tmp_path / "cfg", SMALL_TRAINING)
    assert main(["--config", str(path), "demo", "--symbols", "12", "--sessions", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1/3 training on 20 sessions" in out and "on book 'demo'" in out and "3/3 results" in out

    cfg = load_config(path)
    store = StateStore(cfg.state_path)
    demo, oracle = load_report(cfg, store, "demo"), load_report(cfg, store, "demo_oracle")
    assert len(store.cycles("demo")) == len(store.cycles("demo_oracle")) == 2 * 78
    assert f"the oracle's book made {oracle.pnl:+,.2f} after costs" in out
    share = f"{demo.pnl / oracle.pnl:.0%}" if oracle.pnl > 0 else "n/a (the oracle earned nothing)"
    assert f"the models' book captured {share} of it" in out

    (run_id,) = ModelStore(cfg.models_root).runs()
    first, last = store.cycles("demo")["cycle_time"].iloc[[0, -1]]
    replay_oracle(cfg, cfg.symbols[:12], run_id, first, last, "oracle_here")
    columns = ["cycle_time", "cash", "portfolio_value", "n_orders", "n_fills", "fees"]
    assert store.cycles("oracle_here")[columns].equals(store.cycles("demo_oracle")[columns])
    assert store.cycles("demo_oracle")["n_fills"].sum() > 0


def test_freezing_the_set_up_collects_its_garbage_first_and_leaves_later_objects_to_the_collector():
    import gc
    import weakref

    from foxlive_core.runtime import freeze_long_lived_objects

    class Node:
        pass

    kept = [Node()]
    cycle = Node()
    cycle.self = cycle  # garbage only the collector can free
    gone = weakref.ref(cycle)
    del cycle
    try:
        freeze_long_lived_objects()
        assert gone() is None
        assert not any(o is kept for o in gc.get_objects())  # frozen: out of every generation's passes
        later = [Node()]
        assert any(o is later for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())
