"""Why a symbol traded: one symbol's trace as a dict, and rendered for a person."""

from __future__ import annotations

import json

import numpy as np


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def trace_row(result, symbol: str) -> dict:
    """Every stage's numbers for ``symbol`` in cycle ``result`` (a CycleResult), JSON-able.

    A field the cycle's stored trace does not keep (``engine.trace: decisions``) reads as None.
    """
    if symbol not in result.symbols:
        raise KeyError(f"{symbol!r} is not in this cycle's universe ({len(result.symbols)} symbols)")
    i = result.symbols.index(symbol)
    tr = result.decision.trace
    fams, hors = result.families, result.horizons
    best = int(tr["best_horizon"][i])

    def v(name, *lead):
        return _f(tr[name][(*lead, i)]) if name in tr else None

    horizons = []
    for h, name in enumerate(hors):
        horizons.append(
            {
                "horizon": name,
                "alpha_bps": v("alpha_bps", h),
                "blended_bps": v("blended_bps", h),
                "calibration_slope": v("calibration_slope", h),
                "sigma_bps": v("sigma_h_bps", h),
                "impact_bps": v("impact_bps", h),
                "cost_bps": v("cost_bps", h),
                "net_bps": v("net_bps", h),
                "score": v("score", h),
                "freshness": v("freshness", h),
                "chosen": h == best,
                "families": {
                    fam: {
                        "raw": v("raw_pred", f, h),
                        "zscore": v("zscore", f, h),
                        "ic": v("ic", f, h),
                        "stability": v("stability", f, h),
                        "confidence": v("confidence", f, h),
                        "calibrated": v("calibrated", f, h),
                        "weight": v("blend_weights", h, f),
                    }
                    for f, fam in enumerate(fams)
                },
            }
        )
    return {
        "symbol": symbol,
        "time": result.time.isoformat(),
        "book": result.book,
        "model_run_id": result.model_run_id,
        "decision": str(result.decision.decision[i]),
        "reason": str(result.decision.reason[i]),
        "quote": {
            "age_s": v("quote_age_s"),
            "bid": _f(tr["bid"][i]),
            "ask": _f(tr["ask"][i]),
            "spread_bps": _f(tr["spread_bps"][i]),
            "ok": bool(tr["quote_ok"][i]),
            "reason": str(tr["quote_reason"][i]),
        },
        "capacity": _f(tr["capacity"][i]),
        "data_age_s": v("data_age_s"),
        "features_valid": bool(tr["features_valid"][i]) if "features_valid" in tr else None,
        "horizons": horizons,
        "chosen_horizon": hors[best] if best >= 0 else None,
        "held_horizon": hors[int(tr["held_horizon"][i])] if "held_horizon" in tr and tr["held_horizon"][i] >= 0 else None,
        "threshold_bps": _f(tr["threshold"][i]),
        "passes": bool(tr["passes"][i]),
        "direction": int(tr["direction"][i]),
        "gate": {
            "p_peak": _f(tr["p_peak"][i]),
            "p_valley": _f(tr["p_valley"][i]),
            "g": _f(tr["gate"][i]),
            "fallback": bool(tr["gate_fallback"][i]),
            "has_model": bool(tr["has_barrier_model"][i]) if "has_barrier_model" in tr else None,
            "reason": str(tr["gate_reason"][i]),
        },
        "sizing": {
            "z": _f(tr["z_best"][i]),
            "raw_weight": _f(tr["raw_weight"][i]),
            "current_weight": _f(tr["current_weight"][i]),
            "target_weight": _f(result.decision.target_weight[i]),
            "gross_scale": _f(tr["gross_scale"][i]),
            "reason": str(tr["sizing_reason"][i]),
            "shares": int(result.decision.shares[i]),
            "price": _f(tr["price"][i]),
        },
        "risk": {
            "allowed": bool(tr["risk_allowed"][i]),
            "reason": str(tr["risk_reason"][i]),
            "halted": bool(tr["halted"][i]),
            "bar_repair": str(tr["bar_repair"][i]) if "bar_repair" in tr else "",
        },
    }


def _n(x, fmt="{:+.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def render(row: dict) -> str:
    """A person-readable explanation of :func:`trace_row`'s output."""
    lines = [
        f"{row['symbol']} @ {row['time']}  book={row['book']}  models={row['model_run_id']}",
        f"decision: {row['decision']} ({row['reason']})",
        f"quote: bid {_n(row['quote']['bid'], '{:.4f}')} ask {_n(row['quote']['ask'], '{:.4f}')}  "
        f"spread {_n(row['quote']['spread_bps'], '{:.2f}')} bps"
        + ("" if row["quote"]["ok"] else f"  BLOCKED: {row['quote']['reason']}")
        + f"   capacity {_n(row['capacity'], '{:.3f}')}",
        f"data: quote {_age(row['quote']['age_s'])} old, newest real bar {_age(row['data_age_s'])} old"
        + ("" if row["features_valid"] in (True, None) else "; features incomplete (too little history)"),
        "",
        f"{'horizon':>8} {'alpha bps':>10} {'(kappa)':>8} {'sigma bps':>10} {'cost bps':>9} {'net bps':>9} {'score':>8}  "
        "weights (family: w x s~)",
    ]
    for h in row["horizons"]:
        mark = " <" if h["chosen"] else "  "
        fams = ", ".join(
            f"{name}: {_n(v['weight'], '{:.2f}')} x {_n(v['calibrated'], '{:+.3f}')} (ic {_n(v['ic'], '{:+.2f}')})"
            for name, v in h["families"].items()
        )
        lines.append(
            f"{h['horizon']:>8} {_n(h['alpha_bps']):>10} {_n(h['calibration_slope'], '{:.2f}'):>8} "
            f"{_n(h['sigma_bps'], '{:.1f}'):>10} {_n(h['cost_bps'], '{:.2f}'):>9} "
            f"{_n(h['net_bps']):>9} {_n(h['score']):>8}{mark} {fams}"
        )
    g, s, r = row["gate"], row["sizing"], row["risk"]
    lines += [
        "",
        f"held for: {row['held_horizon'] or 'no position'}   "
        f"chosen horizon: {row['chosen_horizon'] or 'none'}  threshold {_n(row['threshold_bps'], '{:.2f}')} bps  "
        f"passes={row['passes']}  direction={ {1: 'long', -1: 'short', 0: 'none'}[row['direction']] }",
        f"barrier gate: p_peak {_n(g['p_peak'], '{:.3f}')}  p_valley {_n(g['p_valley'], '{:.3f}')}  g {_n(g['g'], '{:.3f}')}"
        + (_fallback_text(g) if g["fallback"] else "")
        + (f"  [{g['reason']}]" if g["reason"] else ""),
        f"sizing: z {_n(s['z'])}  raw weight {_n(s['raw_weight'], '{:+.4f}')}  current {_n(s['current_weight'], '{:+.4f}')}  "
        f"target {_n(s['target_weight'], '{:+.4f}')}  gross scale {_n(s['gross_scale'], '{:.3f}')}"
        + (f"  [{s['reason']}]" if s["reason"] else ""),
        f"order: {s['shares']:+d} shares @ {_n(s['price'], '{:.2f}')}",
        f"risk: {'allowed' if r['allowed'] else 'BLOCKED: ' + r['reason']}" + ("  (book halted)" if r["halted"] else "")
        + (f"  (bar {r['bar_repair']}: reduce only)" if r["bar_repair"] else ""),
    ]
    return "\n".join(lines)


def _age(seconds) -> str:
    """A duration for a person: 42 s, 12.5 min, 3.1 h, 640 days."""
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def _fallback_text(gate: dict) -> str:
    if gate["has_model"] is False:
        return "  (no barrier model for this horizon: fallback probabilities)"
    return "  (barrier probabilities unavailable for this bar, e.g. features incomplete: fallback probabilities)"


def to_json(row: dict) -> str:
    return json.dumps(row, indent=2)
