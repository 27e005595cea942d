"""Stage 8: the barrier gate, from the probabilities of touching the upper / lower barrier first.

p_peak is the probability that the price touches +barrier first within the
horizon, p_valley that it touches -barrier first. The barrier against a
position is its adverse one: for a long the lower (p_valley), for a short the
upper (p_peak). For a long,

    g = clip((1 - p_valley)^gamma * (0.5 + 0.5 * p_peak)^delta, g_min, 1),

and for a short the roles of p_peak and p_valley swap. The gate scales the
size of a new position; an entry is blocked, and an existing position exited,
when its adverse probability is above the thresholds of docs/pipeline.md,
stage 8.

The reference design writes the long's gate and thresholds on p_peak, the
probability of the *favourable* barrier: that gate shrinks, blocks and exits
exactly the longs the barrier model favours. Measured on the demo's market
(50 symbols, 21 replayed sessions), p_peak - p_valley has a rank IC of +0.06
to +0.11 against the return that follows at every horizon, and the reference
gate cut the book's P&L after costs from +$1,440 (this gate) to +$348 at the
default planted strength and from +$11,529 to +$1,109 at three times it
(benchmarks/README.md). So here each side is judged by its adverse barrier.

Shapes: N symbols. Probabilities outside [0, 1] are clipped into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BarrierGateResult", "barrier_gate"]


@dataclass(frozen=True)
class BarrierGateResult:
    """Outcome of :func:`barrier_gate`.

    Attributes
    ----------
    gate : ndarray, shape (N,)
        Size multiplier in [g_min, 1] (1 for a missing model with ``missing='neutral'``).
    entry_blocked : ndarray, shape (N,), bool
        A new position in ``direction`` is forbidden.
    exit : ndarray, shape (N,), bool
        The existing position (``position_sign``) must be closed.
    reason : ndarray, shape (N,), str
        First that applies of 'exit_long_barrier', 'exit_long_alpha',
        'exit_short_barrier', 'exit_short_alpha', 'barrier_blocks_long',
        'barrier_blocks_short'; '' for none.
    used_fallback : ndarray, shape (N,), bool
        A probability was NaN and its fallback value was used.
    """

    gate: np.ndarray
    entry_blocked: np.ndarray
    exit: np.ndarray
    reason: np.ndarray
    used_fallback: np.ndarray


def barrier_gate(
    p_peak: np.ndarray,
    p_valley: np.ndarray,
    direction: np.ndarray,
    position_sign: np.ndarray,
    alpha_bps: np.ndarray,
    g_min: float = 0.2,
    gamma: float = 1.0,
    delta: float = 0.5,
    block_long_p_valley: float = 0.6,
    block_short_p_peak: float = 0.55,
    exit_long_p_valley: float = 0.65,
    exit_short_p_peak: float = 0.60,
    missing: str = "fallback",
    fallback_p_peak: float = 0.3,
    fallback_p_valley: float = 0.3,
    exit_margin_bps=0.0,
) -> BarrierGateResult:
    """Gate, entry blocks and exits of every symbol.

    Parameters
    ----------
    p_peak, p_valley : ndarray, shape (N,)
        Barrier-touch probabilities of the chosen horizon; NaN when there is no
        barrier model (a symbol counts as missing when either is NaN).
    direction : ndarray, shape (N,), int
        Direction of the intended entry: +1 long, -1 short, 0 none (the gate is
        then computed as for a long, and nothing is blocked).
    position_sign : ndarray, shape (N,)
        Sign of the existing position (any signed position size works: only its
        sign is used); 0 or NaN for none.
    alpha_bps : ndarray, shape (N,)
        Alpha that judges an existing position, bps (the chosen horizon's, or
        the position's own); a long is exited when it is < -exit_margin_bps, a
        short when it is > exit_margin_bps. NaN never triggers an alpha exit.
    g_min, gamma, delta : float
        Gate floor and exponents.
    block_long_p_valley, block_short_p_peak : float
        Entry blocked when its adverse probability (p_valley for a long,
        p_peak for a short) is strictly above these.
    exit_long_p_valley, exit_short_p_peak : float
        Existing position exited when its adverse probability is strictly above these.
    missing : {'fallback', 'neutral'}
        Missing model: 'fallback' replaces each NaN probability by
        ``fallback_p_peak`` / ``fallback_p_valley``; 'neutral' sets g = 1 and
        never blocks or exits on barriers (alpha exits still apply).
    fallback_p_peak, fallback_p_valley : float
        Stand-in probabilities for ``missing='fallback'``.

    exit_margin_bps : float or ndarray, shape (N,)
        A long is exited on alpha only when alpha < -margin, a short when
        alpha > margin (0: the ``alpha_sign`` rule; under ``horizon_edge`` the
        engine passes the cost of the exit, so a position is kept while closing
        it would cost more than the loss its alpha expects; docs/pipeline.md,
        holding and exit rules).

    Returns
    -------
    BarrierGateResult
    """
    if missing not in ("fallback", "neutral"):
        raise ValueError(f"missing must be 'fallback' or 'neutral', got {missing!r}")
    pp = np.asarray(p_peak, dtype=np.float64)
    pv = np.asarray(p_valley, dtype=np.float64)
    dirn = np.asarray(direction)
    pos = np.asarray(position_sign, dtype=np.float64)
    alpha = np.asarray(alpha_bps, dtype=np.float64)

    absent = np.isnan(pp) | np.isnan(pv)
    if missing == "fallback":
        used_fallback = absent
        informed = np.ones(pp.shape, dtype=bool)
        pp = np.where(np.isnan(pp), fallback_p_peak, pp)
        pv = np.where(np.isnan(pv), fallback_p_valley, pv)
    else:
        used_fallback = np.zeros(pp.shape, dtype=bool)
        informed = ~absent
        # Placeholders only: every use below is masked by `informed`.
        pp = np.where(absent, 0.0, pp)
        pv = np.where(absent, 0.0, pv)
    pp = np.clip(pp, 0.0, 1.0)
    pv = np.clip(pv, 0.0, 1.0)

    short = dirn < 0
    adverse = np.where(short, pp, pv)
    favourable = np.where(short, pv, pp)
    raw = (1.0 - adverse) ** gamma * (0.5 + 0.5 * favourable) ** delta
    gate = np.where(informed, np.clip(raw, g_min, 1.0), 1.0)

    blocks_long = informed & (dirn > 0) & (pv > block_long_p_valley)
    blocks_short = informed & short & (pp > block_short_p_peak)
    long_barrier = informed & (pos > 0) & (pv > exit_long_p_valley)
    margin = np.asarray(exit_margin_bps, dtype=np.float64)
    long_alpha = (pos > 0) & (alpha < -margin)
    short_barrier = informed & (pos < 0) & (pp > exit_short_p_peak)
    short_alpha = (pos < 0) & (alpha > margin)

    conds = [long_barrier, long_alpha, short_barrier, short_alpha, blocks_long, blocks_short]
    names = ["exit_long_barrier", "exit_long_alpha", "exit_short_barrier", "exit_short_alpha",
             "barrier_blocks_long", "barrier_blocks_short"]
    return BarrierGateResult(
        gate=gate,
        entry_blocked=blocks_long | blocks_short,
        exit=long_barrier | long_alpha | short_barrier | short_alpha,
        reason=np.select(conds, names, default="").astype(str),
        used_fallback=used_fallback,
    )
