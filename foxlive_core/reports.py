"""One report of a book: return, risk, costs, trades and signal, from what the state store keeps.

Every figure a person reads about a book's performance comes from
:func:`build_report` (the CLI's ``report``, ``replay`` and ``demo``, the
signal-capture harness, the Dagster end-of-day report), so no two places work
out P&L or turnover differently.

Returns
    One return per cycle: r_t = V_t / V_{t-1} - 1 on the portfolio value after
    each cycle, V_0 the value before the first reported cycle (the starting
    cash for a whole book). A cycle is one bar, so returns are per bar, and the
    overnight move sits in a session's first bar.
Annualising
    ``periods_per_year`` bars a year: sessions a year (252 on an exchange
    calendar, 260 on 24/5, 365 on 24/7) x bars per regular session
    (:func:`bars_per_year`). Sharpe = mean / std (ddof 1) x sqrt(periods);
    Sortino = mean x periods / (sqrt(mean(min(r, 0)^2)) x sqrt(periods)); the
    annual return compounds the total over n / periods years; the Sharpe ratio's
    standard error is Lo's (2002) iid one, sqrt((1 + SR_bar^2 / 2) / n) x
    sqrt(periods). A month of 5-minute bars is 1,638 returns and 0.083 years:
    the report says both, so a large annualised Sharpe of a small, steady loss
    reads as what it is.
Drawdown
    1 - V_t / max_{s<=t} V_s over V_0..V_n; its duration runs from the last bar
    at the peak before the deepest trough to the first bar back at the peak,
    or to the last bar if the book has not recovered.
Turnover
    Traded notional (buys plus sells) over the mean portfolio value; also per year.
Costs
    Per fill of q shares, side s (+1 buy, -1 sell), at price p, against the
    quote the cycle decided on (mid m, bid, ask; the paper broker fills at
    ask x (1 + slippage) or bid x (1 - slippage)): spread = s (touch - m) q,
    the half-spread paid at the touch (ask for a buy, bid for a sell);
    slippage = s (p - touch) q, the rest of what the fill paid against the mid;
    fees as charged. Impact is 0: the paper broker fills at the displayed quote
    whatever the size (up to its share of the displayed size), so no price
    moves against the book. The mid is stored exactly; bid and ask to 7
    significant digits, so spread + slippage equals the fill against the mid
    exactly, and the split between them to within about 1e-7 of the notional.
Trades
    An average-cost ledger of the fills, in time order, from the book's first
    fill (so positions opened before a reported window keep their entry price):
    an entry opens, adds to or flips into a position; an exit reduces, closes or
    flips out of one. The hit rate is the share of exits whose P&L on the
    average entry price is positive (fill prices, so after spread and slippage;
    before fees).
Signal
    How often each horizon was ranked best by the arbitration (the highest
    cost-adjusted score, whether or not it cleared the threshold; every
    decision) and traded (executed trades chosen at it); the realised rank IC per horizon and family
    with its t-statistic on non-overlapping times and the stage-by-stage
    attribution, both from the book's stored signal attribution
    (:mod:`foxlive_core.attribution`) when a replay left one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from foxlive_core.attribution import render as render_attribution
from foxlive_core.config import MarketConfig, bars_per_session
from foxlive_core.errors import StateError

SESSIONS_PER_YEAR = {"24/7": 365, "24/5": 260}
EXCHANGE_SESSIONS_PER_YEAR = 252
IMPACT_NOTE = "the paper broker fills at the displayed quote: no market impact"
HIT_RATE_BASIS = "exits with a positive P&L on the average entry price (fill prices, before fees)"


def bars_per_year(market: MarketConfig) -> float:
    """Bars in a year of ``market``'s calendar: sessions a year x bars per regular session."""
    return float(SESSIONS_PER_YEAR.get(market.calendar, EXCHANGE_SESSIONS_PER_YEAR) * bars_per_session(market))


# ---------------------------------------------------------------------- return and risk


def period_returns(values, starting_value: float) -> np.ndarray:
    """Simple returns of (n,) portfolio values after ``starting_value``: (n,)."""
    v = np.r_[float(starting_value), np.asarray(values, dtype=np.float64)]
    return v[1:] / v[:-1] - 1.0


def sharpe_ratio(returns, periods_per_year: float) -> float | None:
    """Annualised mean over std (ddof 1) of (n,) per-period returns; None for n < 2 or no dispersion."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    sd = r.std(ddof=1)
    return float(r.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else None


def sharpe_standard_error(sharpe: float | None, n: int, periods_per_year: float) -> float | None:
    """Lo's iid standard error of an annualised Sharpe ratio resting on ``n`` periods."""
    if sharpe is None or n < 2:
        return None
    per_period = sharpe / np.sqrt(periods_per_year)
    return float(np.sqrt((1.0 + 0.5 * per_period**2) / n) * np.sqrt(periods_per_year))


def sortino_ratio(returns, periods_per_year: float) -> float | None:
    """Annualised mean over the downside deviation (target 0) of (n,) returns; None without a losing period."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    downside = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    return float(r.mean() * periods_per_year / (downside * np.sqrt(periods_per_year))) if downside > 0 else None


def annual_return(total_return: float, n: int, periods_per_year: float) -> float | None:
    """``total_return`` over ``n`` periods, compounded to a year; None without periods or beyond a float
    (a few bars of large gains compounded over a year of bars)."""
    if n < 1:
        return None
    with np.errstate(over="ignore"):
        value = np.float64(1.0 + total_return) ** (periods_per_year / n) - 1.0
    return float(value) if np.isfinite(value) else None


@dataclass(frozen=True)
class Drawdown:
    """The deepest drawdown of a value series V_0..V_n (indices into it).

    ``depth`` is 1 - trough / peak; ``peak`` the last index at the peak before
    the trough, ``trough`` the index of the deepest point, ``recovery`` the
    first index back at or above the peak (None if never); ``bars`` from the
    peak to the recovery, or to the last index. All 0 / None without a drawdown.
    """

    series: np.ndarray  # (n + 1,) 1 - V_t / running max
    depth: float
    peak: int | None
    trough: int | None
    recovery: int | None
    bars: int


def drawdown(values) -> Drawdown:
    """The drawdown series of (n + 1,) values and its deepest episode (see :class:`Drawdown`)."""
    v = np.asarray(values, dtype=np.float64)
    running = np.maximum.accumulate(v)
    series = 1.0 - v / running
    trough = int(np.argmax(series))
    depth = float(series[trough])
    if depth <= 0:
        return Drawdown(series, 0.0, None, None, None, 0)
    peak_value = running[trough]
    peak = int(np.flatnonzero(v[: trough + 1] >= peak_value)[-1])
    back = np.flatnonzero(v[trough:] >= peak_value)
    recovery = trough + int(back[0]) if len(back) else None
    return Drawdown(series, depth, peak, trough, recovery, (recovery if recovery is not None else len(v) - 1) - peak)


# ---------------------------------------------------------------------- costs and trades


def fill_costs(side, quantity, price, mid, bid, ask, fee) -> dict:
    """Dollars paid by (k,) fills against the mid, split as in the module doc.

    Parameters
    ----------
    side : (k,) +1 buy, -1 sell
    quantity : (k,) shares filled (> 0)
    price : (k,) fill prices
    mid, bid, ask : (k,) the quote the cycle decided on (NaN where not recorded)
    fee : (k,) fees charged, dollars

    Returns
    -------
    dict: spread, slippage, impact, fees, total (dollars), fills_without_quote
    (fills whose quote was not recorded: their fees count, their spread and
    slippage cannot be split).
    """
    side, q, p, m, b, a, fee = (np.asarray(x, dtype=np.float64) for x in (side, quantity, price, mid, bid, ask, fee))
    touch = np.where(side > 0, a, b)
    known = np.isfinite(m) & np.isfinite(touch)
    spread = float(np.sum((side * (touch - m) * q)[known]))
    against_mid = float(np.sum((side * (p - m) * q)[known]))
    fees = float(fee.sum())
    return {"spread": spread, "slippage": against_mid - spread, "impact": 0.0, "fees": fees,
            "total": against_mid + fees, "fills_without_quote": int((~known).sum())}


def trade_outcomes(symbol, signed_quantity, price, counted) -> dict:
    """Entries, exits and hits per side of (k,) fills in time order, through an average-cost ledger.

    Parameters
    ----------
    symbol : (k,) symbol of each fill
    signed_quantity : (k,) shares, + bought, - sold
    price : (k,) fill prices
    counted : (k,) bool, fills inside the reported window (the others only set positions and entry prices)

    Returns
    -------
    dict: ``long`` and ``short`` each with entries, exits, hits, hit_rate (None without exits) and
    realised_pnl (dollars, before fees); ``open_long`` and ``open_short``, the positions left open.
    """
    sides = {1: {"entries": 0, "exits": 0, "hits": 0, "realised_pnl": 0.0},
             -1: {"entries": 0, "exits": 0, "hits": 0, "realised_pnl": 0.0}}
    book: dict[str, tuple[int, float]] = {}
    # A ledger is a scan: each fill's entry price depends on every earlier fill of its symbol.
    for s, dq, p, c in zip(symbol, np.asarray(signed_quantity, dtype=np.int64).tolist(),
                           np.asarray(price, dtype=np.float64).tolist(), np.asarray(counted, dtype=bool).tolist()):
        q, avg = book.get(s, (0, 0.0))
        new = q + dq
        if q != 0 and (q > 0) != (dq > 0):
            held = 1 if q > 0 else -1
            pnl = (p - avg) * min(abs(dq), abs(q)) * held
            if c:
                sides[held]["exits"] += 1
                sides[held]["hits"] += int(pnl > 0)
                sides[held]["realised_pnl"] += pnl
            if new == 0:
                avg = 0.0
            elif (new > 0) != (q > 0):
                avg = p
                if c:
                    sides[-held]["entries"] += 1
        else:
            if c:
                sides[1 if dq > 0 else -1]["entries"] += 1
            avg = (abs(q) * avg + abs(dq) * p) / abs(new)
        book[s] = (new, avg)
    for d in sides.values():
        d["hit_rate"] = d["hits"] / d["exits"] if d["exits"] else None
    return {"long": sides[1], "short": sides[-1],
            "open_long": sum(1 for q, _ in book.values() if q > 0),
            "open_short": sum(1 for q, _ in book.values() if q < 0)}


# ---------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Report:
    """A book's figures over a run of its cycles (see the module doc for every definition).

    Money in dollars; returns, drawdown, volatility and exposure as fractions;
    times in UTC. None means "n/a" (too few periods, no losing period, no
    exits, no attribution). ``equity`` (time, value, drawdown per cycle) is for
    the plots and is left out of the JSON.
    """

    book: str
    bar_interval: str
    periods_per_year: float
    periods: int
    first_cycle: pd.Timestamp
    last_cycle: pd.Timestamp
    starting_value: float
    final_value: float
    pnl: float
    total_return: float
    annual_return: float | None
    annual_volatility: float | None
    sharpe: float | None
    sharpe_se: float | None
    sortino: float | None
    max_drawdown: float
    max_drawdown_peak: pd.Timestamp | None  # None: the peak is the starting value
    max_drawdown_trough: pd.Timestamp | None
    max_drawdown_recovered: pd.Timestamp | None
    max_drawdown_bars: int
    mean_gross_exposure: float
    traded_notional: float
    turnover: float
    turnover_annual: float | None
    costs: dict
    orders: int
    fills: int
    rejected: int
    decisions: dict
    trades: dict
    horizons: list
    realised_ic: list
    halted: bool
    equity: pd.DataFrame = field(repr=False, compare=False)
    attribution: dict | None = None

    @property
    def years(self) -> float:
        return self.periods / self.periods_per_year

    def summary(self) -> dict:
        """The report as plain JSON values (times ISO 8601, None for n/a), without the equity series."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name != "equity":
                out[f.name] = _plain(getattr(self, f.name))
        out["years"] = self.years
        return out


def _plain(x):
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def build_report(cycles: pd.DataFrame, orders: pd.DataFrame, decisions: pd.DataFrame, *, starting_value: float,
                 bar_interval: str, periods_per_year: float, horizons, book: str = "",
                 attribution: dict | None = None) -> Report:
    """The report of the cycles in ``cycles``.

    Parameters
    ----------
    cycles : the reported cycles in time order (rows of :meth:`StateStore.cycles`): cycle_time,
        portfolio_value, gross_exposure, n_trade, n_hold, n_blocked, halted
    orders : the book's orders up to the last reported cycle (rows of :meth:`StateStore.orders`):
        cycle_time, symbol, side, filled_quantity, price, fee; those before the first reported cycle
        only set the ledger's positions
    decisions : the reported cycles' decisions (:meth:`StateStore.decisions`): cycle_time, symbol,
        decision, horizon, shares, price, bid, ask
    starting_value : portfolio value before the first reported cycle
    bar_interval : the bar ('5m', '1d', ...), as the report states it
    periods_per_year : bars a year (:func:`bars_per_year`)
    horizons : horizon names, in order
    attribution : the book's signal attribution report (:meth:`SignalAttribution.report`), if any
    """
    if len(cycles) == 0:
        raise StateError(f"book {book!r} has no cycles to report; run or replay cycles first")
    times = pd.DatetimeIndex(cycles["cycle_time"])
    first, last = times[0], times[-1]
    values = cycles["portfolio_value"].to_numpy(dtype=np.float64)
    rets = period_returns(values, starting_value)
    n = len(rets)
    total = float(values[-1] / starting_value - 1.0)
    sharpe = sharpe_ratio(rets, periods_per_year)
    dd = drawdown(np.r_[starting_value, values])

    def at(i):  # index into V_0..V_n -> the cycle's time (None for V_0, the value before the first cycle)
        return None if i is None or i == 0 else times[i - 1]

    order_time = pd.to_datetime(orders["cycle_time"], utc=True)
    filled = orders[(orders["filled_quantity"] > 0) & (order_time <= last)]
    fill_time = pd.to_datetime(filled["cycle_time"], utc=True)
    in_window = (fill_time >= first).to_numpy()
    side = np.where(filled["side"].to_numpy() == "buy", 1, -1)
    qty = filled["filled_quantity"].to_numpy(dtype=np.int64)
    price = filled["price"].to_numpy(dtype=np.float64)
    window = filled[in_window]
    quote = _quotes_at(fill_time[in_window], window["symbol"], decisions)
    costs = fill_costs(side[in_window], qty[in_window], price[in_window], quote["price"], quote["bid"], quote["ask"],
                       window["fee"].to_numpy(dtype=np.float64))
    notional = float(np.sum(qty[in_window] * price[in_window]))
    costs["bps_of_traded"] = costs["total"] / notional * 1e4 if notional > 0 else None
    costs["impact_note"] = IMPACT_NOTE
    trades = trade_outcomes(filled["symbol"].to_numpy(), side * qty, price, in_window)
    exits = trades["long"]["exits"] + trades["short"]["exits"]
    trades["hit_rate"] = (trades["long"]["hits"] + trades["short"]["hits"]) / exits if exits else None
    trades["hit_rate_basis"] = HIT_RATE_BASIS
    turnover = notional / float(values.mean())
    window_orders = orders[(order_time >= first) & (order_time <= last)]
    return Report(
        book=book, bar_interval=bar_interval, periods_per_year=float(periods_per_year), periods=n,
        first_cycle=first, last_cycle=last, starting_value=float(starting_value), final_value=float(values[-1]),
        pnl=float(values[-1] - starting_value), total_return=total,
        annual_return=annual_return(total, n, periods_per_year),
        annual_volatility=float(rets.std(ddof=1) * np.sqrt(periods_per_year)) if n > 1 else None,
        sharpe=sharpe, sharpe_se=sharpe_standard_error(sharpe, n, periods_per_year),
        sortino=sortino_ratio(rets, periods_per_year),
        max_drawdown=dd.depth, max_drawdown_peak=at(dd.peak), max_drawdown_trough=at(dd.trough),
        max_drawdown_recovered=at(dd.recovery), max_drawdown_bars=dd.bars,
        mean_gross_exposure=float(cycles["gross_exposure"].mean()),
        traded_notional=notional, turnover=turnover, turnover_annual=turnover * periods_per_year / n,
        costs=costs, orders=int(len(window_orders)), fills=int(in_window.sum()),
        rejected=int((window_orders["filled_quantity"] == 0).sum()),
        decisions={"trade": int(cycles["n_trade"].sum()), "hold": int(cycles["n_hold"].sum()),
                   "blocked": int(cycles["n_blocked"].sum())},
        trades=trades, horizons=_horizon_counts(decisions, horizons), realised_ic=_realised_ic(attribution),
        halted=bool(cycles["halted"].iloc[-1]), attribution=attribution,
        equity=pd.DataFrame({"time": times, "value": values, "drawdown": dd.series[1:]}),
    )


def _quotes_at(times, symbols, decisions: pd.DataFrame) -> pd.DataFrame:
    """The (mid) price, bid and ask each (time, symbol) was decided on; NaN where no decision is recorded."""
    keys = pd.DataFrame({"cycle_time": pd.DatetimeIndex(times).as_unit("ns"), "symbol": np.asarray(symbols, dtype=object)})
    if len(decisions) == 0:
        return keys.assign(price=np.nan, bid=np.nan, ask=np.nan)
    quotes = decisions[["cycle_time", "symbol", "price", "bid", "ask"]].assign(
        cycle_time=pd.DatetimeIndex(decisions["cycle_time"]).as_unit("ns"), symbol=decisions["symbol"].astype(object))
    return keys.merge(quotes, on=["cycle_time", "symbol"], how="left")


def _horizon_counts(decisions: pd.DataFrame, horizons) -> list[dict]:
    """Per horizon: decisions where the arbitration ranked it best, and executed trades at it ('' = no horizon)."""
    traded = (decisions["decision"] == "TRADE") & (decisions["shares"] != 0)
    best = decisions["horizon"].value_counts()
    done = decisions.loc[traded, "horizon"].value_counts()
    rows = [{"horizon": h, "best": int(best.get(h, 0)), "traded": int(done.get(h, 0))} for h in horizons]
    rows.append({"horizon": "", "best": int(best.get("", 0)), "traded": int(done.get("", 0))})
    return rows


def _realised_ic(attribution: dict | None) -> list[dict]:
    """The attribution's realised rank IC of each family's raw prediction and of the blend, per horizon."""
    if attribution is None:
        return []
    return [
        {"horizon": r["horizon"], "family": r["family"] or r["stage"], "mean_ic": r["mean_ic"], "t_stat": r["t_stat"],
         "n_independent": r["n_independent"]}
        for r in attribution["stage_ic"] if r["stage"] in ("raw", "blend")
    ]


# ---------------------------------------------------------------------- reading a book


def load_report(cfg, store, book: str, since=None, until=None) -> Report:
    """The report of ``book`` in ``store``: all its cycles, or those in [since, until].

    A window's first return is measured from the value after the cycle before
    it; the book's signal attribution (which covers its whole replay) is
    included only for the whole book.
    """
    if not store.exists(book):
        raise StateError(f"book {book!r} does not exist in {store.path}; known books: {store.books()}")
    cycles = store.cycles(book)
    whole = since is None and until is None
    keep = np.ones(len(cycles), dtype=bool)
    if since is not None:
        keep &= (cycles["cycle_time"] >= pd.Timestamp(since)).to_numpy()
    if until is not None:
        keep &= (cycles["cycle_time"] <= pd.Timestamp(until)).to_numpy()
    if not keep.any():
        window = "" if whole else f" between {since} and {until}"
        raise StateError(f"book {book!r} has no cycles{window} to report; run or replay cycles first")
    before = cycles[: int(np.argmax(keep))]
    starting = float(before["portfolio_value"].iloc[-1]) if len(before) else cfg.broker.starting_cash
    reported = cycles[keep].reset_index(drop=True)
    if whole:
        decisions = store.decisions(book)
    else:
        decisions = pd.concat([store.decisions(book, t) for t in reported["cycle_time"]], ignore_index=True)
    return build_report(
        reported, store.orders(book), decisions, starting_value=starting, bar_interval=cfg.market.bar_interval,
        periods_per_year=bars_per_year(cfg.market), horizons=cfg.horizon_names, book=book,
        attribution=store.attribution(book) if whole else None,
    )


@dataclass(frozen=True)
class BookSnapshot:
    """A book after its last committed cycle, marked as that cycle marked it.

    ``value`` is cash plus the positions at their marks (each symbol's quote mid at the cycle, else the
    engine's mark: the last close, else the average price), which is the cycle's committed
    ``portfolio_value``; ``gross``/``net``/``max_weight`` are fractions of it. ``positions`` has a row
    per held symbol: symbol, quantity, avg_price, mark, market_value, weight.
    """

    book: str
    as_of: pd.Timestamp
    cash: float
    value: float
    gross: float
    net: float
    max_weight: float
    positions: pd.DataFrame


def book_snapshot(store, book: str) -> BookSnapshot:
    """``book``'s :class:`BookSnapshot` from the state store (its holdings and its last cycle's decisions)."""
    if not store.exists(book) or store.load(book).last_cycle_time is None:
        raise StateError(f"book {book!r} has no committed cycle in {store.path}; run or replay a cycle first")
    state = store.load(book)
    t = state.last_cycle_time
    decisions = store.decisions(book, t)
    universe = tuple(decisions["symbol"])
    # A held symbol outside the cycle's universe is valued at its average price (Holdings.marked).
    marked = state.holdings.marked(universe, decisions["price"].to_numpy(dtype=np.float64))
    held = np.flatnonzero(marked.quantity != 0)
    mv = marked.quantity[held] * marked.mark[held]
    weight = mv / marked.value if marked.value > 0 else np.zeros_like(mv)
    positions = pd.DataFrame({
        "symbol": [universe[i] for i in held], "quantity": marked.quantity[held].astype(np.int64),
        "avg_price": [state.positions[universe[i]][1] for i in held], "mark": marked.mark[held],
        "market_value": mv, "weight": weight})
    return BookSnapshot(book=book, as_of=t, cash=state.cash, value=marked.value, gross=float(np.abs(weight).sum()),
                        net=float(weight.sum()), max_weight=float(np.abs(weight).max()) if len(weight) else 0.0,
                        positions=positions)


# ---------------------------------------------------------------------- output


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x * 100:+.{digits}f} %"


def _num(x: float | None, fmt: str = "{:+.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _when(t: pd.Timestamp | None, default: str) -> str:
    return default if t is None else t.strftime("%Y-%m-%d %H:%M")


def render(report: Report) -> str:
    """The report as a table a person reads."""
    r = report
    lines = [
        f"book {r.book}: {r.periods:,} cycles of {r.bar_interval} bars, {_when(r.first_cycle, '')} .. "
        f"{_when(r.last_cycle, '')} UTC",
        f"  value {_money(r.starting_value)} -> {_money(r.final_value)}   P&L {r.pnl:+,.2f} ({_pct(r.total_return)})",
        f"  annualised from {r.periods:,} bar returns ({r.years:.3f} years of {r.periods_per_year:,.0f} "
        f"{r.bar_interval} bars a year):",
        f"    return {_pct(r.annual_return)}   volatility {_pct(r.annual_volatility).lstrip('+')}   "
        f"Sharpe {_num(r.sharpe)} (s.e. {_num(r.sharpe_se, '{:.2f}')})   Sortino {_num(r.sortino)}",
    ]
    if r.max_drawdown > 0:
        end = (f"recovered at {_when(r.max_drawdown_recovered, '')}" if r.max_drawdown_recovered is not None
               else "not recovered by the last cycle")
        lines.append(f"  max drawdown {r.max_drawdown * 100:.2f} % from {_when(r.max_drawdown_peak, 'the start')} to "
                     f"{_when(r.max_drawdown_trough, '')}, {r.max_drawdown_bars:,} bars from peak, {end}")
    else:
        lines.append("  max drawdown 0.00 % (the value never fell below a previous high)")
    c = r.costs
    lines += [
        f"  mean gross exposure {r.mean_gross_exposure * 100:.2f} %   turnover {r.turnover:.2f}x "
        f"(buys + sells over mean value; {_num(r.turnover_annual, '{:.1f}')}x a year), traded {_money(r.traded_notional)}",
        f"  costs {_money(c['total'])} ({_num(c['bps_of_traded'], '{:.2f}')} bps of traded): spread {_money(c['spread'])}  "
        f"slippage {_money(c['slippage'])}  impact {_money(c['impact'])} ({c['impact_note']})  fees {_money(c['fees'])}"
        + (f"  [{c['fills_without_quote']} fills without a recorded quote: fees only]" if c["fills_without_quote"] else ""),
        f"  orders {r.orders} (fills {r.fills}, rejected {r.rejected})   decisions: trade {r.decisions['trade']}  "
        f"hold {r.decisions['hold']}  blocked {r.decisions['blocked']}",
    ]
    t = r.trades
    side_text = [f"{name} {t[name]['entries']} entries, {t[name]['exits']} exits "
                 f"(hit rate {_num(t[name]['hit_rate'], '{:.0%}')}, P&L {t[name]['realised_pnl']:+,.2f})"
                 for name in ("long", "short")]
    lines += [
        f"  trades: {side_text[0]}; {side_text[1]}",
        f"  hit rate {_num(t['hit_rate'], '{:.0%}')}: {t['hit_rate_basis']}",
        f"  open positions: {t['open_long']} long, {t['open_short']} short" + ("   HALTED at the last cycle" if r.halted else ""),
    ]
    names = [h["horizon"] or "none" for h in r.horizons]
    lines += ["", "  horizon, ranked best by the arbitration (any decision) and traded (executed trades)",
              f"  {'':<12}" + "".join(f"{n:>9}" for n in names),
              f"  {'ranked best':<12}" + "".join(f"{h['best']:>9}" for h in r.horizons),
              f"  {'traded':<12}" + "".join(f"{h['traded']:>9}" for h in r.horizons)]
    if r.realised_ic:
        horizons = list(dict.fromkeys(x["horizon"] for x in r.realised_ic))
        lines += ["", "  realised rank IC (t on non-overlapping times)",
                  "  " + f"{'':<10}" + "".join(f"{h:>16}" for h in horizons)]
        cells: dict[str, dict[str, str]] = {}
        for x in r.realised_ic:
            text = "-" if x["mean_ic"] is None else f"{x['mean_ic']:+.3f}" + (
                f" ({x['t_stat']:+.1f})" if x["t_stat"] is not None else "")
            cells.setdefault(x["family"], {})[x["horizon"]] = text
        for fam, by_h in cells.items():
            lines.append(f"  {fam:<10}" + "".join(f"{by_h.get(h, '-'):>16}" for h in horizons))
    if r.attribution is not None:
        lines += ["", render_attribution(r.attribution)]
    return "\n".join(lines)


def to_json(report: Report) -> str:
    """The report as JSON (:meth:`Report.summary`)."""
    return json.dumps(report.summary(), indent=2)


def figures(report: Report) -> dict:
    """matplotlib figures of the report: ``equity`` (value with its drawdown) and, with an attribution,
    ``ic`` (realised rank IC per horizon and family, bars of +/- 1.96 standard errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eq = report.equity
    # Plotted against the bar number: on wall-clock time nights and weekends would fill most of the axis.
    bar = np.arange(1, len(eq) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(np.r_[0, bar], np.r_[report.starting_value, eq["value"]], lw=1.1)
    top.axhline(report.starting_value, color="grey", lw=0.6, ls="--")
    top.set_ylabel("portfolio value")
    top.ticklabel_format(axis="y", style="plain", useOffset=False)
    top.set_title(f"book {report.book}: P&L {report.pnl:+,.2f} ({report.total_return * 100:+.2f} %) "
                  f"over {report.periods:,} {report.bar_interval} bars")
    top.grid(alpha=0.3)
    bottom.fill_between(np.r_[0, bar], -np.r_[0.0, eq["drawdown"]] * 100, 0.0, color="tab:red", alpha=0.4, lw=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    days = pd.DatetimeIndex(eq["time"]).normalize()
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    starts = starts[:: max(1, int(np.ceil(len(starts) / 8)))]
    bottom.set_xticks(bar[starts], [d.strftime("%Y-%m-%d") for d in days[starts]], rotation=30, ha="right")
    bottom.set_xlabel("bar (ticks at a day's first bar, UTC)")
    out = {"equity": fig}
    if report.realised_ic:
        horizons = list(dict.fromkeys(x["horizon"] for x in report.realised_ic))
        families = list(dict.fromkeys(x["family"] for x in report.realised_ic))
        fig, ax = plt.subplots(figsize=(8, 3.4))
        width = 0.8 / len(families)
        for j, fam in enumerate(families):
            rows = {x["horizon"]: x for x in report.realised_ic if x["family"] == fam}
            ic = np.array([_nan(rows.get(h, {}).get("mean_ic")) for h in horizons])
            t = np.array([_nan(rows.get(h, {}).get("t_stat")) for h in horizons])
            with np.errstate(divide="ignore", invalid="ignore"):
                se = np.abs(ic / t)
            x = np.arange(len(horizons)) + (j - (len(families) - 1) / 2) * width
            bars = ax.bar(x, ic, width, label=fam)
            known = np.isfinite(se)
            ax.errorbar(x[known], ic[known], yerr=1.96 * se[known], fmt="none", ecolor="black", capsize=2, lw=0.8)
            for b in np.flatnonzero(~known):
                bars[b].set_hatch("//")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xticks(np.arange(len(horizons)), horizons)
        ax.set_ylabel("mean rank IC")
        ax.set_title("realised rank IC per horizon: whiskers 1.96 s.e. on non-overlapping times\n"
                     "(hatched: fewer than 3 non-overlapping times, no s.e.)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        out["ic"] = fig
    return out


def _nan(x) -> float:
    return np.nan if x is None else float(x)


def write_plots(report: Report, directory) -> list[Path]:
    """Save :func:`figures` as ``<directory>/<book>_<name>.png``; returns the paths written."""
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(report).items():
        path = directory / f"{report.book}_{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
