"""Plain scalar reference implementations of pipeline stages 2, 4, 5 and 6 (PIPELINE.md).

One symbol (one buffer, one family vector) at a time, with Python floats,
``math`` and ``scipy.stats.spearmanr``; nothing here calls the vectorised
library code. The property tests loop these over the universe and check that
the vectorised stages give the same numbers.
"""

from __future__ import annotations

import math
import warnings

from scipy.stats import spearmanr

NAN = float("nan")
MIN_STD = 1e-9
SINGULAR_RTOL = 1e-12


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _equal(f: int) -> list[float]:
    return [1.0 / f] * f


# ---------------------------------------------------------------- stage 2: quote gate


def quote_gate(bid: float, ask: float, age: float, max_spread_bps: float, max_age_s: float) -> tuple[float, str]:
    """(spread_bps, reason) of one symbol."""
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid <= 0 or ask <= 0:
        return NAN, "invalid_quote"
    if ask < bid:
        return NAN, "crossed_quote"
    mid = (bid + ask) / 2
    spread = (ask - bid) / mid * 1e4
    if math.isnan(age) or age > max_age_s:
        return spread, "stale_quote"
    if spread > max_spread_bps:
        return spread, "spread_too_wide"
    return spread, ""


# ---------------------------------------------------------------- buffers


def append(buffer: list[float], value: float) -> list[float]:
    """Shift left and write the newest value last; a non-finite value is not appended."""
    if not math.isfinite(value):
        return list(buffer)
    return list(buffer[1:]) + [value]


def append_pair(pred_buf: list[float], real_buf: list[float], pred: float, real: float):
    if math.isfinite(pred) and math.isfinite(real):
        return append(pred_buf, pred), append(real_buf, real)
    return list(pred_buf), list(real_buf)


def append_row(rows: list[list[float]], row: list[float]) -> list[list[float]]:
    """Score history of one (horizon, symbol): a list of P rows of F scores."""
    if all(math.isfinite(v) for v in row):
        return [list(r) for r in rows[1:]] + [list(row)]
    return [list(r) for r in rows]


# ---------------------------------------------------------------- stage 4: z-score


def zscore(raw: float, sample: list[float], min_samples: int, clip: float) -> float:
    if not math.isfinite(raw):
        return NAN
    xs = [v for v in sample if math.isfinite(v)]
    if len(xs) < min_samples:
        z = raw
    else:
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((v - mean) ** 2 for v in xs) / len(xs))
        z = 0.0 if std < MIN_STD else (raw - mean) / std
    return _clip(z, -clip, clip)


def zscore_rolling(raw: float, buffer: list[float], min_samples: int, clip: float) -> tuple[float, list[float]]:
    new = append(buffer, raw)
    return zscore(raw, new, min_samples, clip), new


# ---------------------------------------------------------------- stage 5: confidence


def spearman_ic(pred: list[float], real: list[float], min_pairs: int) -> float:
    pairs = [(p, r) for p, r in zip(pred, real) if math.isfinite(p) and math.isfinite(r)]
    if len(pairs) < min_pairs or len(pairs) < 2:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        rho = float(spearmanr([p for p, _ in pairs], [r for _, r in pairs]).statistic)
    return 0.0 if math.isnan(rho) else rho


def freshness(age: float, tau: float) -> float:
    if math.isnan(age):
        return NAN
    return math.exp(-max(age, 0.0) / tau)


def capacity(adv: float, planned: float, kappa: float) -> float:
    if not planned > 0:
        return 1.0
    if not adv > 0:
        return 0.0
    return min(1.0, kappa * adv / planned)


def stability(errors: list[float], warmup: float) -> float:
    xs = [e for e in errors if math.isfinite(e)]
    if not xs:
        return warmup
    return 1.0 / (1.0 + math.sqrt(sum(e * e for e in xs) / len(xs)))


def confidence(ic: float, fresh: float, cap: float, stab: float, ic_floor: float) -> float:
    skill = ic_floor if math.isnan(ic) else max(ic, ic_floor)
    return skill * fresh * cap * stab


# ---------------------------------------------------------------- stage 6: blend


def score_correlation(rows: list[list[float]], f: int, min_points: int) -> list[list[float]]:
    complete = [r for r in rows if all(math.isfinite(v) for v in r)]
    eye = [[1.0 if i == j else 0.0 for j in range(f)] for i in range(f)]
    n = len(complete)
    if n < min_points:
        return eye
    mean = [sum(r[i] for r in complete) / n for i in range(f)]
    cov = [[sum((r[i] - mean[i]) * (r[j] - mean[j]) for r in complete) / n for j in range(f)] for i in range(f)]
    std = [math.sqrt(cov[i][i]) for i in range(f)]
    out = [row[:] for row in eye]
    for i in range(f):
        for j in range(f):
            if i != j and std[i] >= MIN_STD and std[j] >= MIN_STD:
                out[i][j] = _clip(cov[i][j] / (std[i] * std[j]), -1.0, 1.0)
    return out


def _solve(a: list[list[float]], b: list[float]) -> tuple[list[float], float]:
    """Gaussian elimination with partial pivoting: (solution, determinant)."""
    f = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    det = 1.0
    for k in range(f):
        piv = max(range(k, f), key=lambda i: abs(m[i][k]))
        if piv != k:
            m[k], m[piv] = m[piv], m[k]
            det = -det
        det *= m[k][k]
        if m[k][k] == 0 or math.isnan(m[k][k]):
            return [NAN] * f, det
        for i in range(k + 1, f):
            factor = m[i][k] / m[k][k]
            for j in range(k, f + 1):
                m[i][j] -= factor * m[k][j]
    x = [0.0] * f
    for i in reversed(range(f)):
        x[i] = (m[i][f] - sum(m[i][j] * x[j] for j in range(i + 1, f))) / m[i][i]
    return x, det


def ridge_weights(mu: list[float], corr: list[list[float]], lam: float) -> list[float]:
    f = len(mu)
    a = [[corr[i][j] + (lam if i == j else 0.0) for j in range(f)] for i in range(f)]
    x, det = _solve(a, mu)
    hadamard = math.prod(abs(a[i][i]) for i in range(f))
    if not abs(det) > SINGULAR_RTOL * hadamard:
        return _equal(f)
    w = [x_i if x_i > 0 or math.isnan(x_i) else 0.0 for x_i in x]
    total = sum(w)
    if not (math.isfinite(total) and total > 0):
        return _equal(f)
    return [v / total for v in w]


def apply_temperature(w: list[float], temperature: float) -> list[float]:
    p = [v**temperature for v in w]
    total = sum(p)
    if not (math.isfinite(total) and total > 0):
        return _equal(len(w))
    return [v / total for v in p]


def blend_weights(ic: list[float], rows: list[list[float]], cost_share: float, lam: float, min_points: int,
                  temperature: float, mu_floor: float = 0.01) -> list[float]:
    """Family weights of one (horizon, symbol): ic has one value per family."""
    mu = [mu_floor if math.isnan(v) else max(v - 0.5 * cost_share, mu_floor) for v in ic]
    corr = score_correlation(rows, len(ic), min_points)
    return apply_temperature(ridge_weights(mu, corr, lam), temperature)


def horizon_alpha(calibrated: list[float], weights: list[float], scale: list[float]) -> float:
    """Alpha in bps of one (horizon, symbol) from the families' s~, weights and bps scales."""
    used = [(w, s * c) for s, w, c in zip(calibrated, weights, scale) if math.isfinite(s * c)]
    total = sum(w for w, _ in used)
    if not total > 0:
        return NAN
    return sum(w * x for w, x in used) / total
