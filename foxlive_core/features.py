"""The feature builder: one vectorised function for training, live cycles and replay.

:func:`build_features` turns a :class:`~foxlive_core.data.types.BarPanel` into a
:class:`FeaturePanel` of shape (T, N, F). The same code serves a training panel
of tens of thousands of bars, a live cycle (a window of ~160 bars of which only
the last row is used, ``last_only=True``) and a replay.

Window locality (the contract)
------------------------------
Every feature at row t is a function of the *filled* bars t-LOOKBACK_BARS+1 .. t
only (of one symbol's bars, except the excess returns ``xret_kb``, which read
the universe's closes at rows t and t-k), and the filled bar at row t is a function of the raw bars
t-max_fill_bars .. t only. So the last row computed from the last
``required_history_bars(max_fill_bars)`` bars is **bitwise equal** to the same
row computed from a whole year (``np.array_equal``), and ``last_only=True``
returns exactly that row, cheaply.

How that is guaranteed:

- Exponential averages (MACD, Wilder RSI, ATR) are *truncated* EMAs: the
  weights (1-a)^k, k = 0..K-1 (k = 0 the current bar), normalised to sum 1 --
  pandas ``ewm(adjust=True).mean()`` applied to the last K values only.
  K = 4 * span for the MACD EMAs (a = 2/(span+1): K = 48, 104 and 36 for spans
  12, 26 and 9; the truncated weight is about e^-8) and K = 5 * n for Wilder
  smoothing (a = 1/n: K = 35, 70, 105 for RSI 7/14/21 and 70 for ATR 14; the
  truncated weight is about e^-5).
- Every window sum runs a fixed sequence of IEEE operations per output row,
  the same whatever the length of the panel: geometric (EMA) and plain sums
  of K bars are evaluated in blocks of B bars, P[t] = sum_{i<B} b^i x[t-i],
  S[t] = P[t] + b^B P[t-B] + ... (+ the K mod B oldest terms), each sum added
  term by term over shifted row slices (about 2*sqrt(K) operations instead of
  K); squared deviations for the standard deviations are added term by term.
  Rolling max/min use a doubling scheme (max is exact in any order). No cumsum
  differences, no pandas rolling, no axis reductions.
- Work is done on C-contiguous blocks of rows x columns (row blocks overlap by
  LOOKBACK_BARS - 1 input rows; no (T, N, K) temporaries, bounded memory);
  elementwise operations do not depend on where an element sits, so the
  blocking changes no bit. The live path (``last_only``) evaluates the block
  sums only at the rows it needs, with the same operations.

A value whose window is not fully available (too little history, or a NaN bar
inside the window after filling) is NaN (ret_kb, xret_kb and mom_60b_skip5
read only their two end bars), and so is a value with a zero denominator (never
inf). A symbol with too little history is therefore NaN (the pipeline holds it with reason ``insufficient_history``).

Features (names count windows in bars; c = close, h = high, l = low, v = volume)
-------------------------------------------------------------------------------
====================  ==========================================================  ========
name                  definition                                                  bars read
====================  ==========================================================  ========
ret_kb                c_t / c_{t-k} - 1, k = 1, 5, 10, 20, 60                     k + 1
vol_nb                std (ddof=1) of the n last 1-bar log returns, n = 20, 60    n + 1
rsi_nb                Wilder RSI 100*G/(G+L), G, L truncated Wilder EMAs of the   5n + 1
                      gains/losses of c (K = 5n); 50 when G + L == 0 (flat)
sma_ratio_nb          c / SMA_n(c) - 1, n = 10, 20, 50                            n
bb_pos_20b            (c - SMA_20) / (2 * std_20), std ddof=0; 0 when std_20 is   20
                      zero (up to rounding: std_20 <= 1e-12 * SMA_20)
bb_width_20b          4 * std_20 / SMA_20                                         20
macd_line_12_26b      (EMA_12(c) - EMA_26(c)) / c  (K = 48, 104)                  104
macd_signal_9b        EMA_9 of the MACD line (K = 36)                             139
macd_hist             macd_line_12_26b - macd_signal_9b                           139
mom_60b_skip5         c_{t-5} / c_{t-60} - 1                                      61
atr_14b               truncated Wilder EMA (K = 70) of the true range             71
                      max(h-l, |h-c_{t-1}|, |l-c_{t-1}|), divided by c
range_1b              (h - l) / c                                                 1
volume_ratio_20b      v / mean(v over the last 20 bars incl. t)                   20
volume_ratio_5b_20b   mean(v, 5) / mean(v, 20)                                    20
dist_high_nb          c / max(h over n bars) - 1, n = 20, 60                      n
dist_low_nb           c / min(l over n bars) - 1, n = 20, 60                      n
xret_kb               c_t / c_{t-k} - 1 less its mean over the universe's         k + 1
                      symbols where it is finite, k = 1, 5, 20, 60, 120, 240
====================  ==========================================================  ========

``LOOKBACK_BARS`` is the largest "bars read" (241, xret_240b). The features
computed per symbol in blocks read at most 139 bars (the MACD signal: a 36-bar
EMA of a line that itself reads 104 bars); the excess returns are computed
after them over the whole universe (a row-wise mean over the symbols).

Missing bars
------------
:func:`fill_missing_bars`: a bar is missing when any of its open/high/low/close
is NaN (or infinite). A missing bar takes open = high = low = close = the
previous valid close and volume 0, for at most ``max_fill_bars`` consecutive
missing bars; beyond that the bar stays NaN (all five fields), and so do the
bars before a symbol's first valid bar. A valid bar with a NaN volume keeps it
(its volume features are NaN).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from foxlive_core.data.types import BAR_FIELDS, BarPanel
from foxlive_core.errors import ConfigError, DataError

# --------------------------------------------------------------------------- constants

RET_WINDOWS = (1, 5, 10, 20, 60)
VOL_WINDOWS = (20, 60)
RSI_WINDOWS = (7, 14, 21)
SMA_WINDOWS = (10, 20, 50)
BB_WINDOW = 20
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
MOM_LONG, MOM_SKIP = 60, 5
ATR_WINDOW = 14
VOLUME_SHORT, VOLUME_LONG = 5, 20
DIST_WINDOWS = (20, 60)
#: Excess returns over k bars (k = 240: three XNYS sessions of 5-minute bars): the slow, per-symbol
#: part of a move is what a longer horizon predicts, and the universe's common move hides it.
XRET_WINDOWS = (1, 5, 20, 60, 120, 240)

#: Truncation of the EMAs: K = EMA_SPAN_MULT * span (MACD), K = WILDER_MULT * n (RSI, ATR).
EMA_SPAN_MULT = 4
WILDER_MULT = 5

_K_FAST = EMA_SPAN_MULT * MACD_FAST  # 48
_K_SLOW = EMA_SPAN_MULT * MACD_SLOW  # 104
_K_SIGNAL = EMA_SPAN_MULT * MACD_SIGNAL  # 36
_K_ATR = WILDER_MULT * ATR_WINDOW  # 70
_K_RSI = {n: WILDER_MULT * n for n in RSI_WINDOWS}  # 35, 70, 105

#: Bars (including the current one) each feature reads, in FEATURE_NAMES order.
_LOOKBACK: dict[str, int] = {}
for _k in RET_WINDOWS:
    _LOOKBACK[f"ret_{_k}b"] = _k + 1
for _n in VOL_WINDOWS:
    _LOOKBACK[f"vol_{_n}b"] = _n + 1
for _n in RSI_WINDOWS:
    _LOOKBACK[f"rsi_{_n}b"] = _K_RSI[_n] + 1
for _n in SMA_WINDOWS:
    _LOOKBACK[f"sma_ratio_{_n}b"] = _n
_LOOKBACK["bb_pos_20b"] = BB_WINDOW
_LOOKBACK["bb_width_20b"] = BB_WINDOW
_LOOKBACK["macd_line_12_26b"] = max(_K_FAST, _K_SLOW)
_LOOKBACK["macd_signal_9b"] = max(_K_FAST, _K_SLOW) + _K_SIGNAL - 1
_LOOKBACK["macd_hist"] = _LOOKBACK["macd_signal_9b"]
_LOOKBACK["mom_60b_skip5"] = MOM_LONG + 1
_LOOKBACK["atr_14b"] = _K_ATR + 1
_LOOKBACK["range_1b"] = 1
_LOOKBACK["volume_ratio_20b"] = VOLUME_LONG
_LOOKBACK["volume_ratio_5b_20b"] = VOLUME_LONG
for _n in DIST_WINDOWS:
    _LOOKBACK[f"dist_high_{_n}b"] = _n
for _n in DIST_WINDOWS:
    _LOOKBACK[f"dist_low_{_n}b"] = _n
#: Features computed per symbol in blocks of rows x columns (all but the excess returns).
_BLOCK_NAMES: tuple[str, ...] = tuple(_LOOKBACK)
#: Input rows a block needs before its first output row, plus one.
_BLOCK_LOOKBACK: int = max(_LOOKBACK.values())
for _k in XRET_WINDOWS:
    _LOOKBACK[f"xret_{_k}b"] = _k + 1

#: The features, in the column order of :attr:`FeaturePanel.values` (models store this list).
FEATURE_NAMES: tuple[str, ...] = tuple(_LOOKBACK)

#: Bars (including the current one) that each feature at row t reads.
FEATURE_LOOKBACK_BARS = MappingProxyType(dict(_LOOKBACK))

#: Bars (including the current one) that any feature at row t reads, after filling.
LOOKBACK_BARS: int = max(_LOOKBACK.values())


#: Target elements per (rows x columns) block of the computation: bounds the temporaries' memory
#: and keeps them in cache. Row blocks overlap by LOOKBACK_BARS - 1 input rows.
_BLOCK_ELEMS = 1 << 17
_BLOCK_ROWS = 2048
#: bb_pos is 0 where std_20 <= this * SMA_20 (a flat window, up to rounding).
_BB_FLAT_REL = 1e-12


class _Geo:
    """A truncated geometric window sum S[t] = sum_{k<K} b^k x[t-k] and its normalised form S / sum_k b^k.

    Evaluated in blocks of B bars: P[t] = sum_{i<B} b^i x[t-i] (term by term), then
    S[t] = P[t] + b^B P[t-B] + ... + b^{(q-1)B} P[t-(q-1)B] + sum_{i<r} b^{qB+i} x[t-qB-i],
    K = qB + r: B + q + r operations per row instead of K, the same fixed sequence for every row.
    b = 1 is a plain window sum (no multiplications).
    """

    def __init__(self, K: int, b: float = 1.0) -> None:
        self.K = K
        self.b = float(b)
        costs = [(B + K // B + K % B, B) for B in range(1, K + 1)]
        self.B = min(costs)[1]
        self.q, self.r = divmod(K, self.B)
        powers = self.b ** np.arange(K + 1, dtype=np.float64)
        self.inner = tuple(float(x) for x in powers[: self.B])
        self.outer = tuple(float(powers[j * self.B]) for j in range(self.q))
        self.rest = tuple(float(powers[self.q * self.B + i]) for i in range(self.r))
        self.total = float(powers[:K].sum())
        self.plain = self.b == 1.0


def _ema(span: int) -> _Geo:
    return _Geo(EMA_SPAN_MULT * span, 1.0 - 2.0 / (span + 1.0))


def _wilder(n: int) -> _Geo:
    return _Geo(WILDER_MULT * n, 1.0 - 1.0 / n)


_G_FAST, _G_SLOW, _G_SIGNAL = _ema(MACD_FAST), _ema(MACD_SLOW), _ema(MACD_SIGNAL)
_G_ATR = _wilder(ATR_WINDOW)
_G_RSI = {n: _wilder(n) for n in RSI_WINDOWS}
_G_SUM = {n: _Geo(n) for n in (*VOL_WINDOWS, *SMA_WINDOWS, BB_WINDOW, VOLUME_SHORT, VOLUME_LONG)}


def _plain(n: int) -> _Geo:
    return _G_SUM[n]


def required_history_bars(max_fill_bars: int) -> int:
    """Bars a caller must supply so that the last row's features are exact (LOOKBACK_BARS + max_fill_bars)."""
    return LOOKBACK_BARS + _check_fill(max_fill_bars)


def _check_fill(max_fill_bars) -> int:
    try:
        m = operator.index(max_fill_bars)
    except TypeError:
        raise ConfigError(f"max_fill_bars must be a whole number of bars, got {max_fill_bars!r}") from None
    if m < 0:
        raise ConfigError(f"max_fill_bars must be >= 0, got {m}")
    return m


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class FeaturePanel:
    """Features of a universe over a window.

    Attributes
    ----------
    times : pandas.DatetimeIndex, shape (T,)
        UTC bar close times of the rows.
    symbols : tuple of str, length N
    names : tuple of str, length F
        Feature names, :data:`FEATURE_NAMES`.
    values : ndarray, shape (T, N, F), float64
        NaN where a feature's window is not fully available.
    """

    times: pd.DatetimeIndex
    symbols: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.times), len(self.symbols), len(self.names))
        if self.values.shape != shape:
            raise DataError(f"FeaturePanel.values has shape {self.values.shape}, expected {shape} (times x symbols x features)")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values.shape

    def row(self, i: int) -> np.ndarray:
        """Features of row ``i`` (negative counts from the end), shape (N, F)."""
        T = len(self.times)
        if not -T <= i < T:
            raise DataError(f"feature row {i} is out of range for a panel of {T} rows")
        return self.values[i]

    def last(self) -> np.ndarray:
        """Features of the last row, shape (N, F)."""
        if len(self.times) == 0:
            raise DataError("the feature panel has no rows: no bars were given")
        return self.values[-1]

    def valid_mask(self) -> np.ndarray:
        """(T, N) bool: True where every feature is finite."""
        return np.isfinite(self.values).all(axis=2)

    def feature(self, name: str) -> np.ndarray:
        """One feature, shape (T, N)."""
        try:
            return self.values[:, :, self.names.index(name)]
        except ValueError:
            raise DataError(f"unknown feature {name!r}; the panel has {list(self.names)}") from None


# --------------------------------------------------------------------------- filling


def fill_missing_bars(panel: BarPanel, max_fill_bars: int) -> BarPanel:
    """Fill short runs of missing bars with the previous valid close (volume 0); see the module doc.

    Window-local: the filled bar at row t depends only on the raw bars t-max_fill_bars .. t
    (it looks back at most max_fill_bars rows for a valid bar).
    """
    m = _check_fill(max_fill_bars)
    o, h, l, c, v = (np.asarray(getattr(panel, f), dtype=np.float64) for f in BAR_FIELDS)
    T, N = c.shape
    valid = np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c)
    if T == 0 or valid.all():
        return BarPanel(panel.times, panel.symbols, *(np.ascontiguousarray(x) for x in (o, h, l, c, v)))
    # for each missing bar, the close of the nearest valid bar among t-1 .. t-m (NaN if none)
    ti, tj = np.nonzero(~valid)
    src = np.full(ti.shape, np.nan)
    for k in range(1, m + 1):
        tk = ti - k
        look = (tk >= 0) & np.isnan(src)
        look[look] = valid[tk[look], tj[look]]
        src[look] = c[tk[look], tj[look]]
    # a valid bar keeps its values; a missing one takes src (NaN beyond m bars or before the first bar)
    out = [np.array(x, dtype=np.float64, order="C", copy=True) for x in (o, h, l, c, v)]
    for x in out[:4]:
        x[ti, tj] = src
    out[4][ti, tj] = np.where(np.isnan(src), np.nan, 0.0)
    return BarPanel(panel.times, panel.symbols, *out)


# --------------------------------------------------------------------------- window kernels
# Every array below is "tail aligned": its last row is the block's last row. A kernel asked
# for m output rows returns the last m rows of its result; the caller guarantees the input
# holds enough rows. The per-element sequence of IEEE operations never depends on m, on the
# input length or on the blocking, which is what makes the result bitwise reproducible.


def _tail(x: np.ndarray, m: int) -> np.ndarray:
    """The last m rows of x."""
    R = x.shape[0]
    return x[R - m : R]


def _lag(x: np.ndarray, k: int, m: int) -> np.ndarray:
    """Values k rows earlier than the last m rows of x: row t -> x[t - k]."""
    R = x.shape[0]
    return x[R - m - k : R - k]


def _geo_sum(x: np.ndarray, g: _Geo, m: int, normalise: bool = False) -> np.ndarray:
    """The truncated geometric window sum of :class:`_Geo` for the last m rows of x (R >= m + K - 1 rows)."""
    R, N = x.shape
    if m == 0:
        return np.empty((0, N))
    if R < m + g.K - 1:
        raise AssertionError(f"a window of {g.K} rows for {m} outputs needs {m + g.K - 1} rows, got {R}")
    B, q = g.B, g.q
    if m >= B or q == 1:
        # P at every row from t_first - (q-1)B on: contiguous row slices
        mp = m + (q - 1) * B
        parts = [_lag(x, i, mp) for i in range(B)]
        blocks = lambda P, j: _lag(P, j * B, m)  # noqa: E731
    else:
        # few output rows (the live path): P only at the rows t - jB that are used
        rows = (R - m + np.arange(m))[None, :] - B * np.arange(q)[:, None]  # (q, m)
        parts = [x[rows - i] for i in range(B)]
        blocks = lambda P, j: P[j]  # noqa: E731
    P = np.array(parts[0], dtype=np.float64, copy=True)
    tmp = np.empty_like(P)
    for i in range(1, B):
        if g.plain:
            np.add(P, parts[i], out=P)
        else:
            np.multiply(parts[i], g.inner[i], out=tmp)
            np.add(P, tmp, out=P)
    acc = np.array(blocks(P, 0), dtype=np.float64, copy=True)
    tmp = np.empty_like(acc)
    for j in range(1, q):
        if g.plain:
            np.add(acc, blocks(P, j), out=acc)
        else:
            np.multiply(blocks(P, j), g.outer[j], out=tmp)
            np.add(acc, tmp, out=acc)
    for i in range(g.r):
        xs = _lag(x, q * B + i, m)
        if g.plain:
            np.add(acc, xs, out=acc)
        else:
            np.multiply(xs, g.rest[i], out=tmp)
            np.add(acc, tmp, out=acc)
    if normalise:
        np.divide(acc, g.total, out=acc)
    return acc


def _sq_dev_sum(x: np.ndarray, n: int, center: np.ndarray) -> np.ndarray:
    """sum_{k<n} (x[t-k] - center[t])^2 for the last m = len(center) rows, term by term."""
    m = center.shape[0]
    acc = np.zeros_like(center)
    d = np.empty_like(center)
    for k in range(n):
        np.subtract(_lag(x, k, m), center, out=d)
        np.multiply(d, d, out=d)
        if k == 0:
            acc[...] = d
        else:
            np.add(acc, d, out=acc)
    return acc


def _window_extreme(x: np.ndarray, W: int, m: int, fn) -> np.ndarray:
    """Rolling max/min (``fn`` = np.maximum / np.minimum, NaN-propagating) over W rows, last m rows."""
    if m == 0:
        return x[:0]
    cur = _tail(x, m + W - 1)
    p = 1
    while 2 * p <= W:
        cur = fn(cur[p:], cur[:-p])  # windows of 2p rows
        p *= 2
    r = W - p
    if r:
        cur = fn(cur[r:], cur[: cur.shape[0] - r])  # two overlapping windows of p rows cover W
    return cur


def _mean_std(x: np.ndarray, n: int, m: int, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and standard deviation (two-pass) over n rows, last m rows."""
    mean = _geo_sum(x, _plain(n), m) / n
    ss = _sq_dev_sum(x, n, mean)
    return mean, np.sqrt(ss / (n - ddof))


# --------------------------------------------------------------------------- the features


def _compute_block(o, h, l, c, v, m: int) -> dict[str, np.ndarray]:
    """Every feature for the last (up to) m rows of one block of bars.

    Returns name -> tail-aligned array of q <= m rows (the rows whose window is
    inside the block; the caller makes the earlier rows NaN).
    """
    R, N = c.shape

    def n_out(name: str) -> int:
        return max(0, min(m, R - _LOOKBACK[name] + 1))

    f: dict[str, np.ndarray] = {}

    for k in RET_WINDOWS:
        q = n_out(f"ret_{k}b")
        f[f"ret_{k}b"] = _tail(c, q) / _lag(c, k, q) - 1.0

    # 1-bar log returns, for as many rows as the volatility windows need
    Q = max((n_out(f"vol_{n}b") + n - 1 for n in VOL_WINDOWS if n_out(f"vol_{n}b")), default=0)
    lr = np.log(_tail(c, Q) / _lag(c, 1, Q))
    for n in VOL_WINDOWS:
        f[f"vol_{n}b"] = _mean_std(lr, n, n_out(f"vol_{n}b"), ddof=1)[1]

    # Wilder RSI: gains and losses side by side, one accumulation for both
    Q = max((n_out(f"rsi_{n}b") + _K_RSI[n] - 1 for n in RSI_WINDOWS if n_out(f"rsi_{n}b")), default=0)
    d = _tail(c, Q) - _lag(c, 1, Q)
    gl = np.concatenate([np.maximum(d, 0.0), np.maximum(-d, 0.0)], axis=1)
    for n in RSI_WINDOWS:
        s = _geo_sum(gl, _G_RSI[n], n_out(f"rsi_{n}b"))  # the normalisation cancels in the ratio
        gain, loss = s[:, :N], s[:, N:]
        den = gain + loss
        rsi = 100.0 * (gain / den)  # gain / den <= 1 exactly, so rsi <= 100
        rsi[den == 0.0] = 50.0
        f[f"rsi_{n}b"] = rsi

    q_bb = n_out("bb_pos_20b")
    sma20, std20 = _mean_std(c, BB_WINDOW, q_bb, ddof=0)
    for n in SMA_WINDOWS:
        q = n_out(f"sma_ratio_{n}b")
        sma = sma20 if n == BB_WINDOW else _geo_sum(c, _plain(n), q) / n
        f[f"sma_ratio_{n}b"] = _tail(c, q) / sma - 1.0
    bb_pos = (_tail(c, q_bb) - sma20) / (2.0 * std20)
    bb_pos[std20 <= _BB_FLAT_REL * np.abs(sma20)] = 0.0
    f["bb_pos_20b"] = bb_pos
    f["bb_width_20b"] = 4.0 * std20 / sma20

    q_line = n_out("macd_line_12_26b")
    q_sig = n_out("macd_signal_9b")
    Q = max(q_line, q_sig + _K_SIGNAL - 1 if q_sig else 0)
    ema_fast = _geo_sum(c, _G_FAST, Q, normalise=True)
    ema_slow = _geo_sum(c, _G_SLOW, Q, normalise=True)
    line = (ema_fast - ema_slow) / _tail(c, Q)
    signal = _geo_sum(line, _G_SIGNAL, q_sig, normalise=True)
    f["macd_line_12_26b"] = _tail(line, q_line)
    f["macd_signal_9b"] = signal
    f["macd_hist"] = _tail(line, q_sig) - signal

    q = n_out("mom_60b_skip5")
    f["mom_60b_skip5"] = _lag(c, MOM_SKIP, q) / _lag(c, MOM_LONG, q) - 1.0

    q = n_out("atr_14b")
    Q = q + _K_ATR - 1 if q else 0
    hh, ll, pc = _tail(h, Q), _tail(l, Q), _lag(c, 1, Q)
    tr = np.maximum(np.maximum(hh - ll, np.abs(hh - pc)), np.abs(ll - pc))
    f["atr_14b"] = _geo_sum(tr, _G_ATR, q, normalise=True) / _tail(c, q)

    q = n_out("range_1b")
    f["range_1b"] = (_tail(h, q) - _tail(l, q)) / _tail(c, q)

    q = n_out("volume_ratio_20b")
    vmean_long = _geo_sum(v, _plain(VOLUME_LONG), q) / VOLUME_LONG
    vmean_short = _geo_sum(v, _plain(VOLUME_SHORT), q) / VOLUME_SHORT
    f["volume_ratio_20b"] = _tail(v, q) / vmean_long
    f["volume_ratio_5b_20b"] = vmean_short / vmean_long

    for n in DIST_WINDOWS:
        q = n_out(f"dist_high_{n}b")
        f[f"dist_high_{n}b"] = _tail(c, q) / _window_extreme(h, n, q, np.maximum) - 1.0
    for n in DIST_WINDOWS:
        q = n_out(f"dist_low_{n}b")
        f[f"dist_low_{n}b"] = _tail(c, q) / _window_extreme(l, n, q, np.minimum) - 1.0
    for x in f.values():
        x[np.isinf(x)] = np.nan  # a zero denominator (e.g. volume underflowing to a zero mean)
    return f


def _block_shape(T_out: int, N: int) -> tuple[int, int]:
    """(output rows, columns) of a block: about _BLOCK_ELEMS input elements each."""
    rows = max(1, min(T_out, _BLOCK_ROWS))
    cols = max(1, min(N, _BLOCK_ELEMS // (rows + _BLOCK_LOOKBACK - 1)))
    return rows, cols


def _excess_return(c: np.ndarray, k: int, first: int) -> np.ndarray:
    """xret_kb of rows first..T-1 of the filled closes ``c`` (T, N): c_t / c_{t-k} - 1 less its universe mean.

    The mean is over the symbols whose return at row t is finite; a row-wise
    sum over the symbols, so a row's value does not depend on the other rows.
    """
    T, N = c.shape
    out = np.full((T - first, N), np.nan)
    lo = max(first, k)
    if lo >= T:
        return out
    r = c[lo:] / c[lo - k : T - k] - 1.0
    ok = np.isfinite(r)
    n = ok.sum(axis=1)
    mean = np.divide(np.where(ok, r, 0.0).sum(axis=1), n, out=np.full(n.shape, np.nan), where=n > 0)
    out[lo - first :] = np.where(ok, r - mean[:, None], np.nan)
    return out


def build_features(panel: BarPanel, max_fill_bars: int, last_only: bool = False) -> FeaturePanel:
    """Fill missing bars, then compute every feature of :data:`FEATURE_NAMES` for the whole universe.

    Parameters
    ----------
    panel : BarPanel
        Raw OHLCV bars, (T, N). Give raw bars: filling a panel twice fills runs
        longer than ``max_fill_bars`` further than filling it once.
    max_fill_bars : int
        Longest run of missing bars that is filled (see :func:`fill_missing_bars`).
    last_only : bool
        Compute the last row only (the live path): returns a panel with T = 1,
        bitwise equal to the last row of the full computation. Only the last
        ``required_history_bars(max_fill_bars)`` bars are read.

    Returns
    -------
    FeaturePanel
        values (T, N, F) float64 (T = 1 with ``last_only``; T = 0 for an empty panel).
    """
    m_fill = _check_fill(max_fill_bars)
    need = required_history_bars(m_fill)
    if last_only and len(panel.times) > need:
        panel = panel.rows(slice(len(panel.times) - need, None))
    filled = fill_missing_bars(panel, m_fill)
    T, N = filled.shape
    first = T - min(T, 1) if last_only else 0  # first output row
    F, FB = len(FEATURE_NAMES), len(_BLOCK_NAMES)
    values = np.empty((T - first, N, F), dtype=np.float64)
    fields = [filled.field(x) for x in BAR_FIELDS]
    rb, cb = _block_shape(T - first, N)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for r0 in range(first, T, rb):
            r1 = min(T, r0 + rb)
            i0 = max(0, r0 - (_BLOCK_LOOKBACK - 1))  # input rows i0..r1-1 cover every window of rows r0..r1-1
            for j0 in range(0, N, cb):
                j1 = min(N, j0 + cb)
                block = [np.ascontiguousarray(x[i0:r1, j0:j1]) for x in fields]
                feats = _compute_block(*block, m=r1 - r0)
                buf = np.empty((FB, r1 - r0, j1 - j0), dtype=np.float64)
                for i, name in enumerate(_BLOCK_NAMES):
                    arr = feats.pop(name)
                    k = buf.shape[1] - arr.shape[0]  # the first k rows lack a full window
                    buf[i, :k] = np.nan
                    buf[i, k:] = arr
                values[r0 - first : r1 - first, j0:j1, :FB] = buf.transpose(1, 2, 0)
        close = fields[BAR_FIELDS.index("close")]
        for i, k in enumerate(XRET_WINDOWS, start=FB):
            values[:, :, i] = _excess_return(close, k, first)
    return FeaturePanel(filled.times[first:], tuple(filled.symbols), FEATURE_NAMES, values)


__all__ = [
    "FEATURE_NAMES",
    "FEATURE_LOOKBACK_BARS",
    "LOOKBACK_BARS",
    "FeaturePanel",
    "build_features",
    "fill_missing_bars",
    "required_history_bars",
]
