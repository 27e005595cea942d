"""The ``foxlive`` console script: foxlive_core's command line, with ``demo`` run through Dagster."""

import warnings

from foxlive_core.cli import main as core_main


def main(argv=None) -> int:
    import dagster as dg

    # BackfillPolicy is a beta parameter that the single-run replay needs; the CLI's user cannot act on it.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    from foxlive_dagster.demo import run_demo

    return core_main(argv, overrides={"demo": run_demo})


if __name__ == "__main__":
    raise SystemExit(main())
