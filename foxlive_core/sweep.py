"""A replay sweep: the same sessions replayed under several configurations, each on a book of its own.

The sweep file (``paths.sweep``, relative to the configuration file) lists the
variants::

    variants:
      - name: defaults
        overrides: {}
      - name: rolling_standardisation
        overrides: {standardization: {mode: rolling}}

``overrides`` is merged over the configuration as ``load_config`` merges any
override, with the same validation. A variant changes how the pipeline
decides, sizes and executes; it may not change what the models were trained
on or where things live (sections ``FIXED_SECTIONS``), because every variant
replays the one model run the sweep pinned. Variant ``v`` trades book
``sweep_<v>`` in the configuration's state store; each replay restarts its
book, so a variant's figures depend only on the configuration, the model run
and the range, whichever process or machine replays it and in whatever order.
A halted variant book is refused (:func:`refuse_halted_books`, before any
variant replays), and a halt set while the sweep runs binds that variant's
remaining cycles from its next commit, as it binds any replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from foxlive_core.config import FoxliveConfig, load_config
from foxlive_core.errors import ConfigError, StateError
from foxlive_core.reports import load_report
from foxlive_core.runtime import open_engine
from foxlive_core.state import StateStore

FIXED_SECTIONS = ("book", "replay_book", "paths", "market", "horizons", "models", "engine")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# The columns of the comparison, in order: money in dollars, returns and drawdown as fractions.
COLUMNS = ("variant", "book", "pnl", "total_return", "sharpe", "sharpe_se", "max_drawdown", "turnover",
           "costs", "orders", "fills", "mean_gross_exposure")


@dataclass(frozen=True)
class SweepVariant:
    name: str
    overrides: dict

    @property
    def book(self) -> str:
        return f"sweep_{self.name}"


def sweep_path(cfg: FoxliveConfig) -> Path:
    return Path(cfg.source_path).parent / cfg.paths.sweep


def load_sweep(cfg: FoxliveConfig) -> tuple[SweepVariant, ...]:
    """The variants of ``cfg``'s sweep file, each checked (its overrides load as a valid configuration);
    none when the file does not exist."""
    path = sweep_path(cfg)
    if not path.is_file():
        return ()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path} is not valid YAML: {exc}") from exc
    entries = raw.get("variants") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"sweep file {path}: expected a non-empty list under 'variants' (each with a name and "
                          "overrides)")
    variants, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"sweep file {path}, variant {i + 1}"
        if not isinstance(entry, dict) or set(entry) - {"name", "overrides"} or "name" not in entry:
            raise ConfigError(f"{where}: expected keys name and overrides, got {entry!r}")
        name, overrides = entry["name"], entry.get("overrides") or {}
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} must be lower-case letters, digits and underscores "
                              "(starting with a letter, at most 40): it names book sweep_<name>")
        if name in seen:
            raise ConfigError(f"{where}: name {name!r} is used twice; give each variant its own name")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where} ({name}): overrides must be a mapping of configuration sections, "
                              f"got {overrides!r}")
        fixed = sorted(set(overrides) & set(FIXED_SECTIONS))
        if fixed:
            raise ConfigError(f"{where} ({name}): overrides {', '.join(fixed)}, which every variant shares (the "
                              "model run and the data are pinned for the sweep); sweep pipeline, cost, sizing, risk "
                              "and broker settings, or train another run")
        seen.add(name)
        variant = SweepVariant(name, overrides)
        variant_config(cfg, variant)  # rejects a bad key or value now, naming it
        variants.append(variant)
    return tuple(variants)


def variant_config(cfg: FoxliveConfig, variant: SweepVariant) -> FoxliveConfig:
    """``cfg`` with ``variant``'s overrides (same file, same home)."""
    try:
        return load_config(cfg.source_path, overrides=variant.overrides, home=cfg.home)
    except ConfigError as exc:
        raise ConfigError(f"sweep variant {variant.name!r}: {exc}") from exc


def refuse_halted_books(cfg: FoxliveConfig, variants: tuple[SweepVariant, ...]) -> None:
    """Raise StateError naming the first halted (or reducing) variant book, before anything is replayed."""
    store = StateStore(cfg.state_path)
    for variant in variants:
        store.refuse_replay_if_halted(variant.book)


def replay_variant(cfg: FoxliveConfig, variant: SweepVariant, start: pd.Timestamp, end: pd.Timestamp,
                   run_id: str) -> dict:
    """Replay [start, end] (UTC bar closes) under ``variant`` with model run ``run_id`` on its book;
    returns the book's report summary (:meth:`foxlive_core.reports.Report.summary`)."""
    engine = open_engine(variant_config(cfg, variant), run_id=run_id)
    engine.replay(variant.book, start, end)
    return variant_summary(cfg, variant, start, end, run_id)


def variant_summary(cfg: FoxliveConfig, variant: SweepVariant, start: pd.Timestamp, end: pd.Timestamp,
                    run_id: str) -> dict:
    """The report summary of ``variant``'s book, which must hold this replay: [start, end] with ``run_id``."""
    vcfg = variant_config(cfg, variant)
    store = StateStore(vcfg.state_path)
    report = load_report(vcfg, store, variant.book)
    held = store.load(variant.book).model_run_id
    if (report.first_cycle, report.last_cycle, held) != (start, end, run_id):
        raise StateError(
            f"book {variant.book} holds a replay of {report.first_cycle} .. {report.last_cycle} with model run "
            f"{held}, not {start} .. {end} with {run_id}: another sweep replaced it; run this sweep again")
    return report.summary()


def comparison(results: dict[str, dict]) -> pd.DataFrame:
    """One row per variant (``results``: variant name -> report summary), in ``COLUMNS``."""
    rows = []
    for name, s in results.items():
        rows.append({"variant": name, **{k: s[k] for k in COLUMNS[1:] if k != "costs"},
                     "costs": s["costs"]["total"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))
