"""Plain scalar reference implementations of pipeline stages 2, 4, 5, 6 and 6b.

One symbol (one buffer, one family vector) at a time, with Python floats,
``math`` and ``scipy.stats.spearmanr``; nothing here calls the vectorised
library code. Written from the stage modules' docstrings
(:mod:`foxlive_core.pipeline.standardize`, ``confidence``, ``blend``,
``calibration``). The property tests loop these over the universe and check
that the vectorised stages give the same numbers;
:mod:`tests.core.scalar_reference_decide` chains them into the whole cycle.
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


def sample_stats(sample: list[float]) -> tuple[int, float, float]:
    """(count, mean, population std) of the finite values of a sample; mean and std NaN when it is empty."""
    xs = [v for v in sample if math.isfinite(v)]
    if not xs:
        return 0, NAN, NAN
    mean = sum(xs) / len(xs)
    return len(xs), mean, math.sqrt(sum((v - mean) ** 2 for v in xs) / len(xs))


def standardise(raw: float, count: int, mean: float, std: float, min_samples: int, clip: float) -> float:
    """The z-score rule of one value against a sample's (count, mean, std)."""
    if not math.isfinite(raw):
        return NAN
    if count < min_samples:
        z = raw
    else:
        z = 0.0 if std < MIN_STD else (raw - mean) / std
    return _clip(z, -clip, clip)


def zscore(raw: float, sample: list[float], min_samples: int, clip: float) -> float:
    return standardise(raw, *sample_stats(sample), min_samples, clip)


def zscore_cross_sectional(row: list[float], min_samples: int, clip: float) -> list[float]:
    """One model's scores across the universe: every symbol's raw value against the finite values of the row."""
    stats = sample_stats(row)  # one sample for the whole row
    return [standardise(raw, *stats, min_samples, clip) for raw in row]


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


def cross_sectional_ic(pred: list[float], real: list[float], min_pairs: int) -> float:
    """One model's Spearman IC across the universe at one cycle; NaN (no measurement) with < min_pairs pairs."""
    pairs = sum(1 for p, r in zip(pred, real) if math.isfinite(p) and math.isfinite(r))
    if pairs < min_pairs:
        return NAN
    return spearman_ic(pred, real, min_pairs)


def ic_from_history(history: list[float], min_measured: int) -> float:
    """A model's cross-sectional IC: the mean of its finite measurements, 0 with fewer than ``min_measured``."""
    xs = [v for v in history if math.isfinite(v)]
    if len(xs) < min_measured:
        return 0.0
    return sum(xs) / len(xs)


def calibration_error(matured: float, realised: float, target_std: float) -> float:
    """(prediction made h ago - return realised since) / the horizon's training std; NaN where unknown."""
    if not (math.isfinite(matured) and math.isfinite(realised)) or target_std == 0:
        return NAN
    return (matured - realised) / target_std


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


# ---------------------------------------------------------------- stage 6b: calibration slope


def calibration_sums(alpha_then: list[float], realised: list[float], relative: bool) -> tuple[float, float]:
    """(S_xx, S_xy) of one horizon at one cycle: x the alpha of h bars ago (bps), y the move since (bps),
    with ``relative`` less its mean over the same symbols; (NaN, NaN) with fewer than 2 symbols
    (``relative``) or none where both are known."""
    pairs = [(x, y * 1e4) for x, y in zip(alpha_then, realised) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < (2 if relative else 1):
        return NAN, NAN
    mean_y = sum(y for _, y in pairs) / len(pairs) if relative else 0.0
    return sum(x * x for x, _ in pairs), sum(x * (y - mean_y) for x, y in pairs)


def calibration_slope(sxx_hist: list[float], sxy_hist: list[float], prior: float, prior_cycles: float,
                      max_slope: float) -> float:
    """kappa of one horizon: (S_xy + P * prior) / (S_xx + P) over the measured cycles, P = prior_cycles x the
    mean S_xx per measured cycle; the prior where nothing was measured; clipped to [0, max_slope]."""
    measured = [i for i, v in enumerate(sxx_hist) if math.isfinite(v)]
    sxx = sum(sxx_hist[i] for i in measured)
    sxy = sum(sxy_hist[i] for i in measured)
    weight = prior_cycles * sxx / len(measured) if measured else 0.0
    total = sxx + weight
    kappa = (sxy + weight * prior) / total if total > 0 else prior
    return _clip(kappa, 0.0, max_slope)
