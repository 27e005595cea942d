"""Planted-signal harness: how much of a known edge the whole pipeline captures, at several planted strengths.

For each strength (a multiple of the configured ``market.simulated`` reversal
and drift), models are trained on the market's first sessions and the following
sessions are replayed three times: on the models, on the oracle that knows the
planted component, and on the observable oracle that filters it from the
prices (foxlive_core.signal_capture). Prints one table and, with
``--json PATH``, writes ``planted`` (one entry per strength) and ``stage_ic``
(the stage-by-stage attribution at the default strength, 1).

    python benchmarks/signal_capture.py [--strengths 0,1,3] [--symbols 50] [--sessions 21]
                                        [--training-seeds 11,12,13] [--json PATH]

With several training seeds each strength's figures in the JSON are their
means over the seeds, and ``by_seed`` holds each seed's.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import machine_line, progress, snapshot_config, table, temp_home, universe

import numpy as np
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
    p.add_argument("--training-seeds", default=None,
                   help="comma-separated models.training.seed values, each a training and three replays per "
                        "strength (default: the config's seed)")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--keep-home", action="store_true")
    args = p.parse_args()
    strengths = [float(s) for s in args.strengths.split(",")]
    seeds = [int(s) for s in args.training_seeds.split(",")] if args.training_seeds else [None]

    home = temp_home(args.keep_home)
    config_path = snapshot_config(home)
    print(machine_line())
    results = {}  # (strength, seed) -> CaptureResult
    for s in strengths:
        for seed in seeds:
            training = {k: v for k, v in (("sessions", args.training_sessions), ("seed", seed)) if v is not None}
            overrides = {"models": {"training": training}} if training else None
            cfg = load_config(config_path, overrides=overrides, home=home / f"strength_{s:g}_seed_{seed or 'config'}")
            t0 = time.perf_counter()
            progress(f"strength {s:g}, training seed {cfg.models.training.seed}: training and three replays of "
                     f"{args.sessions} sessions, {args.symbols} symbols")
            results[s, cfg.models.training.seed] = capture(cfg, s, args.sessions, universe(cfg, args.symbols), clock=CLOCK)
            progress(f"strength {s:g} done in {time.perf_counter() - t0:.0f} s")

    def f(x, digits=3):
        return "-" if x is None else f"{x:+.{digits}f}"

    rows = [
        [f"{r.strength:g}", seed, r.traded_horizon, f(r.planted_ic), f(r.observable_ic), f(r.realised_ic),
         f(r.realised_ic_se), f(r.pnl_after_costs, 2), f(r.oracle_pnl_after_costs, 2), f(r.capture_ratio, 2),
         f(r.observable_oracle_pnl_after_costs, 2), f(r.observable_capture_ratio, 2), f"{r.turnover:.2f}",
         f"{r.costs:.2f}", r.orders, r.oracle_orders]
        for (_, seed), r in results.items()
    ]
    print(f"\nplanted-signal capture: {args.symbols} symbols, {args.sessions} replayed sessions\n")
    print(table(["strength", "seed", "horizon", "planted_ic", "observable_ic", "realised_ic", "se", "pnl $",
                 "oracle pnl $", "capture", "observable pnl $", "obs. capture", "turnover", "costs $", "orders",
                 "oracle orders"], rows))
    planted = [summarise([(seed, r) for (strength, seed), r in results.items() if strength == s]) for s in strengths]
    if len(seeds) > 1:
        print("\nover the training seeds: mean (min .. max)")
        for entry in planted:
            spread = entry["by_seed"]
            line = [f"strength {entry['strength']:g}:"]
            for key in ("pnl_after_costs", "capture_ratio", "turnover"):
                values = [e[key] for e in spread if e[key] is not None]
                if values:
                    line.append(f"{key} {entry[key]:+.3f} ({min(values):+.3f} .. {max(values):+.3f})")
            print("  " + "  ".join(line))
    default = next((r for (s, _), r in results.items() if s == 1.0), next(iter(results.values())))
    print("\n" + render(default.attribution))
    if args.json:
        payload = {"symbols": args.symbols, "sessions": args.sessions, "planted": planted,
                   "stage_ic": default.attribution}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def summarise(runs: list) -> dict:
    """One strength's entry from its (training seed, CaptureResult) pairs: each figure's mean over the seeds
    (None if any seed has none), and ``by_seed``, each seed's own figures."""
    by_seed = [{"training_seed": seed, **r.summary()} for seed, r in runs]
    entry = {k: v for k, v in by_seed[0].items() if k != "training_seed"}
    for key, value in entry.items():
        values = [e[key] for e in by_seed]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and None not in values:
            entry[key] = float(np.mean(values))
    entry["by_seed"] = by_seed
    return entry


if __name__ == "__main__":
    raise SystemExit(main())
