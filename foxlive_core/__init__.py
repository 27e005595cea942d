"""foxlive_core: the plain library behind foxlive (no Dagster imports here)."""

__version__ = "0.1.0"
