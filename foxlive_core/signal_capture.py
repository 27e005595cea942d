"""The planted-signal harness: how much of a known, planted edge the whole pipeline turns into P&L.

The simulated market plants a short-horizon reversal and a slow drift whose
strength is set by ``market.simulated.reversal_strength`` and
``drift_strength``; :meth:`SimulatedMarket.planted_expected_return` is an
oracle that knows those components. For a planted strength s (a multiple of
the configured strengths), :func:`capture` trains the models on the market's
first sessions, replays the following ones on the models' predictions, and
replays the same cycles again with the oracle's expected returns in place of
every family's prediction (same pipeline, same costs, same barrier models).

- ``planted_ic``: the oracle's mean per-time rank IC at the horizon the book
  chose most often (what a perfect model could know).
- ``realised_ic`` (``realised_ic_se``): the arbitrated alpha's IC against that
  horizon's realised return in the models' replay, and its standard error
  (from the t-statistic on non-overlapping times).
- ``pnl_after_costs``, ``oracle_pnl_after_costs``: the two books' P&L in
  dollars, after spread, slippage and fees; ``capture_ratio`` the first over
  the second (None when the oracle's book earns nothing).
- ``turnover`` (traded notional over mean value) and ``costs`` (fees plus the
  spread and slippage paid against the mid, dollars) of the models' book, from
  its :mod:`foxlive_core.reports` report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from foxlive_core.attribution import traded_horizon
from foxlive_core.config import FoxliveConfig
from foxlive_core.engine import TradingEngine
from foxlive_core.models.store import ModelStore
from foxlive_core.models.training import train_models
from foxlive_core.pipeline.confidence import cross_sectional_ic
from foxlive_core.reports import load_report
from foxlive_core.runtime import demo_window, make_market
from foxlive_core.state import StateStore


def planted_config(cfg: FoxliveConfig, strength: float) -> FoxliveConfig:
    """``cfg`` with both planted components scaled by ``strength`` (0 plants nothing)."""
    sim = cfg.market.simulated
    scaled = dataclasses.replace(sim, reversal_strength=sim.reversal_strength * strength,
                                 drift_strength=sim.drift_strength * strength)
    return dataclasses.replace(cfg, market=dataclasses.replace(cfg.market, simulated=scaled))


def oracle_inputs(engine: TradingEngine, times: pd.DatetimeIndex, chunk_sessions: int = 5):
    """The engine's CycleInputs over ``times`` with every family's prediction replaced by the oracle's."""
    # (H, C, N) over the whole range at once; the calendar's bars in [first, last] are exactly ``times``.
    expected = np.expm1(engine.market.planted_expected_return(engine.symbols, times[0], times[-1], engine.info.horizon_bars))
    n_fam = len(engine.info.families)
    for c, inputs in enumerate(engine.batch_inputs(times, chunk_sessions)):
        yield dataclasses.replace(inputs, raw_pred=np.broadcast_to(expected[:, c], (n_fam, *expected.shape[::2])).copy())


@dataclass(frozen=True)
class CaptureResult:
    strength: float
    planted_ic: float | None
    planted_ic_by_horizon: dict
    realised_ic: float | None
    realised_ic_se: float | None
    traded_horizon: str | None
    pnl_after_costs: float
    oracle_pnl_after_costs: float
    capture_ratio: float | None
    turnover: float
    costs: float
    orders: int
    oracle_orders: int
    attribution: dict

    def summary(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("attribution")
        return out


def capture(cfg: FoxliveConfig, strength: float, sessions: int, symbols=None, clock=None,
            progress: bool = False) -> CaptureResult:
    """Train on the planted market of ``strength``, replay ``sessions`` sessions on the models and on the oracle.

    The models are trained into ``cfg.models_root`` (not activated); the books
    ``capture_models`` and ``capture_oracle`` are in ``cfg``'s state store.
    """
    cfg = planted_config(cfg, strength)
    symbols = tuple(symbols or cfg.symbols)
    market = make_market(cfg, symbols, clock=clock)
    start, end = demo_window(cfg, market, sessions)
    run = train_models(cfg, market, start - pd.Timedelta(seconds=1), symbols=symbols, activate=False, progress=progress)
    models = ModelStore(cfg.models_root).load(run.run_id, cfg)
    store = StateStore(cfg.state_path)
    engine = TradingEngine(cfg, market, models, store, symbols=symbols)
    times = engine.cycle_times(start, end)
    engine.replay("capture_models", start, end)
    engine.replay_inputs("capture_oracle", oracle_inputs(engine, times), len(times))

    perf = load_report(cfg, store, "capture_models")
    oracle = load_report(cfg, store, "capture_oracle")
    report = perf.attribution
    traded = traded_horizon(report) or cfg.horizon_names[-1]

    close = market.bars(symbols, start, end).close
    expected = market.planted_expected_return(symbols, start, end, engine.info.horizon_bars)
    planted = {}
    for i, (name, h) in enumerate(zip(cfg.horizon_names, engine.info.horizon_bars)):
        with np.errstate(divide="ignore", invalid="ignore"):
            realised = close[h:] / close[:-h] - 1.0
        ic = cross_sectional_ic(expected[i, :-h], realised, 5)
        planted[name] = float(np.nanmean(ic)) if np.isfinite(ic).any() else None
    row = next(r for r in report["stage_ic"] if r["stage"] == "arbitrated" and r["horizon"] == traded)
    se = abs(row["mean_ic"] / row["t_stat"]) if row["mean_ic"] is not None and row["t_stat"] else None
    return CaptureResult(
        strength=strength,
        planted_ic=planted.get(traded),
        planted_ic_by_horizon=planted,
        realised_ic=row["mean_ic"],
        realised_ic_se=se,
        traded_horizon=traded,
        pnl_after_costs=perf.pnl,
        oracle_pnl_after_costs=oracle.pnl,
        capture_ratio=perf.pnl / oracle.pnl if oracle.pnl > 0 else None,
        turnover=perf.turnover,
        costs=perf.costs["total"],
        orders=perf.orders,
        oracle_orders=oracle.orders,
        attribution=report,
    )

