"""Plain scalar reference implementations of pipeline stages 7-10 (PIPELINE.md).

One symbol (or one horizon and symbol) at a time, with Python floats and
``math``; nothing here calls the vectorised library code. The property tests
check that the vectorised stages give the same numbers.
"""

from __future__ import annotations

import math

NAN = float("nan")


def _clip(x: float, lo: float, hi: float) -> float:
    if math.isnan(x):
        return NAN
    return min(max(x, lo), hi)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


# ---------------------------------------------------------------- costs (stage 7a)


def horizon_sigma(vol_per_bar: list[float], horizon_bars: list[int]) -> list[list[float]]:
    return [[v * math.sqrt(b) for v in vol_per_bar] for b in horizon_bars]


def impact_bps(q: float, adv: float, bps_at_reference: float = 10.0, reference_participation: float = 0.01) -> float:
    q = abs(q)
    if math.isnan(q):
        return NAN
    if q == 0:
        return 0.0
    if math.isnan(adv) or adv <= 0:
        return math.inf
    participation = q / adv
    return bps_at_reference * math.sqrt(participation / reference_participation)


def trading_cost_bps(spread: float, sigma_h: float, impact: float, k1=1.0, k2=0.15, k3=1.0) -> float:
    # A term with a zero coefficient is absent (no 0 * inf = NaN).
    cost = 0.0
    if k1 != 0:
        cost += k1 * spread
    if k2 != 0:
        cost += k2 * (sigma_h * 1e4)
    if k3 != 0:
        cost += k3 * impact
    return cost


def planned_order_dollars(alpha: float, sigma_h: float, current: float, pv: float, max_weight: float, z_max: float) -> float:
    sig_bps = sigma_h * 1e4
    if math.isnan(alpha) or math.isnan(sig_bps) or sig_bps <= 0:
        return NAN
    z = _clip(alpha / sig_bps, -z_max, z_max)
    w = z * (max_weight / z_max)
    return abs(w - current) * pv


# ---------------------------------------------------------------- arbitration (stage 7b)


def arbitrate_symbol(alphas, costs, horizon_bars, spread, base=2.0, mult=0.5):
    """One symbol: alphas, costs over horizons. Returns (scores, best, best_score, threshold, passes, direction)."""
    bars_min = min(horizon_bars)
    scores = []
    for a, c, b in zip(alphas, costs, horizon_bars):
        net = abs(a) - c
        scores.append(net / math.sqrt(b / bars_min))
    best, best_score = -1, NAN
    for h, s in enumerate(scores):
        if math.isfinite(s) and (best == -1 or s > best_score):
            best, best_score = h, s
    threshold = base + mult * spread
    passes = best != -1 and best_score >= threshold
    direction = _sign(alphas[best]) if best != -1 else 0
    return scores, best, best_score, threshold, passes, direction


# ---------------------------------------------------------------- barrier gate (stage 8)


def gate_value(adverse: float, favourable: float, g_min=0.2, gamma=1.0, delta=0.5) -> float:
    return _clip((1 - adverse) ** gamma * (0.5 + 0.5 * favourable) ** delta, g_min, 1.0)


def barrier_symbol(
    p_peak, p_valley, direction, position, alpha,
    g_min=0.2, gamma=1.0, delta=0.5, block_long=0.6, block_short=0.55, exit_long=0.65, exit_short=0.60,
    missing="fallback", fb_peak=0.3, fb_valley=0.3,
):
    """Returns (gate, entry_blocked, exit, reason, used_fallback) for one symbol."""
    absent = math.isnan(p_peak) or math.isnan(p_valley)
    informed = True
    used_fallback = False
    if absent and missing == "fallback":
        used_fallback = True
        p_peak = fb_peak if math.isnan(p_peak) else p_peak
        p_valley = fb_valley if math.isnan(p_valley) else p_valley
    elif absent:
        informed = False
    if informed:
        p_peak = _clip(p_peak, 0.0, 1.0)
        p_valley = _clip(p_valley, 0.0, 1.0)
        # a long's adverse barrier is the lower one (p_valley), a short's the upper one (p_peak)
        if direction < 0:
            gate = gate_value(p_peak, p_valley, g_min, gamma, delta)
        else:
            gate = gate_value(p_valley, p_peak, g_min, gamma, delta)
    else:
        gate = 1.0

    reason = ""
    exit_ = False
    if position > 0:
        if informed and p_valley > exit_long:
            exit_, reason = True, "exit_long_barrier"
        elif alpha < 0:
            exit_, reason = True, "exit_long_alpha"
    elif position < 0:
        if informed and p_peak > exit_short:
            exit_, reason = True, "exit_short_barrier"
        elif alpha > 0:
            exit_, reason = True, "exit_short_alpha"
    blocked = False
    if informed and direction > 0 and p_valley > block_long:
        blocked = True
        reason = reason or "barrier_blocks_long"
    if informed and direction < 0 and p_peak > block_short:
        blocked = True
        reason = reason or "barrier_blocks_short"
    return gate, blocked, exit_, reason, used_fallback


# ---------------------------------------------------------------- sizing (stage 9)


def target_weights(alphas, sigmas, gates, currents, enters, exits,
                   max_weight=0.05, z_max=3.0, weight_cap=0.20, band=0.008, gross_target=0.5):
    """Whole book. Returns (targets, zs, raws, reasons, scale)."""
    n = len(alphas)
    zs, raws, wanted, reasons, moving = [], [], [], [], []
    for i in range(n):
        a, s, g, c = alphas[i], sigmas[i], gates[i], currents[i]
        z = _clip(a / s, -z_max, z_max) if (not math.isnan(s) and s > 0) else NAN
        raw = z * (max_weight / z_max) * g
        zs.append(z)
        raws.append(raw)
        moving.append(False)
        if exits[i]:
            wanted.append(0.0)
            reasons.append("")
        elif not enters[i]:
            wanted.append(c)
            reasons.append("")
        elif not math.isfinite(raw):
            wanted.append(c)
            reasons.append("no_alpha")
        else:
            wanted.append(_clip(raw, -weight_cap, weight_cap))
            reasons.append("weight_capped" if abs(raw) > weight_cap else "")
            moving[i] = True
    gross = sum(abs(w) for w in wanted)
    first = gross_target / gross if gross > gross_target else 1.0
    scaled = [w * first for w in wanted]
    keep = [not exits[i] and abs(scaled[i] - currents[i]) < band for i in range(n)]
    room = gross_target - sum(abs(currents[i]) for i in range(n) if keep[i])
    need = sum(abs(scaled[i]) for i in range(n) if not keep[i])
    if room >= 0:
        second = room / need if need > room else 1.0
        targets = [currents[i] if keep[i] else scaled[i] * second for i in range(n)]
        scale = first * second
    else:
        pre = [currents[i] if keep[i] else scaled[i] for i in range(n)]
        total = sum(abs(w) for w in pre)
        second = gross_target / total if total > gross_target else 1.0
        targets = [w * second for w in pre]
        scale = first * second
    for i in range(n):
        if wanted[i] == currents[i] and targets[i] != currents[i]:
            reasons[i] = "gross_scaled"
        elif moving[i] and keep[i]:
            reasons[i] = "within_no_trade_band"
    return targets, zs, raws, reasons, scale


def order_shares(target: float, current: float, pv: float, price: float) -> int:
    if math.isnan(price) or price <= 0:
        return 0
    x = (target - current) * pv / price
    if not math.isfinite(x) or abs(x) >= 2.0**63:
        return 0  # no usable share count
    return int(x)  # int() truncates toward zero


# ---------------------------------------------------------------- risk (stage 10)


def trade_risk_checks(targets, currents, max_position=0.20, max_gross=1.0, halted=False, tol=1e-12):
    """Whole book. Returns (allowed, reasons, final)."""
    n = len(targets)
    increasing = [abs(targets[i]) > abs(currents[i]) or _sign(targets[i]) * _sign(currents[i]) < 0 for i in range(n)]
    allowed, reasons = [True] * n, [""] * n
    for i in range(n):
        if increasing[i] and halted:
            allowed[i], reasons[i] = False, "kill_switch_active"
        elif increasing[i] and abs(targets[i]) > max_position:
            allowed[i], reasons[i] = False, "position_limit"
    gross = sum(abs(targets[i] if allowed[i] else currents[i]) for i in range(n))
    if gross > max_gross + tol:
        for i in range(n):
            if increasing[i] and allowed[i]:
                allowed[i], reasons[i] = False, "gross_limit"
    final = [targets[i] if allowed[i] else currents[i] for i in range(n)]
    return allowed, reasons, final


def portfolio_risk(pv, sod, hwm, daily_loss_limit=0.02, drawdown_limit=0.10):
    """Returns (daily_pnl, daily_return, drawdown, breach, reason)."""
    pnl = pv - sod
    ret = pnl / sod
    dd = max(0.0, 1.0 - pv / hwm)
    if ret < -daily_loss_limit:
        return pnl, ret, dd, True, "daily_loss_limit"
    if dd > drawdown_limit:
        return pnl, ret, dd, True, "drawdown_limit"
    return pnl, ret, dd, False, ""
