"""Turning foxlive's frames and figures into Dagster metadata."""

from __future__ import annotations

import base64
import io

import dagster as dg
import numpy as np
import pandas as pd

_TYPES = {"f": "float", "i": "int", "u": "int", "b": "bool"}


def table(frame: pd.DataFrame, max_rows: int = 100) -> dg.TableMetadataValue:
    """A table metadata value of ``frame``'s first ``max_rows`` rows (NaN shown as empty)."""
    frame = frame.head(max_rows)
    columns = [dg.TableColumn(str(c), _TYPES.get(frame[c].dtype.kind, "string")) for c in frame.columns]
    records = []
    for row in frame.itertuples(index=False):
        values = {}
        for c, v in zip(frame.columns, row):
            if v is None:
                values[str(c)] = None
            elif isinstance(v, (bool, np.bool_)):  # before int: bool is an int
                values[str(c)] = bool(v)
            elif isinstance(v, (float, np.floating)):
                values[str(c)] = None if not np.isfinite(v) else round(float(v), 6)
            elif isinstance(v, (int, np.integer)):  # itertuples gives Python ints
                values[str(c)] = int(v)
            else:
                values[str(c)] = str(v)
        records.append(dg.TableRecord(values))
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def png_markdown(fig, title: str) -> dg.MarkdownMetadataValue:
    """A matplotlib figure embedded in markdown (rendered inline by the Dagster UI)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{data})")


def equity_curve(times: pd.Series, values: np.ndarray, title: str) -> dg.MarkdownMetadataValue:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(pd.to_datetime(times), values, lw=1.2)
    ax.set_title(title)
    ax.set_ylabel("portfolio value")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return png_markdown(fig, title)


def report_metadata(report) -> dict:
    """A :class:`foxlive_core.reports.Report` as Dagster metadata: its headline figures (None for n/a), the
    printed table, the full report as JSON, and its plots as inline PNG images."""
    from foxlive_core.reports import figures, render

    summary = report.summary()
    costs, trades = summary["costs"], summary["trades"]
    figures_md = {f"{name}_plot": png_markdown(fig, f"{report.book} {name}") for name, fig in figures(report).items()}
    return {
        "periods": report.periods,
        "bar_interval": report.bar_interval,
        "periods_per_year": report.periods_per_year,
        "pnl": report.pnl,
        "return": report.total_return,
        "annual_return": summary["annual_return"],
        "annual_volatility": summary["annual_volatility"],
        "sharpe": summary["sharpe"],
        "sharpe_se": summary["sharpe_se"],
        "sortino": summary["sortino"],
        "max_drawdown": report.max_drawdown,
        "max_drawdown_bars": report.max_drawdown_bars,
        "mean_gross_exposure": report.mean_gross_exposure,
        "turnover": report.turnover,
        "traded_notional": report.traded_notional,
        "costs_spread": costs["spread"],
        "costs_slippage": costs["slippage"],
        "costs_impact": costs["impact"],
        "costs_fees": costs["fees"],
        "costs_total": costs["total"],
        "fees": costs["fees"],
        "orders": report.orders,
        "fills": report.fills,
        "hit_rate": trades["hit_rate"],
        "long_entries": trades["long"]["entries"],
        "short_entries": trades["short"]["entries"],
        "report": dg.MetadataValue.md(f"```\n{render(report)}\n```"),
        "report_json": dg.MetadataValue.json(summary),
        **figures_md,
    }
