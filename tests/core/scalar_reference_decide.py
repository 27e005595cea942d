"""A plain scalar reference of the whole of :func:`foxlive_core.decide.decide`: symbol by symbol, stage by stage.

Every number comes from the per-value functions of
:mod:`tests.core.scalar_reference_signal` (stages 2, 4, 5, 6, 6b) and
:mod:`tests.core.scalar_reference_decision` (stages 7-10, the holding rule and
the reasons), called in loops over Python lists, in the order the stage
modules' docstrings describe; nothing here calls numpy or the library's stages.
The ring of pending predictions (each horizon's last h cycles of predictions
and alphas, waiting for their realised return) is plain list code below.

:func:`scalar_args` turns decide's arguments into lists (outside any timing);
:func:`scalar_decide` returns what decide returns, as nested lists in decide's
layouts (F families, H horizons, N symbols). ``tests/core/test_scalar_reference_decide.py``
asserts that the two agree on a real engine's cycles; ``benchmarks/bench_cycle.py``
times this loop against decide.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

from tests.core import scalar_reference_decision as refd
from tests.core import scalar_reference_signal as refs

NAN = math.nan

# The stages in decide's order, as named to the ``stage`` timer of scalar_decide.
STAGES = (
    "quote gate", "z-score", "feedback", "IC", "confidence", "blend", "calibration", "costs", "arbitration",
    "barrier gate", "sizing", "risk checks", "shares", "reasons",
)


def scalar_args(inputs, buffers, portfolio) -> dict:
    """decide()'s cycle inputs, buffers (a decide.Buffers) and portfolio as Python lists and floats."""
    return {
        "bid": inputs.quotes.bid.tolist(), "ask": inputs.quotes.ask.tolist(), "mid": inputs.quotes.mid.tolist(),
        "quote_age": inputs.quote_age_s.tolist(), "raw": inputs.raw_pred.tolist(),
        "times": inputs.window_times.asi8.tolist(), "now": int(inputs.time.value),
        "close": inputs.close.tolist(), "valid": inputs.features_valid.tolist(),
        "vol": inputs.vol_per_bar.tolist(), "age": inputs.data_age_s.tolist(), "adv": inputs.adv.tolist(),
        "barrier": inputs.barrier_prob.table().tolist(),
        "buffers": {name: value.tolist() for name, value in buffers.to_arrays().items()},
        "suspect": [str(x) for x in inputs.bar_repair],
        "qty": portfolio.quantity.tolist(), "mark": portfolio.mark.tolist(), "pv": float(portfolio.value),
    }


def _realised(now: float, then: float) -> float:
    """Return from ``then`` to ``now``, decimal; NaN where unknown (a zero close gives no usable return)."""
    return now / then - 1.0 if then != 0 else NAN


def _last_slot(ring_times: list[int], t: int) -> int:
    """Newest slot of the ring that holds time ``t``; -1 when none does."""
    slots = [s for s, rt in enumerate(ring_times) if rt == t]
    return slots[-1] if slots else -1


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def scalar_decide(cfg, info, a: dict, halted: bool, quote_max_age_s: float, stage=None) -> dict:
    """decide() computed per symbol with the scalar reference functions.

    Parameters
    ----------
    cfg : FoxliveConfig
    info : ModelInfo
    a : dict
        :func:`scalar_args` of the cycle; not modified.
    halted : bool
        The kill switch.
    quote_max_age_s : float
        Oldest acceptable quote.
    stage : callable, optional
        ``stage(name)`` returns a context manager entered around each stage of :data:`STAGES`
        (the benchmark's stopwatch); None: untimed.

    Returns
    -------
    dict
        ``decision``, ``reason``, ``shares`` (N), ``alpha`` (H, N) bps, ``buffers`` (decide's names and
        layouts) and ``trace`` (the keys of decide's trace that are computed here, in its layouts).
    """
    stage = stage or (lambda name: nullcontext())
    bars = [int(b) for b in info.horizon_bars]
    H, F, N = len(bars), len(info.families), len(a["bid"])
    rF, rH, rN = range(F), range(H), range(N)
    scale = info.bps_scale.tolist()  # (F, H) bps
    target_std = [[s * 1e-4 for s in row] for row in scale]
    prior_slope = info.calibration_slope.tolist()
    sc, cc, bc, ca, k, bg, sz, rk = (cfg.standardization, cfg.confidence, cfg.blending, cfg.calibration, cfg.costs,
                                     cfg.barrier_gate, cfg.sizing, cfg.risk)
    buf = a["buffers"]
    new = {}
    qty, mark, pv = a["qty"], a["mark"], a["pv"]
    cw = [q * m / pv if pv > 0 else 0.0 for q, m in zip(qty, mark)]

    # 2. quote gate
    with stage("quote gate"):
        spread, quote_reason = [NAN] * N, [""] * N
        for n in rN:
            spread[n], quote_reason[n] = refs.quote_gate(a["bid"][n], a["ask"][n], a["quote_age"][n],
                                                         cfg.quote_gate.max_spread_bps, quote_max_age_s)

    # 4. z-scores: per symbol against its own rolling buffer, or per model across the universe
    raw = a["raw"]
    with stage("z-score"):
        if sc.mode == "rolling":
            z = [[[NAN] * N for _ in rH] for _ in rF]
            zbuf = [[[None] * N for _ in rH] for _ in rF]
            for f in rF:
                for h in rH:
                    for n in rN:
                        z[f][h][n], zbuf[f][h][n] = refs.zscore_rolling(raw[f][h][n], buf["z_buffer"][f][h][n],
                                                                        sc.min_samples, sc.clip)
            new["z_buffer"] = zbuf
        else:
            z = [[refs.zscore_cross_sectional(raw[f][h], sc.min_samples, sc.clip) for h in rH] for f in rF]
            new["z_buffer"] = buf["z_buffer"]

    # 5a. feedback: the predictions and alphas made h bars ago meet the return realised since
    with stage("feedback"):
        times, close = a["times"], a["close"]
        matured = [[[NAN] * N for _ in rH] for _ in rF]
        matured_alpha = [[NAN] * N for _ in rH]
        realised = [[NAN] * N for _ in rH]
        for i, b in enumerate(bars):
            ring_t, ring_p = buf[f"pending_time_{i}"], buf[f"pending_pred_{i}"]  # (h,), (h, F, N)
            if len(times) > b:
                slot = _last_slot(ring_t, times[-1 - b])
                if slot >= 0:
                    for f in rF:
                        matured[f][i] = list(ring_p[slot][f])
                    matured_alpha[i] = list(buf[f"pending_alpha_{i}"][slot])
                    realised[i] = [_realised(close[-1][n], close[-1 - b][n]) for n in rN]
            new[f"pending_time_{i}"] = ring_t[1:] + [a["now"]]
            new[f"pending_pred_{i}"] = ring_p[1:] + [[list(raw[f][i]) for f in rF]]
        calib_err = [[[refs.append(buf["calib_err"][f][h][n],
                                   refs.calibration_error(matured[f][h][n], realised[h][n], target_std[f][h]))
                       for n in rN] for h in rH] for f in rF]
        new["calib_err"] = calib_err

    # 5a. information coefficients
    with stage("IC"):
        if cc.ic_mode == "time_series":
            ic_pred = [[[None] * N for _ in rH] for _ in rF]
            ic_real = [[[None] * N for _ in rH] for _ in rF]
            ic = [[[NAN] * N for _ in rH] for _ in rF]
            for f in rF:
                for h in rH:
                    for n in rN:
                        ic_pred[f][h][n], ic_real[f][h][n] = refs.append_pair(
                            buf["ic_pred"][f][h][n], buf["ic_real"][f][h][n], matured[f][h][n], realised[h][n])
                        ic[f][h][n] = refs.spearman_ic(ic_pred[f][h][n], ic_real[f][h][n], cc.ic_min_pairs)
            new["ic_pred"], new["ic_real"] = ic_pred, ic_real
        else:
            hist = [[refs.append(buf["ic_cross_sectional"][f][h],
                                 refs.cross_sectional_ic(matured[f][h], realised[h], cc.ic_min_pairs))
                     for h in rH] for f in rF]
            ic = [[[refs.ic_from_history(hist[f][h], cc.ic_min_pairs)] * N for h in rH] for f in rF]
            new["ic_cross_sectional"] = hist

    # 5b. confidence and calibrated scores
    with stage("confidence"):
        tau = [hc.freshness_tau_s for hc in cfg.horizons]
        fresh = [[refs.freshness(a["age"][n], tau[h]) for n in rN] for h in rH]
        planned = sz.max_weight * pv
        cap = [refs.capacity(a["adv"][n], planned, cc.capacity_kappa) for n in rN]
        stab = [[[refs.stability(calib_err[f][h][n], cc.stability_warmup) for n in rN] for h in rH] for f in rF]
        conf = [[[refs.confidence(ic[f][h][n], fresh[h][n], cap[n], stab[f][h][n], cc.ic_floor) for n in rN]
                 for h in rH] for f in rF]
        calibrated = [[[z[f][h][n] * conf[f][h][n] for n in rN] for h in rH] for f in rF]

    # 6. blend the families within each horizon
    with stage("blend"):
        temperature = [hc.temperature for hc in cfg.horizons]
        score_hist = [[refs.append_row(buf["score_hist"][h][n], [z[f][h][n] for f in rF]) for n in rN] for h in rH]
        weights = [[refs.blend_weights([ic[f][h][n] for f in rF], score_hist[h][n], bc.cost_share, bc.ridge_lambda,
                                       bc.corr_min_points, temperature[h]) for n in rN] for h in rH]
        blended = [[refs.horizon_alpha([calibrated[f][h][n] for f in rF], weights[h][n], [scale[f][h] for f in rF])
                    for n in rN] for h in rH]
        new["score_hist"] = score_hist
        for i in rH:
            new[f"pending_alpha_{i}"] = buf[f"pending_alpha_{i}"][1:] + [list(blended[i])]

    # 6b. calibration slope of each horizon
    with stage("calibration"):
        kappa, sums = [NAN] * H, [None] * H
        for h in rH:
            sxx, sxy = refs.calibration_sums(matured_alpha[h], realised[h], sc.mode == "cross_sectional")
            sxx_hist = refs.append([row[0] for row in buf["calib_sums"][h]], sxx)
            sxy_hist = refs.append([row[1] for row in buf["calib_sums"][h]], sxy)
            sums[h] = [[x, y] for x, y in zip(sxx_hist, sxy_hist)]
            kappa[h] = refs.calibration_slope(sxx_hist, sxy_hist, prior_slope[h], ca.prior_cycles, ca.max_slope)
        new["calib_sums"] = sums
        alpha = [[kappa[h] * blended[h][n] for n in rN] for h in rH]

    # 7a. costs
    with stage("costs"):
        execution = cfg.broker.slippage_bps + cfg.broker.fee_bps
        sigma = refd.horizon_sigma(a["vol"], bars)
        impact = [[NAN] * N for _ in rH]
        cost = [[NAN] * N for _ in rH]
        for h in rH:
            for n in rN:
                q = refd.planned_order_dollars(alpha[h][n], sigma[h][n], cw[n], pv, sz.max_weight, sz.z_max)
                impact[h][n] = refd.impact_bps(q, a["adv"][n], k.impact_bps_at_reference,
                                               k.impact_reference_participation)
                cost[h][n] = refd.trading_cost_bps(spread[n], sigma[h][n], impact[h][n], k.k1_spread,
                                                   k.k2_volatility, k.k3_impact, execution)

    # 7b. arbitration across horizons, a held position judged by its own horizon or longer ones
    with stage("arbitration"):
        rule = cfg.holding.exit_rule
        held = [refd.held_horizon(qty[n], buf["held_horizon"][n]) for n in rN]
        score = [[NAN] * N for _ in rH]
        best, threshold, passes, direction = [-1] * N, [NAN] * N, [False] * N, [0] * N
        exit_alpha, exit_margin = [NAN] * N, [0.0] * N
        for n in rN:
            alphas, costs = [alpha[h][n] for h in rH], [cost[h][n] for h in rH]
            scores, best[n], _, threshold[n], passes[n], direction[n] = refd.arbitrate_symbol(
                alphas, costs, bars, spread[n], cfg.arbitration.threshold_base_bps,
                cfg.arbitration.threshold_spread_mult, held[n] if rule == "horizon_edge" else -1)
            for h in rH:
                score[h][n] = scores[h]
            exit_alpha[n], exit_margin[n] = refd.exit_test(alphas, costs, held[n], best[n], rule)
        alpha_best = [alpha[best[n]][n] if best[n] >= 0 else NAN for n in rN]
        sigma_best = [sigma[best[n]][n] * 1e4 if best[n] >= 0 else NAN for n in rN]

    # 8. barrier gate at the chosen horizon
    with stage("barrier gate"):
        p_peak = [a["barrier"][best[n]][0][n] if best[n] >= 0 else NAN for n in rN]
        p_valley = [a["barrier"][best[n]][1][n] if best[n] >= 0 else NAN for n in rN]
        gate, entry_blocked, exits, gate_reason, fallback = [1.0] * N, [False] * N, [False] * N, [""] * N, [False] * N
        for n in rN:
            gate[n], entry_blocked[n], exits[n], gate_reason[n], fallback[n] = refd.barrier_symbol(
                p_peak[n], p_valley[n], direction[n], _sign(qty[n]), exit_alpha[n],
                bg.g_min, bg.gamma, bg.delta, bg.block_long_p_valley, bg.block_short_p_peak,
                bg.exit_long_p_valley, bg.exit_short_p_peak, bg.when_missing, bg.fallback_p_peak, bg.fallback_p_valley,
                exit_margin[n])

    # 9. sizing: only a symbol with a valid quote and features acts
    with stage("sizing"):
        usable = [quote_reason[n] == "" and a["valid"][n] for n in rN]
        enter = [usable[n] and passes[n] and direction[n] != 0 and not entry_blocked[n] for n in rN]
        exit_ = [usable[n] and qty[n] != 0 and exits[n] and not enter[n] for n in rN]
        sized, z_best, raw_weight, sizing_reason, gross_scale = refd.target_weights(
            alpha_best, sigma_best, gate, cw, enter, exit_, sz.max_weight, sz.z_max, sz.weight_cap,
            sz.no_trade_band, sz.gross_target)
        target = [sized[n] if usable[n] else cw[n] for n in rN]

    # 10. per-trade risk checks and the kill switch
    with stage("risk checks"):
        allowed, risk_reason, final = refd.trade_risk_checks(target, cw, rk.max_position_weight,
                                                             rk.max_gross_exposure, halted, suspect=a["suspect"])

    with stage("shares"):
        price = [a["mid"][n] if math.isfinite(a["mid"][n]) else mark[n] for n in rN]
        shares = [refd.order_shares(final[n], cw[n], pv, price[n]) if usable[n] and allowed[n] else 0 for n in rN]

    with stage("reasons"):
        decision, reason = [""] * N, [""] * N
        increases, held_after = [False] * N, [NAN] * N
        for n in rN:
            decision[n], reason[n] = refd.reason_symbol(
                quote_reason=quote_reason[n], features_valid=a["valid"][n], risk_allowed=allowed[n],
                risk_reason=risk_reason[n], shares=shares[n], q_old=a["qty"][n], enter=enter[n], exit_=exit_[n],
                best=best[n],
                passes=passes[n], barrier_blocked=entry_blocked[n] and passes[n], gate_reason=gate_reason[n],
                sizing_reason=sizing_reason[n])
            increases[n] = shares[n] != 0 and refd.increases_risk(final[n], cw[n])
            held_after[n] = refd.next_held_horizon(qty[n], shares[n], final[n], cw[n], best[n], held[n])
        new["held_horizon"] = held_after

    trace = {
        "zscore": z, "ic": ic, "freshness": fresh, "capacity": cap, "stability": stab, "confidence": conf,
        "calibrated": calibrated,
        "blend_weights": [[[weights[h][n][f] for n in rN] for f in rF] for h in rH],  # (H, F, N)
        "blended_bps": blended, "calibration_slope": [[kappa[h]] * N for h in rH], "alpha_bps": alpha,
        "sigma_h_bps": [[s * 1e4 for s in row] for row in sigma], "impact_bps": impact, "cost_bps": cost,
        "net_bps": [[abs(alpha[h][n]) - cost[h][n] for n in rN] for h in rH], "score": score,
        "best_horizon": best, "threshold": threshold, "passes": passes, "direction": direction,
        "spread_bps": spread, "quote_ok": [r == "" for r in quote_reason], "quote_reason": quote_reason,
        "p_peak": p_peak, "p_valley": p_valley, "gate": gate, "gate_fallback": fallback, "gate_reason": gate_reason,
        "z_best": z_best, "raw_weight": raw_weight, "sizing_reason": sizing_reason, "gross_scale": [gross_scale] * N,
        "current_weight": cw, "held_horizon": held, "increases": increases, "target_weight": final,
        "risk_allowed": allowed, "risk_reason": risk_reason, "halted": [halted] * N, "shares": shares, "price": price,
        "bar_repair": a["suspect"], "quote_age_s": a["quote_age"], "data_age_s": a["age"], "features_valid": a["valid"],
        "has_barrier_model": [bool(info.has_barrier[best[n]]) if best[n] >= 0 else True for n in rN],
    }
    return {"decision": decision, "reason": reason, "shares": shares, "alpha": alpha, "buffers": new, "trace": trace}
