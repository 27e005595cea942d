"""Inference routes: ns per (row x tree) for every family and route, and the chunk rate ModelSet gets.

Models: the defaults of ``config/live_trading.yaml`` (6 horizons x LightGBM/XGBoost/ridge + 12 LightGBM
barrier classifiers, 200 rounds), trained by ``train_models`` on 50 simulated symbols x 60 sessions
(20 with ``--quick``), which also compiles the LightGBM forests. Rows: the valid feature rows of the
same 50 symbols over ``--sessions`` sessions after the training window.

Tables:

- **routes**: per family and route, the best of ``--repeats`` passes over every model of the family:
  wall ns and CPU ns per (row x tree) (ridge: per row), and the largest |difference| from the
  family's native one-thread predict on the same rows. Routes: LightGBM ``predict(num_threads=1|2)``,
  the compiled forest (the route used: one thread, ``CompiledForest.predict``) and its library under
  a tl2cgen predictor with 2 OpenMP threads; XGBoost ``inplace_predict`` with nthread 1|2 and its
  treelite + tl2cgen build (not used: see foxlive_core/models/compiled.py); ridge numpy.
- **chunk**: ``ModelSet.predict`` + ``predict_barriers`` on all rows, compiled and native, on one core
  and on every core (the models on a thread pool), as rows per second.
- **builds**: one LightGBM model compiled with and without quantized splits at -O1/-O2/-O3: compiler
  CPU seconds and predict ns per (row x tree); and the compile time of every LightGBM model with the
  options in use.

Nothing is asserted. ``python benchmarks/bench_inference.py [--quick] [--sessions 5] [--repeats 3]
[--json PATH]``.
"""

from __future__ import annotations

import os

# tl2cgen's OpenMP route needs OMP_NUM_THREADS >= 2; _common sets 1 only where nothing is set.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import TRAIN_END, machine_line, progress, snapshot_config, table, temp_home, universe  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from foxlive_core.config import load_config  # noqa: E402
from foxlive_core.data.simulated import SimulatedMarket  # noqa: E402
from foxlive_core.features import build_features  # noqa: E402
from foxlive_core.models import compiled  # noqa: E402
from foxlive_core.models.store import ModelStore, sha256_file  # noqa: E402
from foxlive_core.models.training import train_models  # noqa: E402

SYMBOLS = 50
CLOCK = pd.Timestamp("2026-06-01T00:00Z")  # the simulated market serves bars up to here
ROWS_START = pd.Timestamp("2025-05-01T00:00Z")


def best(fn, repeats: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the fastest of ``repeats`` calls of ``fn``."""
    runs = []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - w0, time.process_time() - c0))
    return min(runs)


def quiet():
    """tl2cgen prints its progress with Python's print: keep stdout for the tables."""
    return contextlib.redirect_stdout(io.StringIO())


def feature_rows(cfg, market, sessions: int) -> np.ndarray:
    """(M, F) C-contiguous float64: the valid feature rows of ``sessions`` sessions from ROWS_START."""
    s = market.calendar.sessions(ROWS_START, ROWS_START + pd.Timedelta(days=2 * sessions + 10)).iloc[:sessions]
    history = pd.Timedelta(days=14)  # the features' longest window is well inside two weeks of bars
    raw = market.bars(market.symbols, s["open"].iloc[0] - history, s["close"].iloc[-1])
    feats = build_features(raw, cfg.market.max_fill_bars)
    keep = np.asarray(feats.times >= s["open"].iloc[0])
    X = feats.values[keep].reshape(-1, feats.values.shape[-1])
    return np.ascontiguousarray(X[np.isfinite(X).all(axis=1)])


def route_rows(models, run_dir: Path, X: np.ndarray, repeats: int, build_dir: Path) -> list[dict]:
    import tl2cgen
    import treelite

    every = [*models.return_models.values(), *models.barrier_models.values()]
    lgb = [m for m in every if m.family == "lightgbm"]
    xgb = [m for m in every if m.family == "xgboost"]
    ridge = [m for m in every if m.family == "ridge"]
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    reference = {id(m): m.predict_native(X) for m in every}
    rows = []

    def measure(family, route, threads, group, trees, predict, used):
        progress(f"{family}: {route}, {threads} thread(s)")
        wall, cpu = best(lambda: [predict(m) for m in group], repeats)
        diff = max(float(np.max(np.abs(np.asarray(predict(m), dtype=np.float64).reshape(len(X)) - reference[id(m)])))
                   for m in group)
        units = len(X) * trees * len(group)
        rows.append({"family": family, "route": route, "threads": threads, "models": len(group),
                     "trees_per_model": trees, "wall_ns": wall / units * 1e9, "cpu_ns": cpu / units * 1e9,
                     "max_abs_diff": diff, "used": used})

    lgb_trees = lgb[0].native.num_trees()
    measure("lightgbm", "native predict", 1, lgb, lgb_trees, lambda m: m.native.predict(X, num_threads=1), False)
    measure("lightgbm", "native predict", 2, lgb, lgb_trees, lambda m: m.native.predict(X, num_threads=2), False)
    if all(m.compiled is not None for m in lgb):
        measure("lightgbm", "compiled (treelite + tl2cgen)", 1, lgb, lgb_trees, lambda m: m.compiled.predict(X), True)
        omp = {id(m): tl2cgen.Predictor(str(run_dir / key[0] / key[1] / compiled.LIBRARY_FILE), nthread=2)
               for key, m in model_keys(models) if m.family == "lightgbm"}
        measure("lightgbm", "compiled, tl2cgen OpenMP", 2, lgb, lgb_trees,
                lambda m: omp[id(m)].predict(tl2cgen.DMatrix(X)), False)
    xgb_trees = xgb[0].native.num_boosted_rounds()

    def xgb_threads(n):
        for m in xgb:
            m.native.set_param({"nthread": n})

    xgb_threads(1)
    measure("xgboost", "inplace_predict", 1, xgb, xgb_trees, lambda m: m.native.inplace_predict(X), True)
    xgb_threads(2)
    measure("xgboost", "inplace_predict", 2, xgb, xgb_trees, lambda m: m.native.inplace_predict(X), False)
    xgb_threads(1)
    xgb_libs = {}
    for i, m in enumerate(xgb):  # regression models only (the barrier family is LightGBM)
        path = build_dir / f"xgb{i}.json"
        m.native.save_model(str(path))
        with quiet(), warnings.catch_warnings():
            # XGBoost 3.1+ writes an empty categorical block ("cats") that treelite 4.1 does not know.
            warnings.filterwarnings("ignore", message='.*unknown key "cats"')
            forest = treelite.frontend.load_xgboost_model(str(path), allow_unknown_field=True)
            tl2cgen.export_lib(forest, toolchain=compiled.COMPILER, params=dict(compiled.CODEGEN_PARAMS),
                               libpath=str(build_dir / f"xgb{i}{compiled.LIBRARY_SUFFIX}"),
                               options=list(compiled.COMPILER_OPTIONS))
        xgb_libs[id(m)] = tl2cgen.Predictor(str(build_dir / f"xgb{i}{compiled.LIBRARY_SUFFIX}"), nthread=1)
    measure("xgboost", "treelite + tl2cgen", 1, xgb, xgb_trees,
            lambda m: xgb_libs[id(m)].predict(tl2cgen.DMatrix(X32)), False)
    measure("ridge", "numpy", 1, ridge, 1, lambda m: m.predict_native(X), True)
    return rows


def model_keys(models):
    return [*models.return_models.items(), *models.barrier_models.items()]


def chunk_rates(cfg, store, run_id, X: np.ndarray, repeats: int) -> list[dict]:
    """Rows per second of ModelSet.predict + predict_barriers on all of X, per route and core count."""
    import dataclasses

    out = []
    cores = compiled.available_cores()
    for inference in ("compiled", "native"):
        c = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, inference=inference))
        models = store.load(run_id, c)
        for n in sorted({1, cores}):
            progress(f"chunk: {inference}, {n} core(s)")
            original = compiled.available_cores
            compiled.available_cores = lambda n=n: n  # the number of cores ModelSet's pool may use
            try:
                wall, cpu = best(lambda: (models.predict(X), models.predict_barriers(X)), repeats)
            finally:
                compiled.available_cores = original
            out.append({"inference": inference, "cores": n, "rows": len(X), "seconds": wall, "cpu_seconds": cpu,
                        "rows_per_s": len(X) / wall})
    return out


def build_rows(models, run_dir: Path, X: np.ndarray, repeats: int, build_dir: Path) -> tuple[list[dict], dict]:
    """Options on one LightGBM model, and the compile time of every LightGBM model with the options in use."""
    import tl2cgen
    import treelite

    lgb = [(key, m) for key, m in model_keys(models) if m.family == "lightgbm"]
    (h, kind), first = lgb[0]
    forest = treelite.frontend.load_lightgbm_model(str(run_dir / h / kind / "model.txt"))
    trees = first.native.num_trees()
    options = []
    for quantize in (0, 1):
        for level in ("-O1", "-O2", "-O3"):
            progress(f"build: quantize={quantize} {level}")
            d = Path(tempfile.mkdtemp(dir=build_dir))
            with quiet():
                tl2cgen.generate_c_code(forest, dirpath=str(d), params={"quantize": quantize, "parallel_comp": 4})
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            w0 = time.perf_counter()
            lib = tl2cgen.create_shared(compiled.COMPILER, str(d), nthread=compiled.available_cores(), options=[level])
            wall = time.perf_counter() - w0
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            predictor = tl2cgen.Predictor(lib, nthread=1)
            pwall, pcpu = best(lambda: predictor.predict(tl2cgen.DMatrix(X)), repeats)
            options.append({"quantize": quantize, "level": level, "compile_wall_s": wall,
                            "compile_cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
                            "wall_ns": pwall / len(X) / trees * 1e9, "cpu_ns": pcpu / len(X) / trees * 1e9,
                            "used": quantize == compiled.CODEGEN_PARAMS["quantize"]
                            and [level] == list(compiled.COMPILER_OPTIONS)})
    progress(f"build: all {len(lgb)} LightGBM models with the options in use")
    walls = []
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for (h, kind), _ in lgb:
        d = Path(tempfile.mkdtemp(dir=build_dir))
        src = d / "model.txt"
        src.write_bytes((run_dir / h / kind / "model.txt").read_bytes())
        w0 = time.perf_counter()
        record = compiled.compile_beside(src, sha256_file(src))
        walls.append(time.perf_counter() - w0)
        if record is None:
            raise SystemExit("compiling failed; see the log line above")
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    every = {"models": len(lgb), "wall_s": sum(walls), "wall_s_per_model": float(np.mean(walls)),
             "compiler_cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)}
    return options, every


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="train on 20 sessions instead of 60")
    ap.add_argument("--sessions", type=int, default=5, help="sessions of feature rows (50 symbols x 78 bars each)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    home = temp_home()
    cfg = load_config(snapshot_config(home), overrides={"models": {"inference": "compiled", "training": {
        "sessions": 20 if args.quick else 60}}}, home=home)
    syms = universe(cfg, SYMBOLS)
    market = SimulatedMarket(syms, cfg.market, clock=CLOCK)
    progress(f"training the default models on {SYMBOLS} symbols x {cfg.models.training.sessions} sessions")
    t0 = time.perf_counter()
    run = train_models(cfg, market, pd.Timestamp(TRAIN_END), symbols=syms, activate=False, progress=False)
    train_s = time.perf_counter() - t0
    store = ModelStore(cfg.models_root)
    models = store.load(run.run_id, cfg)
    X = feature_rows(cfg, market, args.sessions)
    progress(f"{len(X):,} feature rows")
    with tempfile.TemporaryDirectory(dir=home) as build:
        routes = route_rows(models, run.run_dir, X, args.repeats, Path(build))
        chunk = chunk_rates(cfg, store, run.run_id, X, args.repeats)
        options, every = build_rows(models, run.run_dir, X, args.repeats, Path(build))

    figures = {"machine": machine_line(), "rows": len(X), "train_seconds_with_compile": train_s,
               "models": {"horizons": list(models.horizons), "families": list(models.families),
                          "barrier_family": cfg.models.barrier_family,
                          "lightgbm_trees": models.return_models[(models.horizons[0], "lightgbm")].native.num_trees()},
               "routes": routes, "chunk": chunk, "build_options": options, "build_all": every}
    print()
    print("foxlive inference routes" + (" (--quick)" if args.quick else ""))
    print(figures["machine"])
    print(f"models: config defaults, trained on {SYMBOLS} symbols x {cfg.models.training.sessions} sessions in "
          f"{train_s:.0f} s (compiling included); rows: {len(X):,} feature rows of {args.sessions} sessions")
    print()
    print(table(["family", "route", "threads", "models", "trees", "wall ns", "CPU ns", "max |diff|", "used"],
                [[r["family"], r["route"], r["threads"], r["models"], r["trees_per_model"], f"{r['wall_ns']:.2f}",
                  f"{r['cpu_ns']:.2f}", f"{r['max_abs_diff']:.1e}", "yes" if r["used"] else ""] for r in routes],
                align="llrrrrrrl"))
    print("  ns per (row x tree), best of --repeats passes over every model of the family (ridge: per row);")
    print("  max |diff|: against the family's native one-thread predict on the same rows.")
    print()
    print(table(["inference", "cores", "rows", "seconds", "CPU seconds", "rows/s"],
                [[c["inference"], c["cores"], f"{c['rows']:,}", f"{c['seconds']:.2f}", f"{c['cpu_seconds']:.2f}",
                  f"{c['rows_per_s']:,.0f}"] for c in chunk]))
    print("  ModelSet.predict + predict_barriers (all 30 models) on the rows in one chunk.")
    print()
    print(table(["quantize", "level", "compile s", "compiler CPU s", "wall ns", "CPU ns", "used"],
                [[o["quantize"], o["level"], f"{o['compile_wall_s']:.2f}", f"{o['compile_cpu_s']:.2f}",
                  f"{o['wall_ns']:.2f}", f"{o['cpu_ns']:.2f}", "yes" if o["used"] else ""] for o in options]))
    print(f"  one LightGBM model ({figures['models']['lightgbm_trees']} trees); all {every['models']} LightGBM models "
          f"with the options in use: {every['wall_s']:.1f} s ({every['wall_s_per_model']:.2f} s a model), "
          f"compiler CPU {every['compiler_cpu_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2, default=float)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
