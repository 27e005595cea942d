"""One cycle's decision for the whole universe: the stages of docs/pipeline.md composed.

:func:`decide` is pure: it takes the cycle's inputs (features already turned
into raw predictions), the book's buffers and portfolio, and returns every
symbol's decision, its trace and the book's new buffers. It does no I/O, so
the live engine, a replay and the benchmark run exactly the same code. The
barrier classifiers are asked only at each symbol's chosen horizon, through
the inputs' :class:`BarrierProbs`: a table made beforehand, or the models
predicting then (the engine's way: a sixth of the rows when one horizon of six
is chosen), with the same values either way.

Shapes: Fam model families, H horizons, N symbols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from foxlive_core.config import FoxliveConfig
from foxlive_core.data.types import QuoteSnapshot
from foxlive_core.pipeline.arbitrate import arbitrate, select_horizon
from foxlive_core.pipeline.barrier_gate import barrier_gate
from foxlive_core.pipeline.blend import append_scores, blend_weights, horizon_alpha
from foxlive_core.pipeline.calibration import calibration_slope, calibration_sums
from foxlive_core.pipeline.confidence import (
    append, append_pairs, capacity, confidence, cross_sectional_ic, freshness, spearman_ic, stability,
)
from foxlive_core.pipeline.costs import horizon_sigma, impact_bps, planned_order_dollars, trading_cost_bps
from foxlive_core.pipeline.feedback import mature, push
from foxlive_core.pipeline.quote_gate import quote_gate
from foxlive_core.pipeline.reasons import trade_reason
from foxlive_core.pipeline.risk_checks import trade_risk_checks
from foxlive_core.pipeline.sizing import order_shares, target_weights
from foxlive_core.pipeline.standardize import zscore_cross_sectional, zscore_rolling

TRADE, HOLD, BLOCKED = "TRADE", "HOLD", "BLOCKED"


class BarrierProbs(Protocol):
    """A cycle's barrier-classifier probabilities."""

    def at(self, best: np.ndarray) -> np.ndarray:
        """(2, N) p_peak and p_valley of each symbol at its horizon ``best`` (N,); NaN where it is -1,
        where the symbol's features are not finite or where that horizon has no barrier models."""

    def table(self) -> np.ndarray:
        """(H, 2, N) the same at every horizon."""


@dataclass(frozen=True)
class BarrierTable:
    """Barrier probabilities made beforehand for every horizon, ``prob`` (H, 2, N)."""

    prob: np.ndarray

    def at(self, best: np.ndarray) -> np.ndarray:
        return np.stack([select_horizon(self.prob[:, 0, :], best), select_horizon(self.prob[:, 1, :], best)])

    def table(self) -> np.ndarray:
        return self.prob


@dataclass(frozen=True)
class CycleInputs:
    """Everything a cycle decides from, gathered before any stage runs.

    time : cycle time (UTC bar close)
    session : the exchange session date of ``time``, 'YYYY-MM-DD'
    symbols : N symbols
    window_times : DatetimeIndex (L,), the bars of the window, last = ``time``
    close : (L, N) closes of the window after missing-bar filling
    features_valid : (N,) all features finite at ``time``
    vol_per_bar : (N,) per-bar volatility (std of 1-bar log returns over 20 bars), decimal
    data_age_s : (N,) seconds since each symbol's newest real (unfilled) bar
    quotes : QuoteSnapshot at ``time``
    quote_age_s : (N,) seconds since each quote
    adv : (N,) average daily dollar volume
    raw_pred : (Fam, H, N) raw model predictions (decimal returns over h)
    barrier_prob : BarrierProbs, p_peak and p_valley of the barrier classifiers
    bar_repair : (N,) what is suspect about each symbol's bar at ``time``: '' (nothing), 'jump' (a move
        beyond ``market.max_bar_log_move`` from the previous close), 'filled' (missing, carried from the
        previous close) or 'repaired' (touched by the loader's repairs); such a bar may reduce a
        position but never open or increase one
    """

    time: pd.Timestamp
    session: str
    symbols: tuple[str, ...]
    window_times: pd.DatetimeIndex
    close: np.ndarray
    features_valid: np.ndarray
    vol_per_bar: np.ndarray
    data_age_s: np.ndarray
    quotes: QuoteSnapshot
    quote_age_s: np.ndarray
    adv: np.ndarray
    raw_pred: np.ndarray
    barrier_prob: BarrierProbs
    bar_repair: np.ndarray


@dataclass(frozen=True)
class ModelInfo:
    """What the stages need to know of the model set: names, scales and barrier availability."""

    run_id: str
    families: tuple[str, ...]
    horizons: tuple[str, ...]
    horizon_bars: np.ndarray  # (H,)
    bps_scale: np.ndarray  # (Fam, H)
    has_barrier: np.ndarray  # (H,)
    calibration_slope: np.ndarray  # (H,) prior of the online calibration

    @property
    def target_std(self) -> np.ndarray:
        return self.bps_scale * 1e-4


def buffer_shapes(cfg: FoxliveConfig, n_fam: int, horizon_bars, n: int) -> dict[str, tuple[tuple[int, ...], int | None]]:
    """Name -> (shape, symbol axis) of every buffer a book carries across cycles."""
    H = len(horizon_bars)
    shapes = {
        "z_buffer": ((n_fam, H, n, cfg.standardization.window), 2),
        "calib_err": ((n_fam, H, n, cfg.confidence.stability_window), 2),
        "score_hist": ((H, n, cfg.blending.corr_window, n_fam), 1),
        "calib_sums": ((H, cfg.calibration.window, 2), None),
        # the horizon each open position was taken for (NaN: none)
        "held_horizon": ((n,), 0),
    }
    if cfg.confidence.ic_mode == "time_series":
        shapes["ic_pred"] = ((n_fam, H, n, cfg.confidence.ic_window), 2)
        shapes["ic_real"] = ((n_fam, H, n, cfg.confidence.ic_window), 2)
    else:
        shapes["ic_cross_sectional"] = ((n_fam, H, cfg.confidence.ic_window), None)
    for i, b in enumerate(horizon_bars):
        # Predictions wait h bars for their realised return: a ring of the last h cycles per horizon.
        shapes[f"pending_pred_{i}"] = ((int(b), n_fam, n), 2)
        shapes[f"pending_alpha_{i}"] = ((int(b), n), 1)
        shapes[f"pending_time_{i}"] = ((int(b),), None)
    return shapes


# The slot axis of each buffer that is a history (oldest slot first; a cycle moves a row by at most one
# slot): the state store saves a live cycle's change of these as a delta (foxlive_core.state.shift_delta).
HISTORY_AXES = {"z_buffer": -1, "calib_err": -1, "score_hist": -2, "calib_sums": -2, "ic_pred": -1, "ic_real": -1,
                "ic_cross_sectional": -1, "pending_pred": 0, "pending_alpha": 0, "pending_time": 0}


def history_axes(cfg: FoxliveConfig, n_fam: int, horizon_bars) -> dict[str, int]:
    """Name -> slot axis of every buffer of :func:`buffer_shapes` that is a history (see HISTORY_AXES)."""
    names = buffer_shapes(cfg, n_fam, horizon_bars, 1)
    kind = {n: n.rsplit("_", 1)[0] if n.startswith("pending_") else n for n in names}
    return {n: HISTORY_AXES[k] for n, k in kind.items() if k in HISTORY_AXES}


def empty_buffers(cfg: FoxliveConfig, n_fam: int, horizon_bars, n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, (shape, _) in buffer_shapes(cfg, n_fam, horizon_bars, n).items():
        out[name] = np.full(shape, np.iinfo(np.int64).min, dtype=np.int64) if name.startswith("pending_time") else np.full(shape, np.nan)
    return out


def align_buffers(
    cfg: FoxliveConfig, arrays: dict[str, np.ndarray], old_symbols, new_symbols, n_fam: int, horizon_bars
) -> dict[str, np.ndarray]:
    """The book's buffers re-indexed to ``new_symbols`` (new symbols start empty, dropped ones are forgotten).

    Buffers whose shape no longer matches the config (a window length or the
    model set changed) are restarted empty: they are warm-up state, not money.
    """
    fresh = empty_buffers(cfg, n_fam, horizon_bars, len(new_symbols))
    if not arrays:
        return fresh
    specs = buffer_shapes(cfg, n_fam, horizon_bars, len(new_symbols))
    old_index = {s: i for i, s in enumerate(old_symbols)}
    src = np.array([old_index.get(s, -1) for s in new_symbols], dtype=np.intp)
    keep = src >= 0
    out = {}
    for name, (shape, axis) in specs.items():
        old = arrays.get(name)
        if old is None:
            out[name] = fresh[name]
            continue
        if axis is None:
            out[name] = old if old.shape == shape else fresh[name]
            continue
        expected_old = list(shape)
        expected_old[axis] = len(old_symbols)
        if list(old.shape) != expected_old:
            out[name] = fresh[name]
            continue
        new = fresh[name]
        idx_new = [slice(None)] * len(shape)
        idx_old = [slice(None)] * len(shape)
        idx_new[axis] = np.flatnonzero(keep)
        idx_old[axis] = src[keep]
        new[tuple(idx_new)] = old[tuple(idx_old)]
        out[name] = new
    return out


@dataclass(frozen=True)
class Buffers:
    """The book's signal state, carried from one cycle to the next (what :func:`decide` reads and renews).

    z_buffer : (Fam, H, N, W) raw predictions of the last W cycles (``standardization.mode: rolling``)
    calib_err : (Fam, H, N, S) standardised errors of matured predictions (stability)
    score_hist : (H, N, P, Fam) the families' z-scores of the last P cycles (blend correlations)
    calib_sums : (H, W, 2) matured (alpha, realised) pairs' sums per cycle (calibration slope)
    held_horizon : (N,) horizon index each open position was taken for, NaN for none
    ic_cross_sectional : (Fam, H, W) per-cycle cross-sectional ICs (``confidence.ic_mode: cross_sectional``)
    ic_pred, ic_real : (Fam, H, N, W) per-symbol pairs (``ic_mode: time_series``)
    pending_time, pending_pred, pending_alpha : one ring per horizon of its last h cycles: times (h,) in ns,
        raw predictions (h, Fam, N), blended alphas (h, N)

    Stored as named arrays (:meth:`to_arrays`; :func:`buffer_shapes` gives their shapes).
    """

    z_buffer: np.ndarray
    calib_err: np.ndarray
    score_hist: np.ndarray
    calib_sums: np.ndarray
    held_horizon: np.ndarray
    ic_cross_sectional: np.ndarray | None
    ic_pred: np.ndarray | None
    ic_real: np.ndarray | None
    pending_time: tuple[np.ndarray, ...]
    pending_pred: tuple[np.ndarray, ...]
    pending_alpha: tuple[np.ndarray, ...]

    _SINGLE = ("z_buffer", "calib_err", "score_hist", "calib_sums", "held_horizon", "ic_cross_sectional",
               "ic_pred", "ic_real")
    _RINGS = ("pending_time", "pending_pred", "pending_alpha")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_horizons: int) -> Buffers:
        """The record of stored arrays named as :func:`buffer_shapes` names them."""
        single = {name: arrays.get(name) for name in cls._SINGLE}
        rings = {name: tuple(arrays[f"{name}_{i}"] for i in range(n_horizons)) for name in cls._RINGS}
        return cls(**single, **rings)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name) for name in self._SINGLE if getattr(self, name) is not None}
        for name in self._RINGS:
            out.update((f"{name}_{i}", ring) for i, ring in enumerate(getattr(self, name)))
        return out


@dataclass(frozen=True)
class Portfolio:
    """The book at the start of the cycle, marked at the cycle's quotes.

    quantity : (N,) signed shares; mark : (N,) price used to value them;
    value : cash + sum(quantity * mark); weight : (N,) quantity*mark/value.
    """

    cash: float
    quantity: np.ndarray
    mark: np.ndarray
    value: float

    @property
    def weight(self) -> np.ndarray:
        return self.quantity * self.mark / self.value if self.value > 0 else np.zeros_like(self.mark)


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide` for every symbol.

    decision : (N,) 'TRADE' | 'HOLD' | 'BLOCKED'
    reason : (N,) why
    shares : (N,) signed int64 order quantities (0 where no order)
    target_weight : (N,) weight after every stage (current weight where no trade)
    trace : dict name -> array, each stage's numbers (see :func:`trace_row`); the symbol axis is last
    buffers : the book's new Buffers
    """

    decision: np.ndarray
    reason: np.ndarray
    shares: np.ndarray
    target_weight: np.ndarray
    trace: dict
    buffers: Buffers


def _first_reason(*pairs) -> np.ndarray:
    """Element-wise first reason whose condition holds (pairs of (mask, text)), '' when none."""
    conds = [m for m, _ in pairs]
    texts = [t for _, t in pairs]
    return np.select(conds, texts, default="").astype(object)


def decide(
    cfg: FoxliveConfig,
    models: ModelInfo,
    inputs: CycleInputs,
    buffers: Buffers,
    portfolio: Portfolio,
    halted: bool,
    quote_max_age_s: float,
) -> Decision:
    """Run stages 1-10 of docs/pipeline.md for the whole universe (see the module doc)."""
    N = len(inputs.symbols)
    bars = models.horizon_bars
    H = len(bars)

    # 2. spread / quote gate
    qg = quote_gate(
        inputs.quotes.bid, inputs.quotes.ask, inputs.quote_age_s, cfg.quote_gate.max_spread_bps, quote_max_age_s
    )
    spread = qg.spread_bps

    # 4. standardise the raw predictions
    raw = inputs.raw_pred  # (Fam, H, N)
    sc = cfg.standardization
    if sc.mode == "rolling":
        z, z_buffer = zscore_rolling(raw, buffers.z_buffer, sc.min_samples, sc.clip)
    else:
        z, z_buffer = zscore_cross_sectional(raw, sc.min_samples, sc.clip), buffers.z_buffer

    # 5a. feed realised returns back: predictions made h bars ago meet the return realised since
    back = mature(buffers.pending_time, buffers.pending_pred, buffers.pending_alpha, inputs.close, inputs.window_times.asi8, bars)
    matured, matured_alpha, realised = back.pred, back.alpha, back.realised
    # this cycle's predictions join the rings; its alpha joins once the blend has made it
    pending_time = tuple(push(ring, inputs.time.value) for ring in buffers.pending_time)
    pending_pred = tuple(push(ring, raw[:, i, :]) for i, ring in enumerate(buffers.pending_pred))
    cc = cfg.confidence
    ic_pred, ic_real, ic_cross_sectional = buffers.ic_pred, buffers.ic_real, buffers.ic_cross_sectional
    if cc.ic_mode == "time_series":
        ic_pred, ic_real = append_pairs(ic_pred, ic_real, matured, realised)
        ic = spearman_ic(ic_pred, ic_real, cc.ic_min_pairs)
    else:
        # One measurement per (family, horizon) and cycle, across the universe; NaN (not appended) until matured.
        hist = ic_cross_sectional = append(ic_cross_sectional, cross_sectional_ic(matured, realised[None], cc.ic_min_pairs))
        measured = np.isfinite(hist).sum(axis=-1)
        mean_ic = np.divide(np.nansum(hist, axis=-1), measured, out=np.zeros(measured.shape), where=measured > 0)
        ic = np.broadcast_to(np.where(measured >= cc.ic_min_pairs, mean_ic, 0.0)[:, :, None], raw.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        calib = (matured - realised[None]) / models.target_std[:, :, None]
    calib_err = append(buffers.calib_err, calib)

    # 5b. confidence
    tau = np.array([h.freshness_tau_s for h in cfg.horizons])
    fresh = freshness(inputs.data_age_s, tau)
    planned = np.full(N, cfg.sizing.max_weight * portfolio.value)
    cap = capacity(inputs.adv, planned, cc.capacity_kappa)
    stab = stability(calib_err, cc.stability_warmup)
    conf = confidence(ic, fresh, cap, stab, cc.ic_floor)
    calibrated = z * conf

    # 6. blend within each horizon
    score_hist = append_scores(buffers.score_hist, z)
    temperature = np.array([h.temperature for h in cfg.horizons])
    weights = blend_weights(
        ic,
        score_hist,
        cfg.blending.cost_share,
        cfg.blending.ridge_lambda,
        cfg.blending.corr_min_points,
        temperature,
    )
    blended = horizon_alpha(calibrated, weights, models.bps_scale)  # (H, N) bps
    pending_alpha = tuple(push(ring, blended[i]) for i, ring in enumerate(buffers.pending_alpha))

    # 6b. calibrate each horizon's alpha to the moves that followed past alphas
    ca = cfg.calibration
    calib_sums = append(buffers.calib_sums, calibration_sums(matured_alpha, realised, relative=sc.relative), axis=-2)
    kappa = calibration_slope(calib_sums, models.calibration_slope, ca.prior_cycles, ca.max_slope)
    alpha = kappa[:, None] * blended

    # 7. costs and arbitration across horizons
    cw = portfolio.weight
    sigma_h = horizon_sigma(inputs.vol_per_bar, bars)  # (H, N) decimal
    planned_q = planned_order_dollars(alpha, sigma_h, cw, portfolio.value, cfg.sizing.max_weight, cfg.sizing.z_max)
    k = cfg.costs
    impact = impact_bps(planned_q, inputs.adv, k.impact_bps_at_reference, k.impact_reference_participation)
    # The broker's own charges beyond the quote are part of every trade's cost.
    execution_bps = cfg.broker.slippage_bps + cfg.broker.fee_bps
    cost = trading_cost_bps(spread, sigma_h, impact, k.k1_spread, k.k2_volatility, k.k3_impact, execution_bps)
    # A position is resized, flipped or exited on alpha only by its own horizon or a longer one.
    held = portfolio.quantity != 0
    horizon_edge = cfg.holding.exit_rule == "horizon_edge"
    held_h = np.where(held & np.isfinite(buffers.held_horizon), buffers.held_horizon, -1).astype(np.int64)
    shortest = held_h if horizon_edge else None
    arb = arbitrate(alpha, cost, bars, spread, cfg.arbitration.threshold_base_bps, cfg.arbitration.threshold_spread_mult,
                    shortest)
    best = arb.best
    alpha_best = select_horizon(alpha, best)
    sigma_best_bps = select_horizon(sigma_h, best) * 1e4
    # The alpha exit (docs/pipeline.md, holding and exit rules): the chosen horizon's sign, or the held one's net edge.
    if horizon_edge:
        exit_alpha = np.where(held_h >= 0, select_horizon(alpha, held_h), alpha_best)
        exit_margin = np.where(held_h >= 0, select_horizon(cost, held_h), 0.0)
    else:
        exit_alpha, exit_margin = alpha_best, np.zeros(N)

    # 8. barrier gate at the chosen horizon
    p_peak, p_valley = inputs.barrier_prob.at(best)
    bg = cfg.barrier_gate
    gate = barrier_gate(
        p_peak, p_valley, arb.direction, np.sign(portfolio.quantity), exit_alpha,
        bg.g_min, bg.gamma, bg.delta, bg.block_long_p_valley, bg.block_short_p_peak,
        bg.exit_long_p_valley, bg.exit_short_p_peak, bg.when_missing, bg.fallback_p_peak, bg.fallback_p_valley,
        exit_margin,
    )

    # 9. size. A symbol can act only with a valid quote and features.
    usable = qg.ok & inputs.features_valid
    enter = usable & arb.passes & (arb.direction != 0) & ~gate.entry_blocked
    exit_ = usable & held & gate.exit & ~enter
    sz = cfg.sizing
    sized = target_weights(
        alpha_best, sigma_best_bps, gate.gate, cw, enter, exit_,
        sz.max_weight, sz.z_max, sz.weight_cap, sz.no_trade_band, sz.gross_target,
    )
    # A symbol without a usable quote cannot be rescaled either: it keeps its weight.
    target = np.where(usable, sized.target, cw)

    # 10. per-trade risk checks (the kill switch lets only risk-reducing changes through)
    rk = cfg.risk
    risk = trade_risk_checks(target, cw, rk.max_position_weight, rk.max_gross_exposure, halted, inputs.bar_repair)
    final = risk.final_target
    price = np.where(np.isfinite(inputs.quotes.mid), inputs.quotes.mid, portfolio.mark)
    shares = order_shares(final, cw, portfolio.value, price)
    shares = np.where(usable & risk.allowed, shares, 0)

    # decision and reason, most fundamental first; a trade's reason names what it does to the position
    trading = shares != 0
    barrier_blocked = gate.entry_blocked & arb.passes
    trade_why = trade_reason(portfolio.quantity, portfolio.quantity + shares, np.where(exit_, gate.reason, ""), enter,
                             sized.reason == "gross_scaled")
    hold_reason = _first_reason(
        (enter & (sized.reason != ""), sized.reason),
        (enter, "order_rounds_to_zero"),
        (best < 0, "no_alpha"),
        (~arb.passes, "below_threshold"),
    )
    reason = _first_reason(
        (~qg.ok, qg.reason),
        (~inputs.features_valid, "insufficient_history"),
        (~risk.allowed, risk.reason),
        (trading, trade_why),
        (barrier_blocked, gate.reason),
        (hold_reason != "", hold_reason),
    )
    reason = np.where(reason == "", "hold", reason).astype(object)
    increases = (np.abs(final) > np.abs(cw)) | (np.sign(final) * np.sign(cw) < 0)
    # A trade that opens, adds to or flips a position takes the horizon it was chosen for.
    horizon_after = np.where(trading & increases, best, held_h)
    held_horizon = np.where((portfolio.quantity + shares != 0) & (horizon_after >= 0), horizon_after, np.nan)
    blocked = ~qg.ok | (inputs.features_valid & (~risk.allowed | (~trading & barrier_blocked)))
    decision = np.where(trading, TRADE, np.where(blocked, BLOCKED, HOLD)).astype(object)

    trace = {
        "raw_pred": raw,
        "zscore": z,
        "ic": ic,
        "freshness": fresh,
        "capacity": cap,
        "stability": stab,
        "confidence": conf,
        "calibrated": calibrated,
        "blend_weights": np.moveaxis(weights, -1, 1),  # (H, Fam, N): every trace array ends with the symbol axis
        "blended_bps": blended,
        "calibration_slope": np.broadcast_to(kappa[:, None], (H, N)),
        "alpha_bps": alpha,
        "sigma_h_bps": sigma_h * 1e4,
        "impact_bps": impact,
        "cost_bps": cost,
        "net_bps": arb.net,
        "score": arb.score,
        "best_horizon": best,
        "threshold": arb.threshold,
        "passes": arb.passes,
        "direction": arb.direction,
        "quote_age_s": inputs.quote_age_s,
        "data_age_s": inputs.data_age_s,
        "features_valid": inputs.features_valid,
        # whether the chosen horizon has barrier models (True where none was chosen: nothing is missing)
        "has_barrier_model": np.where(best >= 0, models.has_barrier[np.maximum(best, 0)], True),
        "bid": inputs.quotes.bid,
        "ask": inputs.quotes.ask,
        "spread_bps": spread,
        "quote_ok": qg.ok,
        "quote_reason": qg.reason,
        "p_peak": p_peak,
        "p_valley": p_valley,
        "gate": gate.gate,
        "gate_fallback": gate.used_fallback,
        "gate_reason": gate.reason,
        "z_best": sized.z,
        "raw_weight": sized.raw_weight,
        "sizing_reason": sized.reason,
        "gross_scale": np.full(N, sized.gross_scale),
        "current_weight": cw,
        "held_horizon": held_h,
        "increases": trading & increases,
        "target_weight": final,
        "bar_repair": inputs.bar_repair,
        "risk_allowed": risk.allowed,
        "risk_reason": risk.reason,
        "halted": np.full(N, halted),
        "shares": shares,
        "price": price,
    }
    renewed = Buffers(
        z_buffer=z_buffer, calib_err=calib_err, score_hist=score_hist, calib_sums=calib_sums, held_horizon=held_horizon,
        ic_cross_sectional=ic_cross_sectional, ic_pred=ic_pred, ic_real=ic_real,
        pending_time=pending_time, pending_pred=pending_pred, pending_alpha=pending_alpha,
    )
    return Decision(decision, reason, shares.astype(np.int64), final, trace, renewed)
