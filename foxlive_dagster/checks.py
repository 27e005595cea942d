"""Asset checks on the cycle assets: data staleness (blocking: it guards trading),
gross exposure and position limits on the snapshot, drawdown and daily loss on the risk report.

Checks are declared with ``check_specs=`` on the partitioned assets (a
standalone ``@asset_check`` would load the wrong partition) and evaluated by
the functions here from numbers foxlive_core computed.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from foxlive_core.config import FoxliveConfig
from foxlive_core.data.types import BarPanel

MARKET_DATA_FRESH = dg.AssetCheckSpec(
    "market_data_fresh",
    asset="market_bars",
    blocking=True,
    description="Most symbols have a real bar at the newest cycle and no bar has a non-positive or NaN price "
    "where it exists. Blocking: a cycle never trades on stale or broken data.",
)
SNAPSHOT_CHECKS = [
    dg.AssetCheckSpec("gross_exposure_within_limit", asset="portfolio_snapshot",
                      description="sum |weight| <= risk.max_gross_exposure"),
    dg.AssetCheckSpec("position_limit", asset="portfolio_snapshot",
                      description="every |weight| <= risk.max_position_weight"),
]
RISK_CHECKS = [
    dg.AssetCheckSpec("drawdown_within_limit", asset="risk_report",
                      description="drawdown from the high-water mark <= risk.drawdown_limit"),
    dg.AssetCheckSpec("daily_loss_within_limit", asset="risk_report",
                      description="daily return >= -risk.daily_loss_limit"),
]

# At least this share of the universe must have a real bar at the newest cycle.
MIN_FRESH_SHARE = 0.5


def market_data_fresh(panel: BarPanel, times: pd.DatetimeIndex, cfg: FoxliveConfig) -> dg.AssetCheckResult:
    last = panel.times.get_loc(times[-1])
    fresh_share = float(np.isfinite(panel.close[last]).mean())
    prices = np.stack([panel.open, panel.high, panel.low, panel.close])
    broken = int((np.isfinite(prices) & (prices <= 0)).sum())
    passed = fresh_share >= MIN_FRESH_SHARE and broken == 0
    return dg.AssetCheckResult(
        check_name="market_data_fresh",
        passed=passed,
        metadata={"fresh_share": fresh_share, "min_fresh_share": MIN_FRESH_SHARE, "non_positive_prices": broken,
                  "newest_cycle": str(times[-1])},
        description=None if passed else (
            f"only {fresh_share:.0%} of symbols have a bar at {times[-1]} (need {MIN_FRESH_SHARE:.0%})"
            if fresh_share < MIN_FRESH_SHARE else f"{broken} non-positive prices in the window"
        ),
    )


def snapshot_checks(gross: float, max_weight: float, cfg: FoxliveConfig):
    yield dg.AssetCheckResult(
        check_name="gross_exposure_within_limit",
        passed=gross <= cfg.risk.max_gross_exposure + 1e-9,
        metadata={"gross_exposure": gross, "limit": cfg.risk.max_gross_exposure},
    )
    yield dg.AssetCheckResult(
        check_name="position_limit",
        passed=max_weight <= cfg.risk.max_position_weight + 1e-9,
        metadata={"largest_position_weight": max_weight, "limit": cfg.risk.max_position_weight},
    )


def risk_checks(report: dict, cfg: FoxliveConfig):
    yield dg.AssetCheckResult(
        check_name="drawdown_within_limit",
        passed=report["drawdown"] <= cfg.risk.drawdown_limit,
        metadata={"drawdown": report["drawdown"], "limit": cfg.risk.drawdown_limit, "halted": report["halted"]},
    )
    yield dg.AssetCheckResult(
        check_name="daily_loss_within_limit",
        passed=report["daily_return"] >= -cfg.risk.daily_loss_limit,
        metadata={"daily_return": report["daily_return"], "limit": -cfg.risk.daily_loss_limit, "halted": report["halted"]},
    )
