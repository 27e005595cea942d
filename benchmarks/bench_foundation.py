"""Foundation benchmark: features, inference and training time as the universe grows.

For each universe size N (default 50, 500, 2,000 symbols; 6 horizons x 3 families) this prints

* per cycle, median and p90 over ``--repeats``: loading the engine's history window of bars from the
  simulated market (cached sessions), building the features of the last bar (``build_features(...,
  last_only=True)`` on that window), and inference on the N feature rows (``ModelSet.predict``: 18
  return models; ``ModelSet.predict_barriers``: 12 barrier classifiers);
* training ONE horizon (30m) on a month (21 sessions) of 5-minute bars: the three return families and
  the two barrier classifiers, each fit timed separately, plus everything else ``train_models`` does
  (bars, features, targets, validation predictions, writing the run). Run once per N.

Nothing is asserted: these are measurements. Run from anywhere::

    /tmp/fxenv/bin/python benchmarks/bench_foundation.py            # default, about 3-4 minutes on 2 cores
    /tmp/fxenv/bin/python benchmarks/bench_foundation.py --quick    # smoke run (reduced rounds, 3 repeats)
"""

from __future__ import annotations

import argparse
import time

from _common import (
    CYCLE_START,
    TRAIN_END,
    fmt,
    machine_line,
    parse_sizes,
    pct,
    progress,
    snapshot_config,
    table,
    temp_home,
    universe,
)

import numpy as np
import pandas as pd

from foxlive_core.config import load_config
from foxlive_core.data.simulated import SimulatedMarket
from foxlive_core.features import build_features, required_history_bars
from foxlive_core.models import families as families_module
from foxlive_core.models.store import BARRIER_KINDS, ModelStore
from foxlive_core.models.training import train_models

ONE_HORIZON = {"name": "30m", "minutes": 30, "temperature": 1.0, "freshness_tau_s": 900}
TRAIN_SESSIONS = 21  # a month of sessions for the one-horizon training
INFERENCE_SET_SESSIONS = 10  # the 6-horizon model set used for inference (tree count and depth are what matter)
QUICK_ROUNDS = 40


class FitTimer:
    """Wraps ``families.fit`` (the module attribute training calls) to time every fit, in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, float]] = []
        self._orig = families_module.fit

    def __enter__(self):
        def timed(family, objective, X, y, *args, **kwargs):
            t0 = time.perf_counter()
            model = self._orig(family, objective, X, y, *args, **kwargs)
            self.calls.append((family, objective, int(X.shape[0]), time.perf_counter() - t0))
            return model

        families_module.fit = timed
        return self

    def __exit__(self, *exc):
        families_module.fit = self._orig
        return False


def config_source() -> str:
    from foxlive_core.config import resolve_config_path

    return str(resolve_config_path(None))


def timed_repeats(fn, repeats: int) -> tuple[list[float], object]:
    """Run ``fn`` once untimed (warm-up), then ``repeats`` times; milliseconds of each timed run."""
    out = fn()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", default="50,500,2000", help="universe sizes, comma-separated (default 50,500,2000)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of each per-cycle step (default 20; 3 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: 3 repeats and {QUICK_ROUNDS} boosting rounds instead of the config's (noted in the output)")
    ap.add_argument("--no-train", action="store_true", help="skip the one-horizon training timings")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary FOXLIVE_HOME (printed) instead of deleting it")
    args = ap.parse_args(argv)
    sizes = parse_sizes(args.symbols)
    repeats = args.repeats or (3 if args.quick else 20)

    home = temp_home(keep=args.keep_home)
    config_path = snapshot_config(home)
    base = load_config(config_path, home=home)
    rounds_override = (
        {"lightgbm": {"num_boost_round": QUICK_ROUNDS}, "xgboost": {"num_boost_round": QUICK_ROUNDS}} if args.quick else {}
    )
    lgb_rounds = QUICK_ROUNDS if args.quick else base.models.lightgbm.num_boost_round
    xgb_rounds = QUICK_ROUNDS if args.quick else base.models.xgboost.num_boost_round
    fill = base.market.max_fill_bars
    window = max(required_history_bars(fill), base.engine.history_bars)
    started = time.perf_counter()
    header = machine_line()
    progress(f"FOXLIVE_HOME={home}")

    # ---- the 6-horizon x 3-family model set used for inference (trained once, on the configured 50 symbols)
    inf_cfg = load_config(
        config_path, overrides={"models": {"training": {"sessions": INFERENCE_SET_SESSIONS}, **rounds_override}}, home=home
    )
    market50 = SimulatedMarket(universe(base, len(base.symbols)), inf_cfg.market)
    progress(f"training the inference model set: {len(inf_cfg.horizons)} horizons x "
             f"({len(inf_cfg.models.families)} families + {len(BARRIER_KINDS)} barrier classifiers)")
    t0 = time.perf_counter()
    inf_run = train_models(inf_cfg, market50, pd.Timestamp(TRAIN_END), symbols=market50.symbols, activate=False, progress=False)
    inf_train_s = time.perf_counter() - t0
    models = ModelStore(inf_cfg.models_root).load(inf_run.run_id, inf_cfg)
    n_ret = len(models.return_models)
    n_bar = len(models.barrier_models)

    per_cycle_rows, train_rows = [], []
    for n in sizes:
        syms = universe(base, n)
        market = SimulatedMarket(syms, base.market)
        t = market.calendar.bar_times(pd.Timestamp(CYCLE_START), pd.Timestamp(CYCLE_START) + pd.Timedelta(days=5))[40]
        progress(f"N={n}: generating the simulated market up to {t}")
        market.bars_ending_at(syms, t, window)  # the sequential pass from the simulation's start (not timed)

        progress(f"N={n}: per-cycle timings ({repeats} repeats)")
        bars_ms, panel = timed_repeats(lambda: market.bars_ending_at(syms, t, window), repeats)
        feat_ms, fp = timed_repeats(lambda: build_features(panel, fill, last_only=True), repeats)
        X = fp.values[0]  # (N, F): the last bar's features, as a live cycle has them
        valid = int(np.isfinite(X).all(axis=1).sum())
        pred_ms, _ = timed_repeats(lambda: models.predict(X), repeats)
        barr_ms, _ = timed_repeats(lambda: models.predict_barriers(X), repeats)
        both = [a + b for a, b in zip(pred_ms, barr_ms)]
        per_cycle_rows.append([
            f"{n:,}", f"{valid:,}",
            f"{fmt(pct(bars_ms, 50), 2)} / {fmt(pct(bars_ms, 90), 2)}",
            f"{fmt(pct(feat_ms, 50), 2)} / {fmt(pct(feat_ms, 90), 2)}",
            f"{fmt(pct(pred_ms, 50), 2)} / {fmt(pct(pred_ms, 90), 2)}",
            f"{fmt(pct(barr_ms, 50), 2)} / {fmt(pct(barr_ms, 90), 2)}",
            f"{fmt(pct(both, 50), 2)} / {fmt(pct(both, 90), 2)}",
        ])

        if args.no_train:
            continue
        cfg1 = load_config(
            config_path, overrides={"horizons": [ONE_HORIZON], "models": {"training": {"sessions": TRAIN_SESSIONS}, **rounds_override}},
            home=home,
        )
        progress(f"N={n}: training one horizon ({ONE_HORIZON['name']}) on {TRAIN_SESSIONS} sessions")
        with FitTimer() as ft:
            t0 = time.perf_counter()
            # One fit at a time: each is timed on its own, and the rest is the total less the fits.
            res = train_models(cfg1, market, pd.Timestamp(TRAIN_END), symbols=syms, activate=False, progress=False,
                               workers=1)
            total = time.perf_counter() - t0
        kinds = (*cfg1.models.families, *BARRIER_KINDS)
        fit_s = {k: c[3] for k, c in zip(kinds, ft.calls)}
        n_train = {m["kind"]: m["n_train"] for m in res.manifest["models"]}
        bars_total = res.manifest["data_window"]["bars"]
        train_rows.append([
            f"{n:,}", f"{bars_total * n:,}", f"{n_train[kinds[0]]:,}",
            *[fmt(fit_s[k], 1) for k in kinds],
            fmt(total - sum(fit_s.values()), 1), fmt(total, 1),
        ])
        del market, panel, fp, X

    # ---- output
    print()
    print("foxlive foundation benchmark")
    print(header)
    print(f"config: copy of {config_source()} taken at the start; {len(base.horizons)} horizons x {len(base.models.families)} families "
          f"({', '.join(base.models.families)}), barrier classifiers: {base.models.barrier_family}; "
          f"bars {base.market.bar_interval} on {base.market.calendar}; cycle at {t.isoformat()}")
    print()
    print(f"Per cycle, milliseconds, median / p90 over {repeats} repeats (after one untimed run)")
    print(table(["symbols", "rows valid", "bars load", "features", f"predict ({n_ret})", f"barriers ({n_bar})", "inference total"],
                per_cycle_rows))
    print(f"  bars load: market.bars_ending_at of the engine's {window}-bar window (simulated market, sessions cached).")
    print(f"  features: build_features(last_only=True) on that window (reads its last {required_history_bars(fill)} bars), "
          f"{len(models.feature_names)} features.")
    print(f"  inference: ModelSet.predict (H x Fam = {n_ret} return models) and .predict_barriers ({n_bar} classifiers) "
          "on N rows, 1 thread each;")
    print(f"  model set: {lgb_rounds} LightGBM / {xgb_rounds} XGBoost rounds, trained on 50 symbols x "
          f"{INFERENCE_SET_SESSIONS} sessions in {inf_train_s:.0f} s (tree size, not the training data, sets the cost)."
          + (" QUICK RUN: rounds reduced from the config's 200, inference is faster than at the defaults." if args.quick else ""))
    if train_rows:
        kinds = (*base.models.families, *BARRIER_KINDS)
        print()
        print(f"Training ONE horizon ({ONE_HORIZON['name']}), {TRAIN_SESSIONS} sessions of {base.market.bar_interval} bars, "
              f"seconds, one run per size (threads = models.training.threads = {base.models.training.threads})")
        print(table(["symbols", "bar rows", "train rows", *[f"{k}" for k in kinds], "other", "total"], train_rows))
        print(f"  train rows: training rows after the validation split, purge and the max_rows = "
              f"{base.models.training.max_rows:,} subsample (so the fits stop growing once N x bars exceeds it).")
        print(f"  {' / '.join(kinds[-2:])}: the barrier classifiers ({base.models.barrier_family}, binary), "
              f"fit on the same rows; other: bars, features, targets, validation predictions, writing the run.")
        print(f"  rounds: LightGBM {lgb_rounds}, XGBoost {xgb_rounds}"
              + (" (QUICK RUN: reduced from the config's defaults)" if args.quick else " (config defaults)")
              + "; fit times are single runs, not medians.")
    print(f"\nwall time of this benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
