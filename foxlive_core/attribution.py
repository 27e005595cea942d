"""Signal attribution: how much of the models' information each stage of the pipeline keeps.

For a replay (any run of consecutive cycles of one book), every stage's output
at cycle t is held against the return that followed over each horizon h
(price at t + h bars over price at t, the prices the cycle decided on). Per
stage, horizon and family the figure is the **mean per-time rank IC** (the
Spearman correlation across the universe at one cycle, averaged over cycles)
with its **t-statistic on non-overlapping times** (every h-th cycle, so
consecutive h-bar returns do not share bars: t = mean / (std / sqrt(n))).

Stages, in pipeline order (foxlive_core.decide):

=================  ==============================================  ============
stage              value per symbol                                 per
=================  ==============================================  ============
raw                the model's raw prediction                       family, h
standardised       its z-score                                      family, h
confidence         z-score x confidence (the calibrated score)      family, h
blend              the horizon's alpha in bps (after calibration)   h
arbitrated         alpha at the chosen horizon (NaN where none)     any h
target_weight      the weight the cycle aimed for                   any h
=================  ==============================================  ============

Also per horizon, the **calibration** of the blend's alpha against the realised
move (both in bps): OLS slope and intercept with their standard errors over the
non-overlapping times (a calibrated alpha has slope 1); and for the **fills**,
the mean signed move over the next 1, 3 and 12 bars measured from the mid and
from the fill price, against what each fill paid.

:class:`SignalAttribution` is fed one cycle at a time and keeps only the last
``max(h) + 1`` cycles of stage values (and one row of ICs per cycle), so its
memory barely grows with the replay; :meth:`SignalAttribution.snapshot` and
:meth:`~SignalAttribution.restore` carry it across a resumed replay.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from foxlive_core.errors import StateError
from foxlive_core.pipeline.confidence import cross_sectional_ic

STAGES_PER_FAMILY = ("raw", "standardised", "confidence")
STAGES_PER_HORIZON = ("blend",)
STAGES_ANY_HORIZON = ("arbitrated", "target_weight")
FILL_LAGS = (1, 3, 12)
MIN_SYMBOLS = 5  # fewer finite pairs at a cycle than this: no IC for that cycle


@dataclass(frozen=True)
class _Row:
    stage: str
    family: str
    horizon: int  # index of the horizon the outcome is measured over
    source: int  # row of the stacked stage values (K, N)


class SignalAttribution:
    """Stage-by-stage realised IC of consecutive cycles (see the module doc).

    Parameters
    ----------
    horizons : names of the H horizons
    horizon_bars : (H,) bars in each horizon
    families : names of the Fam families
    """

    def __init__(self, horizons, horizon_bars, families) -> None:
        self.horizons = tuple(horizons)
        self.bars = np.asarray(horizon_bars, dtype=np.int64)
        self.families = tuple(families)
        H, F = len(self.horizons), len(self.families)
        rows: list[_Row] = []
        for s, stage in enumerate(STAGES_PER_FAMILY):
            for f, fam in enumerate(self.families):
                for h in range(H):
                    rows.append(_Row(stage, fam, h, (s * F + f) * H + h))
        base = len(STAGES_PER_FAMILY) * F * H
        for h in range(H):
            rows.append(_Row("blend", "", h, base + h))
        for j, stage in enumerate(STAGES_ANY_HORIZON):
            for h in range(H):
                rows.append(_Row(stage, "", h, base + H + j))
        self.rows = rows
        self.n_values = base + H + len(STAGES_ANY_HORIZON)
        self._by_horizon = [np.array([i for i, r in enumerate(rows) if r.horizon == h]) for h in range(H)]
        self._ring_len = int(self.bars.max()) + max(FILL_LAGS) + 1
        self._values: np.ndarray | None = None  # (R, K, N)
        self._price: np.ndarray | None = None  # (R, N)
        self.cycles = 0
        self._ic: list[np.ndarray] = []  # per cycle t (as the decision time): (len(rows),) NaN until matured
        self._calib = np.zeros((H, 6))  # n, sx, sy, sxx, sxy, syy over non-overlapping times
        self._fills: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._fill_moves = {k: ([], []) for k in FILL_LAGS}  # k -> (bps from mid, bps from fill price)
        self._fill_costs: list[float] = []
        self._chosen = np.zeros(H, dtype=np.int64)
        self._entries_with_models = np.zeros((H, 2), dtype=np.int64)  # (agree with the raw models' sign, entries)

    def update(self, raw, zscore, calibrated, alpha, best, target_weight, price, fills=(), entering=None) -> None:
        """Add one cycle.

        Parameters
        ----------
        raw, zscore, calibrated : (Fam, H, N)
        alpha : (H, N) bps of each horizon (after calibration)
        best : (N,) chosen horizon index, -1 for none
        target_weight : (N,)
        price : (N,) the price the cycle decided on (mid, else the mark); NaN where unknown
        fills : iterable of (symbol index, signed quantity, fill price, fee): this cycle's fills
        entering : (N,) bool, symbols whose trade this cycle opened, increased or flipped a position
        """
        F, H = len(self.families), len(self.horizons)
        N = len(price)
        if self._values is None:
            self._values = np.full((self._ring_len, self.n_values, N), np.nan)
            self._price = np.full((self._ring_len, N), np.nan)
        c = self.cycles
        slot = c % self._ring_len
        best = np.asarray(best)
        arbitrated = np.where(best >= 0, np.take_along_axis(alpha, np.maximum(best, 0)[None], 0)[0], np.nan)
        stacked = np.concatenate(
            [np.stack([raw, zscore, calibrated]).reshape(-1, N), alpha, arbitrated[None], np.asarray(target_weight)[None]]
        )
        self._values[slot] = stacked
        self._price[slot] = price
        self._ic.append(np.full(len(self.rows), np.nan))
        # Every horizon whose lag has matured meets its realised return in one ranking call.
        matured = [h for h in range(H) if c >= int(self.bars[h])]
        if matured:
            thens = [(c - int(self.bars[h])) % self._ring_len for h in matured]
            with np.errstate(divide="ignore", invalid="ignore"):
                realised = price[None] / self._price[thens] - 1.0  # (M, N)
            values = np.stack([self._values[then][[self.rows[i].source for i in self._by_horizon[h]]]
                               for h, then in zip(matured, thens)])  # (M, per_h, N)
            ic = cross_sectional_ic(values, realised[:, None], MIN_SYMBOLS)  # (M, per_h)
            for j, h in enumerate(matured):
                lag = int(self.bars[h])
                self._ic[c - lag][self._by_horizon[h]] = ic[j]
                if (c - lag) % lag == 0:
                    x = self._values[thens[j]][len(STAGES_PER_FAMILY) * F * H + h]
                    y = realised[j] * 1e4
                    ok = np.isfinite(x) & np.isfinite(y)
                    x, y = x[ok], y[ok]
                    self._calib[h] += (len(x), x.sum(), y.sum(), x @ x, x @ y, y @ y)
        self._record_fills(c, price, fills)
        if entering is not None:
            enter = np.asarray(entering) & (best >= 0)
            if enter.any():
                idx = np.flatnonzero(enter)
                h_idx = best[idx]
                np.add.at(self._chosen, h_idx, 1)
                model_sign = np.sign(np.nanmean(raw[:, h_idx, idx], axis=0))
                agree = model_sign == np.sign(alpha[h_idx, idx])
                np.add.at(self._entries_with_models, (h_idx, 0), agree.astype(np.int64))
                np.add.at(self._entries_with_models, (h_idx, 1), 1)
        self.cycles += 1

    def _record_fills(self, c: int, price: np.ndarray, fills) -> None:
        fills = list(fills)
        if fills:
            idx = np.array([f[0] for f in fills], dtype=np.intp)
            qty = np.array([f[1] for f in fills], dtype=np.float64)
            px = np.array([f[2] for f in fills], dtype=np.float64)
            fee = np.array([f[3] for f in fills], dtype=np.float64)
            mid = price[idx]
            sign = np.sign(qty)
            with np.errstate(divide="ignore", invalid="ignore"):
                paid = sign * (px / mid - 1.0) * 1e4 + fee / np.abs(qty * px) * 1e4
            self._fill_costs.extend(paid[np.isfinite(paid)].tolist())
            self._fills.append((c, idx, sign, px, mid, fee))
        keep = []
        for entry in self._fills:
            c0, idx, sign, px, mid, _ = entry
            k = c - c0
            if k in self._fill_moves:
                with np.errstate(divide="ignore", invalid="ignore"):
                    from_mid = sign * (price[idx] / mid - 1.0) * 1e4
                    from_fill = sign * (price[idx] / px - 1.0) * 1e4
                self._fill_moves[k][0].extend(from_mid[np.isfinite(from_mid)].tolist())
                self._fill_moves[k][1].extend(from_fill[np.isfinite(from_fill)].tolist())
            if k < max(FILL_LAGS):
                keep.append(entry)
        self._fills = keep

    # ------------------------------------------------------------------ resuming

    def snapshot(self) -> bytes:
        """The running state as one .npz blob (no pickles), for :meth:`restore` in a resumed replay."""
        fills = self._fills
        arrays = {
            "cycles": np.array(self.cycles),
            "ic": np.array(self._ic) if self._ic else np.empty((0, len(self.rows))),
            "calib": self._calib,
            "fill_costs": np.array(self._fill_costs, dtype=np.float64),
            "chosen": self._chosen,
            "entries_with_models": self._entries_with_models,
            "open_fill_cycle": np.array([f[0] for f in fills], dtype=np.int64),
            "open_fill_count": np.array([len(f[1]) for f in fills], dtype=np.int64),
            "open_fill_idx": np.concatenate([f[1] for f in fills]) if fills else np.empty(0, dtype=np.intp),
            "open_fill_values": (np.concatenate([np.stack(f[2:]) for f in fills], axis=1) if fills
                                 else np.empty((4, 0))),
        }
        for k, (from_mid, from_fill) in self._fill_moves.items():
            arrays[f"moves_{k}"] = np.array([from_mid, from_fill], dtype=np.float64).reshape(2, -1)
        if self._values is not None:
            # Only the slots a later cycle reads again: the last h cycles of the values measured over h
            # (at 500 symbols 5 MB instead of the whole ring's 23 MB, written at every commit of a replay).
            for lag, sources in self._sources_by_lag().items():
                arrays[f"values_{lag}"] = self._values[self._last_slots(lag)][:, sources]
            arrays["price"] = self._price[self._last_slots(int(self.bars.max()))]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def restore(self, blob: bytes) -> None:
        """Continue from a :meth:`snapshot` of an attribution over the same horizons and families."""
        z = np.load(io.BytesIO(blob), allow_pickle=False)
        if z["ic"].shape[1:] != (len(self.rows),):
            raise StateError("the stored signal attribution has other horizons or families; replay the book afresh")
        self.cycles = int(z["cycles"])
        self._ic = list(z["ic"])
        self._calib = z["calib"].copy()
        self._fill_costs = z["fill_costs"].tolist()
        self._chosen = z["chosen"].copy()
        self._entries_with_models = z["entries_with_models"].copy()
        bounds = np.cumsum(np.r_[0, z["open_fill_count"]])
        values = z["open_fill_values"]
        self._fills = [
            (int(c), z["open_fill_idx"][a:b], *values[:, a:b])
            for c, a, b in zip(z["open_fill_cycle"], bounds[:-1], bounds[1:])
        ]
        self._fill_moves = {k: (z[f"moves_{k}"][0].tolist(), z[f"moves_{k}"][1].tolist()) for k in FILL_LAGS}
        if "values" in z.files:  # written before snapshots kept only the slots read again: the whole ring
            self._values, self._price = z["values"].copy(), z["price"].copy()
        elif "price" in z.files:
            N = z["price"].shape[1]
            self._values = np.full((self._ring_len, self.n_values, N), np.nan)
            self._price = np.full((self._ring_len, N), np.nan)
            for lag, sources in self._sources_by_lag().items():
                self._values[np.ix_(self._last_slots(lag), sources)] = z[f"values_{lag}"]
            self._price[self._last_slots(int(self.bars.max()))] = z["price"]

    def _sources_by_lag(self) -> dict[int, np.ndarray]:
        """Rows of the stacked values grouped by how many past cycles of them a later cycle reads (their
        longest horizon): lag -> (K_lag,) row indices."""
        lags = np.zeros(self.n_values, dtype=np.int64)
        for row in self.rows:
            lags[row.source] = max(lags[row.source], int(self.bars[row.horizon]))
        return {int(lag): np.flatnonzero(lags == lag) for lag in np.unique(lags)}

    def _last_slots(self, n: int) -> np.ndarray:
        """Ring slots of the last ``n`` cycles, oldest first (slots of cycles before the first are never read)."""
        return (self.cycles - n + np.arange(n)) % self._ring_len

    # ------------------------------------------------------------------ results

    def stage_ic(self) -> list[dict]:
        """One dict per (stage, family, horizon): mean_ic, t_stat, n_times, n_independent."""
        ic = np.array(self._ic) if self._ic else np.empty((0, len(self.rows)))
        out = []
        for j, row in enumerate(self.rows):
            series = ic[:, j]
            lag = int(self.bars[row.horizon])
            measured = np.isfinite(series)
            independent = series[np.arange(len(series)) % lag == 0]
            independent = independent[np.isfinite(independent)]
            out.append(
                {
                    "stage": row.stage,
                    "family": row.family,
                    "horizon": self.horizons[row.horizon],
                    "mean_ic": float(series[measured].mean()) if measured.any() else None,
                    "t_stat": t_statistic(independent),
                    "n_times": int(measured.sum()),
                    "n_independent": int(len(independent)),
                }
            )
        return out

    def calibration(self) -> list[dict]:
        """Per horizon: OLS of the realised move (bps) on the blend's alpha (bps), non-overlapping times."""
        out = []
        for h, name in enumerate(self.horizons):
            fit = ols_from_sums(*self._calib[h])
            out.append({"horizon": name, **fit})
        return out

    def fills(self) -> dict:
        """Signed moves after fills (bps, mean and count per lag) and the mean cost paid per fill (bps)."""
        moves = {}
        for k, (from_mid, from_fill) in self._fill_moves.items():
            moves[f"{k}_bars"] = {
                "from_mid_bps": float(np.mean(from_mid)) if from_mid else None,
                "from_fill_bps": float(np.mean(from_fill)) if from_fill else None,
                "fills": len(from_mid),
            }
        return {
            "moves": moves,
            "cost_paid_bps": float(np.mean(self._fill_costs)) if self._fill_costs else None,
            "fills": len(self._fill_costs),
        }

    def entries(self) -> list[dict]:
        """Per horizon: entries chosen there and the share following the raw models' mean sign."""
        out = []
        for h, name in enumerate(self.horizons):
            agree, n = self._entries_with_models[h]
            out.append({"horizon": name, "entries": int(n), "with_models_sign": float(agree / n) if n else None})
        return out

    def report(self) -> dict:
        return {
            "cycles": self.cycles,
            "horizons": list(self.horizons),
            "families": list(self.families),
            "stage_ic": self.stage_ic(),
            "calibration": self.calibration(),
            "fills": self.fills(),
            "entries": self.entries(),
        }


def traded_horizon(report: dict) -> str | None:
    """The horizon the book's entries were chosen at most often in ``report``, None without entries."""
    entries = {e["horizon"]: e["entries"] for e in report["entries"]}
    return max(entries, key=entries.get) if any(entries.values()) else None


def t_statistic(values: np.ndarray) -> float | None:
    """mean / (std / sqrt(n)) with ddof=1; None for fewer than 3 values or no dispersion."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 3:
        return None
    sd = values.std(ddof=1)
    return float(values.mean() / (sd / np.sqrt(n))) if sd > 0 else None


def ols_from_sums(n, sx, sy, sxx, sxy, syy) -> dict:
    """Slope, intercept and their standard errors of y = a + b x from the sums of x, y, x^2, xy, y^2."""
    n = float(n)
    if n < 3:
        return {"slope": None, "slope_se": None, "intercept": None, "intercept_se": None, "pairs": int(n)}
    vxx = sxx - sx * sx / n
    vxy = sxy - sx * sy / n
    vyy = syy - sy * sy / n
    if vxx <= 0:
        return {"slope": None, "slope_se": None, "intercept": None, "intercept_se": None, "pairs": int(n)}
    slope = vxy / vxx
    intercept = (sy - slope * sx) / n
    resid = max(vyy - slope * vxy, 0.0) / (n - 2)
    slope_se = np.sqrt(resid / vxx)
    intercept_se = np.sqrt(resid * (1.0 / n + (sx / n) ** 2 / vxx))
    return {"slope": float(slope), "slope_se": float(slope_se), "intercept": float(intercept),
            "intercept_se": float(intercept_se), "pairs": int(n)}


def render(report: dict) -> str:
    """The attribution as a table a person reads (see :func:`SignalAttribution.report`)."""
    horizons = report["horizons"]
    lines = [f"signal attribution over {report['cycles']} cycles: mean per-time rank IC (t on non-overlapping times)", ""]
    head = f"{'stage':<15}{'family':<10}" + "".join(f"{h:>16}" for h in horizons)
    lines.append(head)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in report["stage_ic"]:
        text = "-" if r["mean_ic"] is None else f"{r['mean_ic']:+.3f}" + (f" ({r['t_stat']:+.1f})" if r["t_stat"] is not None else "")
        cells.setdefault((r["stage"], r["family"]), {})[r["horizon"]] = text
    for (stage, fam), by_h in cells.items():
        lines.append(f"{stage:<15}{fam:<10}" + "".join(f"{by_h.get(h, '-'):>16}" for h in horizons))
    lines += ["", "calibration of alpha (bps) against the realised move (bps): slope (se), intercept (se), pairs"]
    for c in report["calibration"]:
        if c["slope"] is None:
            lines.append(f"  {c['horizon']:>5}: too few pairs ({c['pairs']})")
        else:
            lines.append(
                f"  {c['horizon']:>5}: slope {c['slope']:+.3f} ({c['slope_se']:.3f})  intercept {c['intercept']:+.2f} "
                f"({c['intercept_se']:.2f})  pairs {c['pairs']}"
            )
    f = report["fills"]
    lines += ["", f"fills: {f['fills']}, mean cost paid {_bps(f['cost_paid_bps'])} bps (half spread + slippage + fee)"]
    for lag, m in f["moves"].items():
        lines.append(f"  signed move after {lag.replace('_', ' ')}: {_bps(m['from_mid_bps'])} bps from the mid, "
                     f"{_bps(m['from_fill_bps'])} from the fill price ({m['fills']} fills)")
    lines += ["", "entries (opened, increased or flipped) by chosen horizon: count, share with the raw models' sign"]
    lines.append("  " + "  ".join(
        f"{e['horizon']}: {e['entries']}" + (f" ({e['with_models_sign']:.0%})" if e["with_models_sign"] is not None else "")
        for e in report["entries"]
    ))
    return "\n".join(lines)


def _bps(x) -> str:
    return "-" if x is None else f"{x:+.2f}"
