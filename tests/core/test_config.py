"""Configuration: every default comes from the YAML, and every bad value is a ConfigError naming its key."""

from __future__ import annotations

import pytest
import yaml

from foxlive_core.config import CONFIG_ENV_VAR, load_config, resolve_config_path
from foxlive_core.errors import ConfigError
from tests.conftest import write_config


def test_shipped_config_holds_pipeline_defaults(make_config):
    cfg = make_config()
    assert cfg.horizon_names == ("5m", "10m", "15m", "30m", "60m", "1d")
    assert cfg.horizon_bars() == (1, 2, 3, 6, 12, 78)  # 1d = one 390-minute XNYS session of 5-minute bars
    assert [h.temperature for h in cfg.horizons] == [0.75, 0.85, 0.90, 1.0, 1.0, 1.0]
    assert [h.freshness_tau_s for h in cfg.horizons] == [150, 300, 450, 900, 1800, 7200]
    assert cfg.blending.ridge_lambda == 0.15
    assert (cfg.costs.k1_spread, cfg.costs.k2_volatility, cfg.costs.k3_impact) == (1.0, 0.15, 1.0)
    assert (cfg.arbitration.threshold_base_bps, cfg.arbitration.threshold_spread_mult) == (2.0, 0.5)
    assert (cfg.quote_gate.max_spread_bps, cfg.quote_gate.max_quote_age_ms) == (12.0, 200)
    bg = cfg.barrier_gate
    assert (bg.g_min, bg.gamma, bg.delta, bg.block_long_p_valley, bg.block_short_p_peak) == (0.2, 1.0, 0.5, 0.6, 0.55)
    assert (bg.exit_long_p_valley, bg.exit_short_p_peak) == (0.65, 0.60)
    sz = cfg.sizing
    assert (sz.max_weight, sz.z_max, sz.weight_cap, sz.no_trade_band, sz.gross_target) == (0.05, 3.0, 0.20, 0.008, 0.5)
    assert (cfg.risk.daily_loss_limit, cfg.risk.drawdown_limit) == (0.02, 0.10)
    assert (cfg.broker.starting_cash, cfg.broker.slippage_bps, cfg.broker.fee_bps) == (100000.0, 5.0, 1.0)
    assert len(cfg.symbols) == 50
    hist = cfg.market.historical
    assert (hist.repair, hist.time_column, hist.time_is, hist.max_repair_share) == (True, None, "close", 0.05)
    assert (hist.time_format, hist.timezone) == (None, None)


def test_a_changed_yaml_value_reaches_the_config(make_config):
    cfg = make_config({"sizing": {"max_weight": 0.03}, "horizons": [{"name": "5m", "minutes": 5}, {"name": "1h", "minutes": 60}]})
    assert cfg.sizing.max_weight == 0.03
    assert cfg.horizon_bars() == (1, 12)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"sizing": {"max_weight_typo": 0.1}}, "sizing: unknown key(s) ['max_weight_typo']"),
        ({"quote_gate": {"max_spread_bps": -1.0}}, "quote_gate.max_spread_bps: -1 is out of range"),
        ({"risk": {"daily_loss_limit": 1.5}}, "risk.daily_loss_limit: 1.5 is out of range; allowed is (0, 1]"),
        ({"risk": {"drawdown_limit": 0.0}}, "risk.drawdown_limit: 0 is out of range"),
        ({"sizing": {"max_weight": "big"}}, "sizing.max_weight: expected a number, got 'big'"),
        ({"engine": {"history_bars": 2.5}}, "engine.history_bars: expected an integer"),
        ({"market": {"bar_interval": "7m"}}, "market.bar_interval: '7m' is not allowed"),
        ({"market": {"calendar": "NOPE"}}, "market.calendar: 'NOPE' is not an exchange-calendars code"),
        ({"models": {"families": ["lightgbm", "keras"]}}, "'keras' is unsupported"),
        ({"models": {"families": ["catboost"]}}, "unknown model family 'catboost'"),
        ({"horizons": [{"name": "5m", "minutes": 5, "temperature": 0.0}]}, "horizons[0].temperature: 0 is out of range"),
        ({"horizons": [{"name": "7m", "minutes": 7}]}, "not a whole number of 5-minute bars"),
        ({"horizons": [{"name": "x", "minutes": 5, "sessions": 1}]}, "give exactly one of 'minutes' or 'sessions'"),
        ({"horizons": [{"name": "5m", "minutes": 5, "colour": 1}]}, "horizons[0]: unknown key(s) ['colour']"),
        ({"engine": {"history_bars": 50}}, "engine.history_bars: 50 is too short"),
        ({"market": {"simulated": {"adv_min_dollars": "5.0e6"}}}, "write the exponent with a sign"),
        ({"market": {"source": "historical"}}, "market.historical.path: required"),
        ({"market": {"historical": {"time_is": "middle"}}}, "market.historical.time_is: 'middle' is not allowed"),
        ({"market": {"historical": {"max_repair_share": 1.5}}}, "market.historical.max_repair_share: 1.5 is out of range"),
        ({"market": {"historical": {"time_format": "YYYY-MM-DD"}}}, "market.historical.time_format: 'YYYY-MM-DD' has no strftime"),
        ({"market": {"historical": {"timezone": "New York"}}}, "market.historical.timezone: 'New York' is not a time zone"),
    ],
)
def test_bad_values_name_the_key(make_config, overrides, fragment):
    with pytest.raises(ConfigError) as info:
        make_config(overrides)
    assert fragment in str(info.value)


def test_missing_key_is_named(tmp_path):
    path = write_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["costs"]["k2_volatility"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"costs\.k2_volatility: missing"):
        load_config(path)


def test_bad_symbols_file(tmp_path):
    with pytest.raises(ConfigError, match=r"symbols\[1\] = 'AAPL' appears twice"):
        load_config(write_config(tmp_path / "a", symbols=["AAPL", "AAPL"]))
    with pytest.raises(ConfigError, match=r"symbols\[0\] = 'bad sym' is not a ticker"):
        load_config(write_config(tmp_path / "b", symbols=["bad sym"]))


def test_config_path_from_environment(tmp_path, monkeypatch):
    path = write_config(tmp_path, {"book": "from_env"})
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert load_config().book == "from_env"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=f"from {CONFIG_ENV_VAR}"):
        resolve_config_path()


def test_daily_bars_need_horizons_in_sessions(make_config):
    cfg = make_config({"market": {"bar_interval": "1d"}, "horizons": [{"name": "1d", "sessions": 1}, {"name": "5d", "sessions": 5}]})
    assert cfg.horizon_bars() == (1, 5)
    with pytest.raises(ConfigError, match="with daily bars give every horizon in sessions"):
        make_config({"market": {"bar_interval": "1d"}})


def test_round_the_clock_calendar(make_config):
    cfg = make_config({"market": {"calendar": "24/7", "bar_interval": "60m"},
                       "horizons": [{"name": "1h", "minutes": 60}, {"name": "1d", "sessions": 1}]})
    assert cfg.horizon_bars() == (1, 24)
