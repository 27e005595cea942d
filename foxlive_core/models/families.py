"""Model families: fit, save in the native format, load, predict.

LightGBM (``model.txt``), XGBoost (``model.json``) and a ridge regression
(``model.json`` with coefficients, feature means and scales). Nothing is ever
pickled. Every family exposes the same four operations so training, loading
and inference treat them alike; ``objective`` is ``"regression"`` for return
models and ``"binary"`` for barrier classifiers (probabilities out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foxlive_core.config import FoxliveConfig, family_problem
from foxlive_core.errors import ModelError

MODEL_FILES = {"lightgbm": "model.txt", "xgboost": "model.json", "ridge": "model.json"}


def check_family(family: str, where: str) -> None:
    problem = family_problem(family)
    if problem:
        raise ModelError(f"{where}: {problem}, and retrain")


@dataclass
class FittedModel:
    """A trained model of one family; ``native`` is the library object (booster or ridge dict).

    ``compiled`` is the model as native code (:class:`foxlive_core.models.compiled.CompiledForest`),
    attached by :class:`foxlive_core.models.store.ModelStore` when ``models.inference`` is
    ``compiled``; it predicts the same values as the native call, faster.
    """

    family: str
    objective: str
    native: object
    compiled: object | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for rows of X (M, F) with no NaN; returns (M,) float64.

        One thread; a row's prediction does not depend on the other rows.
        """
        if X.shape[0] == 0:
            return np.empty(0)
        if self.compiled is not None:
            return self.compiled.predict(X)
        return self.predict_native(X)

    def predict_native(self, X: np.ndarray) -> np.ndarray:
        """Predictions of the library's own call (ridge: numpy), for rows of X (M, F), M >= 1; (M,) float64."""
        if self.family == "lightgbm":
            return np.asarray(self.native.predict(X, num_threads=1), dtype=np.float64)
        if self.family == "xgboost":
            return np.asarray(self.native.inplace_predict(X), dtype=np.float64)
        r = self.native
        # Elementwise product and a row sum keep each row's result independent of how
        # many rows are predicted together (a live cycle and a batched replay agree bitwise).
        z = ((X - r["mean"]) / r["scale"] * r["coef"]).sum(axis=1) + r["intercept"]
        if self.objective == "binary":
            return 1.0 / (1.0 + np.exp(-z))
        return z

    def importance(self, feature_names: list[str]) -> dict[str, float]:
        """Feature importance (gain for trees, |standardised coefficient| for ridge), summing to 1."""
        if self.family == "lightgbm":
            raw = self.native.feature_importance(importance_type="gain").astype(float)
        elif self.family == "xgboost":
            score = self.native.get_score(importance_type="gain")
            raw = np.array([score.get(f"f{i}", 0.0) for i in range(len(feature_names))], dtype=float)
        else:
            raw = np.abs(self.native["coef"])
        total = raw.sum()
        raw = raw / total if total > 0 else raw
        return dict(zip(feature_names, raw.tolist()))

    def save(self, directory: Path) -> Path:
        """Write the native model file into ``directory``; returns its path."""
        path = directory / MODEL_FILES[self.family]
        if self.family == "lightgbm":
            self.native.save_model(str(path))
        elif self.family == "xgboost":
            self.native.save_model(str(path))
        else:
            r = self.native
            payload = {
                "format": "foxlive-ridge-v1",
                "objective": self.objective,
                "alpha": r["alpha"],
                "intercept": float(r["intercept"]),
                "coef": r["coef"].tolist(),
                "mean": r["mean"].tolist(),
                "scale": r["scale"].tolist(),
            }
            path.write_text(json.dumps(payload))
        return path


def lightgbm_params(cfg: FoxliveConfig, objective: str, seed: int) -> dict:
    """The parameters of a LightGBM fit (``models.lightgbm``, one ``models.training.threads``)."""
    p = cfg.models.lightgbm
    return {
        "objective": "binary" if objective == "binary" else "regression",
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves,
        "min_data_in_leaf": p.min_data_in_leaf,
        "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction,
        "bagging_freq": 1 if p.bagging_fraction < 1 else 0,
        "lambda_l2": p.lambda_l2,
        "seed": seed,
        "deterministic": True,
        "num_threads": cfg.models.training.threads,
        "verbosity": -1,
    }


def lightgbm_dataset(X: np.ndarray, y: np.ndarray, cfg: FoxliveConfig, objective: str, seed: int):
    """Rows X (M, F) float64 without NaN and labels y (M,) as a constructed LightGBM dataset for :func:`fit`.

    Constructed (binned) here with the parameters the fit will use, so that other fits of the
    same rows can copy its binned rows (:func:`lightgbm_relabelled`) while it trains.
    """
    import lightgbm as lgb

    return lgb.Dataset(X, label=y, params=lightgbm_params(cfg, objective, seed), free_raw_data=True).construct()


def lightgbm_relabelled(binned, y: np.ndarray):
    """The rows of the constructed dataset ``binned`` with labels y (M,) instead of its own.

    A copy of its binned rows, without binning the raw rows again (a sixth of the time): a
    fit on it gives the model that its own binning of the same rows gives, byte for byte.
    The caller makes sure ``binned`` holds the rows it means (training keys datasets by rows).
    """
    if len(y) != binned.num_data():
        raise ModelError(f"{len(y)} labels for a LightGBM dataset of {binned.num_data()} rows; "
                         "relabel only a dataset of the same rows")
    data = binned.subset(np.arange(binned.num_data(), dtype=np.int32)).construct()
    data.set_label(y)
    return data


def fit(family: str, objective: str, X, y: np.ndarray, cfg: FoxliveConfig, seed: int) -> FittedModel:
    """Fit one model. X (M, F) float64 without NaN, y (M,) (returns, or 0/1 labels for ``binary``).

    For LightGBM X may instead be a dataset of the rows (:func:`lightgbm_dataset`, :func:`lightgbm_relabelled`).
    """
    check_family(family, "models.families")
    if family == "lightgbm":
        import lightgbm as lgb

        params = lightgbm_params(cfg, objective, seed)
        train_set = X if isinstance(X, lgb.Dataset) else lightgbm_dataset(X, y, cfg, objective, seed)
        booster = lgb.train(params, train_set, num_boost_round=cfg.models.lightgbm.num_boost_round)
        return FittedModel(family, objective, booster)
    if family == "xgboost":
        import xgboost as xgb

        p = cfg.models.xgboost
        params = {
            "objective": "binary:logistic" if objective == "binary" else "reg:squarederror",
            "eta": p.learning_rate,
            "max_depth": p.max_depth,
            "min_child_weight": p.min_child_weight,
            "subsample": p.subsample,
            "colsample_bytree": p.colsample_bytree,
            "lambda": p.reg_lambda,
            "tree_method": "hist",
            "seed": seed,
            "nthread": cfg.models.training.threads,
        }
        # QuantileDMatrix bins the rows as it reads them, where a DMatrix keeps them and bins them when
        # training starts: the same model, byte for byte, a quarter faster.
        booster = xgb.train(params, xgb.QuantileDMatrix(X, label=y), num_boost_round=p.num_boost_round)
        booster.set_param({"nthread": 1})
        return FittedModel(family, objective, booster)
    return FittedModel(family, objective, _fit_ridge(X, y, cfg.models.ridge.alpha, objective))


def _fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float, objective: str) -> dict:
    """Ridge on standardised features, closed form: (Z'Z + alpha*I) b = Z'(y - ybar).

    For ``binary`` the same least-squares fit is made on the log-odds of
    lightly smoothed labels, so the sigmoid of the output is a probability.
    """
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    Z = (X - mean) / scale
    if objective == "binary":
        p = np.clip(y, 0.02, 0.98)
        target = np.log(p / (1 - p))
    else:
        target = y
    ybar = float(target.mean())
    A = Z.T @ Z + alpha * np.eye(Z.shape[1])
    coef = np.linalg.solve(A, Z.T @ (target - ybar))
    return {"alpha": alpha, "intercept": ybar, "coef": coef, "mean": mean, "scale": scale}


def load(family: str, objective: str, path: Path) -> FittedModel:
    """Load a native model file written by :meth:`FittedModel.save`; any failure is a ModelError naming the file."""
    check_family(family, str(path.parent / "model_meta.json"))
    try:
        if family == "lightgbm":
            import lightgbm as lgb

            return FittedModel(family, objective, lgb.Booster(model_file=str(path)))
        if family == "xgboost":
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(path))
            booster.set_param({"nthread": 1})
            return FittedModel(family, objective, booster)
        payload = json.loads(path.read_text())
        if payload.get("format") != "foxlive-ridge-v1":
            raise ModelError(f"{path}: not a foxlive ridge model (format {payload.get('format')!r}, expected 'foxlive-ridge-v1')")
        native = {
            "alpha": payload["alpha"],
            "intercept": float(payload["intercept"]),
            "coef": np.asarray(payload["coef"], dtype=np.float64),
            "mean": np.asarray(payload["mean"], dtype=np.float64),
            "scale": np.asarray(payload["scale"], dtype=np.float64),
        }
        return FittedModel(family, objective, native)
    except ModelError:
        raise
    except Exception as exc:  # the libraries raise their own error types for corrupt files
        raise ModelError(f"{path}: cannot load {family} model ({type(exc).__name__}: {exc}); retrain with `foxlive train`") from exc
