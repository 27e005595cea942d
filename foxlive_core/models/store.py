"""Model artifacts on disk: layout, checksums, the active run, loading and inference.

Layout of one training run (``<models_root>/<run_id>/``)::

    manifest.json                      what was trained, with checksums and metrics
    <horizon>/<family>/model.txt|json  return model (LightGBM model.txt, XGBoost/ridge model.json)
    <horizon>/<family>/model_meta.json family, target, horizon, feature_list, interval, windows,
                                       metrics, bps_scale, SHA-256 of the model file, versions
    <horizon>/lightgbm/model.so        the forest compiled to native code, with its record (SHA-256,
                                       build versions) under ``compiled`` in model_meta.json and the
                                       manifest entry (foxlive_core.models.compiled)
    <horizon>/barrier_peak/...         P(touch +barrier first within h)
    <horizon>/barrier_valley/...       P(touch -barrier first within h)

``<models_root>/active.json`` names the run live trading uses, who activated
it and when. The manifest and every model_meta.json are sealed: each records
the SHA-256 of its own content (``content_sha256``; the records of compiled
libraries, which a load may add, are left out), so a hand edit of a scale, a
calibration slope or a metric is refused like a changed model file. Loading
verifies every checksum, the family, the bar interval,
the horizon length and that the feature builder produces exactly the model's
``feature_list``; any mismatch is a :class:`ModelError` naming both sides.
With ``models.inference: compiled`` a LightGBM model also gets its compiled
forest: verified against its record, or built (and recorded) when the run has
none for this platform and treelite/tl2cgen version; the native predict stays
in use when it cannot be built.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from foxlive_core.config import FoxliveConfig
from foxlive_core.errors import ModelError
from foxlive_core.features import FEATURE_NAMES
from foxlive_core.models import compiled
from foxlive_core.models.families import FittedModel, check_family, load

BARRIER_KINDS = ("barrier_peak", "barrier_valley")
ACTIVE_FILE = "active.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, payload: dict, seal: bool = False) -> None:
    """Write ``payload`` as JSON through a temporary file; with ``seal``, add its :func:`content_digest`."""
    if seal:
        payload = json.loads(json.dumps(payload, default=str))  # the digest is of what is written
        payload[SEAL_KEY] = content_digest(payload)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


#: Key of a sealed record's own digest.
SEAL_KEY = "content_sha256"
#: Keys left out of the digest at any depth: the digest itself, and compiled-library records (a load writes them).
_UNSEALED = frozenset({SEAL_KEY, "compiled"})


def content_digest(payload) -> str:
    """SHA-256 of a JSON record's content in canonical form, less the keys of :data:`_UNSEALED`."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in _UNSEALED}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    canonical = json.dumps(strip(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read_sealed(path: Path, what: str) -> dict:
    """:func:`_read_json` of a sealed record, refused when its content does not match its seal."""
    payload = _read_json(path, what)
    recorded = payload.get(SEAL_KEY)
    if recorded is None:
        raise ModelError(f"{what} {path} has no {SEAL_KEY}: it was written by an older foxlive or by hand; "
                         "retrain with `foxlive train`")
    actual = content_digest(payload)
    if actual != recorded:
        raise ModelError(
            f"{what} {path} was changed after training: its content has SHA-256 {actual[:16]}... but its "
            f"{SEAL_KEY} says {str(recorded)[:16]}...; a record edited by hand (a scale, a slope, a metric) is "
            "not used, retrain with `foxlive train`"
        )
    return payload


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{what} {path} is missing; retrain with `foxlive train`") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{what} {path} is not valid JSON ({exc}); the file is corrupt, retrain with `foxlive train`") from None


@dataclass
class ModelSet:
    """The loaded, verified models of one run, ready for vectorised inference.

    Attributes
    ----------
    run_id : str
    horizons : tuple of str, length H (config order)
    families : tuple of str, length Fam
    feature_names : tuple of str, length F
    return_models : dict (horizon, family) -> FittedModel
    barrier_models : dict (horizon, kind) -> FittedModel, kind in BARRIER_KINDS
        (a horizon without barrier models is absent; the gate then says so)
    bps_scale : ndarray (Fam, H)
        Std of the horizon's forward return on the training rows, in bps; maps a
        standardised score to expected bps (see foxlive_core.pipeline.blend).
    target_std : ndarray (Fam, H)
        The same scale as a decimal return (used to standardise calibration errors).
    metas : dict path-key -> model_meta.json content
    calibration_slope : ndarray (H,)
        Slope of the realised move on each horizon's alpha, fitted on the validation
        rows (the prior of foxlive_core.pipeline.calibration); 1 for runs that predate it.
    """

    run_id: str
    horizons: tuple[str, ...]
    families: tuple[str, ...]
    feature_names: tuple[str, ...]
    return_models: dict
    barrier_models: dict
    bps_scale: np.ndarray
    metas: dict = field(default_factory=dict)
    calibration_slope: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.calibration_slope is None:
            self.calibration_slope = np.ones(len(self.horizons))

    @property
    def target_std(self) -> np.ndarray:
        return self.bps_scale * 1e-4

    def has_barrier(self) -> np.ndarray:
        """(H,) bool: whether both barrier classifiers exist for each horizon."""
        return np.array([all((h, k) in self.barrier_models for k in BARRIER_KINDS) for h in self.horizons])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw return predictions, shape (H, Fam, M), for feature rows X (M, F); NaN rows where X has a NaN."""
        valid = np.isfinite(X).all(axis=1)
        out = np.full((len(self.horizons), len(self.families), X.shape[0]), np.nan)
        models = [self.return_models[(h, fam)] for h in self.horizons for fam in self.families]
        preds = predict_each(models, np.ascontiguousarray(X[valid]))
        for k, pred in enumerate(preds):
            out[k // len(self.families), k % len(self.families), valid] = pred
        return out

    def predict_barriers(self, X: np.ndarray) -> np.ndarray:
        """Barrier probabilities, shape (H, 2, M): [:, 0] p_peak, [:, 1] p_valley; NaN without a model or features."""
        valid = np.isfinite(X).all(axis=1)
        out = np.full((len(self.horizons), 2, X.shape[0]), np.nan)
        slots = [(i, j) for i, h in enumerate(self.horizons) for j, kind in enumerate(BARRIER_KINDS)
                 if (h, kind) in self.barrier_models]
        models = [self.barrier_models[(self.horizons[i], BARRIER_KINDS[j])] for i, j in slots]
        for (i, j), pred in zip(slots, predict_each(models, np.ascontiguousarray(X[valid]))):
            out[i, j, valid] = pred
        return out

    def predict_barriers_at(self, X: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Barrier probabilities (2, M) of each row at its own horizon: [0] p_peak, [1] p_valley.

        ``best`` (M,) is each row's horizon index (-1: none). Only the rows with a horizon,
        finite features and that horizon's models are predicted, each by its horizon's two
        classifiers (the others are NaN): the values equal :meth:`predict_barriers` at those
        horizons, at a sixth of its work when the rows share one horizon of six.
        """
        best = np.asarray(best)
        out = np.full((2, X.shape[0]), np.nan)
        valid = np.isfinite(X).all(axis=1) & (best >= 0)
        jobs, where = [], []
        for i, h in enumerate(self.horizons):
            rows = np.flatnonzero(valid & (best == i))
            if not len(rows):
                continue
            Xh = np.ascontiguousarray(X[rows])
            for j, kind in enumerate(BARRIER_KINDS):
                if (h, kind) in self.barrier_models:
                    jobs.append((self.barrier_models[(h, kind)], Xh))
                    where.append((j, rows))
        # Their own threads: a replay's worker keeps the shared pool busy with the next session's
        # return models, and a cycle must not queue behind them.
        for (j, rows), pred in zip(where, predict_pairs(jobs, pool="barriers")):
            out[j, rows] = pred
        return out

    def predict_cycles(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw predictions (H, Fam, C, N) and barrier probabilities (H, 2, C, N) for features X (C, N, F)."""
        return self.predict_return_cycles(X), self.predict_barrier_cycles(X)

    def predict_return_cycles(self, X: np.ndarray) -> np.ndarray:
        """Raw predictions (H, Fam, C, N) of the return models for features X (C, N, F)."""
        C, N, F = X.shape
        return self.predict(X.reshape(C * N, F)).reshape(len(self.horizons), len(self.families), C, N)

    def predict_barrier_cycles(self, X: np.ndarray) -> np.ndarray:
        """Barrier probabilities (H, 2, C, N) for features X (C, N, F)."""
        C, N, F = X.shape
        return self.predict_barriers(X.reshape(C * N, F)).reshape(len(self.horizons), 2, C, N)


@dataclass(frozen=True)
class BarriersOnDemand:
    """A cycle's barrier probabilities (:class:`foxlive_core.decide.BarrierProbs`), predicted by ``models``
    from the cycle's feature rows ``X`` (N, F) when the cycle asks for them."""

    models: ModelSet
    X: np.ndarray

    def at(self, best: np.ndarray) -> np.ndarray:
        return self.models.predict_barriers_at(self.X, best)

    def table(self) -> np.ndarray:
        return self.models.predict_barriers(self.X)


_pools: dict[tuple[int, str], ThreadPoolExecutor] = {}
# Fewer rows than this over all of a call's jobs are predicted on the caller's thread: handing them to
# the pool costs more than it saves (a 50-symbol cycle's barrier classifiers, 100 rows: 1.0 -> 0.66 ms).
INLINE_ROWS = 160


def predict_each(models: list[FittedModel], X: np.ndarray) -> list[np.ndarray]:
    """Each model's predictions (M,) for the rows X (M, F), in the order of ``models``.

    The models run concurrently, one thread each, on the cores this process may
    use (the libraries release the GIL while they predict). Every model predicts
    every row on its own, so a row's predictions do not depend on the other rows,
    on the thread that ran them or on the number of cores.
    """
    return predict_pairs([(m, X) for m in models])


def predict_pairs(jobs: list[tuple[FittedModel, np.ndarray]], pool: str = "inference") -> list[np.ndarray]:
    """Each model's predictions for its own rows: ``jobs`` [(model, X (M_k, F))] -> [(M_k,)], in order.

    Run as :func:`predict_each` runs its models: concurrently, one thread each, on the threads
    of ``pool`` (one set of threads per name, as many as the cores), or one after another on
    this thread when they are fewer than ``INLINE_ROWS`` rows in all.
    """
    cores = compiled.available_cores()
    if cores <= 1 or len(jobs) <= 1 or sum(X.shape[0] for _, X in jobs) < INLINE_ROWS:
        return [m.predict(X) for m, X in jobs]
    # One pool per process id: a forked child inherits the pool object but not its threads.
    key = (os.getpid(), pool)
    threads = _pools.get(key)
    if threads is None:
        threads = _pools[key] = ThreadPoolExecutor(max_workers=cores, thread_name_prefix=f"foxlive-{pool}")
    return list(threads.map(lambda job: job[0].predict(job[1]), jobs))


class ModelStore:
    """Training runs under one models root, and which of them is active."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def runs(self) -> list[str]:
        """Run ids with a manifest, oldest first (run ids sort by creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file())

    def manifest(self, run_id: str) -> dict:
        return _read_sealed(self.root / run_id / "manifest.json", "manifest")

    def active_run(self) -> dict | None:
        """The active-run record (run_id, activated_at, activated_by, reason) or None."""
        path = self.root / ACTIVE_FILE
        return _read_json(path, "active-run record") if path.is_file() else None

    def activate(self, run_id: str, by: str, reason: str, cfg: FoxliveConfig) -> dict:
        """Verify ``run_id`` loads against ``cfg`` and record it as the active run."""
        self.load(run_id, cfg)
        record = {
            "run_id": run_id,
            "activated_at": datetime.now(timezone.utc).isoformat(),
            "activated_by": by,
            "reason": reason,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / ACTIVE_FILE, record)
        return record

    def active_run_id(self) -> str:
        """The active run's id; an error saying how to make one when there is none."""
        record = self.active_run()
        if record is None:
            raise ModelError(f"no active model run under {self.root}; run `foxlive train` first (it activates the new run)")
        return record["run_id"]

    def load_active(self, cfg: FoxliveConfig) -> ModelSet:
        return self.load(self.active_run_id(), cfg)

    def load(self, run_id: str, cfg: FoxliveConfig) -> ModelSet:
        """Load and verify every model of ``run_id`` that ``cfg`` needs."""
        run_dir = self.root / run_id
        if not run_dir.is_dir():
            raise ModelError(f"model run {run_id!r} does not exist under {self.root}; known runs: {self.runs()[-5:]}")
        manifest = self.manifest(run_id)
        listed = {(m["horizon"], m["kind"]): m for m in manifest.get("models", [])}
        horizons = cfg.horizon_names
        families = cfg.models.families
        bars = dict(zip(horizons, cfg.horizon_bars()))
        metas: dict = {}
        return_models: dict = {}
        barrier_models: dict = {}
        scale = np.full((len(families), len(horizons)), np.nan)
        built: dict = {}  # (horizon, kind) -> record of a library compiled during this load
        for hi, h in enumerate(horizons):
            for fi, fam in enumerate(families):
                check_family(fam, "models.families")
                if (h, fam) not in listed:
                    raise ModelError(
                        f"model run {run_id}: no {fam} model for horizon {h} in its manifest (it has "
                        f"{sorted(f'{a}/{b}' for a, b in listed)[:12]}); retrain with the current config"
                    )
                model, meta = self._load_one(run_dir / h / fam, listed[(h, fam)], cfg, h, bars[h], fam, built)
                return_models[(h, fam)] = model
                metas[f"{h}/{fam}"] = meta
                scale[fi, hi] = float(meta["bps_scale"])
            for kind in BARRIER_KINDS:
                if (h, kind) in listed:
                    model, meta = self._load_one(run_dir / h / kind, listed[(h, kind)], cfg, h, bars[h], kind, built)
                    barrier_models[(h, kind)] = model
                    metas[f"{h}/{kind}"] = meta
        if built:
            self._record_compiled(run_dir, manifest, built)
        fitted = manifest.get("calibration", {})
        slope = np.array([float(fitted.get(h, {}).get("slope", 1.0)) for h in horizons])
        return ModelSet(run_id, horizons, families, FEATURE_NAMES, return_models, barrier_models, scale, metas, slope)

    @staticmethod
    def _record_compiled(run_dir: Path, manifest: dict, built: dict) -> None:
        """Write the records of libraries built during a load into their model_meta.json files and the manifest.

        The libraries are in place already; a crash before the records are written
        leaves records that do not match, and the next load rebuilds.
        """
        try:
            for (h, kind), record in built.items():
                meta_path = run_dir / h / kind / "model_meta.json"
                write_json_atomic(meta_path, {**_read_sealed(meta_path, "model metadata"), "compiled": record})
            for entry in manifest.get("models", []):
                if (entry["horizon"], entry["kind"]) in built:
                    entry["compiled"] = built[(entry["horizon"], entry["kind"])]
            write_json_atomic(run_dir / "manifest.json", manifest)
        except OSError as exc:
            # The libraries serve this process; without their records the next load builds them again.
            compiled.log.warning("cannot record the compiled models of %s (%s); they are rebuilt on the next load",
                                 run_dir, exc)

    @staticmethod
    def _attach_compiled(model: FittedModel, directory: Path, meta: dict, listed: dict, digest: str,
                         built: dict, key: tuple[str, str]) -> None:
        """Give ``model`` its compiled forest: the recorded library if current, else a new build (in ``built``)."""
        record = meta.get("compiled")
        library = directory / compiled.LIBRARY_FILE
        if record is not None and record == listed.get("compiled") and compiled.is_current(record, digest) \
                and library.is_file():
            model.compiled = compiled.load_verified(library, record, model.predict_native,
                                                    f"{directory / 'model_meta.json'} and the manifest")
            return
        record = compiled.compile_beside(directory / meta["model_file"], digest)
        if record is not None:
            model.compiled = compiled.load_verified(library, record, model.predict_native, "the record of its build")
            built[key] = meta["compiled"] = record

    @staticmethod
    def _load_one(directory: Path, listed: dict, cfg: FoxliveConfig, horizon: str, bars: int, kind: str,
                  built: dict):
        meta_path = directory / "model_meta.json"
        meta = _read_sealed(meta_path, "model metadata")
        family = meta.get("family", "")
        check_family(family, str(meta_path))
        expected_family = listed["family"]
        if family != expected_family:
            raise ModelError(f"{meta_path}: family is {family!r} but the manifest says {expected_family!r}")
        if meta.get("kind") != kind:
            raise ModelError(f"{meta_path}: kind is {meta.get('kind')!r}, expected {kind!r}")
        if meta.get("bar_interval") != cfg.market.bar_interval:
            raise ModelError(
                f"{meta_path}: trained on {meta.get('bar_interval')} bars but market.bar_interval is "
                f"{cfg.market.bar_interval}; retrain or change the config"
            )
        if meta.get("horizon") != horizon or meta.get("horizon_bars") != bars:
            raise ModelError(
                f"{meta_path}: model horizon {meta.get('horizon')} ({meta.get('horizon_bars')} bars) does not match "
                f"the configured horizon {horizon} ({bars} bars); retrain with the current config"
            )
        features = list(meta.get("feature_list", []))
        if features != list(FEATURE_NAMES):
            missing = [f for f in FEATURE_NAMES if f not in features]
            extra = [f for f in features if f not in FEATURE_NAMES]
            raise ModelError(
                f"{meta_path}: feature_list does not match the feature builder: model has {len(features)} features, "
                f"builder makes {len(FEATURE_NAMES)}; builder-only {missing[:8]}, model-only {extra[:8]}"
                + ("" if missing or extra else "; same names in a different order")
                + "; retrain with `foxlive train`"
            )
        model_path = directory / meta["model_file"]
        if not model_path.is_file():
            raise ModelError(f"model file {model_path} is missing (listed in {meta_path}); retrain with `foxlive train`")
        digest = sha256_file(model_path)
        if digest != meta.get("sha256") or digest != listed.get("sha256"):
            raise ModelError(
                f"model file {model_path} fails its checksum: SHA-256 {digest[:16]}... but model_meta.json says "
                f"{str(meta.get('sha256'))[:16]}... and the manifest {str(listed.get('sha256'))[:16]}...; the file is "
                "truncated or was modified, retrain with `foxlive train`"
            )
        model = load(family, meta["objective"], model_path)
        if cfg.models.inference == "compiled" and family in compiled.COMPILED_FAMILIES:
            ModelStore._attach_compiled(model, directory, meta, listed, digest, built, (horizon, kind))
        return model, meta
