"""Decision stages 7-10: costs, arbitration, barrier gate, sizing, risk checks.

Each vectorised stage is checked against the plain scalar reference in
``scalar_reference_decision`` on random inputs (NaN and edge values included),
against its invariants, and on worked examples computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foxlive_core.pipeline.arbitrate import arbitrate, select_horizon
from foxlive_core.pipeline.barrier_gate import barrier_gate
from foxlive_core.pipeline.costs import horizon_sigma, impact_bps, planned_order_dollars, trading_cost_bps
from foxlive_core.pipeline.risk_checks import portfolio_risk, trade_risk_checks
from foxlive_core.pipeline.sizing import order_shares, target_weights
from tests.core import scalar_reference_decision as ref

NAN = float("nan")
SETTINGS = settings(max_examples=80, deadline=None)


def num(lo: float, hi: float, *extra: float):
    """A float in [lo, hi], or one of the edge values (the bounds, 0 when inside, NaN, ``extra``)."""
    edges = [lo, hi, NAN, *extra] + ([0.0] if lo <= 0 <= hi else [])
    return st.one_of(st.floats(lo, hi, allow_nan=False), st.sampled_from(edges))


def vec(elements, n: int):
    return st.lists(elements, min_size=n, max_size=n).map(lambda xs: np.array(xs, dtype=np.float64))


def close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=1e-12, atol=1e-15, equal_nan=True)


@st.composite
def horizons(draw):
    """Distinct, increasing bar counts, like the configured horizons."""
    return np.array(sorted(draw(st.sets(st.integers(1, 400), min_size=1, max_size=6))), dtype=np.int64)


# ============================================================================ costs


@SETTINGS
@given(data=st.data())
def test_horizon_sigma_matches_reference(data):
    bars = data.draw(horizons())
    vol = data.draw(vec(num(0.0, 0.05), data.draw(st.integers(1, 8))))
    got = horizon_sigma(vol, bars)
    assert got.shape == (bars.size, vol.size)
    close(got, ref.horizon_sigma(vol.tolist(), bars.tolist()))


def test_horizon_sigma_refuses_zero_bars():
    with pytest.raises(ValueError, match="horizon_bars"):
        horizon_sigma(np.array([0.001]), np.array([0, 1]))


@SETTINGS
@given(data=st.data(), bps=st.floats(0.0, 50.0), part=st.floats(1e-4, 0.5))
def test_impact_matches_reference_and_broadcasts(data, bps, part):
    n = data.draw(st.integers(1, 6))
    h = data.draw(st.integers(1, 4))
    q = data.draw(vec(num(-1e7, 1e7, math.inf), h * n)).reshape(h, n)
    adv = data.draw(vec(num(-1e6, 1e10, math.inf), n))
    got = impact_bps(q, adv, bps, part)
    assert got.shape == (h, n)
    ql, advl = q.tolist(), adv.tolist()
    expected = [[ref.impact_bps(ql[i][j], advl[j], bps, part) for j in range(n)] for i in range(h)]
    close(got, expected)


def test_impact_edge_cases_and_reference_point():
    q = np.array([0.0, 0.0, 5e3, 5e3, 5e3, 1e6, -1e6, NAN])
    adv = np.array([NAN, 0.0, 0.0, -1.0, NAN, 1e8, 1e8, 1e8])
    got = impact_bps(q, adv)
    # q = 0 costs nothing whatever the ADV; q > 0 with unknown ADV is infinitely costly;
    # 1 % of ADV is the reference point (10 bps) whatever the sign of q; NaN q stays unknown.
    close(got, [0.0, 0.0, math.inf, math.inf, math.inf, 10.0, 10.0, NAN])
    # Square-root law: 4x the participation costs 2x.
    close(impact_bps(np.array([4e6]), np.array([1e8])), [20.0])


@SETTINGS
@given(data=st.data(), k=st.tuples(*[st.sampled_from([0.0, 0.15, 1.0, 2.5])] * 3))
def test_trading_cost_matches_reference(data, k):
    n = data.draw(st.integers(1, 6))
    h = data.draw(st.integers(1, 4))
    spread = data.draw(vec(num(0.0, 50.0), n))
    sigma = data.draw(vec(num(0.0, 0.05), h * n)).reshape(h, n)
    imp = data.draw(vec(num(0.0, 100.0, math.inf), h * n)).reshape(h, n)
    got = trading_cost_bps(spread, sigma, imp, *k)
    expected = [[ref.trading_cost_bps(spread[j], sigma[i, j], imp[i, j], *k) for j in range(n)] for i in range(h)]
    close(got, expected)


def test_trading_cost_drops_disabled_terms():
    # k3 = 0 with an unknown ADV (impact inf) must not make the cost NaN.
    got = trading_cost_bps(np.array([2.0]), np.array([[0.0005]]), np.array([[math.inf]]), k3=0.0)
    close(got, [[2.0 + 0.15 * 5.0]])
    assert trading_cost_bps(np.array([2.0]), np.array([[0.0005]]), np.array([[math.inf]]))[0, 0] == math.inf


@SETTINGS
@given(data=st.data(), pv=st.floats(1e3, 1e7), max_weight=st.floats(0.01, 0.2), z_max=st.floats(0.5, 5.0))
def test_planned_order_matches_reference(data, pv, max_weight, z_max):
    n = data.draw(st.integers(1, 6))
    h = data.draw(st.integers(1, 4))
    alpha = data.draw(vec(num(-300.0, 300.0, math.inf), h * n)).reshape(h, n)
    sigma = data.draw(vec(num(0.0, 0.05, -0.001), h * n)).reshape(h, n)
    cur = data.draw(vec(st.floats(-0.3, 0.3), n))
    got = planned_order_dollars(alpha, sigma, cur, pv, max_weight, z_max)
    al, sl, cl = alpha.tolist(), sigma.tolist(), cur.tolist()
    expected = [[ref.planned_order_dollars(al[i][j], sl[i][j], cl[j], pv, max_weight, z_max)
                 for j in range(n)] for i in range(h)]
    close(got, expected)
    # The planned order never exceeds the move from the current weight to max_weight.
    bound = (max_weight + np.abs(cur)) * pv
    assert np.all(got[np.isfinite(got)] <= np.broadcast_to(bound, got.shape)[np.isfinite(got)] * (1 + 1e-12))


# ============================================================================ arbitration


@SETTINGS
@given(data=st.data(), base=st.floats(0.0, 5.0), mult=st.floats(0.0, 2.0))
def test_arbitrate_matches_reference(data, base, mult):
    bars = data.draw(horizons())
    h, n = bars.size, data.draw(st.integers(1, 8))
    alpha = data.draw(vec(num(-200.0, 200.0), h * n)).reshape(h, n)
    cost = data.draw(vec(num(0.0, 30.0, math.inf), h * n)).reshape(h, n)
    spread = data.draw(vec(num(0.0, 20.0), n))
    res = arbitrate(alpha, cost, bars, spread, base, mult)
    for j in range(n):
        scores, best, best_score, threshold, passes, direction = ref.arbitrate_symbol(
            alpha[:, j].tolist(), cost[:, j].tolist(), bars.tolist(), spread[j], base, mult)
        close(res.score[:, j], scores)
        assert res.best[j] == best
        close(res.best_score[j], best_score)
        close(res.threshold[j], threshold)
        assert res.passes[j] == passes
        assert res.direction[j] == direction
    assert res.direction.dtype == np.int8 and res.passes.dtype == bool


@SETTINGS
@given(data=st.data())
def test_arbitrate_shorts_mirror_longs(data):
    # Negating every alpha must give the same choice and decision with the opposite direction.
    bars = data.draw(horizons())
    h, n = bars.size, data.draw(st.integers(1, 8))
    alpha = data.draw(vec(num(-200.0, 200.0), h * n)).reshape(h, n)
    cost = data.draw(vec(num(0.0, 30.0), h * n)).reshape(h, n)
    spread = data.draw(vec(st.floats(0.0, 20.0), n))
    up, down = arbitrate(alpha, cost, bars, spread), arbitrate(-alpha, cost, bars, spread)
    np.testing.assert_array_equal(up.best, down.best)
    np.testing.assert_array_equal(up.passes, down.passes)
    np.testing.assert_array_equal(up.direction, -down.direction)


def test_arbitrate_ties_and_all_nan():
    alpha = np.array([[10.0, NAN], [10.0, NAN]])
    cost = np.array([[1.0, 1.0], [1.0, 1.0]])
    res = arbitrate(alpha, cost, np.array([1, 1]), np.array([0.0, 0.0]))
    assert res.best.tolist() == [0, -1]  # ties go to the shortest horizon; no finite score: -1
    assert math.isnan(res.best_score[1]) and not res.passes[1] and res.direction[1] == 0
    close(select_horizon(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1, -1])), [3.0, NAN])


def worked_costs(alpha_bps: float):
    """Per-horizon alpha, sigma_h, cost of the worked example: spread 2 bps, vol 5 bps/bar, ADV 1e8, PV 1e5."""
    bars = np.array([1, 4])  # 5m and 20m with 5-minute bars
    vol, adv, pv, spread = np.array([0.0005] * 3), np.array([1e8] * 3), 1e5, np.array([2.0] * 3)
    alpha = np.array([[alpha_bps, 0.1, -alpha_bps]] * 2)
    sigma = horizon_sigma(vol, bars)
    q = planned_order_dollars(alpha, sigma, np.zeros(3), pv, 0.05, 3.0)
    cost = trading_cost_bps(spread, sigma, impact_bps(q, adv))
    return bars, alpha, sigma, q, cost, spread


def test_worked_example_costs_and_arbitration():
    bars, alpha, sigma, q, cost, spread = worked_costs(50.0)
    # sigma_h = 0.0005 * sqrt(1) = 5 bps and 0.0005 * sqrt(4) = 10 bps.
    close(sigma[:, 0] * 1e4, [5.0, 10.0])
    # alpha 50: z = 50/5 = 10 -> 3 and 50/10 = 5 -> 3, so w = 3 * 0.05/3 = 0.05 and q = 0.05 * 1e5 = 5000 $
    # on both horizons; impact = 10 * sqrt((5000/1e8)/0.01) = 10 * sqrt(0.005) = 0.70711 bps.
    # cost_5m = 1*2 + 0.15*5 + 0.70711 = 3.45711; cost_20m = 2 + 0.15*10 + 0.70711 = 4.20711.
    np.testing.assert_allclose(q[:, 0], [5000.0, 5000.0], rtol=1e-12)
    np.testing.assert_allclose(cost[:, 0], [3.45711, 4.20711], atol=1e-5)
    # alpha 0.1: z = 0.02 and 0.01, w = 3.333e-4 and 1.667e-4, q = 33.33 $ and 16.67 $,
    # impact = 10*sqrt(3.333e-5) = 0.05774 and 10*sqrt(1.667e-5) = 0.04082,
    # cost = 2 + 0.75 + 0.05774 = 2.80774 and 2 + 1.5 + 0.04082 = 3.54082.
    np.testing.assert_allclose(cost[:, 1], [2.80774, 3.54082], atol=1e-5)
    np.testing.assert_allclose(cost[:, 2], cost[:, 0], rtol=1e-15)  # a short costs the same as a long

    res = arbitrate(alpha, cost, bars, spread)
    # net = 50 - cost: 46.54289 and 45.79289; score = net / sqrt(bars/1): 46.54289 and 45.79289/2 = 22.89645.
    # The 5m horizon wins with 46.54 >= theta = 2 + 0.5*2 = 3: a long.
    np.testing.assert_allclose(res.score[:, 0], [46.54289, 22.89645], atol=1e-5)
    close(res.threshold, [3.0, 3.0, 3.0])
    assert (res.best[0], bool(res.passes[0]), int(res.direction[0])) == (0, True, 1)
    # alpha 0.1: net = -2.70774 and -3.44082; scores -2.70774 and -1.72041, so the 20m horizon is
    # "best" but far below theta = 3: no trade.
    np.testing.assert_allclose(res.score[:, 1], [-2.70774, -1.72041], atol=1e-5)
    assert (res.best[1], bool(res.passes[1])) == (1, False)
    # alpha -50: identical numbers, direction -1: shorts are reachable.
    assert (res.best[2], bool(res.passes[2]), int(res.direction[2])) == (0, True, -1)
    close(res.best_score[2], res.best_score[0])


def test_worked_example_end_to_end_long_and_short():
    bars, alpha, sigma, q, cost, spread = worked_costs(50.0)
    arb = arbitrate(alpha, cost, bars, spread)
    a = select_horizon(alpha, arb.best)
    gate = barrier_gate(np.full(3, NAN), np.full(3, NAN), arb.direction, np.zeros(3), a)
    # No barrier model: the fallback 0.3/0.3 gives g = 0.7 * sqrt(0.65) = 0.56436 for long and short alike.
    np.testing.assert_allclose(gate.gate, [0.56436] * 3, atol=1e-5)
    assert gate.used_fallback.all() and not gate.entry_blocked.any() and not gate.exit.any()
    size = target_weights(a, select_horizon(sigma, arb.best) * 1e4, gate.gate, np.zeros(3),
                          arb.passes & ~gate.entry_blocked, gate.exit)
    # z = clip(50/5) = 3, w = 3 * 0.05/3 * 0.56436 = 0.028218 (> band 0.008, gross 0.0564 < 0.5).
    np.testing.assert_allclose(size.target, [0.028218, 0.0, -0.028218], atol=1e-6)
    assert size.gross_scale == 1.0 and size.reason.tolist() == ["", "", ""]
    risk = trade_risk_checks(size.target, np.zeros(3))
    assert risk.allowed.all()
    # 0.028218 * 1e5 / 100 $ = 28.2 shares -> 28 bought and 28 sold short.
    assert order_shares(risk.final_target, np.zeros(3), 1e5, np.full(3, 100.0)).tolist() == [28, 0, -28]


# ============================================================================ barrier gate

GATE_PARAMS = st.fixed_dictionaries({
    "g_min": st.sampled_from([0.0, 0.2, 0.5]),
    "gamma": st.sampled_from([0.0, 1.0, 2.0]),
    "delta": st.sampled_from([0.0, 0.5, 1.0]),
    "missing": st.sampled_from(["fallback", "neutral"]),
    "fallback_p_peak": st.sampled_from([0.3, 0.7]),
    "fallback_p_valley": st.sampled_from([0.3, 0.7]),
})


@SETTINGS
@given(data=st.data(), params=GATE_PARAMS)
def test_barrier_gate_matches_reference(data, params):
    n = data.draw(st.integers(1, 10))
    # Probabilities around every threshold, slightly outside [0, 1], and NaN.
    prob = num(-0.05, 1.05, 0.55, 0.6, 0.65, 0.3)
    pp, pv = data.draw(vec(prob, n)), data.draw(vec(prob, n))
    direction = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)), dtype=np.int8)
    position = data.draw(vec(st.sampled_from([-0.1, 0.0, 0.05, NAN]), n))
    alpha = data.draw(vec(num(-50.0, 50.0), n))
    res = barrier_gate(pp, pv, direction, position, alpha, **params)
    for i in range(n):
        gate, blocked, exit_, reason, fallback = ref.barrier_symbol(
            pp[i], pv[i], int(direction[i]), position[i], alpha[i],
            g_min=params["g_min"], gamma=params["gamma"], delta=params["delta"], missing=params["missing"],
            fb_peak=params["fallback_p_peak"], fb_valley=params["fallback_p_valley"])
        close(res.gate[i], gate)
        assert (res.entry_blocked[i], res.exit[i], res.reason[i], res.used_fallback[i]) == (blocked, exit_, reason, fallback)
    assert np.all((res.gate >= params["g_min"]) & (res.gate <= 1.0))


def test_barrier_gate_worked_values():
    # A long's adverse barrier is the lower one: p_valley shrinks and blocks it, p_peak helps it.
    pp, pv = np.array([0.3, 0.0, 0.0, 0.8]), np.array([0.3, 0.5, 0.9, 0.1])
    longs = barrier_gate(pp, pv, np.ones(4, np.int8), np.zeros(4), np.zeros(4))
    # 0.7 * sqrt(0.65) = 0.564; 0.5 * sqrt(0.5) = 0.354; 0.1 * sqrt(0.5) = 0.071 -> floor 0.2;
    # likely to touch the upper barrier first: 0.9 * sqrt(0.9) = 0.854.
    np.testing.assert_allclose(longs.gate, [0.564, 0.354, 0.2, 0.854], atol=5e-4)
    assert longs.entry_blocked.tolist() == [False, False, True, False]
    assert longs.reason.tolist() == ["", "", "barrier_blocks_long", ""]
    # Shorts mirror: swapping p_peak and p_valley gives the same gates.
    shorts = barrier_gate(pv, pp, -np.ones(4, np.int8), np.zeros(4), np.zeros(4))
    close(shorts.gate, longs.gate)
    assert shorts.reason.tolist() == ["", "", "barrier_blocks_short", ""]
    # Direction 0 uses the long formula and blocks nothing.
    none = barrier_gate(pp, pv, np.zeros(4, np.int8), np.zeros(4), np.zeros(4))
    close(none.gate, longs.gate)
    assert not none.entry_blocked.any()


def test_barrier_gate_exits_and_missing_models():
    pp = np.array([0.1, 0.1, 0.7, 0.1, 0.1, NAN, NAN])  # a long exits on p_valley, a short on p_peak
    pv = np.array([0.7, 0.1, 0.1, 0.1, 0.1, NAN, NAN])
    pos = np.array([1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
    alpha = np.array([5.0, -1.0, -5.0, 2.0, NAN, -3.0, 4.0])
    res = barrier_gate(pp, pv, np.zeros(7, np.int8), pos, alpha)
    assert res.reason.tolist() == ["exit_long_barrier", "exit_long_alpha", "exit_short_barrier",
                                   "exit_short_alpha", "", "exit_long_alpha", "exit_short_alpha"]
    assert res.exit.tolist() == [True, True, True, True, False, True, True]  # NaN alpha never exits
    assert res.used_fallback.tolist() == [False] * 5 + [True] * 2

    # 'neutral': a missing model gives g = 1, never blocks or exits on barriers; alpha exits still apply.
    pp, pv = np.array([NAN, 0.2, NAN]), np.array([NAN, NAN, 0.9])
    res = barrier_gate(pp, pv, np.array([1, -1, -1], np.int8), np.array([1.0, -1.0, 0.0]),
                       np.array([-1.0, 1.0, 0.0]), missing="neutral", exit_long_p_valley=0.0)
    close(res.gate, [1.0, 1.0, 1.0])
    assert res.reason.tolist() == ["exit_long_alpha", "exit_short_alpha", ""]
    assert not res.entry_blocked.any() and not res.used_fallback.any()
    # 'fallback' with a high stand-in blocks: the fallback really is used.
    res = barrier_gate(np.array([NAN]), np.array([NAN]), np.array([1], np.int8), np.zeros(1), np.zeros(1),
                       fallback_p_valley=0.8)
    assert res.entry_blocked.tolist() == [True] and res.used_fallback.tolist() == [True]
    with pytest.raises(ValueError, match="missing"):
        barrier_gate(pp, pv, np.zeros(3), np.zeros(3), np.zeros(3), missing="ignore")


# ============================================================================ sizing

SIZE_PARAMS = st.fixed_dictionaries({
    "max_weight": st.floats(0.01, 0.1),
    "z_max": st.floats(1.0, 5.0),
    "weight_cap": st.floats(0.03, 0.3),
    "no_trade_band": st.sampled_from([0.0, 0.002, 0.008, 0.02]),
    "gross_target": st.floats(0.05, 1.0),
})


@st.composite
def book(draw, cap: float = 0.3):
    n = draw(st.integers(1, 12))
    bools = st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)
    return dict(
        alpha_bps=draw(vec(num(-300.0, 300.0, math.inf), n)),
        sigma_h_bps=draw(vec(num(0.0, 100.0), n)),
        gate=draw(vec(st.floats(0.2, 1.0), n)),
        current_weight=draw(vec(st.one_of(st.just(0.0), st.floats(-cap, cap)), n)),
        enter=draw(bools),
        exit=draw(bools),
    )


@SETTINGS
@given(b=book(), params=SIZE_PARAMS)
def test_target_weights_matches_reference(b, params):
    res = target_weights(**b, **params)
    targets, zs, raws, reasons, scale = ref.target_weights(
        *(b[k].tolist() for k in ("alpha_bps", "sigma_h_bps", "gate", "current_weight", "enter", "exit")),
        params["max_weight"], params["z_max"], params["weight_cap"], params["no_trade_band"], params["gross_target"])
    close(res.target, targets)
    close(res.z, zs)
    close(res.raw_weight, raws)
    assert res.reason.tolist() == reasons
    assert res.gross_scale == pytest.approx(scale, rel=1e-12)


@SETTINGS
@given(data=st.data(), params=SIZE_PARAMS)
def test_target_weights_invariants(data, params):
    b = data.draw(book(cap=params["weight_cap"]))
    res = target_weights(**b, **params)
    cur, enter, exit = b["current_weight"], b["enter"], b["exit"]
    assert np.all(np.abs(res.target) <= params["weight_cap"])
    assert np.all(np.abs(res.z[~np.isnan(res.z)]) <= params["z_max"])
    gross = np.abs(res.target).sum()
    if np.abs(cur).sum() <= params["gross_target"]:  # the band never takes the book beyond its gross target
        assert gross <= params["gross_target"] * (1 + 1e-12)
    np.testing.assert_allclose(res.target[exit], 0.0)
    held = ~enter & ~exit
    moved = res.target != cur
    # A hold trades only under the gross scaling, and then says so.
    assert np.all(res.reason[held & moved] == "gross_scaled")
    if res.gross_scale == 1.0:
        assert np.all(~moved[held]) and gross <= max(params["gross_target"], np.abs(cur).sum())
    # Scaling shrinks: a trading symbol's target lies between 0 and its sized weight.
    capped = np.clip(res.raw_weight, -params["weight_cap"], params["weight_cap"])
    sized = enter & ~exit & np.isfinite(capped) & moved
    assert np.all(res.target[sized] * np.sign(capped[sized]) >= 0)
    assert np.all(np.abs(res.target[sized]) <= np.abs(capped[sized]) * (1 + 1e-12))
    no_alpha = enter & ~exit & ~np.isfinite(res.raw_weight)
    assert np.all((res.reason[no_alpha] == "no_alpha") | (res.reason[no_alpha] == "gross_scaled"))


def test_the_band_holds_once_the_book_is_at_its_gross_target():
    # Five longs of 0.1 each (gross 0.5 = target), every one still wanting the cap 0.3: scaled back, each
    # wants 0.5 * 0.3 / 1.5 = 0.1, its current weight: nothing trades. Testing the band before the scaling
    # (0.3 against 0.1) would re-trade all five every cycle.
    cur = np.full(5, 0.1)
    res = target_weights(np.full(5, 90.0), np.full(5, 10.0), np.ones(5), cur, np.ones(5, bool), np.zeros(5, bool),
                         max_weight=0.3, z_max=3.0, weight_cap=0.3, gross_target=0.5)
    close(res.target, cur)
    assert res.reason.tolist() == ["within_no_trade_band"] * 5
    # A sixth symbol enters at 0.3: scaled by 0.5/1.8, all six want 0.08333, the five 0.01667 from their
    # 0.1 (beyond the band): all six trade to 0.08333 and the gross stays 0.5.
    cur6 = np.r_[cur, 0.0]
    res = target_weights(np.full(6, 90.0), np.full(6, 10.0), np.ones(6), cur6, np.ones(6, bool), np.zeros(6, bool),
                         max_weight=0.3, z_max=3.0, weight_cap=0.3, gross_target=0.5)
    close(res.target, np.full(6, 0.5 / 6))
    assert res.gross_scale == pytest.approx(0.5 / 1.8)


def test_target_weights_worked_example():
    alpha = np.array([60.0, 60.0, -60.0, 10.0, NAN, 60.0, 60.0])
    sigma = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    cur = np.array([0.0, 0.025, 0.0, 0.0, 0.02, 0.03, 0.004])
    enter = np.array([True, True, True, True, True, False, False])
    exit = np.array([False, False, False, False, False, False, True])
    res = target_weights(alpha, sigma, np.ones(7), cur, enter, exit, max_weight=0.05, z_max=3.0,
                         weight_cap=0.03, gross_target=0.5)
    # z = 60/10 = 6 -> 3 -> w = 3 * 0.05/3 = 0.05, capped at 0.03; the second symbol's 0.03 vs its
    # current 0.025 is within the band (0.005 < 0.008);
    # the short mirrors; z = 1 -> w = 0.016667; NaN alpha keeps 0.02; a hold keeps 0.03; a small
    # position (0.004, inside the band) still exits to 0.
    close(res.z[:4], [3.0, 3.0, -3.0, 1.0])
    close(res.target, [0.03, 0.025, -0.03, 0.05 / 3, 0.02, 0.03, 0.0])
    assert res.reason.tolist() == ["weight_capped", "within_no_trade_band", "weight_capped", "", "no_alpha", "", ""]
    # Gross target 0.1: the wanted weights 0.03, 0.03, -0.03, 1/60, 0.02 (kept), 0.03 (hold), 0 sum to
    # 47/300 and scale by 30/47 to 0.019149, 0.019149, -0.019149, 0.010638, 0.012766, 0.019149.
    # Within the band of their current weight: the second (0.005851 from 0.025) and the fifth
    # (0.007234 from 0.02), which keep it; the hold moves 0.010851 and trades. The traders share
    # 0.1 - 0.045 = 0.055 of gross: their 3.2/47 scale once more by 0.055 * 47 / 3.2, in all
    # 30/47 * 0.055 * 47 / 3.2 = 0.515625 of their wanted weights.
    res = target_weights(alpha, sigma, np.ones(7), cur, enter, exit, weight_cap=0.03, gross_target=0.1)
    assert res.gross_scale == pytest.approx(0.515625, rel=1e-12)
    close(res.target, [0.01546875, 0.025, -0.01546875, 0.00859375, 0.02, 0.01546875, 0.0])
    close(np.abs(res.target).sum(), 0.1)
    assert res.reason.tolist() == ["weight_capped", "within_no_trade_band", "weight_capped", "", "no_alpha",
                                   "gross_scaled", ""]
    with pytest.raises(ValueError, match="current_weight"):
        target_weights(alpha, sigma, np.ones(7), np.full(7, NAN), enter, exit)


@SETTINGS
@given(data=st.data(), pv=st.floats(1e3, 1e7))
def test_order_shares_matches_reference_and_bounds(data, pv):
    n = data.draw(st.integers(1, 10))
    target = data.draw(vec(st.floats(-0.3, 0.3), n))
    cur = data.draw(vec(st.floats(-0.3, 0.3), n))
    price = data.draw(vec(num(-1.0, 5000.0, 0.01), n))
    shares = order_shares(target, cur, pv, price)
    assert shares.dtype == np.int64
    tl, cl, pl = target.tolist(), cur.tolist(), price.tolist()
    assert shares.tolist() == [ref.order_shares(tl[i], cl[i], pv, pl[i]) for i in range(n)]
    ok = price > 0
    dollars = (target - cur) * pv
    assert np.all(shares[~ok] == 0)
    assert np.all((shares[ok] == 0) | (np.sign(shares[ok]) == np.sign(dollars[ok])))
    assert np.all(np.abs(shares[ok] * price[ok]) <= np.abs(dollars[ok]) * (1 + 1e-12))
    fits = ok & (np.abs(dollars) < 2.0**62 * np.where(ok, price, 0.0))  # not an absurd count (then 0)
    assert np.all(np.abs(dollars[fits]) - np.abs(shares[fits] * price[fits]) < price[fits] * (1 + 1e-9))  # within one share


def test_order_shares_truncates_toward_zero():
    # +0.0296 * 1e5 / 100 = 29.6 -> 29; -0.0296 -> -29 (not -30).
    assert order_shares(np.array([0.0296, -0.0296, 0.01]), np.zeros(3), 1e5, np.array([100.0, 100.0, NAN])).tolist() == [29, -29, 0]


# ============================================================================ risk checks


@SETTINGS
@given(data=st.data(), halted=st.booleans(), max_pos=st.floats(0.05, 0.3), max_gross=st.floats(0.1, 1.5))
def test_trade_risk_checks_matches_reference(data, halted, max_pos, max_gross):
    n = data.draw(st.integers(1, 12))
    w = st.one_of(st.just(0.0), st.floats(-0.4, 0.4))
    target, cur = data.draw(vec(w, n)), data.draw(vec(w, n))
    res = trade_risk_checks(target, cur, max_pos, max_gross, halted)
    allowed, reasons, final = ref.trade_risk_checks(target.tolist(), cur.tolist(), max_pos, max_gross, halted)
    assert res.allowed.tolist() == allowed and res.reason.tolist() == reasons
    close(res.final_target, final)
    # Invariants: risk-reducing changes always pass; what passes respects the limits.
    reducing = (np.abs(target) <= np.abs(cur)) & (np.sign(target) * np.sign(cur) >= 0)
    assert res.allowed[reducing].all()
    increased = res.allowed & ~reducing & (res.final_target == target)  # passed whole
    assert not (halted and increased.any())
    assert np.all(np.abs(res.final_target[increased]) <= max_pos)
    if increased.any():
        assert res.gross_after <= max_gross + 1e-12
    np.testing.assert_array_equal(res.final_target[~res.allowed], cur[~res.allowed])
    # a flip that did not pass whole was cut to a close; nothing ends further from flat than it asked
    flip = np.sign(target) * np.sign(cur) < 0
    assert np.all(res.final_target[flip & ~increased] == 0.0) and res.allowed[flip].all()
    assert np.all(np.abs(res.final_target) <= np.maximum(np.abs(target), np.abs(cur)))


def test_trade_risk_checks_worked_example():
    cur = np.array([0.10, 0.10, 0.00, 0.10, 0.15])
    target = np.array([0.05, -0.05, 0.25, 0.15, 0.15])
    # Not halted: trim (reducing) ok, flip ok, 0.25 > 0.20 blocked, increase ok, no change ok.
    res = trade_risk_checks(target, cur)
    assert res.reason.tolist() == ["", "", "position_limit", "", ""]
    close(res.final_target, [0.05, -0.05, 0.0, 0.15, 0.15])
    close(res.gross_after, 0.40)
    # Halted: the trim (towards zero, same side) and the no-change pass; the flip is risk-increasing,
    # so only its close is sent (0.10 -> 0), and the increases keep their weights.
    res = trade_risk_checks(target, cur, halted=True)
    assert res.allowed.tolist() == [True, True, False, False, True]
    assert res.reason.tolist() == ["", "kill_switch_active", "kill_switch_active", "kill_switch_active", ""]
    close(res.final_target, [0.05, 0.0, 0.0, 0.10, 0.15])
    # Gross limit 0.4: the allowed book would be 0.05+0.05+0+0.15+0.15 = 0.40 <= 0.40 (passes),
    # with limit 0.35 the increases (flip and 0.10 -> 0.15) are blocked while the trim still passes;
    # the flip is cut to a close.
    assert trade_risk_checks(target, cur, max_gross_exposure=0.40).allowed.tolist() == [True, True, False, True, True]
    res = trade_risk_checks(target, cur, max_gross_exposure=0.35)
    assert res.reason.tolist() == ["", "gross_limit", "position_limit", "gross_limit", ""]
    close(res.final_target, [0.05, 0.0, 0.0, 0.10, 0.15])
    close(res.gross_after, 0.30)
    with pytest.raises(ValueError, match="finite"):
        trade_risk_checks(np.array([NAN]), np.array([0.0]))


@SETTINGS
@given(pv=st.floats(-1e5, 2e5), sod=st.floats(1e3, 2e5), hwm=st.floats(1e3, 2e5),
       loss=st.floats(0.005, 0.2), dd=st.floats(0.01, 0.5))
def test_portfolio_risk_matches_reference(pv, sod, hwm, loss, dd):
    res = portfolio_risk(pv, sod, hwm, 1.0, 0.5, loss, dd)
    pnl, ret, drawdown, breach, reason = ref.portfolio_risk(pv, sod, hwm, loss, dd)
    close([res.daily_pnl, res.daily_return, res.drawdown], [pnl, ret, drawdown])
    assert (res.breach, res.reason) == (breach, reason)
    assert res.drawdown >= 0.0
    assert (res.detail != "") == breach


def test_portfolio_risk_worked_examples():
    # 97 690 against 100 000 at the start of the day: -2.31 % beyond -2 %.
    res = portfolio_risk(97_690.0, 100_000.0, 100_000.0, 50_000.0, -10_000.0)
    assert res.breach and res.reason == "daily_loss_limit"
    assert res.detail == "daily loss -2.31% beyond limit -2.00%"
    close([res.daily_pnl, res.drawdown, res.gross_exposure, res.net_exposure], [-2310.0, 0.0231, 50_000 / 97_690, -10_000 / 97_690])
    # Exactly at the limit is not a breach; a drawdown of 12 % from 110 000 is (97 000 / 110 000 = 0.88182).
    assert not portfolio_risk(98_000.0, 100_000.0, 100_000.0, 0.0, 0.0).breach
    res = portfolio_risk(96_800.0, 97_000.0, 110_000.0, 0.0, 0.0)
    assert res.reason == "drawdown_limit" and res.detail == "drawdown 12.00% beyond limit 10.00%"
    # Above the high-water mark there is no drawdown.
    assert portfolio_risk(120_000.0, 100_000.0, 110_000.0, 0.0, 0.0).drawdown == 0.0
    with pytest.raises(ValueError, match="start_of_day_value"):
        portfolio_risk(1.0, 0.0, 1.0, 0.0, 0.0)


def test_a_trade_reason_names_what_it_does_to_the_position():
    from foxlive_core.pipeline.reasons import trade_reason

    q_old = np.array([0, 0, 100, 100, 100, -50, -50, 100, -50, 100, 40, 7])
    q_new = np.array([30, -30, 150, 60, 0, -80, 20, -20, 0, 80, 40, 5])
    exit_rule = np.array(["", "", "", "", "exit_long_alpha", "", "", "", "exit_short_barrier", "", "", ""], dtype=object)
    entering = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    scaled = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    assert trade_reason(q_old, q_new, exit_rule, entering, scaled).tolist() == [
        "enter_long", "enter_short", "increase_long", "reduce_long", "exit_long_alpha", "increase_short",
        "flip_to_long", "flip_to_short", "exit_short_barrier", "reduce_long_gross_scaled", "", "reduce_long",
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-500, 500), st.integers(-500, 500)), min_size=1, max_size=40))
def test_a_trade_action_agrees_with_the_signs_and_sizes_of_the_position(pairs):
    from foxlive_core.pipeline.reasons import trade_action

    q_old, q_new = np.array(pairs).T
    for a, b, action in zip(q_old, q_new, trade_action(q_old, q_new)):
        if a == b:
            assert action == ""
        elif a == 0:
            assert action == ("enter_long" if b > 0 else "enter_short")
        elif b == 0:
            assert action == ("exit_long" if a > 0 else "exit_short")
        elif (a > 0) != (b > 0):
            assert action == ("flip_to_long" if b > 0 else "flip_to_short")
        else:
            side = "long" if a > 0 else "short"
            assert action == (f"increase_{side}" if abs(b) > abs(a) else f"reduce_{side}")
