"""What a trade does to a position, as its reason: enter, increase, reduce, exit or flip; long or short.

The reason a cycle gives a traded symbol names the change it makes to the
position (from ``q_old`` shares before to ``q_new`` after), never the signal
alone, so a trade that only trims a long reads ``reduce_long``, not
``enter_long``:

==============================  =====================================
position before -> after        action
==============================  =====================================
0 -> long / short               ``enter_long`` / ``enter_short``
long -> larger long             ``increase_long`` (short: ``increase_short``)
long -> smaller long            ``reduce_long`` (short: ``reduce_short``)
long -> 0 / short -> 0          ``exit_long`` / ``exit_short``
short -> long / long -> short   ``flip_to_long`` / ``flip_to_short``
==============================  =====================================

A cause is appended where the trade was not the symbol's own entry signal:
the exit rule that fired (``_alpha`` or ``_barrier``, from the barrier gate,
e.g. ``exit_long_alpha``) or ``_gross_scaled`` for a change made only by the
book's gross rescaling.
"""

from __future__ import annotations

import numpy as np

__all__ = ["trade_action", "trade_reason"]


def trade_action(q_old, q_new) -> np.ndarray:
    """The action of each trade (see the module table); '' where the position does not change.

    Parameters
    ----------
    q_old, q_new : array_like, shape (N,)
        Signed shares before and after the trade.

    Returns
    -------
    ndarray of object, shape (N,)
    """
    q_old = np.asarray(q_old, dtype=np.float64)
    q_new = np.asarray(q_new, dtype=np.float64)
    side_new = np.where(q_new > 0, "long", "short")
    side_old = np.where(q_old > 0, "long", "short")
    action = np.select(
        [
            q_new == q_old,
            q_old == 0,
            q_new == 0,
            np.sign(q_old) != np.sign(q_new),
            np.abs(q_new) > np.abs(q_old),
        ],
        [
            "",
            np.char.add("enter_", side_new),
            np.char.add("exit_", side_old),
            np.char.add("flip_to_", side_new),
            np.char.add("increase_", side_new),
        ],
        default=np.char.add("reduce_", side_old),
    )
    return action.astype(object)


def trade_reason(q_old, q_new, exit_reason, entering, gross_scaled) -> np.ndarray:
    """The reason of each trade: its action, with the exit rule or the gross rescaling that caused it.

    Parameters
    ----------
    q_old, q_new : array_like, shape (N,)
        Signed shares before and after.
    exit_reason : array_like of str, shape (N,)
        The barrier gate's exit reason ('exit_long_alpha', 'exit_short_barrier', ...) where an exit
        rule fired for the symbol, '' elsewhere.
    entering : array_like of bool, shape (N,)
        The symbol's own signal passed arbitration and the gate this cycle (its entry rule).
    gross_scaled : array_like of bool, shape (N,)
        The symbol's target was moved by the book's gross rescaling.

    Returns
    -------
    ndarray of object, shape (N,): '' where the position does not change.
    """
    action = trade_action(q_old, q_new)
    exit_reason = np.asarray(exit_reason, dtype=object)
    by_rule = (exit_reason != "") & ~np.asarray(entering, dtype=bool)
    # The exit rule names an exit ('exit_long_alpha'); its cause is what follows the side.
    cause = np.array([r.split("_", 2)[2] if r.count("_") >= 2 else "" for r in exit_reason], dtype=object)
    rescaled = ~by_rule & ~np.asarray(entering, dtype=bool) & np.asarray(gross_scaled, dtype=bool)
    suffix = np.where(by_rule & (cause != ""), "_" + cause, np.where(rescaled, "_gross_scaled", ""))
    return np.where(action == "", "", action + suffix).astype(object)
