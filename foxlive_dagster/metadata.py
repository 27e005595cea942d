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
            if isinstance(v, (float, np.floating)):
                values[str(c)] = None if not np.isfinite(v) else round(float(v), 6)
            elif isinstance(v, (np.integer,)):
                values[str(c)] = int(v)
            elif isinstance(v, (bool, np.bool_)):
                values[str(c)] = bool(v)
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
