"""Copy real market data that PyPI packages ship into the layout ``market.source: historical`` reads.

    python examples/real_data.py [--out examples/data]

Two data sets, one directory each under ``--out`` (see the README, "Real data examples"):

- ``us_daily/``: daily US equities on XNYS. ``GOOG.csv`` is backtesting.py's Alphabet
  file (2004-08-19 .. 2013-03-01, ISO dates in an unnamed first column); ``SPX.csv`` and
  ``IXIC.csv`` are arch's S&P 500 and NASDAQ Composite files (1999-01-04 .. 2018-12-31,
  Yahoo's month/day/year dates), decompressed from ``.csv.gz``.
- ``eurusd_hourly/``: ``EURUSD.csv``, backtesting.py's hourly EUR/USD bars
  (2017-04-19 .. 2018-02-07, bar opens in UTC written without an offset).

Files are copied byte for byte (arch's decompressed): no stamp is rewritten; the configs
``examples/us_daily.yaml`` and ``examples/eurusd_hourly.yaml`` tell the loader how the
files write their times. The packages are found through their installed metadata, without
importing them.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from importlib import metadata
from pathlib import Path

#: data set -> {symbol: (distribution, file inside it)}
DATA_SETS = {
    "us_daily": {
        "GOOG": ("backtesting", "backtesting/test/GOOG.csv"),
        "SPX": ("arch", "arch/data/sp500/sp500.csv.gz"),
        "IXIC": ("arch", "arch/data/nasdaq/nasdaq.csv.gz"),
    },
    "eurusd_hourly": {
        "EURUSD": ("backtesting", "backtesting/test/EURUSD.csv"),
    },
}
DEFAULT_OUT = Path(__file__).resolve().parent / "data"


class MissingPackage(LookupError):
    """A package that ships one of the files is not installed (or no longer ships it)."""


def shipped_file(distribution: str, member: str) -> Path:
    """Path of ``member`` inside the installed ``distribution``; MissingPackage when absent."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise MissingPackage(f"package {distribution!r} is not installed; pip install {distribution} "
                             "(or pip install -e '.[dev]')") from None
    path = Path(str(dist.locate_file(member)))
    if not path.is_file():
        raise MissingPackage(f"{distribution} {dist.version} does not ship {member}; install the version "
                             "pinned in pyproject.toml's dev extras")
    return path


def copy_data_set(name: str, out: Path) -> Path:
    """Copy the files of data set ``name`` into ``out/name/<SYMBOL>.csv``; returns that directory."""
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    for symbol, (distribution, member) in DATA_SETS[name].items():
        source = shipped_file(distribution, member)
        with (gzip.open(source, "rb") if source.suffix == ".gz" else open(source, "rb")) as src, \
                open(target / f"{symbol}.csv", "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"directory of the data sets (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        for name in DATA_SETS:
            target = copy_data_set(name, args.out)
            print(f"{name}: {', '.join(sorted(p.name for p in target.glob('*.csv')))} in {target}")
    except MissingPackage as exc:
        print(f"real_data: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
