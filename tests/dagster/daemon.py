"""`dagster dev` (webserver and daemon) as a subprocess, and the GraphQL calls that drive it: shared by
tests/dagster/test_daemon.py and benchmarks/daemon_cycle.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import requests

from foxlive_dagster.kill_switch import BAR_TAG
from tests.dagster.test_webserver import WORKSPACE, _free_port, _wait_for

DAGSTER = Path(sys.executable).with_name("dagster")
INSTANCES = {"sqlite": WORKSPACE.parent / "config" / "dagster" / "dagster.yaml",
             "postgres": WORKSPACE.parent / "config" / "dagster" / "dagster-postgres.yaml"}
SELECTOR = {"repositoryLocationName": "foxlive", "repositoryName": "__repository__"}

START_SCHEDULE = """
mutation($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""
TICKS = """
query($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    ... on Schedule { scheduleState { ticks(limit: 20) { status timestamp skipReason runIds } } }
  }
}
"""
RUNS = """
query { runsOrError(limit: 50) { ... on Runs { results { runId jobName status startTime endTime
                                                        tags { key value } } } } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@contextmanager
def dagster_dev(workdir: Path, config_path: Path, home: Path, instance_yaml: Path, storage_env: dict | None = None):
    """`dagster dev` on a fresh DAGSTER_HOME under ``workdir`` (``instance_yaml`` as its dagster.yaml), its code
    location on ``config_path`` and ``home``; yields (port, log path). Stops every process it started."""
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(instance_yaml, dagster_home / "dagster.yaml")
    port = _free_port()
    log_path = workdir / "dagster_dev.log"
    log = log_path.open("w")
    env = {**os.environ, **(storage_env or {}), "DAGSTER_HOME": str(dagster_home), "FOXLIVE_CONFIG": str(config_path),
           "FOXLIVE_HOME": str(home), "PYTHONPATH": str(WORKSPACE.parent)}
    cmd = [str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(WORKSPACE)]
    # Its own process group: stopping it stops the webserver, the daemon and the code servers it started.
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", proc, timeout=120)
        yield port, log_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        # The webserver, the daemon and the code servers shut down in their own time; none may be left. A
        # code server can still be (re)started while they stop, after the first signal: it is signalled too.
        deadline = time.monotonic() + 30
        while _group(proc.pid) and time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        leftover = _group(proc.pid)
        if leftover:
            described = subprocess.run(["ps", "-o", "pid,etime,args", "-g", str(proc.pid)], capture_output=True,
                                       text=True).stdout
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"processes of dagster dev still running 30 s after it stopped:\n{described}")


def _group(pgid: int) -> list[str]:
    """Pids of the live processes of process group ``pgid``."""
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()


def graphql(port: int, query: str, **variables) -> dict:
    reply = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables},
                          timeout=60).json()
    assert "errors" not in reply, reply
    return reply["data"]


def wait_until(what: str, probe, timeout: float, log_path: Path, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what} not seen within {timeout:.0f} s; dagster dev's log ends:\n"
                         + "\n".join(log_path.read_text().splitlines()[-40:]))


def start_schedule(port: int, name: str) -> None:
    started = graphql(port, START_SCHEDULE, selector={**SELECTOR, "scheduleName": name})
    assert started["startSchedule"]["scheduleState"]["status"] == "RUNNING", started


def runs(port: int, job: str) -> list[dict]:
    return [r for r in graphql(port, RUNS)["runsOrError"]["results"] if r["jobName"] == job]


def ticks(port: int) -> list[dict]:
    state = graphql(port, TICKS, selector={**SELECTOR, "scheduleName": "trading_cycle_schedule"})
    return state["scheduleOrError"]["scheduleState"]["ticks"]


def cycle_runs(port: int) -> pd.DataFrame:
    """The successful trading_cycle_job runs, one row each: bar (its bar close, UTC), started and ended
    (seconds after the bar close), took (seconds from start to end); oldest bar first."""
    rows = []
    for r in runs(port, "trading_cycle_job"):
        bar = next((pd.Timestamp(t["value"]) for t in r["tags"] if t["key"] == BAR_TAG), None)
        if r["status"] == "SUCCESS" and bar is not None:
            rows.append({"bar": bar, "started": r["startTime"] - bar.timestamp(), "ended": r["endTime"] - bar.timestamp(),
                         "took": r["endTime"] - r["startTime"]})
    return pd.DataFrame(rows, columns=["bar", "started", "ended", "took"]).sort_values("bar").reset_index(drop=True)
