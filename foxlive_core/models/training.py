"""Training: per horizon, return models of every family and two barrier classifiers.

Rows are (bar t, symbol) pairs pooled over the universe. The target of a
return model at horizon h is the forward return over h bars; the barrier
classifiers learn whether +/- ``barrier_width_sigmas`` x sigma_h is touched
first within h. The split is by time: the last ``validation_fraction`` of the
bar times validate, and training rows stop h + ``purge_bars`` bars before the
first validation bar, so no training target overlaps the validation period.

Validation metrics of a return model (:func:`_return_metrics`): the mean
per-bar cross-sectional rank IC and Pearson IC, each with its t-statistic on
non-overlapping bars, IC-IR, and the pooled Pearson IC with the share of it
that its top symbol contributes; "n/a" (None) where no bar has 5 symbols.
Barrier classifiers report AUC and the base rate. A model's feature
importance is kept in ``model_meta.json`` as a list in importance order.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from foxlive_core import __version__
from foxlive_core.attribution import MIN_SYMBOLS, t_statistic
from foxlive_core.config import FoxliveConfig
from foxlive_core.data.protocol import MarketData
from foxlive_core.errors import DataError, ModelError
from foxlive_core.features import FEATURE_NAMES, build_features, fill_missing_bars
from foxlive_core.models import compiled, families
from foxlive_core.models.store import BARRIER_KINDS, ModelStore, sha256_file, write_json_atomic
from foxlive_core.models.targets import barrier_labels, forward_returns
from foxlive_core.pipeline.confidence import cross_sectional_ic


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    run_dir: Path
    manifest: dict

    def metrics_table(self) -> pd.DataFrame:
        """One row per model: horizon, kind, family, its metrics (:func:`_return_metrics` for a return
        model, auc and base_rate for a barrier classifier; NaN where a figure is n/a), n_train, n_validation."""
        rows = []
        for m in self.manifest["models"]:
            rows.append({"horizon": m["horizon"], "kind": m["kind"], "family": m["family"], **m["metrics"],
                         "n_train": m["n_train"], "n_validation": m["n_validation"]})
        return pd.DataFrame(rows)

    def calibration_table(self) -> pd.DataFrame:
        """One row per horizon: the calibration prior (:func:`fit_calibration`): ``slope_ols`` with its
        Newey-West ``slope_se``, the ``shrinkage`` and ``kappa0`` (what the cycles start from), ``pairs``."""
        rows = []
        for horizon, c in self.manifest.get("calibration", {}).items():
            rows.append({"horizon": horizon, "slope_ols": c.get("slope_ols"), "slope_se": c.get("slope_se"),
                         "shrinkage": c.get("shrinkage"), "kappa0": c["slope"], "pairs": c["pairs"]})
        columns = ["horizon", "slope_ols", "slope_se", "shrinkage", "kappa0", "pairs"]
        return pd.DataFrame(rows, columns=columns).astype({c: float for c in columns[1:5]})


def package_versions() -> dict[str, str]:
    import lightgbm
    import scipy
    import xgboost

    return {
        "foxlive": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "lightgbm": lightgbm.__version__,
        "xgboost": xgboost.__version__,
    }


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def training_window(cfg: FoxliveConfig, market: MarketData, end=None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of the training bars: the last ``models.training.sessions`` sessions ending at ``end``."""
    end = pd.Timestamp(end) if end is not None else market.last_time
    if end.tzinfo is None:
        raise DataError(f"training end {end} is timezone-naive; give it in UTC")
    end = min(end.tz_convert("UTC"), market.last_time)
    sessions = market.calendar.sessions(end - pd.Timedelta(days=7 * cfg.models.training.sessions + 14), end)
    sessions = sessions[sessions["close"] <= end] if (sessions["close"] <= end).any() else sessions
    sessions = sessions.iloc[-cfg.models.training.sessions :]
    start = max(sessions["open"].iloc[0], market.first_time)
    if start >= end:
        raise DataError(f"training window is empty: start {start} is not before end {end}")
    return start, end


def cross_sectional_pearson(pred: np.ndarray, real: np.ndarray, min_pairs: int = MIN_SYMBOLS) -> np.ndarray:
    """Pearson correlation across the last axis, one value per leading index.

    Parameters
    ----------
    pred, real : (..., N); NaN entries drop out pairwise
    min_pairs : fewer finite pairs than this gives NaN

    Returns
    -------
    (...,) in [-1, 1]; NaN where unmeasured, 0 where either side is constant.
    """
    valid = np.isfinite(pred) & np.isfinite(real)
    n = valid.sum(axis=-1)
    p = np.where(valid, pred, 0.0)
    r = np.where(valid, real, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(valid, p - p.sum(axis=-1, keepdims=True) / n[..., None], 0.0)
        r = np.where(valid, r - r.sum(axis=-1, keepdims=True) / n[..., None], 0.0)
    var = (p * p).sum(axis=-1) * (r * r).sum(axis=-1)
    ic = np.divide((p * r).sum(axis=-1), np.sqrt(var), out=np.zeros(n.shape), where=var > 0)
    return np.where(n >= min_pairs, np.clip(ic, -1.0, 1.0), np.nan)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _mean_or_none(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def _return_metrics(pred: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray, horizon_bars: int,
                    symbol_names) -> dict:
    """Validation figures of a return model at a horizon of ``horizon_bars`` bars.

    Per bar (date), the IC across symbols: Spearman (``rank_ic``) and Pearson
    (``ic``), averaged over the validation bars with at least ``MIN_SYMBOLS``
    symbols, each with its t-statistic (:func:`foxlive_core.attribution.t_statistic`)
    on non-overlapping bars (every ``horizon_bars``-th bar from the first, so no
    two h-bar targets share a bar); ``ic_ir`` is the mean per-bar rank IC over
    its standard deviation (all bars). All None ("n/a") where no bar has enough
    symbols. ``pooled_ic`` is the Pearson IC over all (bar, symbol) rows;
    ``top_symbol_share`` the share of it contributed by the symbol contributing
    most (its rows' co-moment over the pooled normaliser, as a fraction of the
    pooled IC) and ``pooled_ic_without_top_symbol`` the pooled IC without that
    symbol's rows: a pooled IC resting on one symbol shows here.

    Parameters
    ----------
    pred, y : (k,) predictions and realised forward returns
    rows, cols : (k,) bar index and symbol index of each row
    horizon_bars : bars of the target's horizon
    symbol_names : the names ``cols`` index into
    """
    bars, b = np.unique(rows, return_inverse=True)
    symbols, s = np.unique(cols, return_inverse=True)
    grid_p = np.full((len(bars), len(symbols)), np.nan)
    grid_y = grid_p.copy()
    grid_p[b, s], grid_y[b, s] = pred, y
    per_bar_rank = cross_sectional_ic(grid_p, grid_y, MIN_SYMBOLS)
    per_bar = cross_sectional_pearson(grid_p, grid_y, MIN_SYMBOLS)
    independent = (bars - bars[0]) % horizon_bars == 0
    measured = np.isfinite(per_bar_rank)
    rank_all = per_bar_rank[measured]
    sd = rank_all.std(ddof=1) if len(rank_all) > 1 else 0.0
    out = {
        "rank_ic": _mean_or_none(rank_all),
        "rank_ic_t": t_statistic(per_bar_rank[measured & independent]),
        "ic": _mean_or_none(per_bar[np.isfinite(per_bar)]),
        "ic_t": t_statistic(per_bar[np.isfinite(per_bar) & independent]),
        "ic_ir": float(rank_all.mean() / sd) if sd > 0 else None,
        "bars": int(measured.sum()),
        "independent_bars": int((measured & independent).sum()),
        "pooled_ic": _pearson(pred, y),
        "top_symbol": None,
        "top_symbol_share": None,
        "pooled_ic_without_top_symbol": None,
    }
    if out["pooled_ic"] is not None and out["pooled_ic"] != 0 and len(symbols) > 1:
        dp, dy = pred - pred.mean(), y - y.mean()
        contribution = np.bincount(s, weights=dp * dy) / np.sqrt((dp @ dp) * (dy @ dy))
        top = int(np.argmax(np.sign(out["pooled_ic"]) * contribution))
        rest = s != top
        out.update(top_symbol=symbol_names[int(symbols[top])], top_symbol_share=float(contribution[top] / out["pooled_ic"]),
                   pooled_ic_without_top_symbol=_pearson(pred[rest], y[rest]))
    return out


def _auc(p: np.ndarray, label: np.ndarray) -> float:
    pos = label == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = stats.rankdata(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class TrainingTask:
    """One model of a training run: a return model of one family, or a barrier classifier, at one horizon.

    ``index`` is the task's place in :func:`training_tasks`; it seeds the task's
    own row subsample, so a task's model does not depend on which tasks ran
    before it, in which process or on which machine.
    """

    index: int
    horizon: str
    horizon_bars: int
    kind: str

    @property
    def key(self) -> str:
        """``<horizon>_<kind>``: a name for the task's step (letters, digits, underscores)."""
        return f"{self.horizon}_{self.kind}"


def training_workers(cfg: FoxliveConfig) -> int:
    """How many models to fit at once: the cores this process may use over ``models.training.threads``."""
    return max(compiled.available_cores() // max(cfg.models.training.threads, 1), 1)


def training_tasks(cfg: FoxliveConfig) -> list[TrainingTask]:
    """Every model a run trains, horizon by horizon: the return families, then the barrier classifiers."""
    kinds = (*cfg.models.families, *BARRIER_KINDS)
    pairs = [(h.name, b, kind) for h, b in zip(cfg.horizons, cfg.horizon_bars()) for kind in kinds]
    return [TrainingTask(i, *pair) for i, pair in enumerate(pairs)]


STAGING = ".staging"  # inside a run's temporary directory: the shared data set and each task's results
STALE_TEMPORARY_S = 86_400  # a temporary run directory untouched this long is from a training that failed


def staging_dir(cfg: FoxliveConfig, run_id: str) -> Path:
    """The temporary directory of run ``run_id`` while it trains (renamed to the run when complete)."""
    return cfg.models_root / f".tmp-{run_id}"


def prepare_training(cfg: FoxliveConfig, market: MarketData, end=None, *, symbols=None, run_id: str | None = None) -> str:
    """Load the training window's bars, build its features and write them for the tasks; returns the run id.

    Writes ``<models root>/.tmp-<run id>/.staging``: the features ``X.npy``
    (T, N, F) float64, the filled ``close``/``high``/``low`` (T, N), the bar
    times and ``plan.json`` (symbols, the first validation bar). Every task
    (:func:`fit_training_task`) reads them, in this process or another, and
    :func:`assemble_training` turns the results into the run. Temporary
    directories of trainings that failed over a day ago are removed here.
    """
    symbols = tuple(symbols or cfg.symbols)
    start, end = training_window(cfg, market, end)
    raw = market.bars(symbols, start, end)
    # Features fill missing bars themselves (filling twice would differ from the live path);
    # targets and barrier labels use the filled closes.
    feats = build_features(raw, cfg.market.max_fill_bars)
    panel = fill_missing_bars(raw, cfg.market.max_fill_bars)
    T = feats.values.shape[0]
    tcfg = cfg.models.training
    split = int(np.floor(T * (1 - tcfg.validation_fraction)))
    for h_cfg, h_bars in zip(cfg.horizons, cfg.horizon_bars()):
        if split - h_bars - tcfg.purge_bars < 10 or split >= T:
            raise DataError(
                f"training window {start} .. {end} has {T} bars: too short for horizon {h_cfg.name} "
                f"({h_bars} bars) with validation_fraction {tcfg.validation_fraction}; raise models.training.sessions"
            )
    run_id = run_id or new_run_id()
    store = ModelStore(cfg.models_root)
    store.root.mkdir(parents=True, exist_ok=True)
    if (store.root / run_id).exists():
        raise ModelError(f"model run {run_id} already exists at {store.root / run_id}; choose another run id")
    now = datetime.now(timezone.utc).timestamp()
    for old in store.root.glob(".tmp-*"):
        if now - old.stat().st_mtime > STALE_TEMPORARY_S:
            shutil.rmtree(old, ignore_errors=True)
    tmp_dir = staging_dir(cfg, run_id)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    data = tmp_dir / STAGING
    data.mkdir(parents=True)
    np.save(data / "X.npy", np.ascontiguousarray(feats.values, dtype=np.float64))
    for name in ("close", "high", "low"):
        np.save(data / f"{name}.npy", np.ascontiguousarray(getattr(panel, name), dtype=np.float64))
    np.save(data / "times.npy", panel.times.asi8)
    write_json_atomic(data / "plan.json", {"run_id": run_id, "symbols": list(symbols), "split": split})
    return run_id


@dataclass(frozen=True)
class _Dataset:
    X: np.ndarray  # (T, N, F)
    close: np.ndarray  # (T, N)
    high: np.ndarray
    low: np.ndarray
    times: pd.DatetimeIndex
    symbols: tuple[str, ...]
    split: int


def _load_dataset(directory: Path) -> _Dataset:
    data = directory / STAGING
    plan = _read_plan(data)
    arrays = {name: np.load(data / f"{name}.npy", mmap_mode="r") for name in ("X", "close", "high", "low")}
    times = pd.DatetimeIndex(np.load(data / "times.npy")).tz_localize("UTC")
    return _Dataset(times=times, symbols=tuple(plan["symbols"]), split=int(plan["split"]), **arrays)


def _read_plan(data: Path) -> dict:
    path = data / "plan.json"
    if not path.is_file():
        raise ModelError(f"no prepared training data at {data}; run prepare_training first (a failed or finished "
                         "training removes it)")
    return json.loads(path.read_text())


class _RecentBins:
    """The constructed LightGBM datasets of the last few row sets binned in this process, by row-set key.

    A horizon's tasks are queued together, so two entries serve two training threads; an
    evicted entry costs only the time of binning the rows again.
    """

    def __init__(self, size: int = 2) -> None:
        self._size, self._datasets, self._lock = size, {}, threading.Lock()

    def get(self, key):
        with self._lock:
            return self._datasets.get(key)

    def keep(self, key, dataset) -> None:
        with self._lock:
            self._datasets.setdefault(key, dataset)
            while len(self._datasets) > self._size:
                self._datasets.pop(next(iter(self._datasets)))

    def clear(self) -> None:
        with self._lock:
            self._datasets.clear()


_LIGHTGBM_BINS = _RecentBins()


def _rows_key(tmp_dir: Path, rows: np.ndarray) -> tuple:
    """Which prepared data (the file, as written) and which of its rows: equal keys, equal training rows."""
    stat = (tmp_dir / STAGING / "X.npy").stat()
    return str(tmp_dir), stat.st_ino, stat.st_mtime_ns, hashlib.sha256(np.ascontiguousarray(rows).data).hexdigest()


def fit_training_task(cfg: FoxliveConfig, run_id: str, task: TrainingTask) -> dict:
    """Fit one task of a prepared run; write its model, ``model_meta.json`` and its results for the run.

    Returns the task's manifest entry. The model is fitted on the task's
    training rows (at most ``models.training.max_rows``, a subsample seeded
    by ``models.training.seed`` and the task's index) and validated on the
    validation rows; a return model's validation predictions are kept for the
    horizon's calibration (:func:`assemble_training`).
    """
    tmp_dir = staging_dir(cfg, run_id)
    ds = _load_dataset(tmp_dir)
    X_all = ds.X
    T, N, F = X_all.shape
    tcfg = cfg.models.training
    h_bars, split = task.horizon_bars, ds.split
    train_end = split - h_bars - tcfg.purge_bars  # rows t < train_end: t + h < split - purge
    valid_x = np.isfinite(X_all).all(axis=2)
    t_grid = np.broadcast_to(np.arange(T)[:, None], (T, N))
    if task.kind in BARRIER_KINDS:
        vol_idx = FEATURE_NAMES.index("vol_20b")
        width = cfg.models.barrier_width_sigmas * X_all[:, :, vol_idx] * np.sqrt(h_bars)
        peak, valley = barrier_labels(ds.close, ds.high, ds.low, h_bars, width)
        target = peak if task.kind == "barrier_peak" else valley
    else:
        target = forward_returns(ds.close, h_bars)
    ok = np.isfinite(target)
    tr_idx = _subsample(np.flatnonzero(((t_grid < train_end) & valid_x & ok).ravel()), tcfg.max_rows,
                        np.random.default_rng([tcfg.seed, task.index]))
    va_idx = np.flatnonzero(((t_grid >= split) & valid_x & ok).ravel())
    if len(tr_idx) < 100 or len(va_idx) < 20:
        raise DataError(
            f"horizon {task.horizon}/{task.kind}: only {len(tr_idx)} training and {len(va_idx)} validation rows; "
            "raise models.training.sessions or add symbols"
        )
    Xf = X_all.reshape(T * N, F)
    yf = target.reshape(T * N)
    family = cfg.models.barrier_family if task.kind in BARRIER_KINDS else task.kind
    objective = "binary" if task.kind in BARRIER_KINDS else "regression"
    if family == "lightgbm":
        # A horizon's return and barrier models train on the same rows: the first LightGBM task bins
        # them, the others copy its binned rows with their own labels (the same models, byte for byte).
        key = _rows_key(tmp_dir, tr_idx)
        binned = _LIGHTGBM_BINS.get(key)
        if binned is None:
            train_set = families.lightgbm_dataset(np.asarray(Xf[tr_idx]), yf[tr_idx], cfg, objective, tcfg.seed)
            _LIGHTGBM_BINS.keep(key, train_set)  # before the fit: a task running beside it borrows it already
        else:
            train_set = families.lightgbm_relabelled(binned, yf[tr_idx])
        model = families.fit(family, objective, train_set, yf[tr_idx], cfg, tcfg.seed)
    else:
        model = families.fit(family, objective, np.asarray(Xf[tr_idx]), yf[tr_idx], cfg, tcfg.seed)
    directory = tmp_dir / task.horizon / task.kind
    directory.mkdir(parents=True, exist_ok=True)
    model_path = model.save(directory)
    digest = sha256_file(model_path)
    compiled_record = (compiled.compile_beside(model_path, digest) if cfg.models.inference == "compiled"
                       and family in compiled.COMPILED_FAMILIES else None)
    if compiled_record is not None:  # the same predictions as the native call, in half the time
        model.compiled = compiled.load_verified(directory / compiled_record["file"], compiled_record,
                                                model.predict_native, "the record of its build")
    pred = model.predict(np.ascontiguousarray(Xf[va_idx]))
    if objective == "binary":
        metrics = {"auc": _auc(pred, yf[va_idx]), "base_rate": float(yf[va_idx].mean())}
    else:
        metrics = _return_metrics(pred, yf[va_idx], va_idx // N, va_idx % N, h_bars, ds.symbols)
    importance = model.importance(list(FEATURE_NAMES))
    times = ds.times
    meta = {
        "run_id": run_id,
        "family": family,
        "kind": task.kind,
        "objective": objective,
        "target": f"{'fwd_return' if objective == 'regression' else task.kind}_{h_bars}b",
        "horizon": task.horizon,
        "horizon_bars": h_bars,
        "feature_list": list(FEATURE_NAMES),
        "n_features": F,
        "bar_interval": cfg.market.bar_interval,
        "interval_minutes": cfg.market.interval_minutes,
        "calendar": cfg.market.calendar,
        "symbols": N,
        "train_window": {"start": times[0].isoformat(), "end": times[max(train_end - 1, 0)].isoformat()},
        "validation_window": {"start": times[split].isoformat(), "end": times[-1].isoformat()},
        "purge_bars": h_bars + tcfg.purge_bars,
        "n_train": int(len(tr_idx)),
        "n_validation": int(len(va_idx)),
        "metrics": metrics,
        "bps_scale": float(np.std(yf[tr_idx]) * 1e4) if objective == "regression" else None,
        "barrier_width_sigmas": cfg.models.barrier_width_sigmas if objective == "binary" else None,
        # A list: the JSON is written with sorted keys, which would put a dict in name order.
        "feature_importance": [{"feature": n, "importance": v}
                               for n, v in sorted(importance.items(), key=lambda kv: -kv[1])],
        "model_file": model_path.name,
        "sha256": digest,
        "compiled": compiled_record,
        "package_versions": package_versions(),
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    write_json_atomic(directory / "model_meta.json", meta, seal=True)
    entry = {
        "horizon": task.horizon,
        "kind": task.kind,
        "family": family,
        "path": f"{task.horizon}/{task.kind}/{model_path.name}",
        "sha256": digest,
        "compiled": compiled_record,
        "metrics": metrics,
        "n_train": meta["n_train"],
        "n_validation": meta["n_validation"],
        "bps_scale": meta["bps_scale"],
        "top_features": [f["feature"] for f in meta["feature_importance"][:10]],
    }
    if objective == "regression":
        np.savez(tmp_dir / STAGING / f"{task.key}.validation.npz", rows=va_idx, pred=pred)
    write_json_atomic(tmp_dir / STAGING / f"{task.key}.entry.json", entry)
    return entry


def assemble_training(cfg: FoxliveConfig, run_id: str, *, activate: bool = False,
                      activated_by: str = "foxlive train") -> TrainingResult:
    """Turn a prepared run whose every task is fitted into a model run: calibration, manifest, rename.

    Each horizon's calibration prior (:func:`fit_calibration`) is fitted on
    its return models' validation predictions; the manifest lists the tasks in
    :func:`training_tasks` order, so it is the same whichever order and
    wherever they ran. The temporary directory is renamed into place only now,
    so a run that looks valid is complete. With ``activate`` the run becomes
    the active one.
    """
    tmp_dir = staging_dir(cfg, run_id)
    ds = _load_dataset(tmp_dir)
    data = tmp_dir / STAGING
    tasks = training_tasks(cfg)
    missing = [t.key for t in tasks if not (data / f"{t.key}.entry.json").is_file()]
    if missing:
        raise ModelError(f"training run {run_id} is missing {len(missing)} of {len(tasks)} models "
                         f"({', '.join(missing[:5])}); fit them (fit_training_task) before assembling the run")
    entries = [json.loads((data / f"{t.key}.entry.json").read_text()) for t in tasks]
    T, N = ds.close.shape
    calibration = {}
    for h_cfg, h_bars in zip(cfg.horizons, cfg.horizon_bars()):
        validation = {}  # family -> (validation rows, predictions, mean per-bar rank IC, bps scale)
        for t, entry in zip(tasks, entries):
            if t.horizon == h_cfg.name and t.kind in cfg.models.families:
                with np.load(data / f"{t.key}.validation.npz") as z:
                    validation[t.kind] = (z["rows"], z["pred"], entry["metrics"]["rank_ic"], entry["bps_scale"])
        y = forward_returns(np.asarray(ds.close), h_bars).reshape(T * N)
        calibration[h_cfg.name] = fit_calibration(cfg, h_cfg.temperature, validation, y, N, h_bars)
    times = ds.times
    manifest = {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "config_path": cfg.source_path,
        "market_source": cfg.market.source,
        "bar_interval": cfg.market.bar_interval,
        "calendar": cfg.market.calendar,
        "horizons": [{"name": h.name, "bars": b} for h, b in zip(cfg.horizons, cfg.horizon_bars())],
        "families": list(cfg.models.families),
        "barrier_family": cfg.models.barrier_family,
        "symbols": list(ds.symbols),
        "data_window": {"start": times[0].isoformat(), "end": times[-1].isoformat(), "bars": T},
        "validation_start": times[ds.split].isoformat(),
        "feature_list": list(FEATURE_NAMES),
        "package_versions": package_versions(),
        "calibration": calibration,
        "models": entries,
    }
    del ds  # its memory maps hold the staging files open
    shutil.rmtree(data)
    write_json_atomic(tmp_dir / "manifest.json", manifest, seal=True)
    final_dir = cfg.models_root / run_id
    os.replace(tmp_dir, final_dir)
    if activate:
        ModelStore(cfg.models_root).activate(run_id, by=activated_by, reason="new training run", cfg=cfg)
    return TrainingResult(run_id, final_dir, manifest)


def discard_training(cfg: FoxliveConfig, run_id: str) -> None:
    """Remove the temporary directory of a training that will not complete."""
    shutil.rmtree(staging_dir(cfg, run_id), ignore_errors=True)


def train_models(
    cfg: FoxliveConfig,
    market: MarketData,
    end=None,
    *,
    symbols=None,
    run_id: str | None = None,
    activate: bool = True,
    activated_by: str = "foxlive train",
    progress: bool = True,
    workers: int | None = None,
) -> TrainingResult:
    """Train every (horizon, family) return model and the barrier classifiers in this process; write one run.

    :func:`prepare_training`, :func:`fit_training_task` for each of
    :func:`training_tasks`, then :func:`assemble_training`: the steps that the
    Dagster training job runs as separate steps, in parallel, give the same
    run. ``workers`` tasks are fitted at once, on threads (LightGBM, XGBoost
    and the BLAS release the GIL while they fit); by default the cores this
    process may use divided by ``models.training.threads``. Each task writes
    only its own files and seeds its own subsample, so the run is the same
    byte for byte with any number of workers. The run is written to a
    temporary directory and renamed into place only when complete, so a crash
    never leaves a half-written run that looks valid. With ``activate`` the
    new run becomes the active one (recorded in active.json).
    """
    from tqdm.auto import tqdm

    tasks = training_tasks(cfg)
    workers = max(1, min(training_workers(cfg) if workers is None else workers, len(tasks)))
    run_id = prepare_training(cfg, market, end, symbols=symbols, run_id=run_id)
    try:
        bar = tqdm(total=len(tasks), desc="training", unit="model", disable=not progress)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="foxlive-training") as pool:
            fits = [pool.submit(fit_training_task, cfg, run_id, task) for task in tasks]
            try:
                # In task order, so a failure is reported as the one-at-a-time loop would report it.
                for task, fit in zip(tasks, fits):
                    fit.result()
                    bar.set_postfix_str(f"{task.horizon}/{task.kind}")
                    bar.update()
            except BaseException:
                for fit in fits:
                    fit.cancel()
                raise
            finally:
                pool.shutdown(wait=True)
                _LIGHTGBM_BINS.clear()
        bar.close()
        return assemble_training(cfg, run_id, activate=activate, activated_by=activated_by)
    except BaseException:
        discard_training(cfg, run_id)
        raise


def fit_calibration(cfg: FoxliveConfig, temperature: float, validation: dict, y: np.ndarray, n_symbols: int,
                    horizon_bars: int) -> dict:
    """The prior slope kappa0 of one horizon (foxlive_core.pipeline.calibration), fitted on the validation rows.

    The pipeline's alpha is rebuilt on those rows as a cycle would make it, with
    what is known at training: each family's z-score as ``standardization.mode``
    makes it (across the symbols at each bar, or against each symbol's rolling
    buffer of its validation predictions in time order), its confidence
    max(rank IC, floor) x the stability warm-up (freshness and capacity 1),
    blend weights from mu = max(IC - cost_share / 2, 0.01) with the identity
    correlation and the horizon's temperature, times the family's bps scale.
    b is the OLS slope through the origin of the realised move (bps; less
    its mean across symbols at each bar when the scores are cross-sectional,
    as the cycle's calibration takes it) on that alpha. Its standard error is
    Newey-West over the bars: the per-bar scores g_t = sum_i x_ti e_ti, with
    Bartlett weights 1 - l / horizon_bars up to lag horizon_bars - 1, because
    forward returns of consecutive bars share all but one of their bars (the
    plain OLS error is about sqrt(horizon_bars) too small: on a market with no
    signal it made a 1d slope of 2.5 look five errors from 0). kappa0 is b
    shrunk towards 0 (no edge) by the positive-part James-Stein factor
    max(0, 1 - (se / b)^2): a slope one error from 0 counts as nothing, a
    slope ten errors out keeps 99 % of itself.

    ``validation`` maps family -> (flat row indices into the (T, N) grid,
    predictions, mean per-bar rank IC or None where unmeasured (then the floor), bps scale);
    ``y`` is the flat forward return over ``horizon_bars`` bars.

    Returns ``slope`` (kappa0), ``slope_ols`` (b), ``slope_se``, ``shrinkage``
    (kappa0 / b), ``pairs`` and ``fitted``; unfitted (fewer than 3 pairs, or no
    alpha): slope 1 and the rest None.
    """
    from foxlive_core.pipeline.blend import apply_temperature, ridge_weights
    from foxlive_core.pipeline.standardize import zscore_cross_sectional, zscore_rolling

    families = list(validation)
    rows = validation[families[0]][0]
    bars, cols = np.unique(rows // n_symbols, return_inverse=True)
    grid = np.full((len(families), len(bars), n_symbols), np.nan)
    for f, fam in enumerate(families):
        idx, pred, _, _ = validation[fam]
        grid[f, np.searchsorted(bars, idx // n_symbols), idx % n_symbols] = pred
    sc, cc, bc = cfg.standardization, cfg.confidence, cfg.blending
    relative = sc.relative
    if relative:
        z = zscore_cross_sectional(grid, sc.min_samples, sc.clip)
    else:
        z = np.empty_like(grid)
        buffer = np.full((len(families), n_symbols, sc.window), np.nan)
        for t in range(len(bars)):
            z[:, t], buffer = zscore_rolling(grid[:, t], buffer, sc.min_samples, sc.clip)
    ic = np.array([max(validation[fam][2] if validation[fam][2] is not None else cc.ic_floor, cc.ic_floor)
                   for fam in families])
    mu = np.fmax(ic - 0.5 * bc.cost_share, 0.01)
    w = apply_temperature(ridge_weights(mu, np.eye(len(families)), bc.ridge_lambda), temperature)
    scale = np.array([validation[fam][3] for fam in families])
    alpha = np.einsum("f,ftn->tn", w * ic * cc.stability_warmup * scale, z)
    real = np.full((len(bars), n_symbols), np.nan)
    real[np.searchsorted(bars, rows // n_symbols), rows % n_symbols] = y[rows] * 1e4
    ok = np.isfinite(alpha) & np.isfinite(real)
    if relative:
        count = ok.sum(axis=1, keepdims=True)
        real = real - np.divide(np.where(ok, real, 0.0).sum(axis=1, keepdims=True), count, out=np.zeros(count.shape),
                                where=count > 0)
    x, yy = np.where(ok, alpha, 0.0), np.where(ok, real, 0.0)
    pairs = int(ok.sum())
    sxx = float((x * x).sum())
    if pairs < 3 or sxx <= 0:
        return {"slope": 1.0, "slope_ols": None, "slope_se": None, "shrinkage": None, "pairs": pairs, "fitted": False}
    slope = float((x * yy).sum()) / sxx
    se = newey_west_slope_se(x, yy - slope * x, bars, horizon_bars)
    shrinkage = max(0.0, 1.0 - (se / slope) ** 2) if slope != 0 else 0.0
    # + 0.0: a negative slope shrunk away is 0, not -0.0 (which prints as -0.000)
    return {"slope": slope * shrinkage + 0.0, "slope_ols": slope, "slope_se": se, "shrinkage": shrinkage, "pairs": pairs,
            "fitted": True}


def newey_west_slope_se(x: np.ndarray, resid: np.ndarray, bars: np.ndarray, horizon_bars: int) -> float:
    """Newey-West standard error of an OLS slope through the origin fitted on a (T, N) panel.

    Parameters
    ----------
    x, resid : ndarray, shape (T, N)
        Regressor and residual, 0 where a pair is missing.
    bars : ndarray, shape (T,)
        Increasing bar index of each row, so that a gap in the rows is a gap in time.
    horizon_bars : int
        Length of the forward return: residuals up to horizon_bars - 1 bars apart
        overlap, and are weighted 1 - lag / horizon_bars (Bartlett).

    Returns
    -------
    float: sqrt(sum over lags |l| < horizon_bars of w_l sum_t g_t g_{t-l}) / S_xx,
    with g_t = sum_i x_ti resid_ti over the bars from the first to the last.
    """
    g = np.zeros(int(bars[-1] - bars[0]) + 1)
    g[bars - bars[0]] = (x * resid).sum(axis=1)
    lags = min(max(int(horizon_bars), 1), len(g)) - 1
    variance = float(g @ g)
    for lag in range(1, lags + 1):
        variance += 2.0 * (1.0 - lag / (lags + 1)) * float(g[lag:] @ g[:-lag])
    return float(np.sqrt(max(variance, 0.0))) / float((x * x).sum())


def _subsample(idx: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_rows`` of ``idx``, chosen uniformly at random and kept in time order."""
    if len(idx) <= max_rows:
        return idx
    return np.sort(rng.choice(idx, size=max_rows, replace=False))
