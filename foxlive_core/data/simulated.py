"""A seeded, deterministic simulated market: the default data source.

Bars are generated at the calendar's bar close times (real exchange sessions,
holidays and half days included) from session ``market.simulated.start``
onward, vectorised over the universe and session by session.

Determinism and window independence
-----------------------------------
Session ``k`` (0 = the start session) draws every random number it needs from
``np.random.default_rng([seed, 1, k])`` and depends on earlier sessions only
through a small per-symbol state carried over the session boundary (log close,
log-volatility deviation, last three idiosyncratic returns, drift, log volume
level). The first sequential pass stores that state every
``CHECKPOINT_EVERY`` sessions and keeps each session's dollar volume (for
:meth:`SimulatedMarket.adv`); any later request regenerates its sessions from
the nearest checkpoint, so the bar at time t has the same values whatever
window is asked for and in whatever order. Memory stays bounded: checkpoints
cost 7 floats per symbol every ``CHECKPOINT_EVERY`` sessions plus 1 float per
symbol per session (about 20 MB for 2,000 symbols over three years of
sessions), and at most ``cache_sessions`` generated sessions are kept (LRU;
about 10 MB each for 2,000 symbols of 5-minute bars). The numbers depend on
the universe (its size and order): a subset of symbols asked of one market is
the same columns of the full universe, but a market built on a different
universe is a different market.

Dynamics (per bar, per symbol i; parameters given per 5-minute bar are scaled
to the bar interval: volatilities by sqrt(minutes/5), drift by minutes/5)
----------------------------------------------------------------------------
- static per symbol, from ``default_rng([seed, 0])``: beta ~ U(0.5, 1.5);
  starting price log-uniform in [start_price_min, start_price_max]; ADV level
  log-uniform in [adv_min_dollars, adv_max_dollars]; idiosyncratic vol level
  idio_vol_bp x exp(0.3 z).
- log return r = beta_i m + e_i + drift term, m ~ N(0, market_vol_bp^2) the
  common market factor.
- stochastic volatility: the idiosyncratic vol is level_i x exp(h), h an AR(1)
  (vol_persistence, shock vol_of_vol per 5-minute bar; for other intervals the
  persistence is vol_persistence^(minutes/5) with the stationary variance kept).
- overnight gap at each session open that follows a break: market and
  idiosyncratic shocks with the variance of ``OVERNIGHT_BARS`` 5-minute bars;
  the first bar opens at the previous close times the gap, every other bar at
  the previous bar's close. High/low bracket open and close by half a bar
  volatility times |N(0, 1)|.
- volume: the session's dollar volume is ADV level x exp(v) (v an AR(1)
  across sessions, persistence 0.8, sd 0.3, mean-corrected), spread over the
  bars by a U-shaped intraday profile (weight 1 + 2(2x-1)^2 at session
  fraction x: three times the midday rate at the open and close; a half day
  gets its share of a regular day), times log-normal noise (sd 0.4, mean 1);
  shares = dollars / close, whole shares.
- spread_bps = base_spread_bps + spread_vol_mult x (bar volatility in bps).
- each (bar, symbol) is missing (NaN OHLCV and spread) with probability
  missing_bar_prob; the price process continues underneath.

Planted predictable components (what models can learn)
------------------------------------------------------
1. Short-horizon reversal (5m-30m horizons): e_t = u_t - reversal_strength x
   (e_{t-1} + e_{t-2} + e_{t-3}), u_t the fresh idiosyncratic shock. The last
   three bars' idiosyncratic return is about a quarter reversed within three
   bars (default 0.08). Measured on this simulator (200 symbols, four months,
   default parameters), the mean cross-sectional rank IC of minus the last
   three bars' return against the forward return is about 0.11 at 5m, 0.12 at
   15m, 0.08 at 30m and 0.05 at 60m.
2. Slow drift (60m and 1d horizons): per-symbol d follows an AR(1) across
   sessions (persistence ``DRIFT_PERSISTENCE`` = 0.9, unit stationary
   variance) and adds drift_strength x d bps per 5-minute bar. At 0.25,
   19.5 bps per session per unit of d against about 90 bps of session
   volatility: an oracle knowing d has a next-session IC near 0.2, and the
   rank IC of the previous 5-10 sessions' return against the next session's
   is about 0.035-0.04. The shipped config uses 0.6 (47 bps per session per
   unit of d), where the trained 1d models reach a validation rank IC of
   about 0.07-0.10 (50 symbols, 60 sessions): enough for a few trades to
   clear the costs, which a weaker drift does not.

Two oracles: :meth:`SimulatedMarket.planted_expected_return` knows the hidden
state (the idiosyncratic returns and d); :meth:`SimulatedMarket.observable_expected_return`
knows the parameters but sees only the returns, and filters d from them. At
the default strengths (50 symbols, 21 sessions after 60) their 1d rank ICs
are 0.42 and 0.30: the difference is information no model of the prices has.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from foxlive_core.calendar import ROUND_THE_CLOCK, TradingCalendar, calendar_for, regular_session_minutes, to_utc
from foxlive_core.calendar import _xcal  # the cached exchange-calendars object: its first and last sessions
from foxlive_core.config import MarketConfig, bars_per_session
from foxlive_core.data.types import BarPanel, QuoteSnapshot
from foxlive_core.errors import ConfigError, DataError

# --- fixed model constants (documented in the module docstring)
CHECKPOINT_EVERY = 10  # sessions between stored state checkpoints
DRIFT_PERSISTENCE = 0.9  # AR(1) of the planted drift across sessions
VOLUME_PERSISTENCE = 0.8  # AR(1) of the log dollar-volume level across sessions
VOLUME_LEVEL_SD = 0.3  # stationary sd of that log level
VOLUME_NOISE_SD = 0.4  # per-bar log-normal volume noise
OVERNIGHT_BARS = 12.0  # overnight gap variance in units of one 5-minute bar's
BETA_RANGE = (0.5, 1.5)
IDIO_LEVEL_DISPERSION = 0.3  # sd of log idiosyncratic vol level across symbols
ADV_SESSIONS = 20  # sessions averaged by adv()
QUOTE_SIZE_LOTS = (1, 50)  # displayed sizes: 100 to 5,000 shares in round lots
ROUND_THE_CLOCK_HORIZON_DAYS = 366  # 24/7 calendars have no last session: lay out sessions a year past the clock

_STATIC_STREAM = 0
_SESSION_STREAM = 1
# rows of the carried per-symbol state, shape (len(_STATE_ROWS), N)
_STATE_ROWS = ("log_close", "log_vol_dev", "idio_lag1", "idio_lag2", "idio_lag3", "drift", "log_volume_dev")
_LOG_CLOSE, _LOG_VOL, _IDIO1, _IDIO2, _IDIO3, _DRIFT, _LOG_VOLUME = range(len(_STATE_ROWS))
_PANEL_FIELDS = ("open", "high", "low", "close", "volume")


# --------------------------------------------------------------------------- shared helpers


def resolve_columns(universe: Sequence[str], symbols) -> tuple[tuple[str, ...], np.ndarray]:
    """Column positions of ``symbols`` in ``universe`` (None: every symbol).

    Returns (symbols as a tuple, int index array of shape (N,)); unknown
    symbols are a DataError naming them.
    """
    if symbols is None:
        return tuple(universe), np.arange(len(universe), dtype=np.intp)
    syms = (symbols,) if isinstance(symbols, str) else tuple(symbols)
    if syms == tuple(universe):  # the engine asks for its whole universe on every bar
        return syms, np.arange(len(syms), dtype=np.intp)
    index = {s: i for i, s in enumerate(universe)}
    unknown = [s for s in syms if s not in index]
    if unknown:
        raise DataError(
            f"unknown symbol(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''}; this source serves "
            f"{len(universe)} symbols (e.g. {list(universe[:5])}); add them to the universe or drop them"
        )
    return syms, np.fromiter((index[s] for s in syms), dtype=np.intp, count=len(syms))


def latest_valid_rows(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of the last True per column of ``valid`` (T, N), and whether any exists (N,)."""
    has = valid.any(axis=0)
    last = valid.shape[0] - 1 - np.argmax(valid[::-1], axis=0)
    return last, has


def mean_session_dollar_volume(session_dollars: np.ndarray) -> np.ndarray:
    """Per-column mean of (S, N) session dollar volumes, ignoring NaN sessions (NaN if none)."""
    present = np.isfinite(session_dollars)
    counts = present.sum(axis=0)
    totals = np.where(present, session_dollars, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def ns_index(times_ns: np.ndarray) -> pd.DatetimeIndex:
    """A UTC DatetimeIndex from int64 nanoseconds since the epoch."""
    return pd.DatetimeIndex(np.asarray(times_ns, dtype="datetime64[ns]")).tz_localize("UTC")


def ns_of(ts) -> int:
    """Nanoseconds since the epoch of a timezone-aware time (naive times are a DataError)."""
    return int(to_utc(ts).as_unit("ns").value)


def _has_bars(calendar: TradingCalendar, lo_ns: int, hi_ns: int) -> bool:
    """Whether the calendar has a bar closing in [lo_ns, hi_ns] (True when it cannot tell)."""
    if calendar.code not in ROUND_THE_CLOCK:
        cal = _xcal(calendar.code)
        known_lo = pd.Timestamp(cal.opens[cal.first_session]).as_unit("ns").value
        known_hi = pd.Timestamp(cal.closes[cal.last_session]).as_unit("ns").value
        if lo_ns < known_lo or hi_ns > known_hi:
            return True  # outside the calendar's range: nothing can be promised there
    return len(calendar.bar_times(pd.Timestamp(lo_ns, tz="UTC"), pd.Timestamp(hi_ns, tz="UTC"))) > 0


def check_served(
    calendar: TradingCalendar, lo_ns: int, hi_ns: int, first_ns: int, last_ns: int, source: str, fix: str
) -> None:
    """Refuse a request for a bar the source cannot serve.

    A window [lo_ns, hi_ns] is refused when a calendar bar closes in it before
    ``first_ns`` or after ``last_ns``; a point query (lo_ns == hi_ns: the
    latest bar at or before it) when it lies before ``first_ns`` or after a
    calendar bar later than ``last_ns``. So a window may start at a session's
    open, before its first bar, and a quote after the last close is served.
    """
    first, last = pd.Timestamp(first_ns, tz="UTC"), pd.Timestamp(last_ns, tz="UTC")
    point = lo_ns == hi_ns
    if lo_ns < first_ns and (point or _has_bars(calendar, lo_ns, min(hi_ns, first_ns - 1))):
        raise DataError(
            f"{pd.Timestamp(lo_ns, tz='UTC')} asks for bars before the {source}'s first bar {first}; "
            f"ask for a later time or {fix}"
        )
    if hi_ns > last_ns and _has_bars(calendar, max(lo_ns, last_ns + 1), hi_ns):
        raise DataError(
            f"{pd.Timestamp(hi_ns, tz='UTC')} asks for bars after the {source}'s last bar {last}; "
            f"ask for an earlier time or {fix}"
        )


def _as_clock(clock):
    """A no-argument callable giving "now" as a UTC Timestamp (wall clock by default; a fixed time stays fixed)."""
    if clock is None:
        return lambda: pd.Timestamp.now(tz="UTC")
    if callable(clock):
        return lambda: to_utc(clock())
    fixed = to_utc(clock)
    return lambda: fixed


def expected_log_return(e0, e1, e2, drift_per_bar, rho: float, horizon_bars) -> np.ndarray:
    """Expected log return over each horizon from the last three idiosyncratic returns and the drift.

    The sum of E[e_{t+k}] for k = 1..h under E[e_{t+k}] = -rho (E[e_{t+k-1}] +
    E[e_{t+k-2}] + E[e_{t+k-3}]), plus h x ``drift_per_bar``.

    Parameters
    ----------
    e0, e1, e2 : ndarray, shape (T, N)
        Idiosyncratic log returns of the bar and of the two before it.
    drift_per_bar : ndarray, shape (T, N)
        Drift in log return per bar.
    rho : float
        Reversal strength.
    horizon_bars : array_like of int, shape (H,)

    Returns
    -------
    ndarray, shape (H, T, N), decimal log returns.
    """
    bars = np.asarray(horizon_bars, dtype=np.int64)
    total = np.zeros_like(e0)
    out = np.empty((len(bars), *e0.shape))
    for k in range(1, int(bars.max()) + 1):
        nxt = -rho * (e0 + e1 + e2)
        e0, e1, e2 = nxt, e0, e1
        total = total + nxt
        for i in np.flatnonzero(bars == k):
            out[i] = total + k * drift_per_bar
    return out


def drift_posterior(v, sd, c: float, mean0, var0, usable=None):
    """Posterior of a constant d ~ N(mean0, var0) after observations v_t = c d + u_t, u_t ~ N(0, sd_t^2).

    Conjugate normal updates, one bar at a time along axis 0: the precision
    after bar t is 1/var0 + c^2 sum_{s<=t} 1/sd_s^2 and the mean
    (mean0/var0 + c sum_{s<=t} v_s/sd_s^2) / precision.

    Parameters
    ----------
    v, sd : ndarray, shape (T, N)
        Observations and their noise sd (> 0).
    c : float
        Loading of d in each observation (0: nothing is learnt).
    mean0, var0 : ndarray, shape (N,)
        Prior mean and variance (> 0).
    usable : ndarray of bool, shape (T, N) or broadcastable, optional
        Observations to use (default all).

    Returns
    -------
    means : ndarray, shape (T, N), the posterior mean after each bar
    mean, var : ndarray, shape (N,), the posterior after the last bar
    """
    weight = 1.0 / np.asarray(sd, dtype=np.float64) ** 2
    if usable is not None:
        weight = np.where(usable, weight, 0.0)
    precision = 1.0 / np.asarray(var0, dtype=np.float64) + c * c * np.cumsum(weight, axis=0)
    means = (mean0 / var0 + c * np.cumsum(weight * v, axis=0)) / precision
    if len(means) == 0:
        return means, np.asarray(mean0, dtype=np.float64), np.asarray(var0, dtype=np.float64)
    return means, means[-1], 1.0 / precision[-1]


# --------------------------------------------------------------------------- the market


@dataclass(frozen=True)
class _Session:
    """One generated session: OHLCV, spread (bps) and displayed sizes, each (n, N); its end state."""

    times_ns: np.ndarray
    fields: dict[str, np.ndarray]
    end_state: np.ndarray
    dollar_volume: np.ndarray  # (N,) sum of close*volume over observed bars, NaN if none


class SimulatedMarket:
    """Seeded synthetic OHLCV bars, quotes and ADV for ``symbols`` (see the module docstring).

    Parameters
    ----------
    symbols : sequence of str
        The universe, N distinct symbols; column order of every full-universe result.
    market : MarketConfig
        Calendar, bar interval and ``market.simulated`` parameters.
    cache_sessions : int
        Generated sessions kept in memory (LRU), at least 2.
    clock : callable returning a timezone-aware time, or a fixed time, optional
        "Now" for the market: no bar that closes after it is ever served.
        Default: the wall clock, read at every request (a live process sees
        each new bar as it closes). Tests and reproducible runs pass a fixed time.

    ``first_time`` is the first bar close of the start session (the first
    session on or after ``simulated.start``); ``last_time`` is the newest bar
    that has closed by the clock. The values of a bar never depend on the clock.
    """

    bars_threadsafe = True  # sessions are made and cached under one lock (see MarketData)

    def __init__(self, symbols: Sequence[str], market: MarketConfig, cache_sessions: int = 8, clock=None) -> None:
        syms = tuple(symbols)
        if not syms:
            raise ConfigError("SimulatedMarket needs at least one symbol; pass the universe (config/symbols.yaml)")
        dupes = sorted({s for s in syms if syms.count(s) > 1}) if len(set(syms)) != len(syms) else []
        if dupes:
            raise ConfigError(f"SimulatedMarket: symbol(s) {dupes[:10]} appear more than once; list each symbol once")
        if cache_sessions < 2:
            raise ConfigError(f"SimulatedMarket: cache_sessions={cache_sessions} must be at least 2")
        self._symbols = syms
        self._market = market
        self._sim = sim = market.simulated
        self.calendar = calendar_for(market)
        self._cache_sessions = cache_sessions
        self._lock = threading.RLock()
        self._clock = _as_clock(clock)

        # per-bar parameters, given per 5-minute bar, scaled to the bar interval
        bar_minutes = market.interval_minutes or regular_session_minutes(market.calendar)
        scale = bar_minutes / 5.0
        self._vol_scale = math.sqrt(scale)
        self._drift_per_bar = sim.drift_strength * 1e-4 * scale
        self._market_sd = sim.market_vol_bp * 1e-4 * self._vol_scale
        self._log_vol_sd = sim.vol_of_vol / math.sqrt(1.0 - sim.vol_persistence**2)  # stationary sd of h
        self._log_vol_phi = sim.vol_persistence**scale
        self._log_vol_shock = self._log_vol_sd * math.sqrt(1.0 - self._log_vol_phi**2)

        self._build_sessions()
        self._build_static()

        self._cache: OrderedDict[int, _Session] = OrderedDict()
        self._checkpoints: dict[int, np.ndarray] = {0: self._initial_state}
        self._dollar_volume: list[np.ndarray] = []  # per session, filled by the sequential pass
        self._frontier = 0  # sessions [0, frontier) have been generated sequentially
        self._frontier_state = self._initial_state

    # ------------------------------------------------------------------ construction

    def _build_sessions(self) -> None:
        """Session table from the start session to the horizon: opens, closes, bar counts."""
        cal = self.calendar
        try:
            start_date = pd.Timestamp(self._sim.start)
        except (ValueError, TypeError):
            raise ConfigError(f"market.simulated.start: {self._sim.start!r} is not a date; use e.g. '2025-01-02'") from None
        if start_date.tzinfo is not None:
            start_date = start_date.tz_convert("UTC").tz_localize(None)
        start_date = start_date.normalize()
        now = self._clock()
        if cal.code in ROUND_THE_CLOCK:
            horizon = now.normalize() + pd.Timedelta(days=ROUND_THE_CLOCK_HORIZON_DAYS)
        else:
            horizon = _xcal(cal.code).last_session.tz_localize("UTC") + pd.Timedelta(days=1)
        first_day = start_date.tz_localize("UTC")
        if first_day >= min(horizon, now):
            raise ConfigError(
                f"market.simulated.start: {start_date.date()} is not before now ({now}) and the calendar's last "
                f"session ({(horizon - pd.Timedelta(days=1)).date()}): no bar has closed yet; choose an earlier start"
            )
        table = cal.sessions(first_day, horizon)
        table = table[(table.index >= start_date) & (table["close"] <= horizon)]
        if table.empty:
            raise ConfigError(f"market.simulated.start: no {cal.code} session on or after {start_date.date()}")
        opens = pd.DatetimeIndex(table["open"]).as_unit("ns").asi8
        closes = pd.DatetimeIndex(table["close"]).as_unit("ns").asi8
        if cal.interval_minutes is None:
            counts = np.ones(len(opens), dtype=np.int64)
            first_bar = closes
            self._step_ns = 0
        else:
            self._step_ns = cal.interval_minutes * 60 * 10**9
            counts = (closes - opens) // self._step_ns
            first_bar = opens + self._step_ns
        keep = counts > 0
        self._opens_ns, self._closes_ns = opens[keep], closes[keep]
        self._bar_counts, self._first_bar_ns = counts[keep], first_bar[keep]
        # the last bar of a session closes at open + count*step (the close itself for daily bars)
        self._last_bar_ns = np.where(self._step_ns > 0, self._opens_ns + self._bar_counts * self._step_ns, self._closes_ns)
        self._has_gap = np.concatenate([[False], self._opens_ns[1:] > self._closes_ns[:-1]])
        self._regular_bars = bars_per_session(self._market)

    def _build_static(self) -> None:
        """Per-symbol constants and the initial state, from default_rng([seed, 0])."""
        sim, n = self._sim, len(self._symbols)
        rng = np.random.default_rng([sim.seed, _STATIC_STREAM])
        self.beta = rng.uniform(*BETA_RANGE, size=n)
        self.start_price = np.exp(rng.uniform(math.log(sim.start_price_min), math.log(sim.start_price_max), size=n))
        self.adv_level = np.exp(rng.uniform(math.log(sim.adv_min_dollars), math.log(sim.adv_max_dollars), size=n))
        self.idio_vol_level = sim.idio_vol_bp * 1e-4 * np.exp(IDIO_LEVEL_DISPERSION * rng.standard_normal(n))
        state = np.zeros((len(_STATE_ROWS), n))
        state[_LOG_CLOSE] = np.log(self.start_price)
        state[_LOG_VOL] = self._log_vol_sd * rng.standard_normal(n)
        state[_DRIFT] = rng.standard_normal(n)
        state[_LOG_VOLUME] = VOLUME_LEVEL_SD * rng.standard_normal(n)
        self._initial_state = state

    # ------------------------------------------------------------------ protocol properties

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def first_time(self) -> pd.Timestamp:
        return pd.Timestamp(int(self._first_bar_ns[0]), tz="UTC")

    @property
    def last_time(self) -> pd.Timestamp:
        """The newest bar closed by the clock (never a future bar)."""
        return pd.Timestamp(self._last_closed_ns(), tz="UTC")

    def _last_closed_ns(self) -> int:
        """Close time (ns) of the newest bar at or before the clock's now; before the first bar, one ns before it."""
        now_ns = ns_of(self._clock())
        k = int(np.searchsorted(self._first_bar_ns, now_ns, side="right")) - 1
        if k < 0:
            return int(self._first_bar_ns[0]) - 1
        if self._step_ns == 0 or now_ns >= self._last_bar_ns[k]:
            return int(self._last_bar_ns[k])
        return int(self._first_bar_ns[k] + (now_ns - self._first_bar_ns[k]) // self._step_ns * self._step_ns)

    # ------------------------------------------------------------------ generation

    def _intraday_profile(self, n_bars: int) -> np.ndarray:
        """Share of a regular session's dollar volume in each of ``n_bars`` bars, shape (n_bars,)."""
        if self.calendar.interval_minutes is None:
            return np.ones(1)
        x = (np.arange(n_bars) + 0.5) / n_bars
        weight = 1.0 + 2.0 * (2.0 * x - 1.0) ** 2
        return weight / weight.sum() * (n_bars / self._regular_bars)

    def _generate(self, k: int, state: np.ndarray) -> _Session:
        """Session ``k`` from the state at its start; pure function of (k, state)."""
        sim = self._sim
        n_sym = len(self._symbols)
        n = int(self._bar_counts[k])
        rng = np.random.default_rng([sim.seed, _SESSION_STREAM, k])
        z_drift = rng.standard_normal(n_sym)
        z_volume_level = rng.standard_normal(n_sym)
        z_gap_market = rng.standard_normal()
        z_gap_idio = rng.standard_normal(n_sym)
        z_market = rng.standard_normal(n)
        z_idio = rng.standard_normal((n, n_sym))
        z_log_vol = rng.standard_normal((n, n_sym))
        z_volume = rng.standard_normal((n, n_sym))
        z_range = np.abs(rng.standard_normal((2, n, n_sym)))
        missing = rng.random((n, n_sym)) < sim.missing_bar_prob
        sizes = rng.integers(QUOTE_SIZE_LOTS[0], QUOTE_SIZE_LOTS[1] + 1, size=(2, n, n_sym)).astype(np.float64) * 100.0

        drift = DRIFT_PERSISTENCE * state[_DRIFT] + math.sqrt(1.0 - DRIFT_PERSISTENCE**2) * z_drift
        log_volume = VOLUME_PERSISTENCE * state[_LOG_VOLUME] + VOLUME_LEVEL_SD * math.sqrt(
            1.0 - VOLUME_PERSISTENCE**2
        ) * z_volume_level

        # h_t = phi h_{t-1} + shock z_t, continued from the previous session's last bar
        phi = self._log_vol_phi
        log_vol, _ = lfilter([self._log_vol_shock], [1.0, -phi], z_log_vol, axis=0, zi=(phi * state[_LOG_VOL])[None, :])
        idio_sd = self.idio_vol_level * self._vol_scale * np.exp(log_vol)  # (n, N)

        # planted reversal: e_t = u_t - rho (e_{t-1} + e_{t-2} + e_{t-3}); zi is the filter's
        # transposed-direct-form state built from the previous session's last three e
        rho = sim.reversal_strength
        e1, e2, e3 = state[_IDIO1], state[_IDIO2], state[_IDIO3]
        zi = -rho * np.stack([e1 + e2 + e3, e1 + e2, e1])
        idio, _ = lfilter([1.0], [1.0, rho, rho, rho], idio_sd * z_idio, axis=0, zi=zi)

        market = self._market_sd * z_market  # (n,)
        log_return = self.beta * market[:, None] + idio + self._drift_per_bar * drift

        gap = np.zeros(n_sym)
        if self._has_gap[k]:
            overnight = math.sqrt(OVERNIGHT_BARS)
            gap_idio_sd = self.idio_vol_level * np.exp(state[_LOG_VOL])
            gap = overnight * (self.beta * sim.market_vol_bp * 1e-4 * z_gap_market + gap_idio_sd * z_gap_idio)
        log_open_first = state[_LOG_CLOSE] + gap
        log_close = log_open_first + np.cumsum(log_return, axis=0)
        log_open = np.vstack([log_open_first[None, :], log_close[:-1]])
        close, open_ = np.exp(log_close), np.exp(log_open)

        bar_sd = np.sqrt((self.beta * self._market_sd) ** 2 + idio_sd**2)
        high = np.maximum(open_, close) * np.exp(0.5 * bar_sd * z_range[0])
        low = np.minimum(open_, close) * np.exp(-0.5 * bar_sd * z_range[1])
        spread = sim.base_spread_bps + sim.spread_vol_mult * bar_sd * 1e4

        session_dollars = self.adv_level * np.exp(log_volume - 0.5 * VOLUME_LEVEL_SD**2)
        bar_dollars = session_dollars * self._intraday_profile(n)[:, None]
        noise = np.exp(VOLUME_NOISE_SD * z_volume - 0.5 * VOLUME_NOISE_SD**2)
        volume = np.maximum(np.rint(bar_dollars * noise / close), 1.0)

        observed = ~missing
        fields = {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "spread_bps": spread}
        for arr in fields.values():
            arr[missing] = np.nan
        dollars = np.where(observed, close * volume, 0.0).sum(axis=0)
        dollar_volume = np.where(observed.any(axis=0), dollars, np.nan)
        fields["bid_size"], fields["ask_size"] = sizes[0], sizes[1]
        # The planted components' hidden state at each bar (for the oracle; never shown to the models):
        # the last three idiosyncratic returns and the session's drift, in log-return per bar.
        history = np.vstack([e3[None], e2[None], e1[None], idio])
        fields["idio_lag0"], fields["idio_lag1"], fields["idio_lag2"] = history[3:], history[2:-1], history[1:-2]
        fields["drift_per_bar"] = np.broadcast_to(self._drift_per_bar * drift, (n, n_sym)).copy()
        fields["idio_sd"] = idio_sd  # the fresh shock's sd at each bar: what an observer's filter weighs bars by

        idio_history = np.vstack([e3[None], e2[None], e1[None], idio])  # oldest first
        end_state = np.empty_like(state)
        end_state[_LOG_CLOSE] = log_close[-1]
        end_state[_LOG_VOL] = log_vol[-1]
        end_state[_IDIO1], end_state[_IDIO2], end_state[_IDIO3] = idio_history[-1], idio_history[-2], idio_history[-3]
        end_state[_DRIFT] = drift
        end_state[_LOG_VOLUME] = log_volume

        if self._step_ns:
            times = self._opens_ns[k] + self._step_ns * np.arange(1, n + 1, dtype=np.int64)
        else:
            times = self._closes_ns[k : k + 1].copy()
        return _Session(times, fields, end_state, dollar_volume)

    def _remember(self, k: int, session: _Session) -> None:
        self._cache[k] = session
        self._cache.move_to_end(k)
        while len(self._cache) > self._cache_sessions:
            self._cache.popitem(last=False)

    def _advance_to(self, k: int) -> None:
        """Generate sessions sequentially until sessions [0, k] have been produced once."""
        while self._frontier <= k:
            j = self._frontier
            session = self._generate(j, self._frontier_state)
            self._remember(j, session)
            self._dollar_volume.append(session.dollar_volume)
            self._frontier_state = session.end_state
            self._frontier = j + 1
            if self._frontier % CHECKPOINT_EVERY == 0:
                self._checkpoints[self._frontier] = session.end_state

    def _start_state(self, k: int) -> np.ndarray:
        """The carried state at the start of an already sequentially generated session ``k``."""
        if k in self._checkpoints:
            return self._checkpoints[k]
        if k - 1 in self._cache:
            return self._cache[k - 1].end_state
        base = (k // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
        for j in range(base, k - 1):
            self._session(j)
        return self._session(k - 1).end_state

    def _session(self, k: int) -> _Session:
        """Session ``k``, from the cache, the sequential pass or its nearest checkpoint."""
        with self._lock:
            if k not in self._cache:
                if k >= self._frontier:
                    self._advance_to(k)
                else:
                    self._remember(k, self._generate(k, self._start_state(k)))
            self._cache.move_to_end(k)
            return self._cache[k]

    # ------------------------------------------------------------------ windows

    def _check(self, lo_ns: int, hi_ns: int) -> None:
        check_served(
            self.calendar, lo_ns, hi_ns, int(self._first_bar_ns[0]), self._last_closed_ns(),
            "simulation",
            "move market.simulated.start (the simulation ends at the newest bar closed by its clock)",
        )

    def _collect(self, sessions: range, lo_ns: int, hi_ns: int, cols: np.ndarray, fields: Sequence[str]):
        """Rows with close time in [lo_ns, hi_ns] of ``sessions``: (times_ns (T,), {field: (T, N)})."""
        times, parts = [], {f: [] for f in fields}
        for k in sessions:
            session = self._session(k)
            rows = (session.times_ns >= lo_ns) & (session.times_ns <= hi_ns)
            times.append(session.times_ns[rows])
            for f in fields:
                parts[f].append(session.fields[f][np.ix_(rows, cols)])
        if not times:
            return np.empty(0, dtype=np.int64), {f: np.empty((0, len(cols))) for f in fields}
        return np.concatenate(times), {f: np.concatenate(parts[f]) for f in fields}

    def _window(self, symbols, start, end, fields: Sequence[str]):
        syms, cols = resolve_columns(self._symbols, symbols)
        lo, hi = ns_of(start), ns_of(end)
        if hi < lo:
            raise DataError(f"bar window end {pd.Timestamp(hi, tz='UTC')} is before its start {pd.Timestamp(lo, tz='UTC')}")
        self._check(lo, hi)
        first = int(np.searchsorted(self._last_bar_ns, lo, side="left"))
        stop = int(np.searchsorted(self._first_bar_ns, hi, side="right"))
        times, data = self._collect(range(first, stop), lo, hi, cols, fields)
        return syms, times, data

    def _ending_at(self, cols: np.ndarray, end_ns: int, count: int, fields: Sequence[str]):
        """The last ``count`` rows with close <= end_ns (fewer at the simulation's start)."""
        last = int(np.searchsorted(self._first_bar_ns, end_ns, side="right")) - 1
        first, have = last, 0
        while first >= 0:
            if self._last_bar_ns[first] <= end_ns:
                have += int(self._bar_counts[first])
            else:  # the session containing end_ns (intraday bars only: a daily bar is its session's last)
                have += int((end_ns - self._first_bar_ns[first]) // self._step_ns) + 1
            if have >= count or first == 0:
                break
            first -= 1
        times, data = self._collect(range(max(first, 0), last + 1), int(self._first_bar_ns[0]), end_ns, cols, fields)
        return times[-count:], {f: v[-count:] for f, v in data.items()}

    # ------------------------------------------------------------------ public API

    def bars(self, symbols, start, end) -> BarPanel:
        """Bars with close time in [start, end] (both inclusive), shape (T, N).

        ``symbols`` None means the whole universe. Missing bars are NaN rows.
        A window holding a calendar bar before ``first_time`` or after
        ``last_time`` is a DataError (a window may start at a session's open).
        """
        syms, times, data = self._window(symbols, start, end, _PANEL_FIELDS)
        return BarPanel(ns_index(times), syms, *(data[f] for f in _PANEL_FIELDS))

    def bars_ending_at(self, symbols, end, count: int) -> BarPanel:
        """The last ``count`` calendar bars with close time <= ``end``, shape (count, N).

        Raises DataError when fewer than ``count`` bars exist since ``first_time``.
        """
        syms, cols = resolve_columns(self._symbols, symbols)
        if int(count) < 1:
            raise DataError(f"bars_ending_at: count={count} must be at least 1")
        end_ns = ns_of(end)
        self._check(end_ns, end_ns)
        times, data = self._ending_at(cols, end_ns, int(count), _PANEL_FIELDS)
        if len(times) < count:
            raise DataError(
                f"bars_ending_at: only {len(times)} bars close between the simulation's first bar {self.first_time} "
                f"and {pd.Timestamp(end_ns, tz='UTC')}, {count} asked; ask for fewer bars or a later end"
            )
        return BarPanel(ns_index(times), syms, *(data[f] for f in _PANEL_FIELDS))

    def planted_expected_return(self, symbols, start, end, horizon_bars) -> np.ndarray:
        """What an oracle knowing the planted components expects of the return over each horizon.

        At each bar t with close in [start, end]: the expected sum of the next h
        bars' idiosyncratic log returns under the reversal recursion
        E[e_{t+k}] = -rho (E[e_{t+k-1}] + E[e_{t+k-2}] + E[e_{t+k-3}]) from the
        three known last ones, plus h times the session's drift per bar (as if
        the drift held for h bars; it decays by DRIFT_PERSISTENCE per session).
        The market factor and fresh shocks have mean 0. Missing bars are NaN.

        Returns
        -------
        ndarray, shape (H, T, N): expected log return over each horizon, decimal.
        """
        _, _, data = self._window(symbols, start, end, ("close", "idio_lag0", "idio_lag1", "idio_lag2", "drift_per_bar"))
        out = expected_log_return(data["idio_lag0"], data["idio_lag1"], data["idio_lag2"], data["drift_per_bar"],
                                  self._sim.reversal_strength, horizon_bars)
        return np.where(np.isfinite(data["close"])[None], out, np.nan)

    def observable_expected_return(self, symbols, start, end, horizon_bars) -> np.ndarray:
        """What an observer of the prices expects, knowing the market's parameters but not its hidden state.

        The observer sees each bar's return net of the market factor (the factor
        model's betas and the market's move known: across a universe the common
        move is estimated almost exactly), x_t = e_t + b d, with b the drift per
        bar per unit of d; it does not see d. Its expectation is
        :meth:`planted_expected_return` with d replaced by the posterior mean
        d^_t of a Kalman filter run from the simulation's first session
        (:func:`drift_posterior`: the stationary prior N(0, 1), the AR(1) of d
        across sessions, and within a session the observation
        v_t = x_t + rho (x_{t-1} + x_{t-2} + x_{t-3}) = b (1 + 3 rho) d + u_t,
        u_t ~ N(0, s_t^2), s_t the bar's shock volatility; the first three bars
        of a session, whose lags carry the previous session's drift, are not
        used), and the last three idiosyncratic returns by x - b d^_t.
        The gap between this and the planted oracle is information no model of
        these prices could have. Missing bars are NaN.

        Returns
        -------
        ndarray, shape (H, T, N): expected log return over each horizon, decimal.
        """
        _, cols = resolve_columns(self._symbols, symbols)
        lo, hi = ns_of(start), ns_of(end)
        if hi < lo:
            raise DataError(f"bar window end {pd.Timestamp(hi, tz='UTC')} is before its start {pd.Timestamp(lo, tz='UTC')}")
        self._check(lo, hi)
        first = int(np.searchsorted(self._last_bar_ns, lo, side="left"))
        stop = int(np.searchsorted(self._first_bar_ns, hi, side="right"))
        rho, b = self._sim.reversal_strength, self._drift_per_bar
        mean, var = np.zeros(len(cols)), np.ones(len(cols))
        prev_x = np.zeros((3, len(cols)))  # the last three x before the session, oldest first
        kept: dict[str, list] = {"close": [], "e0": [], "e1": [], "e2": [], "drift": []}
        for k in range(stop):
            s = self._session(k)
            if k > 0:
                mean, var = DRIFT_PERSISTENCE * mean, DRIFT_PERSISTENCE**2 * var + 1.0 - DRIFT_PERSISTENCE**2
            x = (s.fields["idio_lag0"] + s.fields["drift_per_bar"])[:, cols]
            ext = np.vstack([prev_x, x])
            v = x + rho * (ext[2:-1] + ext[1:-2] + ext[:-3])
            usable = (np.arange(len(x)) >= 3)[:, None]
            d_hat, mean, var = drift_posterior(v, s.fields["idio_sd"][:, cols], b * (1.0 + 3.0 * rho), mean, var, usable)
            prev_x = ext[-3:]
            if k >= first:
                rows = (s.times_ns >= lo) & (s.times_ns <= hi)
                kept["close"].append(s.fields["close"][np.ix_(rows, cols)])
                kept["drift"].append(b * d_hat[rows])
                for j, name in enumerate(("e0", "e1", "e2")):
                    kept[name].append(ext[3 - j:len(ext) - j][rows] - b * d_hat[rows])
        data = {f: np.concatenate(parts) if parts else np.empty((0, len(cols))) for f, parts in kept.items()}
        out = expected_log_return(data["e0"], data["e1"], data["e2"], data["drift"], rho, horizon_bars)
        return np.where(np.isfinite(data["close"])[None], out, np.nan)

    def spread_bps(self, symbols, start, end) -> np.ndarray:
        """Quoted spread in bps of each bar with close in [start, end], shape (T, N); NaN where missing."""
        _, _, data = self._window(symbols, start, end, ("spread_bps",))
        return data["spread_bps"]

    def quotes(self, symbols, at) -> QuoteSnapshot:
        """The quote of each symbol's latest non-missing bar with close <= ``at``.

        mid = that bar's close; bid/ask = mid -/+ half its spread; sizes are
        round lots of 100 to 5,000 shares; ``time`` = that bar's close time. The
        search goes back two regular sessions; a symbol without a bar there
        gets NaN prices, zero sizes and NaT.
        """
        syms, cols = resolve_columns(self._symbols, symbols)
        at_ns = ns_of(at)
        self._check(at_ns, at_ns)
        fields = ("close", "spread_bps", "bid_size", "ask_size")
        # Most symbols quote from the latest bar; only those missing it are searched further back.
        times, data = self._ending_at(cols, at_ns, 1, fields)
        has = np.isfinite(data["close"][-1])
        time_ns = np.where(has, times[-1], np.iinfo(np.int64).min)
        latest = {f: data[f][-1].copy() for f in fields}
        stale = np.flatnonzero(~has)
        if len(stale):
            times, data = self._ending_at(cols[stale], at_ns, 2 * self._regular_bars, fields)
            row, found = latest_valid_rows(np.isfinite(data["close"]))
            pick = np.arange(len(stale))
            has[stale] = found
            time_ns[stale] = np.where(found, times[row], np.iinfo(np.int64).min)
            for f in fields:
                latest[f][stale] = data[f][row, pick]
        mid = np.where(has, latest["close"], np.nan)
        half = 0.5e-4 * mid * latest["spread_bps"]
        return QuoteSnapshot(
            syms,
            mid - half,
            mid + half,
            np.where(has, latest["bid_size"], 0.0),
            np.where(has, latest["ask_size"], 0.0),
            time_ns.astype("datetime64[ns]"),
        )

    def adv(self, symbols, at) -> np.ndarray:
        """Mean daily dollar volume (sum of close*volume per session), shape (N,).

        Averaged over the (up to) 20 sessions that closed strictly before ``at``
        (so never the session containing ``at``); during the start session it
        is each symbol's ADV level.
        """
        _, cols = resolve_columns(self._symbols, symbols)
        at_ns = ns_of(at)
        self._check(at_ns, at_ns)
        done = int(np.searchsorted(self._closes_ns, at_ns, side="left"))
        if done == 0:
            return self.adv_level[cols].copy()
        with self._lock:
            self._advance_to(done - 1)
            recent = np.stack(self._dollar_volume[max(0, done - ADV_SESSIONS) : done])
        return mean_session_dollar_volume(recent[:, cols])
