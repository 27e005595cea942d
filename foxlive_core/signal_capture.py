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
- ``observable_ic``, ``observable_oracle_pnl_after_costs`` and
  ``observable_capture_ratio``: the same for a third replay, on an oracle that
  knows the market's parameters but sees only the prices
  (:meth:`SimulatedMarket.observable_expected_return`: the drift filtered from
  each symbol's past returns). The planted oracle's edge beyond it is
  information no model of the prices could have; the models' shortfall from it
  is what the models and the pipeline lose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
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


ORACLES = ("planted", "observable")


def oracle_expected_return(market, symbols, start, end, horizon_bars, oracle: str = "planted") -> np.ndarray:
    """(H, T, N) expected log returns of the ``planted`` oracle (it knows the hidden state) or the ``observable`` one."""
    if oracle not in ORACLES:
        raise ValueError(f"oracle {oracle!r} is not one of {ORACLES}")
    method = market.planted_expected_return if oracle == "planted" else market.observable_expected_return
    return method(symbols, start, end, horizon_bars)


def oracle_inputs(engine: TradingEngine, times: pd.DatetimeIndex, chunk_sessions: int = 1, oracle: str = "planted"):
    """The engine's CycleInputs over ``times`` with every family's prediction replaced by an oracle's (see ORACLES)."""
    # (H, C, N) over the whole range at once; the calendar's bars in [first, last] are exactly ``times``.
    expected = np.expm1(oracle_expected_return(engine.market, engine.symbols, times[0], times[-1],
                                               engine.info.horizon_bars, oracle))
    H, C, N = expected.shape
    raw_pred = np.broadcast_to(expected[:, None], (H, len(engine.info.families), C, N))
    return engine.batch_inputs(times, chunk_sessions, raw_pred=raw_pred)


def replay_oracle(cfg: FoxliveConfig, symbols: tuple[str, ...], run_id: str, start: pd.Timestamp, end: pd.Timestamp,
                  book: str, oracle: str = "planted", clock=None) -> None:
    """Replay the cycles in [start, end] on ``book`` with ``oracle``'s predictions and model run ``run_id``'s
    barrier models; opens its own market, models and store, so it may run in a process of its own."""
    market = make_market(cfg, symbols, clock=clock)
    models = ModelStore(cfg.models_root).load(run_id, cfg)
    engine = TradingEngine(cfg, market, models, StateStore(cfg.state_path), symbols=symbols)
    times = engine.cycle_times(start, end)
    engine.replay_inputs(book, oracle_inputs(engine, times, oracle=oracle), len(times))


@contextlib.contextmanager
def oracle_replays_beside(cfg: FoxliveConfig, symbols, run_id: str, start: pd.Timestamp, end: pd.Timestamp,
                          books: dict[str, str], clock=None):
    """Run :func:`replay_oracle` for each ``book -> oracle`` of ``books``, each in a spawned process, while the
    body of the ``with`` runs (the models' own replay); on leaving, wait for them and raise their errors.

    The replays are deterministic and on books of their own, so running them beside the models' replay
    changes no figure; on two cores it takes the oracles off the critical path.
    """
    symbols = tuple(symbols)
    pool = ProcessPoolExecutor(max_workers=len(books), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(replay_oracle, cfg, symbols, run_id, start, end, book, oracle, clock)
                   for book, oracle in books.items()]
        yield
        for future in futures:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    observable_ic: float | None
    observable_ic_by_horizon: dict
    observable_oracle_pnl_after_costs: float
    observable_capture_ratio: float | None
    turnover: float
    costs: float
    orders: int
    oracle_orders: int
    observable_oracle_orders: int
    attribution: dict

    def summary(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("attribution")
        return out


def capture(cfg: FoxliveConfig, strength: float, sessions: int, symbols=None, clock=None,
            progress: bool = False) -> CaptureResult:
    """Train on the planted market of ``strength``, replay ``sessions`` sessions on the models and on both oracles.

    The models are trained into ``cfg.models_root`` (not activated); the books
    ``capture_models``, ``capture_oracle`` and ``capture_observable`` are in
    ``cfg``'s state store.
    """
    cfg = planted_config(cfg, strength)
    symbols = tuple(symbols or cfg.symbols)
    market = make_market(cfg, symbols, clock=clock)
    start, end = demo_window(cfg, market, sessions)
    run = train_models(cfg, market, start - pd.Timedelta(seconds=1), symbols=symbols, activate=False, progress=progress)
    models = ModelStore(cfg.models_root).load(run.run_id, cfg)
    store = StateStore(cfg.state_path)
    engine = TradingEngine(cfg, market, models, store, symbols=symbols)
    oracles = {"capture_oracle": "planted", "capture_observable": "observable"}
    with oracle_replays_beside(cfg, symbols, run.run_id, start, end, oracles, clock=clock):
        engine.replay("capture_models", start, end)

    perf = load_report(cfg, store, "capture_models")
    oracle = load_report(cfg, store, "capture_oracle")
    observable = load_report(cfg, store, "capture_observable")
    report = perf.attribution
    traded = traded_horizon(report) or cfg.horizon_names[-1]

    close = market.bars(symbols, start, end).close
    ics = {}
    for o in ORACLES:
        expected = oracle_expected_return(market, symbols, start, end, engine.info.horizon_bars, o)
        ics[o] = {name: oracle_ic(expected[i], close, h)
                  for i, (name, h) in enumerate(zip(cfg.horizon_names, engine.info.horizon_bars))}
    planted, seen = ics["planted"], ics["observable"]
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
        observable_ic=seen.get(traded),
        observable_ic_by_horizon=seen,
        observable_oracle_pnl_after_costs=observable.pnl,
        observable_capture_ratio=perf.pnl / observable.pnl if observable.pnl > 0 else None,
        turnover=perf.turnover,
        costs=perf.costs["total"],
        orders=perf.orders,
        oracle_orders=oracle.orders,
        observable_oracle_orders=observable.orders,
        attribution=report,
    )


def oracle_ic(expected: np.ndarray, close: np.ndarray, h: int) -> float | None:
    """Mean per-time rank IC of expected returns (T, N) against the h-bar returns of ``close`` (T, N) that followed."""
    with np.errstate(divide="ignore", invalid="ignore"):
        realised = close[h:] / close[:-h] - 1.0
    ic = cross_sectional_ic(expected[:-h], realised, 5)
    return float(np.nanmean(ic)) if np.isfinite(ic).any() else None

