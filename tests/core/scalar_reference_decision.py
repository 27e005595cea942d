"""Plain scalar reference implementations of pipeline stages 7-10, the holding rule and the reason rules.

One symbol (or one horizon and symbol) at a time, with Python floats and
``math``; nothing here calls the vectorised library code. Written from the
stage modules' docstrings (:mod:`foxlive_core.pipeline.costs`, ``arbitrate``,
``barrier_gate``, ``sizing``, ``risk_checks``) and, for the holding rule and the
reasons, from the ``holding`` section of ``config/live_trading.yaml`` and
:class:`foxlive_core.decide.Decision`. The property tests check that the
vectorised stages give the same numbers; :mod:`tests.core.scalar_reference_decide`
chains them into the whole cycle.
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


def trading_cost_bps(spread: float, sigma_h: float, impact: float, k1=1.0, k2=0.15, k3=1.0,
                     execution_bps: float = 0.0) -> float:
    """k1 * spread + k2 * sigma_h (bps) + k3 * impact + the broker's per-trade charges (slippage + fee)."""
    # A term with a zero coefficient is absent (no 0 * inf = NaN).
    cost = 0.0
    if k1 != 0:
        cost += k1 * spread
    if k2 != 0:
        cost += k2 * (sigma_h * 1e4)
    if k3 != 0:
        cost += k3 * impact
    return cost + execution_bps


def planned_order_dollars(alpha: float, sigma_h: float, current: float, pv: float, max_weight: float, z_max: float) -> float:
    sig_bps = sigma_h * 1e4
    if math.isnan(alpha) or math.isnan(sig_bps) or sig_bps <= 0:
        return NAN
    z = _clip(alpha / sig_bps, -z_max, z_max)
    w = z * (max_weight / z_max)
    return abs(w - current) * pv


# ---------------------------------------------------------------- arbitration (stage 7b)


def arbitrate_symbol(alphas, costs, horizon_bars, spread, base=2.0, mult=0.5, shortest=-1):
    """One symbol: alphas, costs over horizons. Returns (scores, best, best_score, threshold, passes, direction).

    ``shortest``: index of the shortest horizon the symbol may choose (the horizon a position is held for);
    the scores of shorter horizons are NaN. -1: every horizon.
    """
    bars_min = min(horizon_bars)
    scores = []
    for h, (a, c, b) in enumerate(zip(alphas, costs, horizon_bars)):
        net = abs(a) - c
        scores.append(net / math.sqrt(b / bars_min) if h >= shortest else NAN)
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
    missing="fallback", fb_peak=0.3, fb_valley=0.3, exit_margin=0.0,
):
    """Returns (gate, entry_blocked, exit, reason, used_fallback) for one symbol.

    ``alpha`` judges the position: a long exits on alpha below -exit_margin, a short on alpha above it.
    """
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
        elif alpha < -exit_margin:
            exit_, reason = True, "exit_long_alpha"
    elif position < 0:
        if informed and p_peak > exit_short:
            exit_, reason = True, "exit_short_barrier"
        elif alpha > exit_margin:
            exit_, reason = True, "exit_short_alpha"
    blocked = False
    if informed and direction > 0 and p_valley > block_long:
        blocked = True
        reason = reason or "barrier_blocks_long"
    if informed and direction < 0 and p_peak > block_short:
        blocked = True
        reason = reason or "barrier_blocks_short"
    return gate, blocked, exit_, reason, used_fallback


# ---------------------------------------------------------------- holding rule (config `holding`)


def held_horizon(quantity: float, recorded: float) -> int:
    """Index of the horizon an open position was taken for; -1 when flat or not recorded (NaN)."""
    if quantity == 0 or math.isnan(recorded):
        return -1
    return int(recorded)


def exit_test(alphas, costs, held: int, best: int, rule: str) -> tuple[float, float]:
    """(alpha, margin) that judge an open position's alpha exit.

    ``horizon_edge``: the held horizon's alpha against the cost of trading it (a position is kept while
    closing it costs more than the loss its alpha expects); when no horizon is recorded, and always with
    ``alpha_sign``: the chosen horizon's alpha against 0 (NaN when none was chosen).
    """
    if rule == "horizon_edge" and held >= 0:
        return alphas[held], costs[held]
    return (alphas[best] if best >= 0 else NAN), 0.0


def increases_risk(target: float, current: float) -> bool:
    """A change of weight that grows |w| or flips its sign."""
    return abs(target) > abs(current) or _sign(target) * _sign(current) < 0


def next_held_horizon(quantity: float, shares: int, target: float, current: float, best: int, held: int) -> float:
    """The horizon recorded for the position after the cycle's order (NaN when flat or unknown).

    An order that opens, adds to or flips a position takes the horizon it was chosen for; any other keeps
    the position's horizon.
    """
    after = best if shares != 0 and increases_risk(target, current) else held
    return float(after) if quantity + shares != 0 and after >= 0 else NAN


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


def trade_risk_checks(targets, currents, max_position=0.20, max_gross=1.0, halted=False, tol=1e-12, suspect=None):
    """Whole book. ``suspect``: per symbol '' or what is suspect about its bar (reduce only). Returns (allowed, reasons, final)."""
    n = len(targets)
    suspect = suspect or [""] * n
    increasing = [increases_risk(targets[i], currents[i]) for i in range(n)]
    allowed, reasons = [True] * n, [""] * n
    for i in range(n):
        if increasing[i] and halted:
            allowed[i], reasons[i] = False, "kill_switch_active"
        elif increasing[i] and suspect[i] != "":
            allowed[i], reasons[i] = False, suspect[i] + "_bar"
        elif increasing[i] and abs(targets[i]) > max_position:
            allowed[i], reasons[i] = False, "position_limit"
    flips = [_sign(targets[i]) * _sign(currents[i]) < 0 for i in range(n)]
    # a blocked flip closes the position (its risk-reducing part); another blocked change keeps the weight
    kept = [0.0 if flips[i] else currents[i] for i in range(n)]
    gross = sum(abs(targets[i] if allowed[i] else kept[i]) for i in range(n))
    if gross > max_gross + tol:
        for i in range(n):
            if increasing[i] and allowed[i]:
                allowed[i], reasons[i] = False, "gross_limit"
    final = [targets[i] if allowed[i] else kept[i] for i in range(n)]
    allowed = [allowed[i] or flips[i] for i in range(n)]
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


# ---------------------------------------------------------------- decision and reason


def trade_action(q_old: float, q_new: float) -> str:
    """What a trade from q_old to q_new shares does: enter/increase/reduce/exit/flip, long or short; '' for none."""
    if q_new == q_old:
        return ""
    if q_old == 0:
        return "enter_long" if q_new > 0 else "enter_short"
    if q_new == 0:
        return "exit_long" if q_old > 0 else "exit_short"
    if (q_old > 0) != (q_new > 0):
        return "flip_to_long" if q_new > 0 else "flip_to_short"
    side = "long" if q_old > 0 else "short"
    return ("increase_" if abs(q_new) > abs(q_old) else "reduce_") + side


def reason_symbol(*, quote_reason: str, features_valid: bool, risk_allowed: bool, risk_reason: str, shares: int,
                  q_old: float, enter: bool, exit_: bool, best: int, passes: bool,
                  barrier_blocked: bool, gate_reason: str, sizing_reason: str) -> tuple[str, str]:
    """(decision, reason) of one symbol, the most fundamental reason first.

    A bad quote, then missing features, then a blocked risk check; a trade says what it does to the
    position (trade_action), with the exit rule (exit_long_alpha: '_alpha') or '_gross_scaled' appended
    when that, not the symbol's entry, moved it; a symbol that does not trade says why not (barrier
    block, the sizer's reason for an entry, an order that rounds to no shares, no alpha, below the
    threshold), else 'hold'. BLOCKED: a bad quote, or valid features with a blocked risk check or a
    barrier block that stopped a trade; TRADE: shares to send; else HOLD.
    """
    trading = shares != 0
    action = trade_action(q_old, q_old + shares)
    if exit_ and not enter and gate_reason.count("_") >= 2:
        trade_reason = action + "_" + gate_reason.split("_", 2)[2]
    elif not enter and not exit_ and sizing_reason == "gross_scaled":
        trade_reason = action + "_gross_scaled"
    else:
        trade_reason = action
    if enter and sizing_reason != "":
        hold_reason = sizing_reason
    elif enter:
        hold_reason = "order_rounds_to_zero"
    elif best < 0:
        hold_reason = "no_alpha"
    elif not passes:
        hold_reason = "below_threshold"
    else:
        hold_reason = ""
    if quote_reason != "":
        reason = quote_reason
    elif not features_valid:
        reason = "insufficient_history"
    elif not risk_allowed:
        reason = risk_reason
    elif trading:
        reason = trade_reason
    elif barrier_blocked:
        reason = gate_reason
    else:
        reason = hold_reason
    blocked = quote_reason != "" or (features_valid and (not risk_allowed or (not trading and barrier_blocked)))
    decision = "TRADE" if trading else ("BLOCKED" if blocked else "HOLD")
    return decision, reason or "hold"
