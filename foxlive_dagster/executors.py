"""The executor of the jobs that fan out (training, replay sweeps), chosen per deployment.

``FOXLIVE_SCALE_OUT_EXECUTOR`` names it, read when the definitions load (so the
webserver, the daemon's run workers and every step process agree):

- ``multiprocess`` (the default): Dagster's multiprocess executor, a process per
  step, as many at once as ``execution.config.max_concurrent`` (default: the cores);
- ``in_process``: every step in the run's own process, one after another;
- ``dask``: dagster-dask's executor; run config ``execution.config.cluster`` says
  where (``existing: {address: tcp://...}`` for a running ``dask.distributed``
  scheduler, ``local: {n_workers: ...}`` for a LocalCluster of the run);
- ``module:attribute``: any other executor definition, e.g.
  ``dagster_k8s:k8s_job_executor`` (a Kubernetes job per step) or
  ``dagster_celery:celery_executor`` (Celery workers); see docs/scale-out.md.

The jobs of a live cycle never fan out: they run in process (jobs.py).
"""

from __future__ import annotations

import importlib
import os

import dagster as dg

from foxlive_core.errors import ConfigError

SCALE_OUT_ENV = "FOXLIVE_SCALE_OUT_EXECUTOR"
NAMED = {"multiprocess": "dagster:multiprocess_executor", "in_process": "dagster:in_process_executor",
         "dask": "dagster_dask:dask_executor"}


def scale_out_executor(choice: str | None = None) -> dg.ExecutorDefinition:
    """The executor ``choice`` names (default: ``$FOXLIVE_SCALE_OUT_EXECUTOR``, else ``multiprocess``)."""
    choice = (choice if choice is not None else os.environ.get(SCALE_OUT_ENV, "")).strip() or "multiprocess"
    target = NAMED.get(choice, choice)
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ConfigError(f"{SCALE_OUT_ENV}={choice!r} is not an executor: use one of {', '.join(NAMED)} or "
                          "module:attribute (e.g. dagster_k8s:k8s_job_executor)")
    try:
        executor = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{SCALE_OUT_ENV}={choice!r}: cannot load {target} ({exc}); install the package that "
                          "provides it (e.g. pip install dagster-k8s==0.29.27) or choose multiprocess") from exc
    if not isinstance(executor, dg.ExecutorDefinition):
        raise ConfigError(f"{SCALE_OUT_ENV}={choice!r}: {target} is a {type(executor).__name__}, not a Dagster "
                          "executor definition")
    return executor
