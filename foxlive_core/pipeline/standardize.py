"""Stage 4: z-score the raw predictions of every (family, horizon) model.

The rule, per value, over a sample of finite numbers (a symbol's rolling buffer
of its own recent predictions, or the cross-section of the universe):

- a non-finite raw prediction gives a NaN score;
- fewer than ``min_samples`` finite samples: s = clip(raw, -clip, clip);
- population std (ddof=0) below 1e-9: s = 0 (nothing to standardise against);
- else s = clip((raw - mean) / std, -clip, clip).

Buffers are fixed-size arrays ordered oldest -> newest along their last axis,
NaN for empty slots. :func:`append` is the one buffer rule of the pipeline
(z-score buffers here; IC pairs, calibration errors and score histories in
:mod:`foxlive_core.pipeline.confidence` and :mod:`foxlive_core.pipeline.blend`):
the caller persists the returned buffer, so every buffer is a pure function of
the values appended to it.
"""

from __future__ import annotations

import numpy as np

MIN_STD = 1e-9


def append(buffer, values, axis: int = -1) -> np.ndarray:
    """Append one value per buffer, dropping the oldest slot.

    Parameters
    ----------
    buffer : array_like, shape (..., W)
        Oldest -> newest along ``axis`` (the last by default), NaN for empty slots.
    values : array_like, shape (...)
        The newest value of each buffer (``buffer``'s shape without ``axis``).
        A non-finite value is not appended: that buffer is returned unchanged.
    axis : int
        The buffer axis, negative (-2 for histories of vectors, shape (..., W, F)).

    Returns
    -------
    ndarray, shape (..., W)
        A new array; ``buffer`` is not modified.

    Notes
    -----
    Buffers that hold the two halves of pairs (predictions and realised
    returns) must skip together; use
    :func:`foxlive_core.pipeline.confidence.append_pairs` for those.
    """
    buffer = np.asarray(buffer, dtype=float)
    # Work on views with the buffer axis last; writing through them fills `out`.
    old = np.moveaxis(buffer, axis, -1)
    values = np.broadcast_to(np.asarray(values, dtype=float), old.shape[:-1])
    out = np.empty_like(buffer)
    new = np.moveaxis(out, axis, -1)
    new[..., :-1] = old[..., 1:]
    new[..., -1] = values
    # Boolean indexing touches only the (few) skipped buffers; np.where would rewrite them all.
    skip = ~np.isfinite(values)
    new[skip] = old[skip]
    return out


def sum_last(x) -> np.ndarray:
    """Sum over the last axis, (..., K) -> (...), as a float array.

    A matrix-vector product: about 5x faster than ``x.sum(-1)`` when K is a
    short window, because numpy reduces a short last axis row by row. ``x``
    must not hold NaN (zero the empty slots first).
    """
    return x @ np.ones(x.shape[-1])


def _standardise(raw: np.ndarray, sample: np.ndarray, min_samples: int, clip: float) -> np.ndarray:
    """Apply the z-score rule to ``raw`` against the finite entries of ``sample``.

    ``sample`` has one more axis than ``raw`` (the samples, last); its
    statistics broadcast against ``raw``, so a sample of shape (..., 1, K)
    serves a whole row of ``raw`` (...).
    """
    finite = np.isfinite(sample)
    count = sum_last(finite)
    # Empty samples divide 0 by 0; their result is replaced by the rules below.
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sum_last(np.where(finite, sample, 0.0)) / count
        dev = np.where(finite, sample - mean[..., None], 0.0)
        std = np.sqrt(sum_last(dev * dev) / count)
        z = (raw - mean) / std
    z = np.where(count < min_samples, raw, np.where(std < MIN_STD, 0.0, z))
    return np.where(np.isfinite(raw), np.clip(z, -clip, clip), np.nan)


def zscore_rolling(raw, buffer, min_samples: int = 3, clip: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each prediction against its own rolling buffer of past predictions.

    The raw value is appended first (see :func:`append`), then standardised
    against the finite entries of the new buffer.

    Parameters
    ----------
    raw : array_like, shape (F, H, N)
        Raw predictions of each family and horizon for each symbol (any shape
        ``(...)`` works).
    buffer : array_like, shape (F, H, N, W)
        Each model's and symbol's last W raw predictions, oldest first.
    min_samples : int
        Fewer finite samples than this: the score is the clipped raw value.
    clip : float
        Scores are clipped to [-clip, clip].

    Returns
    -------
    z : ndarray, shape (F, H, N)
        Standardised scores; NaN where ``raw`` is not finite.
    new_buffer : ndarray, shape (F, H, N, W)
        The buffer with ``raw`` appended (unchanged where ``raw`` is not finite).
    """
    raw = np.asarray(raw, dtype=float)
    new_buffer = append(buffer, raw)
    return _standardise(raw, new_buffer, min_samples, clip), new_buffer


def zscore_cross_sectional(raw, min_samples: int = 3, clip: float = 3.0) -> np.ndarray:
    """Z-score each prediction against the same model's predictions for the whole universe.

    Parameters
    ----------
    raw : array_like, shape (F, H, N)
        Raw predictions; the statistics of each (family, horizon) row are taken
        over the finite values along the last (symbol) axis.
    min_samples, clip
        As in :func:`zscore_rolling`.

    Returns
    -------
    z : ndarray, shape (F, H, N)
        NaN where ``raw`` is not finite.
    """
    raw = np.asarray(raw, dtype=float)
    # One sample per row, shared by all its symbols: shape (..., 1, N).
    return _standardise(raw, raw[..., None, :], min_samples, clip)
