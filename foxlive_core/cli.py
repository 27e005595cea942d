"""The ``foxlive`` command line.

    foxlive [--config PATH] train [--end TIME] [--no-activate]
    foxlive run --cycles N [--book B] [--start TIME] [--no-wait]
    foxlive replay --start TIME --end TIME [--book replay]
    foxlive status [--book B]
    foxlive halt --reason TEXT [--mode reducing|stop] [--book B] [--operator NAME]
    foxlive resume --operator NAME --reason TEXT [--book B]
    foxlive reconcile [--book B] [--accept --operator NAME --reason TEXT]
    foxlive explain SYMBOL [--book B] [--json]
    foxlive attribution [--book B] [--json]
    foxlive report [--book B] [--json PATH] [--plots DIR]
    foxlive sweep --start TIME --end TIME [--variant NAME ...] [--json PATH]
    foxlive demo [--symbols N] [--sessions N]

Times are ISO 8601 with a zone (``2025-03-03T15:00:00Z``); a bare date means
that session's close. Every foxlive error prints one line naming what is
wrong and exits with status 2.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time as _time

import pandas as pd

from foxlive_core.config import CONFIG_ENV_VAR, load_config
from foxlive_core.errors import ConfigError, DataError, FoxliveError, StateError
from foxlive_core.runtime import resolve_bar
from foxlive_core.state import HALT_MODES

TRADING_STATE_MEANS = {"active": "trades freely", "reducing": "only risk-reducing orders",
                       "halted": "no orders at all"}


def _time_arg(text: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; use ISO 8601 with a zone, e.g. 2025-03-03T15:00:00Z") from exc
    if t.tzinfo is None:
        if len(text) <= 10:
            return t  # a bare date: resolved to that session's close later
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add one, e.g. {text}Z")
    return t.tz_convert("UTC")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{v} must be positive")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="foxlive", description="Model-driven trading cycles: train, run, replay, explain.")
    p.add_argument("--config", help=f"configuration YAML (default: ${CONFIG_ENV_VAR} or config/live_trading.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train every horizon's models on market history and activate the run")
    t.add_argument("--end", type=_time_arg, help="last bar of the training window (default: newest data)")
    t.add_argument("--no-activate", action="store_true", help="write the run without making it the active one")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("run", help="run trading cycles on the paper broker")
    r.add_argument("--cycles", type=_positive_int, required=True)
    r.add_argument("--book", help="book to trade (default: config `book`)")
    r.add_argument("--start", type=_time_arg, help="first cycle of a new book (default: newest closed bar)")
    r.add_argument("--no-wait", action="store_true", help="stop instead of waiting for a bar that has not closed yet")

    rp = sub.add_parser("replay", help="replay past cycles on a separate book")
    rp.add_argument("--start", type=_time_arg, required=True)
    rp.add_argument("--end", type=_time_arg, required=True)
    rp.add_argument("--book", default=None, help="replay book (default: the config's replay_book)")
    rp.add_argument("--resume", action="store_true",
                    help="continue the book after its last committed cycle instead of restarting it")
    rp.add_argument("--quiet", action="store_true")

    sw = sub.add_parser("sweep", help="replay a range once per variant of the sweep file (paths.sweep) and compare")
    sw.add_argument("--start", type=_time_arg, required=True)
    sw.add_argument("--end", type=_time_arg, required=True)
    sw.add_argument("--variant", action="append", default=None, help="replay only this variant (repeatable)")
    sw.add_argument("--json", metavar="PATH", default=None, help="also write each variant's report summary as JSON")

    s = sub.add_parser("status", help="book value, positions, trading state, last cycle, ledger check")
    s.add_argument("--book")

    h = sub.add_parser("halt", help="halt a book until it is resumed")
    h.add_argument("--reason", required=True)
    h.add_argument("--mode", choices=sorted(HALT_MODES), default="reducing",
                   help="reducing: only risk-reducing orders (the default, as the kill switch); stop: no orders at all")
    h.add_argument("--book")
    h.add_argument("--operator", default=None)

    rs = sub.add_parser("resume", help="resume a halted book")
    rs.add_argument("--reason", required=True)
    rs.add_argument("--operator", required=True)
    rs.add_argument("--book")

    rc = sub.add_parser("reconcile", help="compare the broker's positions and cash with the book; accept the broker's view")
    rc.add_argument("--book")
    rc.add_argument("--accept", action="store_true",
                    help="make the book what the broker reports (ledger adjustments; needs --operator and --reason)")
    rc.add_argument("--operator", default=None)
    rc.add_argument("--reason", default=None)

    e = sub.add_parser("explain", help="why a symbol did what it did in a cycle of the book (default: the last)")
    e.add_argument("symbol")
    e.add_argument("--book")
    e.add_argument("--at", type=_time_arg, default=None, help="the book's cycle at or before this time (default: its last)")
    e.add_argument("--json", action="store_true")

    a = sub.add_parser("attribution", help="stage-by-stage realised IC of a replay: where the models' edge is kept or lost")
    a.add_argument("--book", default=None, help="replay book (default: the config's replay_book)")
    a.add_argument("--json", action="store_true")

    rep = sub.add_parser("report", help="a book's return, risk, costs, trades and signal (table, JSON, PNG plots)")
    rep.add_argument("--book", help="book to report (default: config `book`)")
    rep.add_argument("--json", metavar="PATH", default=None, help="also write the report as JSON to PATH")
    rep.add_argument("--plots", metavar="DIR", default=None, help="also write the equity/drawdown and IC plots (PNG) to DIR")

    d = sub.add_parser("demo", help="train on simulated history, replay a month of cycles, print the results")
    d.add_argument("--sessions", type=_positive_int, default=21, help="sessions to replay (default 21, about a month)")
    d.add_argument("--symbols", type=_positive_int, default=None, help="use the first N configured symbols")
    d.add_argument("--quiet", action="store_true")
    return p


def main(argv=None, overrides: dict | None = None) -> int:
    """Run the command line; ``overrides`` maps command names to replacement handlers
    (foxlive_dagster runs ``demo`` as Dagster materialisations this way)."""
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        return {**COMMANDS, **(overrides or {})}[args.command](cfg, args)
    except FoxliveError as exc:
        print(f"foxlive {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _print_repairs(market) -> None:
    """Historical data: say what loading repaired (foxlive_core.data.historical), so no repair is silent."""
    if hasattr(market, "repair_summary"):
        print(f"market data: {market.repair_summary()}")


def cmd_train(cfg, args) -> int:
    from foxlive_core.models.training import train_models
    from foxlive_core.runtime import make_market

    market = make_market(cfg)
    _print_repairs(market)
    end = resolve_bar(market, args.end, end_of_day=True) if args.end is not None else None
    result = train_models(cfg, market, end, activate=not args.no_activate, progress=not args.quiet)
    print(f"trained run {result.run_id} -> {result.run_dir}")
    print(training_text(result, cfg.models.families))
    print("activated" if not args.no_activate else "not activated (use it with ModelStore.activate)")
    return 0


def _ic_text(ic, t) -> str:
    if ic is None or ic != ic:  # None or NaN: no bar had enough symbols
        return "n/a"
    return f"{ic:+.4f}" + (f" ({t:+.1f})" if t is not None and t == t else " (t n/a)")


def _cell(x, fmt: str) -> str:
    return "n/a" if x is None or x != x else fmt.format(x)


def training_text(result, families) -> str:
    """The validation figures of a training run as two tables (return models, barrier classifiers)."""
    table = result.metrics_table()
    ret = table[table["kind"].isin(families)]
    bar = table[~table["kind"].isin(families)]
    text = pd.DataFrame({
        "horizon": ret["horizon"], "family": ret["family"],
        "rank IC (t)": [_ic_text(a, b) for a, b in zip(ret["rank_ic"], ret["rank_ic_t"])],
        "IC (t)": [_ic_text(a, b) for a, b in zip(ret["ic"], ret["ic_t"])],
        "IC-IR": [_cell(x, "{:+.3f}") for x in ret["ic_ir"]],
        "bars (indep.)": [f"{int(a)} ({int(b)})" for a, b in zip(ret["bars"], ret["independent_bars"])],
        "pooled IC": [_cell(x, "{:+.4f}") for x in ret["pooled_ic"]],
        "top symbol share": [f"{s} {_cell(x, '{:.0%}')}" if isinstance(s, str) else "n/a"
                             for s, x in zip(ret["top_symbol"], ret["top_symbol_share"])],
        "without it": [_cell(x, "{:+.4f}") for x in ret["pooled_ic_without_top_symbol"]],
        "rows": [f"{a}/{b}" for a, b in zip(ret["n_train"], ret["n_validation"])],
    })
    lines = [
        "return models on the validation bars: mean per-bar IC across symbols (t on non-overlapping bars), "
        "pooled IC over all rows",
        text.to_string(index=False),
        "",
        "barrier classifiers",
        bar[["horizon", "kind", "family", "auc", "base_rate", "n_train", "n_validation"]].to_string(
            index=False, float_format=lambda x: f"{x:.4f}"),
        "",
        "calibration prior per horizon: OLS slope of the realised move on the validation alpha (Newey-West "
        "s.e.), shrunk to kappa0 = slope x max(0, 1 - (se / slope)^2)",
        result.calibration_table().to_string(index=False, na_rep="n/a", float_format=lambda x: f"{x:.3f}"),
    ]
    return "\n".join(lines)


def cmd_run(cfg, args) -> int:
    from foxlive_core.runtime import freeze_long_lived_objects, open_engine

    engine = open_engine(cfg)
    freeze_long_lived_objects()
    book = args.book or cfg.book
    engine.ensure_book(book)
    state = engine.store.load(book)
    cal = engine.market.calendar
    if state.last_cycle_time is None:
        start = resolve_bar(engine.market, args.start, end_of_day=False) if args.start is not None else None
        nxt = start if start is not None else cal.latest_bar_at_or_before(min(pd.Timestamp.now(tz="UTC"), engine.market.last_time))
    else:
        if args.start is not None:
            raise StateError(f"book {book!r} already has cycles up to {state.last_cycle_time}; --start is only for a new book")
        nxt = None
    for _ in range(args.cycles):
        if nxt is None:
            last = engine.store.load(book).last_cycle_time
            nxt = cal.bar_times(last + pd.Timedelta(seconds=1), last + pd.Timedelta(days=10))[0]
        now = pd.Timestamp.now(tz="UTC")
        if nxt > now:
            if args.no_wait:
                print(f"next bar closes at {nxt}; stopping (--no-wait)")
                return 0
            print(f"waiting for the bar closing at {nxt} ...", flush=True)
            _time.sleep((nxt - now).total_seconds())
        res = engine.run_cycle(book, nxt)
        c = res.counts
        print(
            f"{res.time}  value {res.portfolio_value:,.2f}  trade {c['TRADE']} hold {c['HOLD']} blocked {c['BLOCKED']}  "
            f"orders {len(res.orders)}  gross {res.gross_exposure:.3f}"
            + (f"  {res.trading_state.upper()}: {res.halt_reason}" if res.halted else "")
        )
        nxt = None
    return 0


def cmd_replay(cfg, args) -> int:
    from foxlive_core.runtime import freeze_long_lived_objects, open_engine

    engine = open_engine(cfg)
    freeze_long_lived_objects()
    _print_repairs(engine.market)
    start = resolve_bar(engine.market, args.start, end_of_day=False)
    end = resolve_bar(engine.market, args.end, end_of_day=True)
    book = args.book or cfg.replay_book
    try:
        summary = engine.replay(book, start, end, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:
        last = engine.store.last_cycle(book) if engine.store.exists(book) else None
        where = f"after its cycle at {last['cycle_time']}" if last else "empty"
        print(f"\ninterrupted: book {book} is stored {where}; `foxlive replay ... --book {book} --resume` continues it")
        return 130
    if summary.resumed_after is not None:
        print(f"resumed book {book} after {summary.resumed_after}: {summary.cycles} more cycles")
    print_report(cfg, engine.store, book)
    return 0


def print_report(cfg, store, book: str, json_path=None, plots=None):
    """Print ``book``'s report (:mod:`foxlive_core.reports`), optionally write it as JSON and PNG; returns it."""
    from pathlib import Path

    from foxlive_core.reports import load_report, render, to_json, write_plots

    report = load_report(cfg, store, book)
    print("\n" + render(report))
    state = store.load(book)
    if state.halted:
        print(f"  HALTED: {state.halt_reason} (the kill switch stays on until `foxlive resume --book {book}`)")
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(to_json(report))
        print(f"report JSON -> {json_path}")
    if plots is not None:
        for path in write_plots(report, plots):
            print(f"plot -> {path}")
    return report


def cmd_sweep(cfg, args) -> int:
    import json
    from pathlib import Path

    from foxlive_core.models.store import ModelStore
    from foxlive_core.runtime import make_market
    from foxlive_core.sweep import comparison, load_sweep, refuse_halted_books, replay_variant, sweep_path

    variants = load_sweep(cfg)
    if not variants:
        raise ConfigError(f"no sweep file at {sweep_path(cfg)}; write one (see config/sweep.yaml) or set paths.sweep")
    if args.variant:
        known = {v.name: v for v in variants}
        unknown = [n for n in args.variant if n not in known]
        if unknown:
            raise ConfigError(f"sweep variant(s) {', '.join(unknown)} not in {sweep_path(cfg)}; known: {', '.join(known)}")
        variants = tuple(known[n] for n in dict.fromkeys(args.variant))
    refuse_halted_books(cfg, variants)
    market = make_market(cfg)
    start, end = resolve_bar(market, args.start, end_of_day=False), resolve_bar(market, args.end, end_of_day=True)
    run_id = ModelStore(cfg.models_root).active_run_id()
    print(f"sweep of {len(variants)} variant(s) over {start} .. {end}, model run {run_id}")
    results = {}
    for i, variant in enumerate(variants, 1):
        print(f"{i}/{len(variants)} {variant.name} on book {variant.book} ...", flush=True)
        results[variant.name] = replay_variant(cfg, variant, start, end, run_id)
    print(comparison(results).to_string(index=False, float_format=lambda x: f"{x:,.4f}"))
    if args.json:
        Path(args.json).write_text(json.dumps({"run_id": run_id, "variants": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_report(cfg, args) -> int:
    from foxlive_core.state import StateStore

    print_report(cfg, StateStore(cfg.state_path), args.book or cfg.book, args.json, args.plots)
    return 0


def cmd_status(cfg, args) -> int:
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    book = args.book or cfg.book
    if not store.exists(book):
        raise StateError(f"book {book!r} has no state yet in {cfg.state_path}; run `foxlive run --cycles 1` first (known: {store.books()})")
    st = store.load(book)
    cycles = store.cycles(book)
    print(f"book {book}  state {cfg.state_path}")
    print(f"  trading: {st.trading_state} ({TRADING_STATE_MEANS[st.trading_state]})")
    print(f"  halted: {'YES: ' + st.halt_reason + ' (by ' + st.halted_by + ' at ' + str(st.halted_at) + ')' if st.halted else 'no'}")
    print(f"  cycles: {st.cycle_count}  last: {st.last_cycle_time}  models: {st.model_run_id}")
    if len(cycles):
        last = cycles.iloc[-1]
        print(
            f"  value {last['portfolio_value']:,.2f}  cash {st.cash:,.2f}  gross {last['gross_exposure']:.3f}  "
            f"net {last['net_exposure']:+.3f}  drawdown {last['drawdown'] * 100:.2f} %  day {last['daily_return'] * 100:+.2f} %"
        )
    if st.positions:
        print("  positions:")
        for s, (q, p) in sorted(st.positions.items()):
            print(f"    {s:<8} {q:+8d} @ {p:,.2f}")
    problems = store.check_ledger(book)
    entries = len(store.ledger(book))
    if problems:
        print(f"  ledger: {entries} entries; the stored book DIFFERS from their fold:")
        for line in problems:
            print(f"    {line}")
    else:
        print(f"  ledger: {entries} entries; cash and positions equal their fold")
    return 0


def cmd_halt(cfg, args) -> int:
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    book = args.book or cfg.book
    store.create_book(book, cfg.broker.starting_cash)
    changed = store.halt(book, args.reason, args.operator or getpass.getuser(), mode=args.mode)
    state, reason = store.trading_state(book)
    print(f"book {book} {state} ({TRADING_STATE_MEANS[state]}): {args.reason}" if changed
          else f"book {book} was already {state}: {reason}")
    return 0


def cmd_resume(cfg, args) -> int:
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    book = args.book or cfg.book
    changed = store.resume(book, args.operator, args.reason)
    print(f"book {book} resumed by {args.operator}: {args.reason}" if changed else f"book {book} was not halted")
    return 0


def cmd_reconcile(cfg, args) -> int:
    """Recover crashed cycles' fills, then show where the broker and the book differ; --accept books the broker's view.

    Exit status 0 when they agree (or the broker's view was accepted), 1 when differences remain.
    """
    from foxlive_core.brokers import open_broker
    from foxlive_core.reconcile import accept_broker_view, reconcile, recover
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    book = args.book or cfg.book
    if not store.exists(book):
        raise StateError(f"book {book!r} has no state in {cfg.state_path}; known books: {store.books()}")
    if args.accept and not ((args.operator or "").strip() and (args.reason or "").strip()):
        raise StateError("reconcile --accept needs --operator and --reason: who accepts the broker's view, and why")
    tolerance = cfg.broker.reconcile_cash_tolerance
    broker = open_broker(cfg.broker, book, cfg.state_path)
    with store.locked(book):  # no cycle of the book runs while it is compared or corrected
        recovered = recover(store, book, broker)
        if recovered:
            print(f"booked {len(recovered)} fill(s) of cycles that crashed before their commit")
        found = reconcile(store.load(book).holdings, broker, tolerance)
        if not found:
            state = store.load(book)
            print(f"book {book}: the broker agrees with the book ({len(state.positions)} positions, cash {state.cash:,.2f})")
            return 0
        print(f"book {book}: {len(found)} difference(s) between the book and the broker ({cfg.broker.kind}):")
        for line in found:
            print(f"  {line}")
        if not args.accept:
            print(f"accept the broker's view with: foxlive reconcile --book {book} --accept --operator NAME --reason TEXT")
            return 1
        _, entries = accept_broker_view(store, book, broker, args.operator, args.reason, tolerance)
    print(f"accepted the broker's view: {len(entries)} ledger adjustment(s) by {args.operator}: {args.reason}")
    state, reason = store.trading_state(book)
    if state != "active":
        print(f"the book stays {state} ({reason}) until `foxlive resume --book {book}`")
    return 0


def cmd_explain(cfg, args) -> int:
    from foxlive_core.explain import render, to_json, trace_row
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    book = args.book or cfg.book
    cycle = store.cycle_trace(book, args.at)
    if cycle is None:
        when = f"at or before {args.at}" if args.at is not None else "yet"
        raise StateError(f"book {book!r} has no cycle {when} to explain; run or replay cycles first (known books: {store.books()})")
    if args.symbol not in cycle.symbols:
        raise DataError(f"symbol {args.symbol!r} was not in book {book!r}'s cycle at {cycle.time} ({len(cycle.symbols)} symbols, e.g. {list(cycle.symbols[:5])})")
    row = trace_row(cycle, args.symbol)
    print(to_json(row) if args.json else render(row))
    return 0


def cmd_attribution(cfg, args) -> int:
    import json

    from foxlive_core.attribution import render
    from foxlive_core.state import StateStore

    store = StateStore(cfg.state_path)
    book = args.book or cfg.replay_book
    report = store.attribution(book)
    if report is None:
        raise StateError(f"book {book!r} has no signal attribution; replay it first (`foxlive replay --book {book} ...`)")
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def cmd_demo(cfg, args) -> int:
    from foxlive_core.models.training import train_models
    from foxlive_core.runtime import demo_window, make_market
    from foxlive_core.engine import TradingEngine
    from foxlive_core.models.store import ModelStore
    from foxlive_core.state import StateStore

    symbols = cfg.symbols[: args.symbols] if args.symbols else cfg.symbols
    market = make_market(cfg, symbols)
    start, end = demo_window(cfg, market, args.sessions)
    print(f"foxlive demo: {len(symbols)} symbols, {cfg.market.bar_interval} bars on {cfg.market.calendar}, state in {cfg.home}")
    print(f"1/3 training on {cfg.models.training.sessions} sessions before {start} ...", flush=True)
    result = train_models(cfg, market, start - pd.Timedelta(seconds=1), symbols=symbols, progress=not args.quiet)
    table = result.metrics_table()
    ret = table[table["kind"].isin(cfg.models.families)].assign(
        cell=lambda f: [_ic_text(a, b) for a, b in zip(f["rank_ic"], f["rank_ic_t"])])
    print("validation: mean per-bar rank IC (t on non-overlapping bars)")
    print(ret.pivot(index="horizon", columns="family", values="cell").reindex(cfg.horizon_names).to_string())
    print(f"2/3 replaying {args.sessions} sessions ({start} .. {end}) on book 'demo' ...", flush=True)
    models = ModelStore(cfg.models_root).load(result.run_id, cfg)
    engine = TradingEngine(cfg, market, models, StateStore(cfg.state_path), symbols=symbols)
    with oracle_beside(cfg, market, symbols, result.run_id, start, end, "demo"):
        engine.replay("demo", start, end, progress=not args.quiet)
    print("3/3 results")
    report = print_report(cfg, engine.store, "demo")
    print_capture(cfg, engine.store, market, report)
    print("\nexplain a decision: foxlive explain SYMBOL --book demo; where the edge goes: foxlive attribution --book demo")
    return 0


def oracle_beside(cfg, market, symbols, run_id: str, start, end, book: str):
    """On the simulated market, a context in which book ``<book>_oracle`` replays [start, end] with the planted
    signal's oracle, in a process of its own, beside the models' replay (see :func:`print_capture`); else none."""
    import contextlib

    from foxlive_core.signal_capture import oracle_replays_beside

    if not hasattr(market, "planted_expected_return"):
        return contextlib.nullcontext()
    return oracle_replays_beside(cfg, symbols, run_id, start, end, {f"{book}_oracle": "planted"})


def print_capture(cfg, store, market, report) -> None:
    """What the models' book kept of its edge, and (on the simulated market) of the planted signal's.

    Prints the attributed IC of the raw models and of the arbitrated alpha at the horizon the
    book chose most (from ``report``, the book's :class:`~foxlive_core.reports.Report`), and,
    from the oracle's replay of the same cycles (book ``<book>_oracle``, :func:`oracle_beside`),
    how much of the oracle's P&L the models' book captured (both books read from ``store``; the
    planted signal exists only when ``market`` is the simulated one).
    """
    from foxlive_core.attribution import traded_horizon
    from foxlive_core.reports import load_report

    book = report.book
    attribution = report.attribution
    traded = traded_horizon(attribution) if attribution is not None else None
    if traded is None:
        print("  no entries: the models' alphas never cleared the costs")
        return
    entries = {e["horizon"]: e["entries"] for e in attribution["entries"]}
    rows = [r for r in attribution["stage_ic"] if r["horizon"] == traded and r["mean_ic"] is not None]
    raw = max((r for r in rows if r["stage"] == "raw"), key=lambda r: r["mean_ic"])
    arb = next(r for r in rows if r["stage"] == "arbitrated")
    print(f"  edge kept at {traded} (where {entries[traded]} of {sum(entries.values())} entries were chosen): "
          f"best raw model ({raw['family']}) rank IC {raw['mean_ic']:+.3f}, arbitrated alpha {arb['mean_ic']:+.3f} "
          f"({arb['mean_ic'] / raw['mean_ic']:.0%})")
    if not hasattr(market, "planted_expected_return"):
        return
    oracle = load_report(cfg, store, f"{book}_oracle").pnl
    ratio = f"{report.pnl / oracle:.0%}" if oracle > 0 else "n/a (the oracle earned nothing)"
    sim = cfg.market.simulated
    print(f"  planted signal (reversal {sim.reversal_strength:g}, drift {sim.drift_strength:g} bp/bar): the oracle's "
          f"book made {oracle:+,.2f} after costs on the same cycles; the models' book captured {ratio} of it")


COMMANDS = {
    "train": cmd_train,
    "run": cmd_run,
    "replay": cmd_replay,
    "status": cmd_status,
    "halt": cmd_halt,
    "resume": cmd_resume,
    "reconcile": cmd_reconcile,
    "explain": cmd_explain,
    "attribution": cmd_attribution,
    "report": cmd_report,
    "sweep": cmd_sweep,
    "demo": cmd_demo,
}


if __name__ == "__main__":
    raise SystemExit(main())
