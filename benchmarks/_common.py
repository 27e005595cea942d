"""Helpers shared by the benchmark scripts: universes, temporary homes, percentiles, plain-text tables.

Benchmarks measure and print; nothing here asserts anything about time.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

# One BLAS/OpenMP thread unless the caller set them: on a shared 2-core machine OpenBLAS's second thread
# makes small products (ridge's Z'Z) spike from ~3 ms to ~250 ms whenever the other core is busy. Set before
# numpy is imported; values already in the environment are kept. OPENBLAS_CORETYPE is never touched.
THREAD_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
THREADS_SET_HERE = [k for k in THREAD_DEFAULTS if k not in os.environ]
for _k in THREADS_SET_HERE:
    os.environ[_k] = THREAD_DEFAULTS[_k]

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `tests.core.scalar_reference_*` live in the repository, not in the package
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")
TRAIN_END = "2025-04-30T20:00Z"  # models are trained up to here; the benchmarked cycles are the sessions after it
CYCLE_START = "2025-05-01T00:00Z"


def parse_sizes(text: str) -> list[int]:
    sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"--symbols: expected comma-separated positive integers, got {text!r}")
    return sizes


def universe(cfg, n: int) -> tuple[str, ...]:
    """The first ``n`` configured symbols, then generated names S0001, S0002, ... beyond them."""
    base = tuple(cfg.symbols)
    if n <= len(base):
        return base[:n]
    return base + tuple(f"S{i:04d}" for i in range(1, n - len(base) + 1))


def temp_home(keep: bool = False) -> Path:
    """A fresh FOXLIVE_HOME (models and state go there, never into the repository); removed at exit."""
    home = Path(tempfile.mkdtemp(prefix="foxlive-bench-"))
    os.environ["FOXLIVE_HOME"] = str(home)
    if not keep:
        atexit.register(shutil.rmtree, home, True)
    return home


def snapshot_config(home: Path) -> Path:
    """Copy the configuration (``$FOXLIVE_CONFIG`` or config/live_trading.yaml, and its symbols file) into ``home``.

    The benchmark loads every config from the copy, so edits to the repository's YAML while it runs
    cannot reach it half-way (the library modules are imported once, at the start, too).
    """
    import yaml

    from foxlive_core.config import resolve_config_path

    src = resolve_config_path(None)
    dst = home / "config"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst / src.name)
    symbols = (yaml.safe_load(src.read_text()).get("paths") or {}).get("symbols")
    if symbols:
        (dst / symbols).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src.parent / symbols, dst / symbols)
    return dst / src.name


def pct(values, q: float) -> float:
    v = np.asarray(values, dtype=float)
    return float(np.percentile(v, q)) if v.size else float("nan")


def fmt(x: float, digits: int = 1) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; ``align`` is one character per column ('l' or 'r', default: first left, rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))

    def line(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def machine_line() -> str:
    import lightgbm
    import xgboost

    threads = ", ".join(
        f"{k}={os.environ.get(k, 'unset')}{' (set by the benchmark)' if k in THREADS_SET_HERE else ''}" for k in THREAD_VARS
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores, load average {load} (other work may share the cores); "
        f"python {platform.python_version()}, numpy {np.__version__}, lightgbm {lightgbm.__version__}, "
        f"xgboost {xgboost.__version__}\nthreads: {threads}; LightGBM/XGBoost: "
        "models.training.threads for training, 1 for inference"
    )


class Stopwatch:
    """``with sw('name'):`` adds the block's wall time (seconds) to ``sw.total['name']``."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self._name = None

    def __call__(self, name: str):
        self._name = name
        return self

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.total[self._name] = self.total.get(self._name, 0.0) + time.perf_counter() - self._t0
        return False


def progress(msg: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
