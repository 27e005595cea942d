"""Per-cycle assets: market_bars -> features -> predictions -> trading_cycle -> portfolio_snapshot -> risk_report.

Partitioned by exchange session (see foxlive_dagster.partitions). A run of one
session partition is a **live cycle** of the live book at one bar close of that
session (``market_bars`` config ``bar_close``, set by the schedule; empty = the
session's newest closed bar), so a session's partition is materialised once per
bar as the session goes on. A **backfill** (a run tagged ``dagster/backfill`` or
with a partition range) replays every bar of its sessions on the replay book in
one run (``BackfillPolicy.single_run()``): each asset processes the whole range
at once and ``trading_cycle`` is one call of the engine's replay, exactly
``foxlive replay``. A single run holds the range's bars, features and
predictions in memory (about 30 MB per session of 500 symbols at 5-minute
bars); replay long histories as consecutive ranges with ``fresh: false``.

Per-cycle detail stays in the state store; each run's metadata shows its range:
the orders and fills, the sessions, and the top decisions explained. Every
value is a dict of arrays (see foxlive_dagster.io_managers); the trading maths
lives in foxlive_core, and which book a run trades in foxlive_dagster.kill_switch.
"""


import dagster as dg
import numpy as np
import pandas as pd

from foxlive_core.calendar import calendar_for, to_utc
from foxlive_core.data.types import BAR_FIELDS, BarPanel
from foxlive_core.engine import cycle_features, load_cycle_bars
from foxlive_core.errors import DataError, StateError
from foxlive_core.explain import render, trace_row
from foxlive_core.features import FEATURE_NAMES
from foxlive_core.reports import book_snapshot
from foxlive_dagster import checks
from foxlive_dagster.kill_switch import bind_run, is_replay, tag_bar
from foxlive_dagster.metadata import equity_curve, table
from foxlive_dagster.partitions import session_cycle_times
from foxlive_dagster.resources import (
    BrokerResource, FoxliveConfigResource, MarketDataResource, ModelStoreResource, StateStoreResource, make_engine,
)

GROUP = "trading"
PARTITION_TAG = "dagster/partition"
# Rows of the orders-and-fills table in a run's metadata (the store holds every order).
MAX_ORDER_ROWS = 500
TOP_EXPLAINED = 5


def _now() -> pd.Timestamp:
    """The wall clock: bars after it have not closed (a seam for tests)."""
    return pd.Timestamp.now(tz="UTC")


class BarsConfig(dg.Config):
    """``bar_close``: the bar a live cycle trades, ISO 8601 with zone (e.g. ``2025-05-01T13:35Z``); it must
    close in the run's session. Empty = the session's newest bar closed by now. A backfill replays every
    closed bar of its sessions and takes no bar_close."""

    bar_close: str = ""


class CycleConfig(dg.Config):
    """``book``: the book to trade; empty = the live book for a live cycle, the replay book for a backfill.
    ``fresh``: a replay starts its book from the starting cash (so it equals ``foxlive replay``); false
    continues it after its last cycle (a long history replayed as consecutive ranges)."""

    book: str = ""
    fresh: bool = True


def _cycle_times(context: dg.AssetExecutionContext, cfg, config: BarsConfig) -> pd.DatetimeIndex:
    """The bar closes (UTC) this run trades: one bar of its session live, every closed bar of its range replayed."""
    keys = context.partition_key_range
    session = session_cycle_times(cfg, keys.start, keys.end)
    closed = session[session <= _now()]
    span = keys.start if keys.start == keys.end else f"{keys.start} .. {keys.end}"
    if is_replay(context.run.tags):
        if config.bar_close:
            raise dg.Failure(f"bar_close {config.bar_close!r} is for a live cycle; a backfill replays every bar of "
                             f"its sessions ({span}): leave bar_close empty")
        if len(closed) == 0:
            raise dg.Failure(f"no bar of session(s) {span} has closed yet; replay sessions that have")
        return closed
    if len(session) == 0:
        raise dg.Failure(f"partition {span} holds no session of calendar {cfg.market.calendar}")
    if not config.bar_close:
        if len(closed) == 0:
            raise dg.Failure(f"no bar of session {span} has closed yet (its first closes at {session[0]}); "
                             "run the cycle at a bar close")
        return closed[-1:]
    try:
        t = to_utc(config.bar_close)
    except (DataError, ValueError) as exc:
        raise dg.Failure(f"bar_close {config.bar_close!r}: {exc}") from exc
    if t not in session:
        raise dg.Failure(
            f"bar_close {t} is not a {cfg.market.bar_interval} bar close of session {span} "
            f"({session[0]} .. {session[-1]}); name one of its bars, or the partition of {t}'s session"
        )
    if t not in closed:
        raise dg.Failure(f"bar {t} has not closed yet (now {_now()}); a cycle trades closed bars only")
    return pd.DatetimeIndex([t])


def _panel(value: dict) -> BarPanel:
    times = pd.DatetimeIndex(value["times"].astype("datetime64[ns]")).tz_localize("UTC")
    return BarPanel(times, tuple(value["symbols"].tolist()), *(value[f] for f in BAR_FIELDS))


def _explained(store, book: str, decisions: pd.DataFrame) -> str:
    """Markdown: the ``foxlive explain`` text of each (cycle_time, symbol) row of ``decisions``."""
    parts = []
    for t, rows in decisions.groupby("cycle_time", sort=False):
        cycle = store.cycle_trace(book, t)
        parts += [f"```\n{render(trace_row(cycle, s))}\n```" for s in rows["symbol"]]
    return "\n\n".join(parts) or "no decisions"


def _range_metadata(store, book: str, times: pd.DatetimeIndex, tz: str) -> dict:
    """A replay's range as metadata: its orders and fills, a row per session, the top trades explained."""
    cycles = store.cycles(book)
    cycles = cycles[(cycles["cycle_time"] >= times[0]) & (cycles["cycle_time"] <= times[-1])]
    orders = store.orders(book)
    orders = orders[pd.to_datetime(orders["cycle_time"], utc=True).between(times[0], times[-1])].drop(columns="book")
    session = cycles["cycle_time"].dt.tz_convert(tz).dt.date.astype(str)
    sessions = cycles.groupby(session).agg(
        cycles=("cycle_time", "size"), orders=("n_orders", "sum"), fills=("n_fills", "sum"), fees=("fees", "sum"),
        end_value=("portfolio_value", "last"), max_drawdown=("drawdown", "max"), halted=("halted", "max"),
    ).rename_axis("session").reset_index()
    decisions = store.decisions(book)
    trades = decisions[(decisions["decision"] == "TRADE") & (decisions["cycle_time"] >= times[0])]
    top = trades.reindex(trades["alpha_bps"].abs().sort_values(ascending=False).index).head(TOP_EXPLAINED)
    return {
        "orders_in_range": len(orders),
        "range_orders_and_fills": table(orders, max_rows=MAX_ORDER_ROWS),
        "range_sessions": table(sessions, max_rows=len(sessions)),
        "range_top_trades_by_abs_alpha": table(top),
        "range_top_trades_explained": dg.MetadataValue.md(_explained(store, book, top)),
    }


def build_cycle_assets(partitions_def: dg.PartitionsDefinition) -> list:
    common = dict(
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        io_manager_key="cycle_io_manager",
        kinds={"python"},
    )

    @dg.asset(check_specs=[checks.MARKET_DATA_FRESH], **common)
    def market_bars(context: dg.AssetExecutionContext, config: BarsConfig, foxlive: FoxliveConfigResource,
                    market: MarketDataResource, state: StateStoreResource):
        """OHLCV bars of the universe for the cycles of this run, with the history their features need."""
        cfg = foxlive.get()
        trades = bind_run(context, cfg, state.get()) is not None  # refuses while the run's book is halted
        times = _cycle_times(context, cfg, config)
        if trades and not is_replay(context.run.tags):
            tag_bar(context, times[0].isoformat())
        source = market.get()
        panel = load_cycle_bars(cfg, source, cfg.symbols, times)
        fresh = checks.market_data_fresh(panel, times, cfg)
        missing = int(np.isnan(panel.close).sum())
        last = panel.rows(slice(-1, None)).to_frame()[["symbol", "open", "high", "low", "close", "volume"]]
        yield dg.Output(
            {
                "times": panel.times.tz_convert("UTC").tz_localize(None).to_numpy(),
                "symbols": np.array(panel.symbols),
                "cycle_times": times.tz_convert("UTC").tz_localize(None).to_numpy(),
                **{f: getattr(panel, f) for f in BAR_FIELDS},
            },
            metadata={
                "cycles": len(times),
                "first_cycle": str(times[0]),
                "last_cycle": str(times[-1]),
                "symbols": len(panel.symbols),
                "bars": len(panel.times),
                "missing_bars": missing,
                "source": cfg.market.source,
                "last_bar": table(last.head(20)),
            },
        )
        yield fresh

    @dg.asset(**common)
    def features(context: dg.AssetExecutionContext, market_bars: dict, foxlive: FoxliveConfigResource):
        """The feature panel at each cycle of the range, shape (cycles, symbols, features)."""
        cfg = foxlive.get()
        panel = _panel(market_bars)
        times = pd.DatetimeIndex(market_bars["cycle_times"].astype("datetime64[ns]")).tz_localize("UTC")
        X = cycle_features(cfg, panel, times)
        valid = np.isfinite(X).all(axis=2)
        last = X[-1]
        summary = pd.DataFrame(
            {"feature": FEATURE_NAMES, "mean": np.nanmean(last, axis=0), "std": np.nanstd(last, axis=0),
             "nan_symbols": np.isnan(last).sum(axis=0)}
        )
        return dg.MaterializeResult(
            value={"values": X, "names": np.array(FEATURE_NAMES), "cycle_times": market_bars["cycle_times"],
                   "symbols": market_bars["symbols"]},
            metadata={
                "cycles": len(times),
                "features": len(FEATURE_NAMES),
                "coverage": float(valid.mean()),
                "insufficient_history_last_cycle": int((~valid[-1]).sum()),
                "last_cycle_summary": table(summary),
            },
        )

    @dg.asset(deps=["active_models"], **common)
    def predictions(context: dg.AssetExecutionContext, features: dict, models: ModelStoreResource):
        """Raw predictions of every (horizon, family) model and the barrier probabilities, per cycle and symbol."""
        model_set = models.active()
        X = features["values"]
        C, N, _ = X.shape
        pred, barrier = model_set.predict_cycles(X)
        rows = [
            {"horizon": h, "family": fam, "mean_bps": float(np.nanmean(pred[i, j, -1]) * 1e4),
             "std_bps": float(np.nanstd(pred[i, j, -1]) * 1e4), "nan": int(np.isnan(pred[i, j, -1]).sum())}
            for i, h in enumerate(model_set.horizons) for j, fam in enumerate(model_set.families)
        ]
        return dg.MaterializeResult(
            value={"pred": pred, "barrier": barrier, "model_run_id": model_set.run_id},
            metadata={
                "model_run_id": model_set.run_id,
                "cycles": C,
                "symbols": N,
                "last_cycle_predictions": table(pd.DataFrame(rows)),
                "barrier_models": int(model_set.has_barrier().sum()),
            },
        )

    @dg.asset(**common)
    def trading_cycle(
        context: dg.AssetExecutionContext, config: CycleConfig, market_bars: dict, features: dict, predictions: dict,
        foxlive: FoxliveConfigResource, market: MarketDataResource, models: ModelStoreResource,
        state: StateStoreResource, broker: BrokerResource,
    ):
        """Decisions, orders and fills of every symbol for each cycle: a live cycle, or a replay for a backfill."""
        cfg = foxlive.get()
        engine = make_engine(foxlive, market, models, state, broker)
        if engine.info.run_id != predictions["model_run_id"]:
            raise dg.Failure(
                f"the active model run changed from {predictions['model_run_id']} (used by predictions) to "
                f"{engine.info.run_id}; rematerialise predictions"
            )
        times = pd.DatetimeIndex(market_bars["cycle_times"].astype("datetime64[ns]")).tz_localize("UTC")
        panel = _panel(market_bars)
        inputs = engine.iter_inputs(times, panel, features["values"], predictions["pred"], predictions["barrier"])
        # A halt set since market_bars ran refuses the cycle here, before the engine trades.
        binding = bind_run(context, cfg, engine.store)
        book, replay = binding.book, binding.replay
        if replay:
            if book == cfg.book:
                raise dg.Failure(f"a backfill replays history on a replay book; {book!r} is the live book, name another")
            if config.fresh and PARTITION_TAG in context.run.tags:
                # A job backfill launches one run per partition (it ignores the single-run BackfillPolicy);
                # each would restart the replay book, leaving one session of the range. An asset backfill
                # runs a range in one run, tagged with the range (never with dagster/partition).
                raise dg.Failure(
                    f"backfill run of the single partition {context.run.tags[PARTITION_TAG]}: a replay restarts "
                    f"book {book!r}, so one run per partition would keep only the last session. Launch the replay "
                    "as an asset backfill (select the cycle assets, Materialize a partition range; or "
                    "`dg launch --assets ... --partition-range A...B`), which runs the whole range at once"
                )
            summary = engine.replay_inputs(book, inputs, len(times), resume=not config.fresh)
            last, totals, n_cycles, n_orders = summary.last, summary.counts, summary.cycles, summary.orders
        else:
            try:
                last = engine.run_cycle(book, times[0], next(inputs))
            except StateError as exc:
                raise dg.Failure(str(exc)) from exc
            totals, n_cycles, n_orders = last.counts, 1, len(last.orders)
        if last is None:
            raise dg.Failure(f"book {book!r} had already run every cycle of {times[0]} .. {times[-1]}; nothing was replayed")
        decisions = last.decisions_frame()
        blocked = decisions[decisions["decision"] != "TRADE"].groupby(["decision", "reason"]).size().rename("symbols").reset_index()
        keys = context.partition_key_range
        if replay:
            cal = calendar_for(cfg.market)
            detail = {"range": f"{keys.start} .. {keys.end}", "sessions": len(np.unique(cal.session_dates(times))),
                      **_range_metadata(engine.store, book, times, cal.tz)}
        else:
            top = decisions.reindex(decisions["alpha_bps"].abs().sort_values(ascending=False).index).head(TOP_EXPLAINED)
            detail = {
                "session": keys.start,
                "last_cycle_orders_and_fills": table(last.fills_frame()),
                "top_decisions_by_abs_alpha": table(top),
                "top_decisions_explained": dg.MetadataValue.md(
                    "\n\n".join(f"```\n{render(last.trace_row(s))}\n```" for s in top["symbol"]) or "no decisions"),
            }
        return dg.MaterializeResult(
            value={
                "book": book,
                "mode": "replay" if replay else "live",
                "cycle_times": times.tz_localize(None).to_numpy(),
                "portfolio_value": engine.store.cycles(book)["portfolio_value"].to_numpy()[-n_cycles:],
            },
            metadata={
                "book": book,
                "mode": "replay" if replay else "live",
                "cycles": n_cycles,
                "trades": totals["TRADE"],
                "holds": totals["HOLD"],
                "blocked": totals["BLOCKED"],
                "orders": n_orders,
                "portfolio_value": float(last.portfolio_value),
                "halted": bool(last.halted),
                "model_run_id": last.model_run_id,
                "last_cycle": str(last.time),
                "last_cycle_holds_and_blocks_by_reason": table(blocked),
                **detail,
            },
        )

    @dg.asset(check_specs=checks.SNAPSHOT_CHECKS, **common)
    def portfolio_snapshot(context: dg.AssetExecutionContext, trading_cycle: dict, foxlive: FoxliveConfigResource,
                           state: StateStoreResource):
        """The book after the range's last cycle: cash, positions marked as the cycle marked them, exposures
        (foxlive_core.reports.book_snapshot)."""
        cfg = foxlive.get()
        snap = book_snapshot(state.get(), trading_cycle["book"])
        yield dg.Output(
            {"book": snap.book, "cycle_time": str(snap.as_of), "portfolio_value": snap.value, "cash": snap.cash,
             "gross": snap.gross, "net": snap.net, "max_weight": snap.max_weight, "positions": len(snap.positions)},
            metadata={
                "book": snap.book,
                "as_of": str(snap.as_of),
                "portfolio_value": snap.value,
                "cash": snap.cash,
                "gross_exposure": snap.gross,
                "net_exposure": snap.net,
                "positions": len(snap.positions),
                "largest_position_weight": snap.max_weight,
                "positions_table": table(snap.positions.sort_values("market_value", key=np.abs, ascending=False)),
            },
        )
        yield from checks.snapshot_checks(snap.gross, snap.max_weight, cfg)

    @dg.asset(check_specs=checks.RISK_CHECKS, **common)
    def risk_report(context: dg.AssetExecutionContext, portfolio_snapshot: dict, foxlive: FoxliveConfigResource,
                    state: StateStoreResource):
        """Drawdown from the high-water mark, P&L against the start of day, halt state, equity curve."""
        cfg = foxlive.get()
        book = portfolio_snapshot["book"]
        store = state.get()
        st = store.load(book)
        cycles = store.cycles(book)
        last = cycles.iloc[-1]
        tz = calendar_for(cfg.market).tz
        day = cycles[cycles["cycle_time"].dt.tz_convert(tz).dt.date == last["cycle_time"].tz_convert(tz).date()]
        report = {
            "book": book,
            "drawdown": float(last["drawdown"]),
            "daily_return": float(last["daily_return"]),
            "high_water_mark": st.high_water_mark,
            "start_of_day_value": st.start_of_day_value,
            "halted": st.halted,
            "halt_reason": st.halt_reason,
        }
        yield dg.Output(
            report,
            metadata={
                **{k: v for k, v in report.items()},
                "daily_loss_limit": cfg.risk.daily_loss_limit,
                "drawdown_limit": cfg.risk.drawdown_limit,
                "cycles_in_book": len(cycles),
                "equity_curve": equity_curve(cycles["cycle_time"], cycles["portfolio_value"].to_numpy(), f"book {book}"),
                "session_cycles": len(day),
            },
        )
        yield from checks.risk_checks(report, cfg)

    return [market_bars, features, predictions, trading_cycle, portfolio_snapshot, risk_report]
