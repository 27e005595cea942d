"""End to end: the webserver loads the code location, shows the graph, and runs a trading cycle launched over GraphQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from foxlive_dagster.kill_switch import BOOK_TAG
from tests.dagster.conftest import B1, CYCLE_ASSETS, S1, bar_config, make_env

pytestmark = pytest.mark.slow

WEBSERVER = Path(sys.executable).with_name("dagster-webserver")
WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"

DAGSTER_YAML = """\
run_coordinator:          # no daemon in this test: launch submitted runs at once
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""

OVERVIEW = """
query {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        schedules { name cronSchedule executionTimezone }
        sensors { name sensorState { status } }
        assetNodes { assetKey { path } dependencyKeys { path } }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster-webserver exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def webserver(small_run, tmp_path):
    env = make_env(tmp_path / "foxlive", small_run)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    port = _free_port()
    log = (tmp_path / "webserver.log").open("w")
    # PYTHONPATH: the server imports this checkout's code (not whichever one the venv's editable install names).
    proc_env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "FOXLIVE_CONFIG": str(env.config_path),
                "FOXLIVE_HOME": str(env.home), "PYTHONPATH": str(WORKSPACE.parent)}
    cmd = [str(WEBSERVER) if WEBSERVER.exists() else sys.executable, *([] if WEBSERVER.exists() else ["-m", "dagster_webserver"]),
           "-h", "127.0.0.1", "-p", str(port), "-w", str(WORKSPACE)]
    proc = subprocess.Popen(cmd, env=proc_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", proc, timeout=90)
        yield env, port, tmp_path / "webserver.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def run_a_cycle(port: int, log: Path) -> str:
    """Launch the live cycle at B1 over GraphQL (no book tag) and wait for its success; returns the run id."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)
    run_id = client.submit_job_execution("trading_cycle_job", repository_location_name="foxlive",
                                         run_config=bar_config(B1), tags={"dagster/partition": S1})
    deadline = time.monotonic() + 90
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id} ended {status}; webserver log:\n{log.read_text()[-4000:]}"
    return run_id


def test_webserver_shows_the_location_and_runs_a_cycle(webserver):
    env, port, log = webserver
    reply = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": OVERVIEW}, timeout=60).json()
    assert "errors" not in reply, reply
    (repo,) = reply["data"]["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == "foxlive"  # the name a GraphQL client uses, however the server started
    jobs = {j["name"] for j in repo["jobs"]}
    assert {"trading_cycle_job", "training_job", "end_of_day_job", "halt_book", "resume_book"} <= jobs
    schedules = {s["name"]: s for s in repo["schedules"]}
    assert set(schedules) == {"trading_cycle_schedule", "end_of_day_schedule", "weekly_retraining_schedule"}
    assert schedules["trading_cycle_schedule"]["executionTimezone"] == "America/New_York"
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert sensors == {"risk_sensor": "RUNNING", "cycle_failure_sensor": "RUNNING", "stale_data_sensor": "RUNNING"}
    deps = {"/".join(a["assetKey"]["path"]): {"/".join(d["path"]) for d in a["dependencyKeys"]} for a in repo["assetNodes"]}
    for up, down in zip(CYCLE_ASSETS, CYCLE_ASSETS[1:]):
        assert up in deps[down]
    assert "active_models" in deps["predictions"] and "trained_models" in deps["active_models"]
    assert deps["risk/kill_switch"] == {"risk_report"}

    run_id = run_a_cycle(port, log)
    cycles = env.store().cycles(env.cfg.book)
    assert len(cycles) == 1 and str(cycles["cycle_time"].iloc[0]) == "2025-05-01 13:35:00+00:00"
    # Launched without the book tag, bound to it by its first step.
    tags = {t["key"]: t["value"] for t in requests.post(
        f"http://127.0.0.1:{port}/graphql", timeout=30,
        json={"query": "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }",
              "variables": {"id": run_id}}).json()["data"]["runOrError"]["tags"]}
    assert tags[BOOK_TAG] == env.cfg.book and tags["foxlive/bar_close"] == B1


CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium (.ci/run installs it); playwright's own download is not used


def test_the_ui_in_a_browser_shows_the_graph_with_the_kill_switch_and_a_cycle_runs_steps(webserver, tmp_path):
    """Headless Chromium on the running webserver: the asset graph, the kill switch's lineage, a cycle run's page.
    Screenshots go to the test's folder (``tmp_path``)."""
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            raise AssertionError(f"{CHROMIUM} not found; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium; .ci/run does)")
    env, port, log = webserver
    run_id = run_a_cycle(port, log)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # the UI loads its bundle and queries on 2 shared cores
            page.goto(f"{base}/locations/foxlive/asset-groups/trading")
            skip = page.get_by_role("button", name="Skip")  # the first visit's community dialog
            skip.wait_for()
            skip.click()
            for name in CYCLE_ASSETS:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            expect(page.get_by_text("kill_switch", exact=True).first).to_be_visible()  # risk_report's downstream
            page.screenshot(path=str(tmp_path / "asset_graph.png"), full_page=True)

            page.goto(f"{base}/assets/risk/kill_switch?view=lineage")
            expect(page.get_by_text("risk_report", exact=True).first).to_be_visible()
            page.screenshot(path=str(tmp_path / "kill_switch_lineage.png"), full_page=True)

            page.goto(f"{base}/runs/{run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible()
            expect(page.get_by_text("Succeeded (6)", exact=True)).to_be_visible()  # every step of the cycle
            expect(page.locator("body")).to_contain_text(f"step_keys{CYCLE_ASSETS}")  # run in one process, in order
            # the end of the run's log: the cycle's metadata (its orders and fills table), then RUN_SUCCESS
            expect(page.get_by_text("last_cycle_orders_and_fills", exact=True).first).to_be_visible()
            expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()
            page.screenshot(path=str(tmp_path / "cycle_run.png"), full_page=True)
        finally:
            browser.close()
    assert all((tmp_path / f).stat().st_size > 10_000 for f in ("asset_graph.png", "kill_switch_lineage.png", "cycle_run.png"))
