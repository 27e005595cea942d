"""The end-of-day report of the live book, one partition per session."""


import dagster as dg
import pandas as pd

from foxlive_core.calendar import calendar_for
from foxlive_core.config import FoxliveConfig
from foxlive_core.reports import load_report
from foxlive_dagster.metadata import report_metadata, table
from foxlive_dagster.partitions import session_partitions
from foxlive_dagster.resources import FoxliveConfigResource, StateStoreResource


def build_report_assets(cfg: FoxliveConfig) -> list:
    @dg.asset(partitions_def=session_partitions(cfg), group_name="reports", kinds={"python"},
              io_manager_key="cycle_io_manager", deps=["risk_report"])
    def end_of_day_report(context: dg.AssetExecutionContext, foxlive: FoxliveConfigResource, state: StateStoreResource):
        """The live book's session (foxlive_core.reports): P&L, Sharpe, drawdown, turnover, costs, trades, plots."""
        cfg = foxlive.get()
        store = state.get()
        book = cfg.book
        day = pd.Timestamp(context.partition_key).date()
        cycles = store.cycles(book) if store.exists(book) else pd.DataFrame()
        if len(cycles):
            local = cycles["cycle_time"].dt.tz_convert(calendar_for(cfg.market).tz).dt.date
            cycles = cycles[local == day]
        if len(cycles) == 0:
            return dg.MaterializeResult(value={"book": book, "session": str(day), "cycles": 0},
                                        metadata={"book": book, "session": str(day), "cycles": 0})
        report = load_report(cfg, store, book, since=cycles["cycle_time"].iloc[0], until=cycles["cycle_time"].iloc[-1])
        return dg.MaterializeResult(
            value={"session": str(day), "cycles": report.periods, **report.summary()},
            metadata={
                "book": book,
                "session": str(day),
                "cycles": report.periods,
                **report_metadata(report),
                "halted_at_close": report.halted,
                "cycles_table": table(cycles[["cycle_time", "portfolio_value", "n_trade", "n_orders", "fees", "drawdown"]].tail(100)),
            },
        )

    return [end_of_day_report]
