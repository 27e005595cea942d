"""The columnar record of cycles: every symbol's decision and whole stage trace, one Parquet table per chunk.

A chunk is one live cycle or the cycles of a replay between two commits. Its
table has one row per (cycle, symbol) and one column per trace value: a
per-symbol field is one column (``gate``, ``price``, ...), a field with
family or horizon axes is one column per label (``raw_pred[lightgbm,5m]``,
``alpha_bps[1d]``), so the file opens as a plain frame in pandas, polars or
DuckDB. The state store keeps each chunk's Parquet bytes in the same
transaction as the cycles they record (see :mod:`foxlive_core.state`).

Every array of a cycle's trace has the symbol axis last; :data:`TRACE_AXES`
names the other axes of each multi-dimensional field, and the writer refuses
a field it does not know, so no trace value is silently dropped.
"""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foxlive_core.errors import StateError

#: The leading axes of each multi-dimensional trace field (the last axis is always the symbol).
TRACE_AXES = {
    "raw_pred": ("family", "horizon"),
    "zscore": ("family", "horizon"),
    "ic": ("family", "horizon"),
    "stability": ("family", "horizon"),
    "confidence": ("family", "horizon"),
    "calibrated": ("family", "horizon"),
    "blend_weights": ("horizon", "family"),
    "freshness": ("horizon",),
    "blended_bps": ("horizon",),
    "calibration_slope": ("horizon",),
    "alpha_bps": ("horizon",),
    "sigma_h_bps": ("horizon",),
    "impact_bps": ("horizon",),
    "cost_bps": ("horizon",),
    "net_bps": ("horizon",),
    "score": ("horizon",),
}
# The decision as executed (a rejected order is BLOCKED with 0 shares, a partial fill keeps what filled);
# the trace keeps what was decided (``shares``, ``target_weight``).
DECISION_COLUMNS = {"decision": "decision", "reason": "reason", "shares": "executed_shares"}
#: The multi-dimensional fields kept by ``trace: decisions`` (every per-symbol field is always kept).
DECISION_TRACE_FIELDS = frozenset({"alpha_bps", "cost_bps", "net_bps", "score"})
#: Columns kept in float64; every other stage value is stored in float32 (7 significant digits, plenty to
#: explain a decision, and half the bytes: a session of 500 symbols is ~200 columns x 39,000 rows).
EXACT_COLUMNS = frozenset({"target_weight", "price", "current_weight"})
FORMAT = "foxlive-cycles-v1"


def _labels(field: str, shape: tuple[int, ...], horizons, families) -> list[str]:
    axes = TRACE_AXES.get(field, ())
    if len(axes) != len(shape):
        raise StateError(
            f"trace field {field!r} has leading shape {shape}, but foxlive_core.cycle_table.TRACE_AXES gives it "
            f"axes {axes}; declare its axes there"
        )
    names = {"horizon": list(horizons), "family": list(families)}
    for axis, n in zip(axes, shape):
        if len(names[axis]) != n:
            raise StateError(f"trace field {field!r}: its {axis} axis has {n} entries, the cycle has {len(names[axis])}")
    if not axes:
        return [field]
    grid = np.array(np.meshgrid(*[names[a] for a in axes], indexing="ij")).reshape(len(axes), -1).T
    return [f"{field}[{','.join(labels)}]" for labels in grid]


class CycleTableWriter:
    """Collects the cycles of one chunk and writes them as one Parquet table.

    Parameters
    ----------
    symbols : the N symbols of every cycle in the chunk
    horizons, families : names of the H horizons and Fam families
    fields : 'full' keeps every trace field; 'decisions' the per-symbol ones and
        :data:`DECISION_TRACE_FIELDS` (the config's ``engine.trace``)
    """

    def __init__(self, symbols, horizons, families, fields: str = "full") -> None:
        if fields not in ("full", "decisions"):
            raise StateError(f"trace fields {fields!r}: use 'full' or 'decisions' (engine.trace)")
        self.keep_all = fields == "full"
        self.symbols = tuple(symbols)
        self.horizons = tuple(horizons)
        self.families = tuple(families)
        self.times: list[pd.Timestamp] = []
        self._runs: list[str] = []
        self._columns: dict[str, list[np.ndarray]] = {}
        self._fields: dict[str, list] = {}

    def __len__(self) -> int:
        return len(self.times)

    def add(self, time: pd.Timestamp, model_run_id: str, decision, trace: dict) -> None:
        """Add one cycle: ``decision`` has decision, reason, shares (N,) as executed; ``trace`` name -> (..., N)."""
        N = len(self.symbols)
        first = not self.times
        self.times.append(time)
        self._runs.append(model_run_id)
        for attr, name in DECISION_COLUMNS.items():
            self._column(name, first).append(np.asarray(getattr(decision, attr)))
        for field, value in trace.items():
            value = np.asarray(value)
            if not (self.keep_all or value.ndim == 1 or field in DECISION_TRACE_FIELDS):
                continue
            if value.shape[-1:] != (N,):
                raise StateError(f"trace field {field!r} has shape {value.shape}; its last axis must be the {N} symbols")
            if first:
                self._fields[field] = [list(value.shape[:-1]), _labels(field, value.shape[:-1], self.horizons, self.families)]
            for label, row in zip(self._fields[field][1], value.reshape(-1, N)):
                self._column(label, first).append(row)

    def _column(self, name: str, first: bool) -> list:
        if first:
            if name in self._columns:
                raise StateError(f"trace column {name!r} appears twice in one cycle")
            self._columns[name] = []
        return self._columns[name]

    def to_parquet(self, book: str) -> bytes:
        """The chunk as Parquet bytes (zstd; LZ4 for one cycle), with the layout in the schema metadata."""
        if not self.times:
            raise StateError("no cycles to write")
        N, C = len(self.symbols), len(self.times)
        times = pd.DatetimeIndex(self.times).as_unit("ns")
        columns = {
            "cycle_time": pa.array(np.repeat(times.tz_localize(None).to_numpy(), N), type=pa.timestamp("ns", tz="UTC")),
            "symbol": pa.DictionaryArray.from_arrays(np.tile(np.arange(N, dtype=np.int32), C), pa.array(self.symbols)),
            "model_run_id": pa.array(np.repeat(np.array(self._runs, dtype=object), N), type=pa.string()),
        }
        for name, parts in self._columns.items():
            values = np.concatenate(parts)
            if values.dtype == object or values.dtype.kind == "U":
                columns[name] = pa.array(values.astype(str), type=pa.string()).dictionary_encode()
            elif values.dtype == np.float64 and name not in EXACT_COLUMNS:
                columns[name] = pa.array(values.astype(np.float32))
            else:
                columns[name] = pa.array(values)
        meta = {
            "format": FORMAT, "book": book, "symbols": list(self.symbols), "horizons": list(self.horizons),
            "families": list(self.families), "fields": self._fields,
        }
        table = pa.table(columns).replace_schema_metadata({"foxlive": json.dumps(meta)})
        buf = io.BytesIO()
        floats = [n for n, c in columns.items() if pa.types.is_floating(c.type)]
        # Byte-stream split lets zstd find the shared exponents of neighbouring floats. A dictionary of floats
        # that hardly repeat is built and then abandoned: without it (and without statistics) a 500-symbol
        # session's chunk is written in 76 ms instead of 283, and is 20 MB instead of 30. Readers filter on the
        # cycle time only, so no other column's statistics are written.
        # A live cycle writes one cycle's table on its critical path, where zstd costs twice LZ4's time
        # (at 500 symbols ~9 ms against ~5) to save 3 % of ~300 KB.
        pq.write_table(table, buf, compression="lz4" if C == 1 else "zstd", use_byte_stream_split=floats,
                       use_dictionary=[n for n in columns if n not in floats], write_statistics=["cycle_time"],
                       row_group_size=max(1, N * min(C, 64)))
        return buf.getvalue()


def _table(blob: bytes, columns=None, cycle_time=None) -> tuple[pa.Table, dict]:
    f = pq.ParquetFile(io.BytesIO(blob))
    meta = json.loads(f.schema_arrow.metadata[b"foxlive"])
    if meta.get("format") != FORMAT:
        raise StateError(f"stored cycle table has format {meta.get('format')!r}, expected {FORMAT!r}")
    filters = None if cycle_time is None else [("cycle_time", "=", pd.Timestamp(cycle_time).tz_convert("UTC"))]
    return pq.read_table(io.BytesIO(blob), columns=columns, filters=filters), meta


def cycle_times(blob: bytes) -> pd.DatetimeIndex:
    table, _ = _table(blob, ["cycle_time"])
    return pd.DatetimeIndex(table.column("cycle_time").to_numpy()).unique().tz_localize("UTC")


def read_cycle(blob: bytes, cycle_time) -> SimpleNamespace:
    """One cycle of a chunk, as an object :func:`foxlive_core.explain.trace_row` accepts."""
    table, meta = _table(blob, cycle_time=cycle_time)
    if table.num_rows == 0:
        raise StateError(f"cycle {cycle_time} is not in this chunk")
    N = len(meta["symbols"])

    def col(name):
        c = table.column(name)
        if pa.types.is_dictionary(c.type):
            return np.asarray(c.cast(c.type.value_type).to_numpy(zero_copy_only=False), dtype=object)
        return c.to_numpy()

    trace = {}
    for field, (shape, labels) in meta["fields"].items():
        trace[field] = np.stack([col(label) for label in labels]).reshape(*shape, N) if shape else col(labels[0])
    decision = SimpleNamespace(
        decision=col("decision"), reason=col("reason"), shares=col("executed_shares"),
        target_weight=trace["target_weight"], trace=trace,
    )
    return SimpleNamespace(
        book=meta["book"], time=pd.Timestamp(cycle_time).tz_convert("UTC"), model_run_id=str(col("model_run_id")[0]),
        symbols=tuple(meta["symbols"]), horizons=tuple(meta["horizons"]), families=tuple(meta["families"]),
        decision=decision,
    )


DECISION_FRAME_COLUMNS = ("cycle_time", "symbol", "decision", "reason", "horizon", "alpha_bps", "score",
                          "target_weight", "shares", "price", "bid", "ask")


def decisions_frame_columns() -> pd.DataFrame:
    """An empty :func:`decisions_frame` (a book with no committed cycle)."""
    return pd.DataFrame({c: [] for c in DECISION_FRAME_COLUMNS})


def decisions_frame(blob: bytes) -> pd.DataFrame:
    """Each (cycle, symbol)'s decision: cycle_time, symbol, decision, reason, horizon, alpha_bps, score,
    target_weight, shares (alpha and score at the chosen horizon, NaN where none was chosen), and the quote
    it was decided on: price (the mid, else the mark), bid, ask (what a report splits a fill's cost by)."""
    _, meta = _table(blob, ["cycle_time"])
    horizons = meta["horizons"]
    wanted = ["cycle_time", "symbol", "decision", "reason", "best_horizon", "target_weight", "executed_shares",
              "price", "bid", "ask"]
    wanted += [f"alpha_bps[{h}]" for h in horizons] + [f"score[{h}]" for h in horizons]
    table, _ = _table(blob, wanted)
    best = table.column("best_horizon").to_numpy()
    pick = np.maximum(best, 0)
    alpha = np.stack([table.column(f"alpha_bps[{h}]").to_numpy() for h in horizons])
    score = np.stack([table.column(f"score[{h}]").to_numpy() for h in horizons])
    rows = np.arange(len(best))

    def text(name):
        c = table.column(name)
        return c.cast(c.type.value_type).to_numpy(zero_copy_only=False)

    return pd.DataFrame(
        {
            "cycle_time": pd.DatetimeIndex(table.column("cycle_time").to_numpy()).tz_localize("UTC"),
            "symbol": text("symbol"),
            "decision": text("decision"),
            "reason": text("reason"),
            "horizon": np.where(best >= 0, np.array(horizons, dtype=object)[pick], ""),
            "alpha_bps": np.where(best >= 0, alpha[pick, rows], np.nan),
            "score": np.where(best >= 0, score[pick, rows], np.nan),
            "target_weight": table.column("target_weight").to_numpy(),
            "shares": table.column("executed_shares").to_numpy(),
            "price": table.column("price").to_numpy(),
            "bid": table.column("bid").to_numpy().astype(np.float64),
            "ask": table.column("ask").to_numpy().astype(np.float64),
        }
    )
