"""Planted-signal harness: how much of a known edge the whole pipeline captures, at several planted strengths.

For each strength (a multiple of the configured ``market.simulated`` reversal
and drift), models are trained on the market's first sessions and the following
sessions are replayed three times: on the models, on the oracle that knows the
planted component, and on the observable oracle that filters it from the
prices (foxlive_core.signal_capture). Prints one table and, with
``--json PATH``, writes ``planted`` (one entry per strength) and ``stage_ic``
(the stage-by-stage attribution at the default strength, 1).

    python benchmarks/signal_capture.py [--strengths 0,1,3] [--symbols 50] [--sessions 21] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time

from _common import machine_line, progress, snapshot_config, table, temp_home, universe

import pandas as pd

from foxlive_core.attribution import render
from foxlive_core.config import load_config
from foxlive_core.signal_capture import capture

# The simulated market's "now": the harness never depends on today's date.
CLOCK = pd.Timestamp("2026-01-02T00:00Z")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strengths", default="0,1,3", help="planted strengths, multiples of the configured ones")
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--sessions", type=int, default=21, help="sessions replayed after the training sessions")
    p.add_argument("--training-sessions", type=int, default=None, help="default: models.training.sessions")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--keep-home", action="store_true")
    args = p.parse_args()
    strengths = [float(s) for s in args.strengths.split(",")]

    home = temp_home(args.keep_home)
    config_path = snapshot_config(home)
    print(machine_line())
    results = []
    for s in strengths:
        overrides = {"models": {"training": {"sessions": args.training_sessions}}} if args.training_sessions else None
        cfg = load_config(config_path, overrides=overrides, home=home / f"strength_{s:g}")
        t0 = time.perf_counter()
        progress(f"strength {s:g}: training and three replays of {args.sessions} sessions, {args.symbols} symbols")
        results.append(capture(cfg, s, args.sessions, universe(cfg, args.symbols), clock=CLOCK))
        progress(f"strength {s:g} done in {time.perf_counter() - t0:.0f} s")

    def f(x, digits=3):
        return "-" if x is None else f"{x:+.{digits}f}"

    rows = [
        [f"{r.strength:g}", r.traded_horizon, f(r.planted_ic), f(r.observable_ic), f(r.realised_ic),
         f(r.realised_ic_se), f(r.pnl_after_costs, 2), f(r.oracle_pnl_after_costs, 2), f(r.capture_ratio, 2),
         f(r.observable_oracle_pnl_after_costs, 2), f(r.observable_capture_ratio, 2), f"{r.turnover:.2f}",
         f"{r.costs:.2f}", r.orders, r.oracle_orders]
        for r in results
    ]
    print(f"\nplanted-signal capture: {args.symbols} symbols, {args.sessions} replayed sessions\n")
    print(table(["strength", "horizon", "planted_ic", "observable_ic", "realised_ic", "se", "pnl $", "oracle pnl $",
                 "capture", "observable pnl $", "obs. capture", "turnover", "costs $", "orders", "oracle orders"], rows))
    default = next((r for r in results if r.strength == 1.0), results[0])
    print("\n" + render(default.attribution))
    if args.json:
        payload = {
            "symbols": args.symbols,
            "sessions": args.sessions,
            "planted": [r.summary() for r in results],
            "stage_ic": default.attribution,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
