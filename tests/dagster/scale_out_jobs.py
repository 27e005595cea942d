"""Jobs for the scale-out tests, reconstructable in other processes (step processes, dask workers).

Each builds the definitions from ``FOXLIVE_CONFIG`` / ``FOXLIVE_HOME`` of the process that reconstructs
it, as the code location does, with its scale-out executor named (Dagster caches a reconstructed job per
function in a process, so one function per executor).
"""

from foxlive_dagster.definitions import build_definitions


def training_job_multiprocess():
    return build_definitions(scale_out="multiprocess").resolve_job_def("training_job")


def training_job_dask():
    return build_definitions(scale_out="dask").resolve_job_def("training_job")


def replay_sweep_job_dask():
    return build_definitions(scale_out="dask").resolve_job_def("replay_sweep_job")


def training_job_in_process():
    return build_definitions(scale_out="in_process").resolve_job_def("training_job")
