"""The README's real data examples on a small slice: copy the packages' files, load, train, replay.

The data come from PyPI packages (backtesting.py, arch; the dev extras): a test skips, saying which
package to install, only when one is absent. Model settings are tiny so the whole file runs in well
under a minute; the figures in the README come from the full settings of ``examples/*.yaml``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from foxlive_core.cli import main
from foxlive_core.config import _deep_merge, load_config
from foxlive_core.data.historical import HistoricalMarket

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = pd.Timestamp
TINY_MODELS = {"lightgbm": {"num_boost_round": 10}, "xgboost": {"num_boost_round": 10}}


def _script():
    spec = importlib.util.spec_from_file_location("real_data", EXAMPLES / "real_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


real_data = _script()


@pytest.fixture
def copied(tmp_path):
    """copied(name) -> directory of data set ``name`` copied from its packages (skips if one is absent)."""
    def _copy(name: str) -> Path:
        try:
            return real_data.copy_data_set(name, tmp_path / "data")
        except real_data.MissingPackage as exc:
            pytest.skip(str(exc))
    return _copy


def example_config(tmp_path: Path, name: str, data: Path, overrides: dict) -> Path:
    """``examples/<name>.yaml`` with its data at ``data``, its home under ``tmp_path`` and ``overrides`` merged in."""
    raw = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    raw = _deep_merge(raw, {"paths": {"home": str(tmp_path / "home")}, "market": {"historical": {"path": str(data)}},
                            **overrides})
    directory = tmp_path / "config"
    directory.mkdir(exist_ok=True)
    (directory / raw["paths"]["symbols"]).write_text((EXAMPLES / raw["paths"]["symbols"]).read_text())
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return directory / f"{name}.yaml"


def run_cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def trained_rows(out: str, horizons: tuple[str, ...]) -> tuple[list[list[str]], list[list[str]]]:
    """The rows ``train`` printed: return models (horizon, family, ..., "n_train/n_validation") and barrier
    classifiers (horizon, kind, family, auc, base_rate, n_train, n_validation); the calibration prior's
    table after them has one row per horizon (horizon, slope_ols, slope_se, shrinkage, kappa0, pairs)."""
    models, calibration = out.split("calibration prior per horizon", 1)
    rows = [line.split() for line in models.splitlines() if line.split() and line.split()[0] in horizons]
    prior = [line.split()[0] for line in calibration.splitlines() if line.split() and line.split()[0] in horizons]
    assert sorted(prior) == sorted(horizons), prior
    return [r for r in rows if not r[1].startswith("barrier")], [r for r in rows if r[1].startswith("barrier")]


def test_copies_are_the_packages_files_byte_for_byte(copied):
    daily = copied("us_daily")
    assert sorted(p.name for p in daily.iterdir()) == ["GOOG.csv", "IXIC.csv", "SPX.csv"]
    assert (daily / "GOOG.csv").read_bytes() == real_data.shipped_file("backtesting", "backtesting/test/GOOG.csv").read_bytes()
    # arch's file as Yahoo wrote it: month/day/year dates, an Adj Close column the loader ignores
    assert (daily / "SPX.csv").read_text().splitlines()[:2] == [
        "Date,Open,High,Low,Close,Adj Close,Volume",
        "1/4/1999,1229.22998,1248.810059,1219.099976,1228.099976,1228.099976,877000000"]


def test_us_daily_loads_as_it_comes(copied):
    cfg = load_config(EXAMPLES / "us_daily.yaml", overrides={"market": {"historical": {"path": str(copied("us_daily"))}}})
    market = HistoricalMarket(cfg.market.historical.path, cfg.market, cfg.symbols)
    # 5,031 + 5,031 + 2,148 data rows (the files' lines less their headers), none repaired
    assert market.repair_summary() == "no repairs: 12,210 rows as given"
    # arch's first session, Monday 4 Jan 1999, closes 16:00 EST = 21:00Z (before exchange-calendars' 2006 default start)
    assert market.first_time == T("1999-01-04T21:00Z") and market.last_time == T("2018-12-31T21:00Z")
    panel = market.bars(None, market.first_time, market.last_time)
    assert np.isfinite(panel.close).sum(axis=0).tolist() == [2148, 5031, 5031]  # GOOG, IXIC, SPX
    assert panel.close[0, 2] == 1228.099976
    goog_first = np.flatnonzero(np.isfinite(panel.close[:, 0]))[0]
    # backtesting.py's first GOOG row, 2004-08-19 (a bare date), closes 16:00 EDT = 20:00Z
    assert panel.times[goog_first] == T("2004-08-19T20:00Z") and panel.close[goog_first, 0] == 100.34


def test_eurusd_hourly_loads_as_it_comes(copied):
    cfg = load_config(EXAMPLES / "eurusd_hourly.yaml",
                      overrides={"market": {"historical": {"path": str(copied("eurusd_hourly"))}}})
    market = HistoricalMarket(cfg.market.historical.path, cfg.market, cfg.symbols)
    # two flat one-tick rows opening Friday 17:00 New York (21:00Z), after the FX week's close, are dropped
    assert market.repairs.to_dict("records") == [
        {"symbol": "EURUSD", "rule": "off-calendar time", "rows": 2, "action": "dropped"}]
    # the first row opens 2017-04-19 09:00 (UTC, no offset): its bar closes 10:00Z
    assert market.first_time == T("2017-04-19T10:00Z") and market.last_time == T("2018-02-07T16:00Z")
    panel = market.bars(None, market.first_time, market.last_time)
    assert len(panel.times) == 4998 and np.isfinite(panel.close).all()  # 5,000 rows less the 2 dropped: no gap
    assert panel.close[0, 0] == 1.07219
    # the week of 23 April 2017 opens Sunday 17:00 EDT (21:00Z): its first bar closes 22:00Z
    assert T("2017-04-23T22:00Z") in panel.times and T("2017-04-23T21:00Z") not in panel.times
    # Christmas Day is shut: Friday 22 Dec's last bar closes 22:00Z, the next one Monday 25 Dec 23:00Z
    k = panel.times.get_loc(T("2017-12-22T22:00Z"))
    assert panel.times[k + 1] == T("2017-12-25T23:00Z")


def test_us_daily_trains_and_replays_a_week(tmp_path, copied, capsys):
    path = example_config(tmp_path, "us_daily", copied("us_daily"),
                          {"models": {"training": {"sessions": 400}, **TINY_MODELS}})
    out = run_cli(capsys, "--config", str(path), "train", "--end", "2011-12-30", "--quiet")
    assert "market data: no repairs: 12,210 rows as given" in out
    returns, barriers = trained_rows(out, ("1d", "5d", "20d"))
    assert [(r[0], r[1]) for r in returns] == [(h, f) for h in ("1d", "5d", "20d") for f in ("lightgbm", "xgboost", "ridge")]
    assert all(int(n) > 0 for r in returns for n in r[-1].split("/"))  # n_train/n_validation
    assert all(int(r[-2]) > 0 and int(r[-1]) > 0 for r in barriers) and len(barriers) == 6
    # three symbols: no bar has the 5 a per-bar IC needs, so it is n/a, not 0
    assert all(r[2:5] == ["n/a", "n/a", "n/a"] for r in returns)
    out = run_cli(capsys, "--config", str(path), "replay", "--start", "2012-01-03", "--end", "2012-01-09", "--quiet")
    # sessions Tue 3 .. Mon 9 Jan 2012: 3, 4, 5, 6, 9, each closing 16:00 EST = 21:00Z
    assert "book us_daily_replay: 5 cycles of 1d bars, 2012-01-03 21:00 .. 2012-01-09 21:00 UTC" in out
    assert "annualised from 5 bar returns (0.020 years of 252 1d bars a year)" in out
    decided = [int(n) for n in re.search(r"decisions: trade (\d+)  hold (\d+)  blocked (\d+)", out).groups()]
    assert sum(decided) == 5 * 3  # every symbol decided at every cycle


def test_eurusd_hourly_trains_and_replays_a_day_without_trading(tmp_path, copied, capsys):
    path = example_config(tmp_path, "eurusd_hourly", copied("eurusd_hourly"),
                          {"models": {"training": {"sessions": 60}, **TINY_MODELS}})
    out = run_cli(capsys, "--config", str(path), "train", "--end", "2017-11-30", "--quiet")
    assert "dropped 2 (off-calendar time 2)" in out
    returns, barriers = trained_rows(out, ("1h", "4h", "1d"))
    assert len(returns) == 9 and all(int(n) > 0 for r in returns for n in r[-1].split("/"))
    assert len(barriers) == 6 and all(int(r[-2]) > 0 for r in barriers)
    # one symbol with per-symbol scores: calibration regresses its whole move, so every horizon's slope is
    # measured (across the universe, the move less the cross-section's mean would be 0 and so every slope)
    manifest = json.loads(next((tmp_path / "home" / "models").glob("*/manifest.json")).read_text())
    assert all(manifest["calibration"][h]["fitted"] and manifest["calibration"][h]["slope"] != 0.0
               and manifest["calibration"][h]["slope_se"] > 0 for h in ("1h", "4h", "1d"))
    out = run_cli(capsys, "--config", str(path), "replay", "--start", "2017-12-01", "--end", "2017-12-01", "--quiet")
    # Friday 1 Dec 2017's FX day: 24 hourly bars from Thursday 17:00 New York (22:00Z), closing 23:00Z .. 22:00Z
    assert "book eurusd_replay: 24 cycles of 60m bars, 2017-11-30 23:00 .. 2017-12-01 22:00 UTC" in out
    assert "orders 0 (fills 0, rejected 0)" in out and "decisions: trade 0  hold 24  blocked 0" in out
    assert "6,240 60m bars a year" in out  # 260 weekdays x 24 hourly bars on 24/5
