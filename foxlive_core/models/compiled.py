"""Compiled forests: a LightGBM model as native code, built once beside its model file, verified, loaded.

treelite reads the LightGBM text model, tl2cgen writes it out as C and gcc compiles
that into ``model.so`` (``.dylib`` / ``.dll`` elsewhere) in the model's directory.
Its record goes into the model's ``model_meta.json`` and its manifest entry under
``compiled``::

    file           library file name, beside the native model file
    sha256         SHA-256 of the library, verified before every load
    source_sha256  SHA-256 of the native model file it was built from
    treelite, tl2cgen, platform, params, options   what built it (see :func:`build_key`)
    compiler       the C compiler's version line (information only)

A library is used only when its record matches the running build key and the
native file's checksum; a record from another platform or treelite/tl2cgen version
is rebuilt. A library whose checksum differs from its record is refused.

Equality with the native predict: the forest keeps LightGBM's float64 thresholds
and leaves, sums the trees in LightGBM's order and applies the same sigmoid, so the
outputs are bit-identical; ``quantize`` maps each value to the index of its interval
among the feature's thresholds, which decides every split the same way. One
exception is handled here: tl2cgen marks a missing value by writing -1 into the
first 32 bits (in memory) of the value's slot, so a finite double whose low 32
bits are all ones (about one in 2**32 values; DBL_MAX is one) reads as missing.
Rows holding such a value are predicted by the native booster instead.

XGBoost is not compiled. treelite 4.1, the version tl2cgen 1.0 embeds (and so the
one pinned), reads XGBoost 3's base score as 0: the compiled forest is off by the
base score, and a binary model's base margin becomes -inf and does not compile
(``tests/core/test_compiled_inference.py`` shows both). With treelite 4.8, which
reads it, the float32 sums still differ by up to ~1e-7 on probabilities, because
the base score is added after the trees where XGBoost adds it first; the route
must be within 1e-9. Ridge is a few numpy operations already.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from foxlive_core.errors import ModelError

COMPILED_FAMILIES = ("lightgbm",)
# quantize: integer comparisons of interval indices (about 2x faster than double comparisons, same splits);
# parallel_comp: four translation units, so gcc can run on both cores; -O1: on these forests as fast as -O3
# at half the compile time (benchmarks/README.md).
CODEGEN_PARAMS = {"quantize": 1, "parallel_comp": 4}
COMPILER_OPTIONS = ("-O1",)
COMPILER = "gcc"
LIBRARY_SUFFIX = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
LIBRARY_FILE = "model" + LIBRARY_SUFFIX

log = logging.getLogger(__name__)
_reported: set[str] = set()
_BUILD_LOCK = threading.Lock()


def _report_once(kind: str, reason: str) -> None:
    """Log why the native predict is used instead, once per kind of failure and process."""
    if kind not in _reported:
        _reported.add(kind)
        log.warning("compiled inference unavailable, using the native predict: %s", reason)


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_key() -> dict:
    """What a library depends on: treelite and tl2cgen versions, platform, code generation and compiler flags."""
    import tl2cgen
    import treelite

    return {
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
        "platform": f"{sys.platform}-{platform.machine()}",
        "params": dict(CODEGEN_PARAMS),
        "options": list(COMPILER_OPTIONS),
    }


def compiler_problem() -> str | None:
    """Why libraries cannot be built here (the text of the log line), or None."""
    try:
        import tl2cgen  # noqa: F401
        import treelite  # noqa: F401
    except ImportError as exc:
        return f"treelite/tl2cgen cannot be imported ({exc}); install them (pip install -e .)"
    if shutil.which(COMPILER) is None:
        return f"no C compiler: {COMPILER!r} is not on PATH; install gcc to compile the forests"
    return None


def _compiler_version() -> str:
    out = subprocess.run([COMPILER, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else COMPILER


def is_current(record: dict | None, source_sha256: str) -> bool:
    """Whether ``record`` describes a library built here from the native file with checksum ``source_sha256``."""
    if not record or record.get("file") != LIBRARY_FILE or record.get("source_sha256") != source_sha256:
        return False
    try:
        key = build_key()
    except ImportError:
        return False
    return all(record.get(k) == v for k, v in key.items())


def compile_beside(model_path: Path, source_sha256: str) -> dict | None:
    """Compile the LightGBM model file ``model_path`` into a library in its directory.

    The library is built in a temporary directory and renamed into place, so a
    reader never sees a half-written file. Returns its record (module docstring),
    or None when it cannot be built (the reason is logged once).
    """
    from foxlive_core.models.store import sha256_file

    problem = compiler_problem()
    if problem:
        _report_once("unavailable", problem)
        return None
    import tl2cgen
    import treelite

    directory = model_path.parent
    target = directory / LIBRARY_FILE
    try:
        # One build at a time: redirect_stdout swaps the process's sys.stdout (two threads' swaps would
        # interleave and lose it), and create_shared already compiles on every core.
        with _BUILD_LOCK, tempfile.TemporaryDirectory(prefix=".build-", dir=directory) as build:
            # tl2cgen prints its progress through Python's print; the build's output is not the user's.
            _route_tl2cgen_log()
            with contextlib.redirect_stdout(io.StringIO()):
                forest = treelite.frontend.load_lightgbm_model(str(model_path))
                tl2cgen.generate_c_code(forest, dirpath=build, params=dict(CODEGEN_PARAMS))
                library = tl2cgen.create_shared(COMPILER, build, nthread=available_cores(),
                                                options=list(COMPILER_OPTIONS))
            os.replace(library, target)
    except Exception as exc:  # treelite, tl2cgen and the compiler fail with their own error types
        _report_once(f"compile {type(exc).__name__}", f"compiling {model_path} failed ({type(exc).__name__}: {exc})")
        return None
    return {"file": target.name, "sha256": sha256_file(target), "source_sha256": source_sha256,
            **build_key(), "compiler": _compiler_version()}


def _route_tl2cgen_log() -> None:
    """Send tl2cgen's log messages in this thread through its Python callback (which prints to sys.stdout).

    The callback is registered per thread, and tl2cgen registers it only in the thread
    that imports it; in any other thread its native code writes straight to the process's
    stderr, where redirect_stdout cannot hold it (one line per model trained).
    """
    from tl2cgen import libloader

    lib = getattr(libloader, "_LIB", None)
    if lib is not None and hasattr(lib, "log_callback"):
        lib.TL2cgenRegisterLogCallback(lib.log_callback)


def load_verified(library: Path, record: dict, fallback, where: str) -> CompiledForest | None:
    """The forest in ``library`` after checking its SHA-256 against ``record``; None if it cannot be loaded.

    A checksum mismatch is a :class:`ModelError` (the file was modified or truncated);
    a library that passes but fails to load is logged once and the native predict used.
    """
    from foxlive_core.models.store import sha256_file

    digest = sha256_file(library)
    if digest != record.get("sha256"):
        raise ModelError(
            f"compiled model {library} fails its checksum: SHA-256 {digest[:16]}... but {where} says "
            f"{str(record.get('sha256'))[:16]}...; the file is truncated or was modified: delete it to rebuild it "
            "from the verified native model on the next load, or retrain with `foxlive train`"
        )
    import tl2cgen

    try:
        predictor = tl2cgen.Predictor(str(library), nthread=1)
    except Exception as exc:  # tl2cgen raises its own error type for a library it cannot open
        _report_once(f"load {type(exc).__name__}", f"loading {library} failed ({type(exc).__name__}: {exc})")
        return None
    return CompiledForest(predictor, fallback)


class CompiledForest:
    """A loaded library and the native predict for rows it would misread (module docstring).

    ``fallback`` maps rows (K, F) float64 to predictions (K,) float64.
    """

    def __init__(self, predictor, fallback) -> None:
        self._predictor = predictor
        self._fallback = fallback
        # tl2cgen allows one predict call at a time per library.
        self._lock = threading.Lock()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for rows of X (M, F), M >= 1, with no NaN; returns (M,) float64.

        One thread; each row is predicted on its own, so the result of a row does
        not depend on the other rows.
        """
        import tl2cgen

        X = np.ascontiguousarray(X, dtype=np.float64)
        with self._lock:
            out = self._predictor.predict(tl2cgen.DMatrix(X)).reshape(X.shape[0])
        misread = reads_as_missing(X)
        if misread.any():
            out[misread] = self._fallback(X[misread])
        return out


def reads_as_missing(X: np.ndarray) -> np.ndarray:
    """(M,) bool: rows of the C-contiguous float64 X (M, F) with a value tl2cgen reads as missing.

    tl2cgen's slot is a union of the double and an int that is -1 for a missing
    value; the int shares the double's first four bytes in memory.
    """
    first_word = X.view(np.uint32).reshape(X.shape[0], X.shape[1], 2)[:, :, 0]
    return (first_word == np.uint32(0xFFFFFFFF)).any(axis=1)
