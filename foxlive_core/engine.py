"""The trading engine: data -> features -> inference -> stages -> orders -> fills -> state.

:meth:`TradingEngine.run_cycle` runs one cycle of one book for the whole
universe and commits it in one transaction of the state store.
:meth:`TradingEngine.replay` runs a range of past cycles on a replay book: it
gathers the inputs of a session's cycles in one batch (features over the
session and one inference call per return model; features are window-local, so
they equal a live cycle's bit for bit) and then applies exactly the same
:func:`foxlive_core.decide.decide` and execution as a live cycle. Live or
replayed, a cycle runs the barrier classifiers only at the horizon it chose for
each symbol.

Quotes derived from bars (the simulated and historical markets) are judged
against the bar: a quote older than one bar is stale. A real-time quote feed
(``quotes_are_realtime`` on the market) is judged against
``quote_gate.max_quote_age_ms``. A source that says ``bars_threadsafe`` (the
simulated and historical markets) has a replay's next bars loaded on the worker
thread that makes the next features and predictions; any other is asked only
from the engine's own thread.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from foxlive_core.attribution import SignalAttribution
from foxlive_core.brokers import open_broker, simulated_execution
from foxlive_core.brokers.protocol import Broker, OrderRequest, OrderResult
from foxlive_core.calendar import to_utc
from foxlive_core.config import FoxliveConfig
from foxlive_core.data.protocol import MarketData
from foxlive_core.data.types import BarPanel
from foxlive_core.decide import (
    BLOCKED, HOLD, TRADE, BarrierProbs, BarrierTable, Buffers, CycleInputs, Decision, ModelInfo, Portfolio,
    align_buffers, decide, history_axes,
)
from foxlive_core.errors import BrokerError, DataError, StateError
from foxlive_core.cycle_table import CycleTableWriter
from foxlive_core.features import FEATURE_NAMES, build_features, fill_missing_bars, required_history_bars
from foxlive_core.models.store import BarriersOnDemand, ModelSet
from foxlive_core.pipeline.arbitrate import select_horizon
from foxlive_core.pipeline.risk_checks import portfolio_risk
from foxlive_core.portfolio import Holdings, LedgerEntry, fill_entry
from foxlive_core.reconcile import reconcile, recover
from foxlive_core.state import (
    ACTIVE, HALTED, LOCK_TTL_S, REDUCING, TRADING_STATES, BookState, CycleRecord, Intent, StateStore, lock_owner,
)

VOL_FEATURE = "vol_20b"


def stricter(a: str, b: str) -> str:
    """The stricter of two trading states (active < reducing < halted)."""
    return max(a, b, key=TRADING_STATES.index)


def client_order_id(book: str, cycle_time: pd.Timestamp, symbol: str, attempt: int = 1) -> str:
    """Deterministic id of a cycle's order, ``book:time:symbol``; a cycle's run after a crashed one appends ``:attempt``."""
    base = f"{book}:{cycle_time.strftime('%Y%m%dT%H%M%SZ')}:{symbol}"
    return base if attempt == 1 else f"{base}:{attempt}"


@dataclass(frozen=True)
class _PriorRuns:
    """What crashed runs of a cycle left: this run's number, the broker's answers, the book as the cycle began.

    ``start`` is None when no earlier run's order was filled (the book is as the cycle began).
    """

    attempt: int
    answered: list[Intent]
    start: Holdings | None


def model_info(models: ModelSet, cfg: FoxliveConfig) -> ModelInfo:
    return ModelInfo(
        run_id=models.run_id,
        families=models.families,
        horizons=models.horizons,
        horizon_bars=np.array(cfg.horizon_bars(), dtype=np.int64),
        bps_scale=models.bps_scale,
        has_barrier=models.has_barrier(),
        calibration_slope=models.calibration_slope,
    )


@dataclass
class CycleResult:
    """Everything one cycle decided and did."""

    book: str
    time: pd.Timestamp
    symbols: tuple[str, ...]
    decision: Decision
    orders: list[OrderRequest]
    results: list[OrderResult]
    portfolio_value: float
    cash: float
    gross_exposure: float
    net_exposure: float
    drawdown: float
    daily_return: float
    trading_state: str  # the book's at the end of the cycle: active, reducing or halted (foxlive_core.state)
    halt_reason: str
    model_run_id: str
    horizons: tuple[str, ...]
    families: tuple[str, ...]
    timings_ms: dict = field(default_factory=dict)

    @property
    def halted(self) -> bool:
        """Whether the book ended the cycle not active."""
        return self.trading_state != ACTIVE

    @property
    def counts(self) -> dict[str, int]:
        d = self.decision.decision
        return {"TRADE": int((d == TRADE).sum()), "HOLD": int((d == HOLD).sum()), "BLOCKED": int((d == BLOCKED).sum())}

    def decisions_frame(self) -> pd.DataFrame:
        tr = self.decision.trace
        best = tr["best_horizon"]
        return pd.DataFrame(
            {
                "symbol": self.symbols,
                "decision": self.decision.decision,
                "reason": self.decision.reason,
                "horizon": [self.horizons[b] if b >= 0 else "" for b in best],
                "alpha_bps": np.where(best >= 0, np.take_along_axis(tr["alpha_bps"], np.maximum(best, 0)[None], 0)[0], np.nan),
                "score": np.where(best >= 0, np.take_along_axis(tr["score"], np.maximum(best, 0)[None], 0)[0], np.nan),
                "gate": tr["gate"],
                "current_weight": tr["current_weight"],
                "target_weight": self.decision.target_weight,
                "shares": self.decision.shares,
            }
        )

    def fills_frame(self) -> pd.DataFrame:
        rows = [
            {
                "client_order_id": r.client_order_id, "symbol": r.symbol, "side": r.side,
                "requested": r.requested_quantity, "filled": r.filled_quantity, "status": r.status,
                "price": r.fill.price if r.fill else np.nan, "fee": r.fill.fee if r.fill else 0.0,
                "reject_reason": r.reject_reason,
            }
            for r in self.results
        ]
        return pd.DataFrame(rows, columns=["client_order_id", "symbol", "side", "requested", "filled", "status", "price", "fee", "reject_reason"])

    def trace_row(self, symbol: str) -> dict:
        from foxlive_core.explain import trace_row

        return trace_row(self, symbol)

    def explain(self, symbol: str) -> str:
        from foxlive_core.explain import render

        return render(self.trace_row(symbol))


@dataclass
class ReplaySummary:
    """What a replay did, in totals; its cycles, orders and decisions are in the store.

    ``last`` is the last cycle's full result (for a glance at the book's end);
    ``resumed_after`` the last cycle committed before this replay continued the book.
    """

    book: str
    start_value: float
    resumed_after: pd.Timestamp | None = None
    cycles: int = 0
    first: pd.Timestamp | None = None
    last_time: pd.Timestamp | None = None
    orders: int = 0
    fills: int = 0
    counts: dict = field(default_factory=lambda: {"TRADE": 0, "HOLD": 0, "BLOCKED": 0})
    end_value: float | None = None
    commits: int = 0
    trading_state: str = ACTIVE
    halt_reason: str = ""
    elapsed_s: float = 0.0
    last: CycleResult | None = None

    @property
    def halted(self) -> bool:
        return self.trading_state != ACTIVE

    def add(self, result: CycleResult) -> None:
        self.cycles += 1
        self.first = self.first or result.time
        self.last_time = result.time
        self.orders += len(result.orders)
        self.fills += sum(r.fill is not None for r in result.results)
        for k, v in result.counts.items():
            self.counts[k] += v
        self.end_value = result.portfolio_value
        self.last = result


class _Chunk:
    """The cycles of a replay since its last commit."""

    def __init__(self, symbols, info: ModelInfo, fields: str) -> None:
        self._symbols, self._info, self._fields = symbols, info, fields
        self.clear()

    def clear(self) -> None:
        self.sessions: list[str] = []
        self.records: list[CycleRecord] = []
        self.events: list = []
        self.table = CycleTableWriter(self._symbols, self._info.horizons, self._info.families, self._fields)

    def __len__(self) -> int:
        return len(self.records)

    def sessions_before(self, session: str) -> int:
        """How many whole sessions the chunk holds before a cycle of ``session`` joins it."""
        if not self.sessions:
            return 0
        return len(self.sessions) if session != self.sessions[-1] else len(self.sessions) - 1

    def add(self, session: str, result: CycleResult, record: CycleRecord, events: list) -> None:
        if not self.sessions or self.sessions[-1] != session:
            self.sessions.append(session)
        self.records.append(record)
        self.events.extend(events)
        self.table.add(result.time, result.model_run_id, result.decision, result.decision.trace)


def load_cycle_bars(cfg: FoxliveConfig, market: MarketData, symbols, times: pd.DatetimeIndex) -> BarPanel:
    """Raw bars from the first bar the earliest cycle needs through the last cycle time."""
    need = max(required_history_bars(cfg.market.max_fill_bars), cfg.engine.history_bars)
    if len(times) == 1:
        panel = market.bars_ending_at(symbols, times[0], need)
    else:
        first = market.calendar.bars_ending_at(times[0], need)[0]
        panel = market.bars(symbols, first, times[-1])
    missing = times.difference(panel.times)
    if len(missing):
        raise DataError(
            f"cycle time(s) {[str(t) for t in missing[:3]]} are not bar close times of calendar "
            f"{market.calendar.code} at {cfg.market.bar_interval}; cycles run at bar closes"
        )
    return panel


def cycle_features(cfg: FoxliveConfig, panel: BarPanel, times: pd.DatetimeIndex) -> np.ndarray:
    """Features at each cycle time, shape (C, N, F) (the last-row fast path for a single live cycle)."""
    fill = cfg.market.max_fill_bars
    if len(times) == 1 and panel.times[-1] == times[0]:
        return build_features(panel, fill, last_only=True).values
    return build_features(panel, fill).values[panel.times.get_indexer(times)]


class TradingEngine:
    """Runs cycles of books on one market, one model set and one state store.

    Parameters
    ----------
    cfg : FoxliveConfig
    market : MarketData
    models : ModelSet (verified; see :class:`foxlive_core.models.store.ModelStore`)
    store : StateStore
    symbols : the universe (defaults to ``cfg.symbols``)
    broker_factory : book -> :class:`~foxlive_core.brokers.protocol.Broker` of the live cycles of that book
        (default: the configured adapter, ``broker.kind``, filling a paper book against ``market``'s quotes)

    The engine uses nothing of a broker but the Broker protocol. A replay
    simulates execution on an in-memory paper account of its own, whatever
    broker trades the live book.
    """

    lock_ttl_s = LOCK_TTL_S  # the book lock's lifetime; every commit renews it (StateStore.commit_cycles)

    def __init__(self, cfg: FoxliveConfig, market: MarketData, models: ModelSet, store: StateStore, symbols=None,
                 broker_factory=None) -> None:
        self.cfg = cfg
        self.market = market
        self.models = models
        self.info = model_info(models, cfg)
        self.store = store
        self.symbols = tuple(symbols or cfg.symbols)
        self._column = {s: i for i, s in enumerate(self.symbols)}
        served = set(market.symbols)
        unknown = [s for s in self.symbols if s not in served]
        if unknown:
            raise DataError(f"symbol(s) {unknown[:10]} are not served by the market data source; fix config/symbols.yaml")
        self.history_bars = cfg.engine.history_bars
        self._broker_factory = broker_factory or (lambda book: open_broker(cfg.broker, book, store.path, market))
        self._brokers: dict = {}
        self._vol_idx = FEATURE_NAMES.index(VOL_FEATURE)
        self._histories = history_axes(cfg, len(self.info.families), self.info.horizon_bars)
        realtime = getattr(market, "quotes_are_realtime", False)
        self.quote_max_age_s = cfg.quote_gate.max_quote_age_ms / 1000.0 if realtime else market.calendar.bar_seconds()

    # ------------------------------------------------------------------ books

    def broker(self, book: str) -> Broker:
        if book not in self._brokers:
            self._brokers[book] = self._broker_factory(book)
        return self._brokers[book]

    def ensure_book(self, book: str) -> None:
        if not self.store.exists(book):
            self.store.create_book(book, self.cfg.broker.starting_cash)

    def reset_book(self, book: str) -> None:
        """Delete ``book`` and start it again with the starting cash (a replay book: its execution is simulated).

        Call it only while holding the book's lock (:meth:`replay_inputs` does), which the reset keeps.
        """
        self.store.delete_book(book)
        self.store.create_book(book, self.cfg.broker.starting_cash)

    # ------------------------------------------------------------------ inputs
    #
    # A cycle's inputs are made in four steps, each usable alone (the Dagster assets
    # market_bars -> features -> predictions -> trading_cycle are these steps):
    # load_bars -> cycle_features -> predict -> iter_inputs. Features are window-local,
    # so one step over many cycles gives each cycle exactly what a lone cycle gets.

    def load_bars(self, times: pd.DatetimeIndex) -> BarPanel:
        return load_cycle_bars(self.cfg, self.market, self.symbols, times)

    def cycle_features(self, panel: BarPanel, times: pd.DatetimeIndex) -> np.ndarray:
        return cycle_features(self.cfg, panel, times)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions (H, Fam, C, N) of the return models for features X (C, N, F).

        The barrier classifiers are not run here: each cycle predicts them at the horizons it
        chooses (:class:`~foxlive_core.models.store.BarriersOnDemand`).
        """
        return self.models.predict_return_cycles(X)

    def iter_inputs(self, times: pd.DatetimeIndex, panel: BarPanel, X: np.ndarray, pred: np.ndarray,
                    barrier: np.ndarray | None = None):
        """Yield each cycle's CycleInputs from the batch pieces above.

        ``barrier`` (H, 2, C, N), when given, holds the barrier probabilities made beforehand (the
        Dagster ``predictions`` asset); otherwise each cycle predicts them on demand.
        """
        filled = fill_missing_bars(panel, self.cfg.market.max_fill_bars)
        rows = panel.times.get_indexer(times)
        sessions = self.market.calendar.session_dates(times).astype(str)
        mended = self.bar_repairs(panel, filled, rows, times)
        L = self.history_bars
        for c, t in enumerate(times):
            lo = max(0, rows[c] + 1 - L)
            window = slice(lo, rows[c] + 1)
            probs = BarriersOnDemand(self.models, X[c]) if barrier is None else BarrierTable(barrier[:, :, c, :])
            yield self._inputs_from(t, sessions[c], panel.rows(window), filled.rows(window), X[c], pred[:, :, c, :],
                                    probs, mended[c])

    def bar_repairs(self, panel: BarPanel, filled: BarPanel, rows: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
        """(C, N) what is suspect about each symbol's bar at each cycle time (see CycleInputs.bar_repair):
        '', 'jump' (|log move| from the previous close beyond ``market.max_bar_log_move``), 'filled', 'repaired'."""
        out = np.full((len(times), len(self.symbols)), "", dtype=object)
        before = filled.close[np.maximum(rows - 1, 0)]
        with np.errstate(divide="ignore", invalid="ignore"):
            move = np.abs(np.log(filled.close[rows] / before))
        out[(rows > 0)[:, None] & (move > self.cfg.market.max_bar_log_move)] = "jump"
        out[np.isnan(panel.close[rows]) & np.isfinite(filled.close[rows])] = "filled"
        if hasattr(self.market, "repaired"):  # a loader that repairs rows says which bars it touched
            touched = self.market.repaired(self.symbols, times[0], times[-1])
            window = panel.times[rows[0]: rows[-1] + 1]
            out[touched[window.get_indexer(times)]] = "repaired"
        return out

    def gather_inputs(self, time) -> CycleInputs:
        """Inputs of the single cycle at bar time ``time`` (the live path)."""
        times = pd.DatetimeIndex([to_utc(time)])
        panel = self.load_bars(times)
        X = self.cycle_features(panel, times)
        return next(self.iter_inputs(times, panel, X, self.predict(X)))

    def _inputs_from(self, t, session: str, window: BarPanel, filled: BarPanel, X, pred_hfn, barrier: BarrierProbs,
                     bar_repair: np.ndarray) -> CycleInputs:
        quotes = self.market.quotes(self.symbols, t)
        real = np.isfinite(window.close)
        last_real = np.where(real.any(axis=0), len(window.times) - 1 - np.argmax(real[::-1], axis=0), -1)
        last_time_ns = window.times.asi8[np.maximum(last_real, 0)]
        data_age_s = np.where(last_real >= 0, (t.value - last_time_ns) / 1e9, np.inf)
        q_ns = quotes.time.astype("datetime64[ns]").astype(np.int64)
        quote_age_s = np.where(np.isnat(quotes.time), np.nan, (t.value - q_ns) / 1e9)
        return CycleInputs(
            time=t,
            session=str(session),
            symbols=self.symbols,
            window_times=filled.times,
            close=filled.close,
            features_valid=np.isfinite(X).all(axis=1),
            vol_per_bar=X[:, self._vol_idx],
            data_age_s=data_age_s,
            quotes=quotes,
            quote_age_s=quote_age_s,
            adv=self.market.adv(self.symbols, t),
            raw_pred=np.ascontiguousarray(np.swapaxes(pred_hfn, 0, 1)),
            barrier_prob=barrier,
            bar_repair=bar_repair,
        )

    # ------------------------------------------------------------------ cycles

    def run_cycle(self, book: str, time, inputs: CycleInputs | None = None) -> CycleResult:
        """Run and commit the cycle of ``book`` at bar time ``time``, in one transaction.

        A cycle already committed for this book is refused (StateError): cycles
        are applied once. The book's lock keeps cycles of one book from
        overlapping. Before anything else the orders of cycles that were never
        committed (the process died) are resolved at the broker
        (:func:`foxlive_core.reconcile.recover`); then the broker's positions
        and cash are compared with the book's, and any difference (or a broker
        that cannot report them) halts the book: the cycle runs and commits,
        but sends nothing. The cycle records its orders as intents in the
        store before it sends them.

        A cycle that runs again after its earlier run crashed decides from the
        book as the cycle began (the ledger without that cycle's recovered
        fills). An order it decides exactly as the broker already answered in
        this cycle is not sent again (the answer stands); otherwise it sends,
        under a new client order id, what is left to reach its decision,
        never an order that would undo a fill of the earlier run.
        """
        t = to_utc(time)
        self.ensure_book(book)
        broker = self.broker(book)
        with self.store.locked(book, owner=lock_owner(t.isoformat()), ttl_seconds=self.lock_ttl_s) as owner:
            recover(self.store, book, broker)
            if self.store.cycle_done(book, t):
                raise StateError(f"book {book!r}: the cycle at {t} has already run; cycles are applied once")
            state = self.store.load(book)
            if state.last_cycle_time is not None and t <= state.last_cycle_time:
                raise StateError(
                    f"book {book!r}: cycle time {t} is not after the book's last cycle {state.last_cycle_time}; "
                    "cycles of a book run forward in time (replay history on a separate book)"
                )
            recovered = self.store.last_recovered_cycle(book)
            if recovered is not None and t < recovered:
                raise StateError(
                    f"book {book!r}: cycle time {t} is before {recovered}, whose crashed run left fills in the ledger; "
                    f"run the cycle at {recovered} or a later one"
                )
            self._reconcile(book, state, broker)
            prior = self._prior_runs(book, t)
            t0 = _time.perf_counter()
            if inputs is None:
                inputs = self.gather_inputs(t)
            inputs_ms = (_time.perf_counter() - t0) * 1e3

            def record_intents(orders: list[OrderRequest]) -> None:
                self.store.record_intents(book, t, prior.attempt, orders)

            result, record, events = self._step(book, state, inputs, broker, prior, record_intents)
            result.timings_ms["inputs_ms"] = inputs_ms
            t0 = _time.perf_counter()
            table = CycleTableWriter(self.symbols, self.info.horizons, self.info.families, self.cfg.engine.trace)
            table.add(t, result.model_run_id, result.decision, result.decision.trace)
            result.trading_state, result.halt_reason = self.store.commit_cycles(state, [record], table.to_parquet(book),
                                                                                events, lock=(owner, self.lock_ttl_s),
                                                                                histories=self._histories)
            result.timings_ms["commit_ms"] = (_time.perf_counter() - t0) * 1e3
            return result

    def _reconcile(self, book: str, state: BookState, broker: Broker) -> None:
        """Compare the broker's positions and cash with the book; any difference halts it (no orders at all)."""
        try:
            found = reconcile(state.holdings, broker, self.cfg.broker.reconcile_cash_tolerance)
        except BrokerError as exc:
            found = [str(exc)]
        if not found:
            return
        shown = "; ".join(found[:10]) + (f"; and {len(found) - 10} more" if len(found) > 10 else "")
        self.store.halt(book, f"reconciliation: the broker differs from the book: {shown}", "reconciliation",
                        {"differences": found}, mode="stop")
        state.trading_state, state.halt_reason = self.store.trading_state(book)

    def _prior_runs(self, book: str, t: pd.Timestamp) -> _PriorRuns:
        """What earlier, crashed runs of the cycle at ``t`` left: the broker's answers and the book before them."""
        attempt = self.store.next_attempt(book, t)
        answered = self.store.answered_intents(book, t) if attempt > 1 else []
        start = self.store.holdings_at_start(book, t) if any(i.filled_quantity for i in answered) else None
        return _PriorRuns(attempt, answered, start)

    def _step(self, book: str, state: BookState, inputs: CycleInputs, broker, prior: _PriorRuns | None = None,
              record_intents=None) -> tuple[CycleResult, CycleRecord, list]:
        """Advance ``state`` (in place) by the cycle of ``inputs``: decide, execute on ``broker``, mark.

        Nothing is written to the store but through ``record_intents`` (called
        with the orders before they are sent); the caller commits the returned
        record (one cycle live, a chunk of them in a replay). ``prior`` carries
        what crashed runs of this cycle left (see :meth:`run_cycle`).
        """
        t = inputs.time
        timings = {}
        cfg = self.cfg
        if state.symbols == self.symbols and state.arrays:
            arrays = state.arrays
        else:
            arrays = align_buffers(cfg, state.arrays, state.symbols, self.symbols, len(self.info.families),
                                   self.info.horizon_bars)
        buffers = Buffers.from_arrays(arrays, len(self.info.horizons))

        start = prior.start if prior is not None and prior.start is not None else state.holdings
        portfolio = start.marked(self.symbols, inputs.quotes.mid, inputs.close[-1])
        events: list[tuple[str, str, str, dict]] = []
        if state.session_date != inputs.session:
            state.session_date = inputs.session
            state.start_of_day_value = portfolio.value
        state.high_water_mark = max(state.high_water_mark, portfolio.value)
        self._check_kill_switch(state, portfolio.value, events, "pre-trade")

        t2 = _time.perf_counter()
        decision = decide(cfg, self.info, inputs, buffers, portfolio, state.halted, self.quote_max_age_s)
        trading = stricter(state.trading_state, self.store.trading_state(book)[0])
        if trading == REDUCING and not state.halted:
            # A halt set while this cycle decided (by an operator or a sensor) binds the orders not yet sent:
            # decide again as halted (decide is pure: same inputs and buffers), so only risk-reducing orders go out.
            decision = decide(cfg, self.info, inputs, buffers, portfolio, True, self.quote_max_age_s)
        if trading == HALTED:
            decision = self._stopped(decision)
        t3 = _time.perf_counter()
        timings["stages_ms"] = (t3 - t2) * 1e3
        orders, earlier, standing = self._orders(book, t, decision.shares, prior)
        if orders and record_intents is not None:
            record_intents(orders)
        sent = broker.submit_orders(orders) if orders else []
        decision, booked = self._apply_fills(state, earlier, standing, sent, decision, t)
        t4 = _time.perf_counter()
        timings["execution_ms"] = (t4 - t3) * 1e3

        after = self._portfolio(state, inputs)
        state.high_water_mark = max(state.high_water_mark, after.value)
        self._check_kill_switch(state, after.value, events, "post-trade")
        gross = float(np.abs(after.weight).sum())
        net = float(after.weight.sum())
        risk = portfolio_risk(after.value, state.start_of_day_value, state.high_water_mark, gross * after.value, net * after.value)
        state.arrays = decision.buffers.to_arrays()
        state.symbols = self.symbols
        state.cycle_count += 1
        state.last_cycle_time = t
        state.model_run_id = self.info.run_id
        result = CycleResult(
            book=book, time=t, symbols=self.symbols, decision=decision,
            orders=[i.request() for i in earlier] + orders, results=[i.result() for i in earlier] + sent,
            portfolio_value=after.value, cash=state.cash, gross_exposure=gross, net_exposure=net,
            drawdown=risk.drawdown, daily_return=risk.daily_return, trading_state=stricter(trading, state.trading_state),
            halt_reason=state.halt_reason, model_run_id=self.info.run_id, horizons=self.info.horizons,
            families=self.info.families, timings_ms=timings,
        )
        return result, self._record(result, booked), events

    def _orders(self, book: str, t: pd.Timestamp, shares: np.ndarray, prior: _PriorRuns | None):
        """(orders to send, earlier runs' answered intents, the ids of those that stand for a decided order).

        Without earlier runs: one order per symbol with ``shares`` (N,). After
        them, per symbol: an answered intent equal to the decided order stands
        for it (nothing is sent); otherwise the fills of earlier runs count
        towards the decided shares and the rest is sent, if it goes the
        decided way. Every answered intent of the universe is part of the
        cycle's record (the broker saw it in this cycle).
        """
        attempt = prior.attempt if prior is not None else 1
        answered: dict[str, list] = {}
        for intent in prior.answered if prior is not None else ():
            answered.setdefault(intent.symbol, []).append(intent)
        orders, earlier, standing = [], [], set()
        for s, q in zip(self.symbols, shares.tolist()):
            side = "buy" if q > 0 else "sell"
            before = answered.get(s, [])
            earlier += before
            same = next((i for i in before if q != 0 and i.side == side and i.quantity == abs(q)), None)
            if same is not None:
                standing.add(same.client_order_id)
                continue
            rest = q - sum(i.signed_filled for i in before)
            if rest != 0 and (rest > 0) == (q > 0) and q != 0:
                side = "buy" if rest > 0 else "sell"
                orders.append(OrderRequest(client_order_id(book, t, s, attempt), s, side, abs(rest), t.to_pydatetime()))
        return orders, earlier, standing

    def _portfolio(self, state: BookState, inputs: CycleInputs) -> Portfolio:
        """The book's holdings over the universe, marked at the cycle's mids (else last closes)."""
        return state.holdings.marked(self.symbols, inputs.quotes.mid, inputs.close[-1])

    def _apply_fills(self, state: BookState, earlier: list[Intent], standing: set[str], sent: list[OrderResult],
                     decision: Decision, cycle_time: pd.Timestamp) -> tuple[Decision, list[LedgerEntry]]:
        """Book the fills of ``sent`` into the book's holdings; returns the decision as executed and the new entries.

        ``earlier`` are the answers of crashed runs of this cycle (their fills
        are in the ledger already), ``standing`` the ids of those that stand
        for this run's decided orders. Per symbol: nothing filled and this
        run's order rejected turns it BLOCKED (``broker_<reason>``, no shares);
        a fill of other than the decided shares keeps what was filled (reason
        ``..._partial_fill``, or ``..._after_recovered_fill`` when a fill of an
        earlier run's other order made the difference).
        """
        if not earlier and not sent:
            return decision, []
        verdict, reason, shares = decision.decision.copy(), decision.reason.copy(), decision.shares.copy()
        booked = []
        filled: dict[str, int] = {}
        rejected: dict[str, str] = {}
        own = [i.result() for i in earlier if i.client_order_id in standing] + sent  # this run's decided orders
        for r in own:
            if r.fill is None:
                rejected.setdefault(r.symbol, r.reject_reason)
        for r in [i.result() for i in earlier] + sent:
            if r.fill is not None:
                filled[r.symbol] = filled.get(r.symbol, 0) + r.fill.signed_quantity
        for r in sent:
            if r.fill is not None:
                entry = fill_entry(r.fill, cycle_time, "cycle")
                state.holdings.apply(entry)
                booked.append(entry)
        recovered = {i.symbol for i in earlier if i.filled_quantity and i.client_order_id not in standing}
        for symbol in rejected.keys() | filled.keys():
            i = self._column[symbol]
            done = filled.get(symbol, 0)
            if done == 0 and symbol in rejected:
                verdict[i], reason[i], shares[i] = BLOCKED, f"broker_{rejected[symbol]}", 0
            elif done != shares[i]:
                reason[i] = f"{reason[i]}_after_recovered_fill" if symbol in recovered else f"{reason[i]}_partial_fill"
                shares[i] = done
        return dataclasses.replace(decision, decision=verdict, reason=reason, shares=shares), booked

    @staticmethod
    def _stopped(decision: Decision) -> Decision:
        """The decision of a halted book: no order at all (every decided trade BLOCKED as ``book_halted``)."""
        stop = decision.shares != 0
        if not stop.any():
            return decision
        return dataclasses.replace(
            decision,
            decision=np.where(stop, BLOCKED, decision.decision).astype(object),
            reason=np.where(stop, "book_halted", decision.reason).astype(object),
            shares=np.where(stop, 0, decision.shares),
            target_weight=np.where(stop, decision.trace["current_weight"], decision.target_weight),
        )

    def _check_kill_switch(self, state: BookState, value: float, events: list, when: str) -> None:
        """The kill switch: a daily-loss or drawdown breach makes an active book ``reducing``."""
        rk = self.cfg.risk
        risk = portfolio_risk(value, state.start_of_day_value, state.high_water_mark, 0.0, 0.0, rk.daily_loss_limit, rk.drawdown_limit)
        if risk.breach and not state.halted:
            state.trading_state = REDUCING
            state.halt_reason = f"{risk.reason}: {risk.detail}"
            state.halted_at = datetime.now(timezone.utc).isoformat()
            state.halted_by = "engine"
            events.append(("halt", "engine", state.halt_reason, {"when": when, "portfolio_value": value}))

    def _record(self, r: CycleResult, booked: list[LedgerEntry]) -> CycleRecord:
        """The cycle's row for the store: totals and a summary (counts by reason, the five largest alphas)."""
        d = r.decision
        fills = [x.fill for x in r.results if x.fill is not None]
        counts = r.counts
        best = d.trace["best_horizon"]
        alpha = np.where(best >= 0, select_horizon(d.trace["alpha_bps"], best), np.nan)
        by_reason = Counter(zip(d.decision.tolist(), d.reason.tolist()))
        top = np.argsort(-np.nan_to_num(np.abs(alpha), nan=-1.0), kind="stable")[:5]
        summary = {
            "counts": counts,
            "reasons": [{"decision": k[0], "reason": k[1], "n": n} for k, n in sorted(by_reason.items())],
            "model_run_id": r.model_run_id,
            "timings_ms": {k: round(v, 3) for k, v in r.timings_ms.items()},
            "top": [
                {"symbol": r.symbols[i], "decision": d.decision[i], "reason": d.reason[i],
                 "horizon": r.horizons[best[i]] if best[i] >= 0 else "",
                 "alpha_bps": float(alpha[i]) if np.isfinite(alpha[i]) else None}
                for i in top
            ],
            "trading_state": r.trading_state,
            "halt_reason": r.halt_reason,
        }
        orders = [
            (x.client_order_id, x.symbol, x.side, x.requested_quantity, x.filled_quantity, x.status,
             x.fill.price if x.fill else None, x.fill.fee if x.fill else 0.0, x.reject_reason)
            for x in r.results
        ]
        return CycleRecord(
            cycle_time=r.time, portfolio_value=r.portfolio_value, cash=r.cash, gross_exposure=r.gross_exposure,
            net_exposure=r.net_exposure, drawdown=r.drawdown, daily_return=r.daily_return,
            n_trade=counts["TRADE"], n_hold=counts["HOLD"], n_blocked=counts["BLOCKED"],
            n_orders=len(r.orders), n_fills=len(fills), fees=float(sum(f.fee for f in fills)),
            traded_notional=float(sum(f.notional for f in fills)), halted=r.halted, summary=summary, orders=orders,
            ledger=tuple(booked),
        )

    # ------------------------------------------------------------------ replay

    def cycle_times(self, start, end) -> pd.DatetimeIndex:
        """Bar close times in [start, end] (every one is a cycle)."""
        return self.market.calendar.bar_times(to_utc(start), to_utc(end))

    def replay(self, book: str, start, end, *, resume: bool = False, progress: bool = False, on_cycle=None,
               chunk_sessions: int = 1, commit_sessions: int = 1) -> ReplaySummary:
        """Replay every cycle in [start, end] on ``book`` (never the live book); returns a summary.

        The book is restarted with the starting cash, so a replay of a range
        always gives the same numbers; with ``resume`` it continues after the
        book's last committed cycle instead (a replay interrupted by Ctrl-C or
        a crash stops at a commit boundary). A halted (or reducing) book is
        refused until it is resumed: restarting it would lift the halt. Inputs are gathered
        ``chunk_sessions`` sessions at a time (features and one inference call
        per model for the whole chunk, the next chunk's made while this one's
        cycles run); every ``commit_sessions`` sessions of
        cycles are committed in one transaction. The results are read back
        from the store (``cycles``, ``orders``, ``decisions``, ``cycle_trace``).
        """
        times = self.cycle_times(start, end)
        if len(times) == 0:
            raise DataError(f"no bar closes between {start} and {end} on calendar {self.market.calendar.code}")
        if resume and self.store.exists(book):
            last = self.store.load(book).last_cycle_time
            if last is not None:
                times = times[times > last]
        return self.replay_inputs(book, self.batch_inputs(times, chunk_sessions), len(times), resume=resume,
                                  progress=progress, on_cycle=on_cycle, commit_sessions=commit_sessions)

    def replay_inputs(self, book: str, inputs, total: int | None = None, *, resume: bool = False,
                      progress: bool = False, on_cycle=None, commit_sessions: int = 1) -> ReplaySummary:
        """Run the cycles of an iterable of CycleInputs on replay book ``book``; see :meth:`replay`.

        The book's state lives in memory for the whole replay and execution is
        simulated by an in-memory paper account seeded from the book; each
        commit writes the chunk's cycles, orders, columnar decisions and traces,
        the book's state and the running signal attribution in one transaction.
        ``on_cycle`` is called with each CycleResult (none is kept).
        """
        if book == self.cfg.book:
            raise StateError(
                f"replay book {book!r} is the live book (config `book`); replay on a separate book, e.g. --book replay"
            )
        if commit_sessions < 1:
            raise StateError(f"commit_sessions {commit_sessions} must be >= 1")
        if progress:
            from tqdm.auto import tqdm

            inputs = tqdm(inputs, total=total, desc=f"replay {book}", unit="cycle")
        started = _time.perf_counter()
        with self.store.locked(book, ttl_seconds=self.lock_ttl_s) as owner:
            self.store.refuse_replay_if_halted(book)
            # Reset under the lock: a second replay of this book is refused before it touches the first's book.
            resumed = resume and self.store.exists(book) and self.store.load(book).last_cycle_time is not None
            if not resumed:
                self.reset_book(book)
            state = self.store.load(book)
            attribution = SignalAttribution(self.info.horizons, self.info.horizon_bars, self.info.families)
            if resumed and (saved := self.store.attribution_state(book)) is not None:
                attribution.restore(saved)
            broker, venue = simulated_execution(self.cfg.broker, state.cash, state.positions)
            last = self.store.last_cycle(book) if resumed else None
            summary = ReplaySummary(book=book, start_value=last["portfolio_value"] if last else state.cash,
                                    resumed_after=state.last_cycle_time if resumed else None)
            chunk = _Chunk(self.symbols, self.info, self.cfg.engine.trace)
            try:
                for inp in inputs:
                    if state.last_cycle_time is not None and inp.time <= state.last_cycle_time:
                        continue
                    if chunk.sessions_before(inp.session) >= commit_sessions:
                        self._commit_chunk(book, state, chunk, attribution, summary, owner)
                    venue.post(inp.quotes)  # the simulated venue fills the cycle's orders at the quotes it decided on
                    result, record, events = self._step(book, state, inp, broker)
                    chunk.add(inp.session, result, record, events)
                    self._attribute(attribution, result)
                    summary.add(result)
                    if on_cycle is not None:
                        on_cycle(result)
                if len(chunk):
                    self._commit_chunk(book, state, chunk, attribution, summary, owner)
            finally:
                broker.close()
            self.store.save_attribution(book, attribution.report())
        summary.elapsed_s = _time.perf_counter() - started
        return summary

    def _commit_chunk(self, book: str, state: BookState, chunk: _Chunk, attribution: SignalAttribution,
                      summary: ReplaySummary, owner: str) -> None:
        trading, reason = self.store.commit_cycles(state, chunk.records, chunk.table.to_parquet(book), chunk.events,
                                                   attribution.snapshot(), lock=(owner, self.lock_ttl_s),
                                                   histories=self._histories)
        # A halt set from outside (an operator, a sensor) binds the rest of the replay as it binds a live book.
        state.trading_state, state.halt_reason = trading, reason
        summary.trading_state, summary.halt_reason = trading, reason
        summary.commits += 1
        chunk.clear()

    def _attribute(self, attribution: SignalAttribution, result: CycleResult) -> None:
        """Feed one cycle's stage outputs and fills to the replay's signal attribution."""
        tr = result.decision.trace
        fills = [(self._column[r.symbol], r.fill.signed_quantity, r.fill.price, r.fill.fee)
                 for r in result.results if r.fill is not None]
        attribution.update(tr["raw_pred"], tr["zscore"], tr["calibrated"], tr["alpha_bps"], tr["best_horizon"],
                           result.decision.target_weight, tr["price"], fills,
                           tr["increases"] & (result.decision.shares != 0))  # a rejected order entered nothing

    def batch_inputs(self, times: pd.DatetimeIndex, chunk_sessions: int = 1, raw_pred: np.ndarray | None = None):
        """Yield the CycleInputs of each time, loading bars, features and predictions a few sessions at a time.

        The next chunk's features and predictions (and its bars, from a source that says
        ``bars_threadsafe``) are made on a worker thread while the caller steps through this
        chunk's cycles: inference releases the GIL, so on two cores it runs beside the decisions
        instead of before them. Any other source is asked only from the caller's thread. A
        chunk's error is raised when its first cycle is due. ``raw_pred`` (H, Fam, C, N) over
        ``times``, when given, stands in for the return models' predictions, which are then not
        computed (the barrier classifiers are run by each cycle either way).
        """
        sessions = self.market.calendar.session_dates(times)
        boundaries = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
        starts = list(boundaries[::chunk_sessions]) + [len(times)]
        spans = list(zip(starts[:-1], starts[1:]))

        def predicted(chunk: pd.DatetimeIndex, panel: BarPanel | None, s0: int, s1: int):
            if panel is None:
                panel = self.load_bars(chunk)
            X = self.cycle_features(panel, chunk)
            return panel, X, self.predict(X) if raw_pred is None else np.array(raw_pred[:, :, s0:s1])

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foxlive-inputs")
        bars_on_worker = getattr(self.market, "bars_threadsafe", False)

        def start(k: int) -> Future:
            s0, s1 = spans[k]
            chunk = times[s0:s1]
            if bars_on_worker:
                return pool.submit(predicted, chunk, None, s0, s1)
            try:
                panel = self.load_bars(chunk)
            except Exception as exc:  # raised at this chunk's turn, after the cycles before it
                failed = Future()
                failed.set_exception(exc)
                return failed
            return pool.submit(predicted, chunk, panel, s0, s1)

        try:
            ahead = start(0) if spans else None
            for k in range(len(spans)):
                panel, X, pred = ahead.result()
                ahead = start(k + 1) if k + 1 < len(spans) else None
                s0, s1 = spans[k]
                yield from self.iter_inputs(times[s0:s1], panel, X, pred)
        finally:
            # A consumer that stops early (an error, a halt, Ctrl-C) waits for at most the chunk in flight.
            pool.shutdown(wait=True, cancel_futures=True)
