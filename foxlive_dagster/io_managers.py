"""Storage of the per-cycle assets' values: numpy arrays in .npz files, no pickle.

A value is a dict whose entries are numpy arrays or JSON-able scalars, lists
and dicts. One file per asset and partition range
(``<base>/<asset path>/<first key>__<last key>.npz``), so a single-run backfill
writes one file for the whole range and its downstream assets read it back.
"""


import json
import os
from pathlib import Path

import dagster as dg
import numpy as np

from foxlive_dagster.resources import FoxliveConfigResource

_JSON_KEY = "__json__"


def save_arrays(path: Path, value: dict) -> None:
    arrays = {k: v for k, v in value.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in value.items() if not isinstance(v, np.ndarray)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{_JSON_KEY: np.array(json.dumps(rest, default=str))}, **arrays)
    os.replace(tmp, path)


def load_arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files if k != _JSON_KEY}
        out.update(json.loads(str(z[_JSON_KEY])))
    return out


class CycleArraysIOManager(dg.ConfigurableIOManager):
    """Stores dict-of-arrays asset values under ``<foxlive home>/dagster_values``."""

    config: dg.ResourceDependency[FoxliveConfigResource]

    def _path(self, context) -> Path:
        base = self.config.get().home / "dagster_values"
        parts = context.asset_key.path
        if context.has_asset_partitions:
            r = context.asset_partition_key_range
            name = f"{r.start}__{r.end}".replace(":", "")
        else:
            name = "value"
        return base.joinpath(*parts, f"{name}.npz")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a dict of arrays, got {type(obj).__name__}")
        save_arrays(self._path(context), obj)

    def load_input(self, context: dg.InputContext) -> dict:
        path = self._path(context)
        if not path.is_file():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()}: no stored value at {path}; materialise the upstream asset "
                "for the same partition range first"
            )
        return load_arrays(path)
