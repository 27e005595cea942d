"""Typed, validated configuration loaded from ``config/live_trading.yaml``.

The YAML is parsed into frozen dataclasses. Every key is required (the shipped
YAML holds every default; docs/pipeline.md lists them stage by stage), unknown
keys are refused, types are checked, and ranges are enforced by field metadata,
so a typo can never be silently ignored. Every problem is a :class:`ConfigError`
naming the key path (``sizing.max_weight``), the value and what is allowed.

Where the config comes from, first match wins: an explicit path (``--config``),
the ``FOXLIVE_CONFIG`` environment variable, ``config/live_trading.yaml`` of the
repository this package lives in.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from foxlive_core.errors import ConfigError

CONFIG_ENV_VAR = "FOXLIVE_CONFIG"
HOME_ENV_VAR = "FOXLIVE_HOME"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "live_trading.yaml"

SUPPORTED_FAMILIES = ("lightgbm", "xgboost", "ridge")
UNSUPPORTED_FAMILIES = ("keras", "pytorch", "torch", "tensorflow", "lstm", "transformer", "cnn1d")
BAR_INTERVALS = {"1m": 1, "5m": 5, "15m": 15, "60m": 60, "1d": None}
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")


def family_problem(family: str) -> str | None:
    """Why ``family`` cannot be used (the text of an error), or None if it is supported."""
    if family.lower() in UNSUPPORTED_FAMILIES:
        return (f"family {family!r} is unsupported (Keras/PyTorch families are out of scope); "
                f"use one of {list(SUPPORTED_FAMILIES)}")
    if family not in SUPPORTED_FAMILIES:
        return f"unknown model family {family!r}; use one of {list(SUPPORTED_FAMILIES)}"
    return None


def _rng(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False):
    """Field metadata: the value must lie in the interval [lo, hi] (open ends as flagged)."""
    return {"range": (lo, hi, lo_open, hi_open)}


def _choice(*allowed: str):
    return {"choices": allowed}


def num(default=dataclasses.MISSING, **meta):
    return field(default=default, metadata=meta) if default is not dataclasses.MISSING else field(metadata=meta)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class PathsConfig:
    home: str
    models: str
    state: str
    symbols: str
    sweep: str = num("sweep.yaml")


@dataclass(frozen=True)
class HistoricalConfig:
    path: str | None
    quote_spread_bps: float = num(**_rng(0.0, 1000.0, lo_open=True))
    repair: bool = True
    time_column: str | None = None  # None: found by name (time, timestamp, date, datetime) or position
    time_is: str = num("close", **_choice("close", "open"))
    max_repair_share: float = num(0.05, **_rng(0.0, 1.0))
    time_format: str | None = None  # None: ISO 8601; else a strftime format such as '%m/%d/%Y'
    timezone: str | None = None  # zone of times written without an offset; None: such times are an error


@dataclass(frozen=True)
class SimulatedConfig:
    seed: int = num(**_rng(0))
    start: str = num()
    start_price_min: float = num(**_rng(0.0, lo_open=True))
    start_price_max: float = num(**_rng(0.0, lo_open=True))
    market_vol_bp: float = num(**_rng(0.0))
    idio_vol_bp: float = num(**_rng(0.0, lo_open=True))
    vol_of_vol: float = num(**_rng(0.0, 2.0))
    vol_persistence: float = num(**_rng(0.0, 1.0, hi_open=True))
    reversal_strength: float = num(**_rng(0.0, 1.0))
    drift_strength: float = num(**_rng(0.0))
    base_spread_bps: float = num(**_rng(0.0, lo_open=True))
    spread_vol_mult: float = num(**_rng(0.0))
    missing_bar_prob: float = num(**_rng(0.0, 0.5))
    adv_min_dollars: float = num(**_rng(0.0, lo_open=True))
    adv_max_dollars: float = num(**_rng(0.0, lo_open=True))


@dataclass(frozen=True)
class MarketConfig:
    source: str = num(**_choice("simulated", "historical"))
    calendar: str = num()
    bar_interval: str = num(**_choice(*BAR_INTERVALS))
    max_fill_bars: int = num(**_rng(0, 100))
    historical: HistoricalConfig = num()
    simulated: SimulatedConfig = num()
    max_bar_log_move: float = num(1.0, **_rng(0.0, lo_open=True))

    @property
    def interval_minutes(self) -> int | None:
        """Minutes per bar, or None for one bar per session (daily bars)."""
        return BAR_INTERVALS[self.bar_interval]


@dataclass(frozen=True)
class HorizonConfig:
    """One prediction horizon, given in minutes or in sessions (exactly one of them)."""

    name: str
    minutes: int | None = num(None, **_rng(1, lo_open=False))
    sessions: int | None = num(None, **_rng(1))
    temperature: float = num(1.0, **_rng(0.0, lo_open=True))
    freshness_tau_s: float = num(300.0, **_rng(0.0, lo_open=True))


@dataclass(frozen=True)
class TrainingConfig:
    sessions: int = num(**_rng(2))
    validation_fraction: float = num(**_rng(0.0, 1.0, lo_open=True, hi_open=True))
    purge_bars: int = num(**_rng(0))
    max_rows: int = num(**_rng(1000))
    seed: int = num(**_rng(0))
    threads: int = num(**_rng(1, 256))


@dataclass(frozen=True)
class LightGBMConfig:
    num_boost_round: int = num(**_rng(1))
    learning_rate: float = num(**_rng(0.0, 1.0, lo_open=True))
    num_leaves: int = num(**_rng(2))
    min_data_in_leaf: int = num(**_rng(1))
    feature_fraction: float = num(**_rng(0.0, 1.0, lo_open=True))
    bagging_fraction: float = num(**_rng(0.0, 1.0, lo_open=True))
    lambda_l2: float = num(**_rng(0.0))


@dataclass(frozen=True)
class XGBoostConfig:
    num_boost_round: int = num(**_rng(1))
    learning_rate: float = num(**_rng(0.0, 1.0, lo_open=True))
    max_depth: int = num(**_rng(1, 20))
    min_child_weight: float = num(**_rng(0.0))
    subsample: float = num(**_rng(0.0, 1.0, lo_open=True))
    colsample_bytree: float = num(**_rng(0.0, 1.0, lo_open=True))
    reg_lambda: float = num(**_rng(0.0))


@dataclass(frozen=True)
class RidgeConfig:
    alpha: float = num(**_rng(0.0))


@dataclass(frozen=True)
class ModelsConfig:
    families: tuple[str, ...]
    barrier_family: str = num(**_choice("lightgbm", "xgboost"))
    barrier_width_sigmas: float = num(**_rng(0.0, 10.0, lo_open=True))
    inference: str = num(**_choice("compiled", "native"))
    training: TrainingConfig = num()
    lightgbm: LightGBMConfig = num()
    xgboost: XGBoostConfig = num()
    ridge: RidgeConfig = num()


@dataclass(frozen=True)
class StandardizationConfig:
    mode: str = num(**_choice("rolling", "cross_sectional"))
    window: int = num(**_rng(2, 10_000))
    min_samples: int = num(**_rng(1))
    clip: float = num(**_rng(0.0, lo_open=True))

    @property
    def relative(self) -> bool:
        """Scores are z-scored across the universe, so an alpha ranks symbols (the calibration demeans the move)."""
        return self.mode == "cross_sectional"


@dataclass(frozen=True)
class ConfidenceConfig:
    ic_mode: str = num(**_choice("cross_sectional", "time_series"))
    ic_window: int = num(**_rng(2, 200))  # the exact tie-aware Spearman is O(W^2) per symbol
    ic_min_pairs: int = num(**_rng(2))
    ic_floor: float = num(**_rng(0.0, 1.0, lo_open=True))
    capacity_kappa: float = num(**_rng(0.0, lo_open=True))
    stability_window: int = num(**_rng(1, 10_000))
    stability_warmup: float = num(**_rng(0.0, 1.0))


@dataclass(frozen=True)
class BlendingConfig:
    ridge_lambda: float = num(**_rng(0.0))
    corr_window: int = num(**_rng(2, 10_000))
    corr_min_points: int = num(**_rng(2))
    cost_share: float = num(**_rng(0.0, 1.0))


@dataclass(frozen=True)
class CalibrationConfig:
    window: int = num(**_rng(1, 10_000))
    prior_cycles: float = num(**_rng(0.0, lo_open=True))
    max_slope: float = num(**_rng(0.0, 100.0, lo_open=True))


@dataclass(frozen=True)
class HoldingConfig:
    exit_rule: str = num(**_choice("horizon_edge", "alpha_sign"))


@dataclass(frozen=True)
class CostsConfig:
    k1_spread: float = num(**_rng(0.0))
    k2_volatility: float = num(**_rng(0.0))
    k3_impact: float = num(**_rng(0.0))
    impact_bps_at_reference: float = num(**_rng(0.0))
    impact_reference_participation: float = num(**_rng(0.0, 1.0, lo_open=True))


@dataclass(frozen=True)
class ArbitrationConfig:
    threshold_base_bps: float = num(**_rng(0.0))
    threshold_spread_mult: float = num(**_rng(0.0))


@dataclass(frozen=True)
class QuoteGateConfig:
    max_spread_bps: float = num(**_rng(0.0, lo_open=True))
    max_quote_age_ms: float = num(**_rng(0.0, lo_open=True))


@dataclass(frozen=True)
class BarrierGateConfig:
    g_min: float = num(**_rng(0.0, 1.0))
    gamma: float = num(**_rng(0.0))
    delta: float = num(**_rng(0.0))
    block_long_p_valley: float = num(**_rng(0.0, 1.0))
    block_short_p_peak: float = num(**_rng(0.0, 1.0))
    exit_long_p_valley: float = num(**_rng(0.0, 1.0))
    exit_short_p_peak: float = num(**_rng(0.0, 1.0))
    when_missing: str = num(**_choice("fallback", "neutral"))
    fallback_p_peak: float = num(**_rng(0.0, 1.0))
    fallback_p_valley: float = num(**_rng(0.0, 1.0))


@dataclass(frozen=True)
class SizingConfig:
    max_weight: float = num(**_rng(0.0, 1.0, lo_open=True))
    z_max: float = num(**_rng(0.0, lo_open=True))
    weight_cap: float = num(**_rng(0.0, 1.0, lo_open=True))
    no_trade_band: float = num(**_rng(0.0, 1.0))
    gross_target: float = num(**_rng(0.0, 10.0, lo_open=True))


@dataclass(frozen=True)
class RiskConfig:
    daily_loss_limit: float = num(**_rng(0.0, 1.0, lo_open=True))
    drawdown_limit: float = num(**_rng(0.0, 1.0, lo_open=True))
    max_position_weight: float = num(**_rng(0.0, 1.0, lo_open=True))
    max_gross_exposure: float = num(**_rng(0.0, 10.0, lo_open=True))


BROKER_KINDS = ("paper",)  # the adapters of foxlive_core.brokers (ADAPTERS)


@dataclass(frozen=True)
class BrokerConfig:
    starting_cash: float = num(**_rng(0.0, lo_open=True))
    slippage_bps: float = num(**_rng(0.0, 1000.0))
    fee_bps: float = num(**_rng(0.0, 1000.0))
    max_fill_fraction_of_displayed: float = num(**_rng(0.0, 1000.0, lo_open=True))
    short_margin: float = num(**_rng(0.0, 10.0))
    kind: str = num("paper", **_choice(*BROKER_KINDS))
    reconcile_cash_tolerance: float = num(0.01, **_rng(0.0))


@dataclass(frozen=True)
class EngineConfig:
    history_bars: int = num(**_rng(2, 100_000))
    partitions_start: str = num()
    max_consecutive_failures: int = num(**_rng(1, 1000))
    stale_data_bars: int = num(**_rng(1, 10_000))
    trace: str = num("full", **_choice("full", "decisions"))


@dataclass(frozen=True)
class FoxliveConfig:
    """The whole configuration. ``source_path`` is the YAML it came from."""

    book: str
    replay_book: str
    paths: PathsConfig
    market: MarketConfig
    horizons: tuple[HorizonConfig, ...]
    models: ModelsConfig
    standardization: StandardizationConfig
    confidence: ConfidenceConfig
    blending: BlendingConfig
    calibration: CalibrationConfig
    holding: HoldingConfig
    costs: CostsConfig
    arbitration: ArbitrationConfig
    quote_gate: QuoteGateConfig
    barrier_gate: BarrierGateConfig
    sizing: SizingConfig
    risk: RiskConfig
    broker: BrokerConfig
    engine: EngineConfig
    symbols: tuple[str, ...] = ()
    source_path: str = ""

    # ---- derived values, so no caller re-derives them differently

    @property
    def horizon_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.horizons)

    @property
    def home(self) -> Path:
        """Absolute directory of models and state (resolved once, when the config was loaded)."""
        return Path(self.paths.home)

    @property
    def models_root(self) -> Path:
        return self.home / self.paths.models

    @property
    def state_path(self) -> Path:
        return self.home / self.paths.state

    def horizon_bars(self) -> tuple[int, ...]:
        """Bars in each horizon, in ``horizons`` order (see :func:`horizon_bars`)."""
        return tuple(horizon_bars(h, self.market) for h in self.horizons)


# --------------------------------------------------------------------------- horizons


def bars_per_session(market: MarketConfig) -> int:
    """Bars in one regular session: 390 minutes for most equity calendars, 1440 for 24/7.

    Used only to express a horizon given in sessions as a number of bars; the
    calendar itself decides which bars exist (half days are shorter).
    """
    if market.interval_minutes is None:
        return 1
    session_minutes = 1440 if market.calendar in ("24/7", "24/5") else _regular_session_minutes(market.calendar)
    return max(1, session_minutes // market.interval_minutes)


def _regular_session_minutes(calendar_code: str) -> int:
    from foxlive_core.calendar import regular_session_minutes

    return regular_session_minutes(calendar_code)


def horizon_bars(h: HorizonConfig, market: MarketConfig) -> int:
    """Number of bars of ``market.bar_interval`` spanned by horizon ``h``."""
    if h.sessions is not None:
        return h.sessions * bars_per_session(market)
    assert h.minutes is not None
    if market.interval_minutes is None:
        raise ConfigError(
            f"horizons: horizon {h.name!r} is given in minutes ({h.minutes}) but market.bar_interval is 1d; "
            "with daily bars give every horizon in sessions (e.g. `sessions: 1`)"
        )
    if h.minutes % market.interval_minutes:
        raise ConfigError(
            f"horizons: horizon {h.name!r} of {h.minutes} minutes is not a whole number of "
            f"{market.interval_minutes}-minute bars (market.bar_interval={market.bar_interval}); "
            "use a multiple of the bar interval"
        )
    return h.minutes // market.interval_minutes


# --------------------------------------------------------------------------- loading


def resolve_config_path(path: str | os.PathLike | None = None) -> Path:
    """The config file to use: ``path``, else ``$FOXLIVE_CONFIG``, else the repository default."""
    chosen = path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH
    p = Path(chosen).expanduser()
    if not p.is_file():
        source = "--config" if path else (CONFIG_ENV_VAR if os.environ.get(CONFIG_ENV_VAR) else "the default")
        raise ConfigError(f"config file {str(p)!r} (from {source}) does not exist; pass --config PATH or set {CONFIG_ENV_VAR}")
    return p


def load_config(
    path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, home: str | os.PathLike | None = None
) -> FoxliveConfig:
    """Load, validate and return the configuration.

    ``overrides`` is a nested dict merged over the YAML before validation (used
    by tests and by Dagster resources); it obeys the same rules as the file.
    The home directory is ``home`` if given, else ``$FOXLIVE_HOME``, else
    ``paths.home`` relative to the working directory; it is made absolute here.
    """
    p = resolve_config_path(path)
    raw = _read_yaml(p)
    if overrides:
        raw = _deep_merge(raw, overrides)
    home = home or os.environ.get(HOME_ENV_VAR)
    if isinstance(raw.get("paths"), dict) and (home or isinstance(raw["paths"].get("home"), str)):
        raw["paths"] = {**raw["paths"], "home": str(Path(home or raw["paths"]["home"]).expanduser().absolute())}
    symbols_file = raw.get("paths", {}).get("symbols") if isinstance(raw.get("paths"), dict) else None
    cfg = _build(FoxliveConfig, {**raw, "source_path": str(p.resolve())}, "", skip={"symbols"})
    symbols = load_symbols(p.parent / symbols_file) if symbols_file else ()
    cfg = dataclasses.replace(cfg, symbols=symbols)
    _validate_whole(cfg)
    return cfg


def load_symbols(path: Path) -> tuple[str, ...]:
    raw = _read_yaml(path)
    if set(raw) != {"symbols"}:
        raise ConfigError(f"{path}: expected exactly one key 'symbols', found {sorted(raw)}")
    syms = raw["symbols"]
    if not isinstance(syms, list) or not syms:
        raise ConfigError(f"{path}: 'symbols' must be a non-empty list of tickers, got {syms!r}")
    seen: set[str] = set()
    for i, s in enumerate(syms):
        if not isinstance(s, str) or not SYMBOL_PATTERN.match(s):
            raise ConfigError(
                f"{path}: symbols[{i}] = {s!r} is not a ticker (upper-case letters, digits, '.' or '-', at most 16 characters)"
            )
        if s in seen:
            raise ConfigError(f"{path}: symbols[{i}] = {s!r} appears twice; list each symbol once")
        seen.add(s)
    return tuple(syms)


def _read_yaml(p: Path) -> dict:
    try:
        with open(p) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level, got {type(raw).__name__}")
    return raw


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(cls, data: Any, path: str, skip: set[str] = frozenset()):
    where = path or "<top level>"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(k for k in fields if k != 'source_path')}"
        )
    values = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        has_default = f.default is not dataclasses.MISSING
        if name not in data:
            if has_default and cls is HorizonConfig:
                values[name] = f.default
                continue
            raise ConfigError(f"{key}: missing; add it to the config file (see config/live_trading.yaml for the default)")
        values[name] = _convert(hints[name], data[name], key, f.metadata)
    obj = cls(**values)
    return obj


def _convert(tp, value, key: str, meta) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _convert(inner, value, key, meta)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{key}[{i}]", meta) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        _check_range(float(value), key, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE]\d+", value.strip()):
                hint = f" (YAML reads {value} as text: write the exponent with a sign, e.g. {value.lower().replace('e', 'e+')})"
            raise ConfigError(f"{key}: expected a number, got {value!r}{hint}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        _check_range(float(value), key, meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            # YAML reads 5m as a string but 2025-01-02 as a date: accept dates as their ISO text.
            if hasattr(value, "isoformat"):
                value = value.isoformat()
            else:
                raise ConfigError(f"{key}: expected a string, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {list(choices)}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # a schema bug, not user input


def _check_range(v: float, key: str, meta) -> None:
    rng = meta.get("range")
    if not rng:
        return
    lo, hi, lo_open, hi_open = rng
    bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and (v > hi or (hi_open and v == hi)))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{key}: {v:g} is out of range; allowed is {left}{lo_s}, {hi_s}{right}")


def _validate_whole(cfg: FoxliveConfig) -> None:
    """Rules that involve more than one key."""
    from foxlive_core.calendar import check_calendar_code
    from foxlive_core.features import required_history_bars

    check_calendar_code(cfg.market.calendar, "market.calendar")
    if not cfg.horizons:
        raise ConfigError("horizons: at least one horizon is required")
    names = [h.name for h in cfg.horizons]
    for i, h in enumerate(cfg.horizons):
        if not re.match(r"^[A-Za-z0-9_]+$", h.name):
            raise ConfigError(f"horizons[{i}].name: {h.name!r} must be letters, digits or '_' (it names directories)")
        if (h.minutes is None) == (h.sessions is None):
            raise ConfigError(
                f"horizons[{i}] ({h.name}): give exactly one of 'minutes' or 'sessions', got minutes={h.minutes}, sessions={h.sessions}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"horizons: names must be unique, got {names}")
    bars = cfg.horizon_bars()
    if list(bars) != sorted(bars) or len(set(bars)) != len(bars):
        raise ConfigError(f"horizons: must be listed from shortest to longest with distinct lengths, got bars {list(bars)} for {names}")
    fams = cfg.models.families
    if not fams:
        raise ConfigError("models.families: at least one family is required")
    for i, fam in enumerate(fams):
        problem = family_problem(fam)
        if problem:
            raise ConfigError(f"models.families[{i}]: {problem}")
    if len(set(fams)) != len(fams):
        raise ConfigError(f"models.families: each family at most once, got {list(fams)}")
    sim = cfg.market.simulated
    if sim.start_price_min > sim.start_price_max:
        raise ConfigError(
            f"market.simulated.start_price_min ({sim.start_price_min:g}) exceeds start_price_max ({sim.start_price_max:g})"
        )
    if sim.adv_min_dollars > sim.adv_max_dollars:
        raise ConfigError(f"market.simulated.adv_min_dollars ({sim.adv_min_dollars:g}) exceeds adv_max_dollars ({sim.adv_max_dollars:g})")
    if cfg.market.source == "historical" and not cfg.market.historical.path:
        raise ConfigError("market.historical.path: required when market.source is 'historical'; give the directory of CSV/Parquet files")
    hist = cfg.market.historical
    if hist.time_format is not None and "%" not in hist.time_format:
        raise ConfigError(
            f"market.historical.time_format: {hist.time_format!r} has no strftime directive; give the format of the "
            "file's times, e.g. '%m/%d/%Y' or '%d.%m.%Y %H:%M:%S.%f', or null for ISO 8601"
        )
    if hist.timezone is not None:
        try:
            pd.Timestamp("2000-01-01").tz_localize(hist.timezone)
        except (LookupError, ValueError):  # zoneinfo's unknown key is a KeyError, an empty name an IndexError
            raise ConfigError(
                f"market.historical.timezone: {hist.timezone!r} is not a time zone; use an IANA name such as UTC, "
                "America/New_York or Europe/London, or null"
            ) from None
    if cfg.standardization.min_samples > cfg.standardization.window:
        raise ConfigError(
            f"standardization.min_samples ({cfg.standardization.min_samples}) exceeds standardization.window ({cfg.standardization.window})"
        )
    if cfg.confidence.ic_min_pairs > cfg.confidence.ic_window:
        raise ConfigError(f"confidence.ic_min_pairs ({cfg.confidence.ic_min_pairs}) exceeds confidence.ic_window ({cfg.confidence.ic_window})")
    if cfg.sizing.max_weight > cfg.sizing.weight_cap:
        raise ConfigError(f"sizing.max_weight ({cfg.sizing.max_weight:g}) exceeds sizing.weight_cap ({cfg.sizing.weight_cap:g})")
    feature_bars = required_history_bars(cfg.market.max_fill_bars)
    # A realised return over h needs the close h bars back, unaffected by missing-bar filling at the window's edge.
    return_bars = max(bars) + 1 + cfg.market.max_fill_bars
    need = max(feature_bars, return_bars)
    if cfg.engine.history_bars < need:
        raise ConfigError(
            f"engine.history_bars: {cfg.engine.history_bars} is too short; the features need {feature_bars} bars "
            f"and measuring the longest horizon's realised return needs {return_bars}, so at least {need}"
        )
    for key in ("book", "replay_book"):
        if not re.match(r"^[A-Za-z0-9_\-]+$", getattr(cfg, key)):
            raise ConfigError(f"{key}: {getattr(cfg, key)!r} must be letters, digits, '_' or '-'")
    if cfg.book == cfg.replay_book:
        raise ConfigError(f"replay_book: {cfg.replay_book!r} is the live book; replays must never touch the live book, name another")
    try:
        pd.Timestamp(cfg.engine.partitions_start)
    except ValueError:
        raise ConfigError(f"engine.partitions_start: {cfg.engine.partitions_start!r} is not a date (use YYYY-MM-DD)") from None
