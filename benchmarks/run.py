"""The engine benchmark: one table of the figures the array-engine issue asks for, and ``--json PATH``.

Models: the defaults of ``config/live_trading.yaml`` (families, horizons, boosting rounds, leaves and
depth), trained once on 50 symbols of the simulated market (60 sessions; 20 with ``--quick``) and used
for every universe (features for more symbols are the same computation on more rows).

Figures (symbol-cycles per second = (cycle, symbol) rows per second):

- ``cycle_latency_ms``: one live ``run_cycle`` at 50, 500 and 2,000 symbols after warm-up cycles,
  p50 and p99, split into inference (the return models' ``engine.predict`` and the barrier classifiers
  at the chosen horizons), inputs (bars, features, quotes), the stages after inference (``decide``
  without its barrier inference) and the rest (execution, record, commit).
- ``replay_symbol_cycles_per_s``: 500 symbols over a month (21 sessions; 5 with ``--quick``), end to end.
- ``non_inference_symbol_cycles_per_s``: the same replay with every prediction computed beforehand.
- ``inference_rows_per_s``: the inference route the replay uses, alone, on the same rows (the return
  models on every row, the barrier classifiers at each cycle's chosen horizons);
  ``inference_native_rows_per_s``: the models' native LightGBM/XGBoost predict of the same work with both cores.
- ``replay_over_inference``, ``replay_over_run_cycle_loop`` (50 symbols, one session, replay against
  ``run_cycle`` once per cycle), ``replay_over_scalar_reference`` (the replay's rate against the scalar
  reference decision loop's on the same cycles' inputs).
- ``year_500_symbols_seconds`` and ``year_500_symbols_peak_rss_gib``: a measured replay of 252 sessions
  of 500 symbols in a child process (skipped with ``--quick``, and said so).
- ``growth``: replays of increasing symbols x cycles in child processes: seconds, rate and peak RSS.

Nothing is asserted. ``python benchmarks/run.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time

from _common import REPO, TRAIN_END, machine_line, pct, progress, snapshot_config, table, temp_home, universe

import numpy as np
import pandas as pd

import foxlive_core.engine as engine_module
from foxlive_core.config import load_config
from foxlive_core.data.simulated import SimulatedMarket
from foxlive_core.engine import TradingEngine
from foxlive_core.models.store import ModelStore
from foxlive_core.models.training import train_models
from foxlive_core.runtime import freeze_long_lived_objects
from foxlive_core.state import StateStore

TRAIN_SYMBOLS = 50
REPLAY_START = pd.Timestamp("2025-05-01T00:00Z")
CLOCK = pd.Timestamp("2026-06-01T00:00Z")  # the simulated market serves bars up to here


def sessions_from(market, n: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last bar close of the ``n`` sessions from REPLAY_START."""
    s = market.calendar.sessions(REPLAY_START, REPLAY_START + pd.Timedelta(days=2 * n + 10)).iloc[:n]
    if len(s) < n:
        raise SystemExit(f"the simulated market has only {len(s)} sessions after {REPLAY_START}")
    return market.calendar.bar_times(s["open"].iloc[0], s["close"].iloc[0])[0], s["close"].iloc[-1]


def open_engine(cfg, models, n: int, state_path) -> TradingEngine:
    syms = universe(cfg, n)
    market = SimulatedMarket(syms, cfg.market, clock=CLOCK)
    return TradingEngine(cfg, market, models, StateStore(state_path), symbols=syms)


class Timed:
    """Wraps a method to add up the time spent in it."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


# ----------------------------------------------------------------------------------- measurements


def cycle_latency(cfg, models, n: int, warmup: int, cycles: int, home) -> dict:
    engine = open_engine(cfg, models, n, home / f"latency_{n}.sqlite")
    times = engine.market.calendar.bar_times(REPLAY_START, REPLAY_START + pd.Timedelta(days=10))[: warmup + cycles]
    # Inference: the return models (while the inputs are gathered) and the barrier classifiers at the chosen
    # horizons (while decide runs).
    predict = Timed(engine.predict)
    engine.predict = predict
    barriers = models.predict_barriers_at = Timed(models.predict_barriers_at)
    rows = []
    freeze_long_lived_objects()  # as `foxlive run` does after its set-up
    try:
        for c, t in enumerate(times):
            before, before_b = predict.seconds, barriers.seconds
            t0 = time.perf_counter()
            res = engine.run_cycle("latency", t)
            whole = (time.perf_counter() - t0) * 1e3
            if c >= warmup:
                inf, inf_b = (predict.seconds - before) * 1e3, (barriers.seconds - before_b) * 1e3
                tm = res.timings_ms
                rows.append({"inference": inf + inf_b, "inputs": tm["inputs_ms"] - inf,
                             "stages": tm["stages_ms"] - inf_b, "rest": whole - tm["inputs_ms"] - tm["stages_ms"],
                             "whole": whole})
    finally:
        del models.predict_barriers_at
        gc.unfreeze()
    engine.store.close()
    return {k: {"p50": pct([r[k] for r in rows], 50), "p99": pct([r[k] for r in rows], 99)} for k in rows[0]}


def replay_month(cfg, models, n: int, sessions: int, home) -> dict:
    """End-to-end replay, inference alone (the route the replay uses, native both cores too), and the replay
    again on predictions computed beforehand.

    A replay's inference is the return models' over each session (made ahead on a worker thread) and
    the barrier classifiers' at each cycle's chosen horizons (asked by decide); both are recorded
    during the end-to-end replay and timed again alone.
    """
    engine = open_engine(cfg, models, n, home / f"replay_{n}.sqlite")
    start, end = sessions_from(engine.market, sessions)
    times = engine.cycle_times(start, end)
    rows = len(times) * n

    progress(f"replay {n} symbols x {sessions} sessions ({len(times)} cycles), end to end")
    barrier_calls = []
    real_barriers = models.predict_barriers_at

    def keep_barriers(X, best):
        out = real_barriers(X, best)
        barrier_calls.append((X, np.array(best), out))
        return out

    models.predict_barriers_at = keep_barriers
    t0 = time.perf_counter()
    try:
        engine.replay("bench", start, end)
    finally:
        del models.predict_barriers_at
    replay_s = time.perf_counter() - t0

    progress("inference alone, on the same rows")
    captured = []
    real_predict = engine.predict

    def keep(X):
        t1 = time.perf_counter()
        out = real_predict(X)
        captured.append((X, out, time.perf_counter() - t1))
        return out

    engine.predict = keep
    for _ in engine.batch_inputs(times):
        pass
    t0 = time.perf_counter()
    for X, best, _ in barrier_calls:
        models.predict_barriers_at(X, best)
    inference_s = sum(c[2] for c in captured) + time.perf_counter() - t0
    native_s = native_predict_seconds(models, [c[0] for c in captured], [(X, best) for X, best, _ in barrier_calls])

    progress("replay on predictions computed beforehand")
    cached = iter([c[1] for c in captured])
    cached_barriers = iter([out for _, _, out in barrier_calls])
    engine.predict = lambda X: next(cached)
    models.predict_barriers_at = lambda X, best: next(cached_barriers)
    t0 = time.perf_counter()
    try:
        engine.replay("bench_noinf", start, end)
    finally:
        del models.predict_barriers_at
    non_inference_s = time.perf_counter() - t0
    engine.store.close()
    return {"rows": rows, "cycles": len(times), "replay_s": replay_s, "inference_s": inference_s,
            "native_s": native_s, "non_inference_s": non_inference_s}


def _native_seconds(model, X: np.ndarray) -> float:
    """Seconds for ``model``'s native predict of the rows X (M, F) with both cores."""
    t0 = time.perf_counter()
    if model.family == "lightgbm":
        model.native.predict(X, num_threads=2)
    elif model.family == "xgboost":
        model.native.set_param({"nthread": 2})
        model.native.inplace_predict(X)
        model.native.set_param({"nthread": 1})
    else:
        model.predict(X)
    return time.perf_counter() - t0


def native_predict_seconds(models, chunks, barrier_calls) -> float:
    """Seconds for the native predict, both cores, of the same work as the replay's route: every return model
    on ``chunks`` (C*N, F) and, for each barrier call (X (N, F), best (N,)), each horizon's two classifiers
    on the rows that chose it."""
    total = 0.0
    for X in chunks:
        X = X.reshape(-1, X.shape[-1])
        Xv = np.ascontiguousarray(X[np.isfinite(X).all(axis=1)])
        total += sum(_native_seconds(m, Xv) for m in models.return_models.values())
    for X, best in barrier_calls:
        valid = np.isfinite(X).all(axis=1)
        for i, h in enumerate(models.horizons):
            rows = np.ascontiguousarray(X[valid & (best == i)])
            if len(rows):
                total += sum(_native_seconds(m, rows) for (mh, _), m in models.barrier_models.items() if mh == h)
    return total


def run_cycle_loop_ratio(cfg, models, home) -> dict:
    """50 symbols over one session: replay against run_cycle once per cycle (each gathering its inputs)."""
    engine = open_engine(cfg, models, 50, home / "loop.sqlite")
    start, end = sessions_from(engine.market, 1)
    times = engine.cycle_times(start, end)
    t0 = time.perf_counter()
    for t in times:
        engine.run_cycle("loop", t)
    loop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.replay("loop_replay", start, end)
    replay_s = time.perf_counter() - t0
    engine.store.close()
    return {"cycles": len(times), "loop_s": loop_s, "replay_s": replay_s}


def scalar_reference_rate(cfg, models, n: int, home, cycles: int = 2) -> float:
    """Symbol-cycles per second of the scalar reference decision loop on a live cycle's inputs at ``n`` symbols."""
    from tests.core.scalar_reference_decide import scalar_args, scalar_decide

    engine = open_engine(cfg, models, n, home / f"scalar_{n}.sqlite")
    calls = []
    real = engine_module.decide

    def record(*args):
        calls.append(args)
        return real(*args)

    engine_module.decide = record
    try:
        for t in engine.market.calendar.bar_times(REPLAY_START, REPLAY_START + pd.Timedelta(days=3))[: 20 + cycles]:
            engine.run_cycle("scalar", t)
    finally:
        engine_module.decide = real
    seconds = 0.0
    for call in calls[-cycles:]:
        cfg_, info, inputs, buffers, portfolio, halted, qmax = call
        a = scalar_args(inputs, buffers, portfolio)
        t0 = time.perf_counter()
        scalar_decide(cfg_, info, a, halted, qmax)
        seconds += time.perf_counter() - t0
    engine.store.close()
    return n * cycles / seconds


def child_replay(config_path, home, run_id: str, n: int, sessions: int) -> dict:
    """A replay in a fresh process: wall seconds and that process's peak RSS."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--child", str(config_path), str(home), run_id,
           str(n), str(sessions)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_main(config_path: str, home: str, run_id: str, n: int, sessions: int) -> None:
    cfg = load_config(config_path, home=home)
    models = ModelStore(cfg.models_root).load(run_id, cfg)
    engine = open_engine(cfg, models, n, f"{home}/child_{n}_{sessions}.sqlite")
    start, end = sessions_from(engine.market, sessions)
    t0 = time.perf_counter()
    summary = engine.replay("child", start, end)
    seconds = time.perf_counter() - t0
    print(json.dumps({"symbols": n, "sessions": sessions, "cycles": summary.cycles,
                      "symbol_cycles": summary.cycles * n, "seconds": seconds,
                      "symbol_cycles_per_s": summary.cycles * n / seconds,
                      "peak_rss_gib": peak_rss_kib() / 2**20}))


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM; getrusage's ru_maxrss would include the parent's, kept across exec)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


# ----------------------------------------------------------------------------------- main


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 replayed sessions, fewer cycles, no year of 500 symbols")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        config_path, home, run_id, n, sessions = args.child
        child_main(config_path, home, run_id, int(n), int(sessions))
        return

    home = temp_home()
    config_path = snapshot_config(home)
    month = 5 if args.quick else 21
    train_sessions = 20 if args.quick else 60
    cfg = load_config(config_path, overrides={"models": {"training": {"sessions": train_sessions}}}, home=home)
    syms = universe(cfg, TRAIN_SYMBOLS)
    progress(f"training the default models on {TRAIN_SYMBOLS} symbols x {train_sessions} sessions")
    t0 = time.perf_counter()
    run = train_models(cfg, SimulatedMarket(syms, cfg.market, clock=CLOCK), pd.Timestamp(TRAIN_END), symbols=syms,
                       activate=False)
    train_s = time.perf_counter() - t0
    models = ModelStore(cfg.models_root).load(run.run_id, cfg)

    latency = {}
    for n in (50, 500, 2000):
        progress(f"cycle latency at {n} symbols")
        latency[n] = cycle_latency(cfg, models, n, warmup=5 if args.quick else 20, cycles=5 if args.quick else 30,
                                   home=home)
    month_500 = replay_month(cfg, models, 500, month, home)
    loop = run_cycle_loop_ratio(cfg, models, home)
    progress("scalar reference loop at 500 symbols")
    scalar_rate = scalar_reference_rate(cfg, models, 500, home)

    growth_sizes = [(50, 1), (50, 5), (500, 1), (500, 5)] + ([] if args.quick else [(500, 21), (2000, 5)])
    growth = []
    for n, s in growth_sizes:
        progress(f"growth: {n} symbols x {s} sessions in a child process")
        growth.append(child_replay(config_path, home, run.run_id, n, s))
    year = None
    if not args.quick:
        progress("a year of 500 symbols (252 sessions) in a child process")
        year = child_replay(config_path, home, run.run_id, 500, 252)

    m = month_500
    replay_rate = m["rows"] / m["replay_s"]
    inference_rate = m["rows"] / m["inference_s"]
    loop_ratio = (loop["loop_s"] / loop["replay_s"])
    figures = {
        "machine": machine_line(),
        "models": {"run_id": run.run_id, "families": list(models.families), "horizons": list(models.horizons),
                   "trained_on": f"{TRAIN_SYMBOLS} symbols x {train_sessions} sessions", "train_seconds": train_s},
        "cycle_latency_ms": {str(n): v for n, v in latency.items()},
        "replay_symbol_cycles_per_s": replay_rate,
        "replay_month": {"symbols": 500, "sessions": month, "cycles": m["cycles"], "seconds": m["replay_s"]},
        "non_inference_symbol_cycles_per_s": m["rows"] / m["non_inference_s"],
        "inference_rows_per_s": inference_rate,
        "inference_native_rows_per_s": m["rows"] / m["native_s"],
        "replay_over_inference": replay_rate / inference_rate,
        "replay_over_run_cycle_loop": loop_ratio,
        "replay_over_scalar_reference": replay_rate / scalar_rate,
        "scalar_reference_symbol_cycles_per_s": scalar_rate,
        "year_500_symbols_seconds": year["seconds"] if year else None,
        "year_500_symbols_peak_rss_gib": year["peak_rss_gib"] if year else None,
        "year_500_symbols": "measured" if year else "skipped (--quick)",
        "growth": growth,
    }

    print()
    print("foxlive engine benchmark" + (" (--quick)" if args.quick else ""))
    print(figures["machine"])
    print(f"models: config defaults ({len(models.horizons)} horizons x {len(models.families)} families + barrier "
          f"classifiers), trained on {TRAIN_SYMBOLS} symbols x {train_sessions} sessions in {train_s:.0f} s")
    print()
    print(table(["symbols", "inference p50/p99", "inputs p50/p99", "stages p50/p99", "rest p50/p99", "whole p50/p99"],
                [[f"{n:,}"] + [f"{v[k]['p50']:.1f} / {v[k]['p99']:.1f}" for k in
                               ("inference", "inputs", "stages", "rest", "whole")] for n, v in latency.items()]))
    print("  one live run_cycle, ms. inference: the return models and the barrier classifiers at the chosen horizons;")
    print("  inputs: bars, features, quotes; stages: decide() without its barrier inference;")
    print("  rest: execution on the paper broker, the record and the one-transaction commit.")
    print()
    rows = [
        ["replay, 500 symbols x %d sessions, end to end" % month, f"{replay_rate:,.0f} symbol-cycles/s"],
        ["the same without inference (predictions computed beforehand)", f"{figures['non_inference_symbol_cycles_per_s']:,.0f} symbol-cycles/s"],
        ["inference alone, the replay's route", f"{inference_rate:,.0f} rows/s"],
        ["inference, native LightGBM/XGBoost predict, 2 threads", f"{figures['inference_native_rows_per_s']:,.0f} rows/s"],
        ["replay / inference", f"{figures['replay_over_inference']:.2f}"],
        ["replay / run_cycle loop (50 symbols, 1 session)", f"{loop_ratio:.1f}x"],
        ["replay / scalar reference loop (500 symbols)", f"{figures['replay_over_scalar_reference']:.1f}x"],
        ["a year of 500 symbols", f"{year['seconds']:.0f} s, peak RSS {year['peak_rss_gib']:.2f} GiB" if year else "skipped (--quick)"],
    ]
    print(table(["figure", "value"], rows))
    print()
    print(table(["symbols", "sessions", "symbol-cycles", "seconds", "symbol-cycles/s", "peak RSS GiB"],
                [[f"{g['symbols']:,}", str(g["sessions"]), f"{g['symbol_cycles']:,}", f"{g['seconds']:.1f}",
                  f"{g['symbol_cycles_per_s']:,.0f}", f"{g['peak_rss_gib']:.2f}"] for g in growth]))
    print("  growth: each replay in a fresh process (its own wall time and peak RSS, model loading included in RSS).")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2, default=float)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
