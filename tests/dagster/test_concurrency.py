"""Cycles of one book never overlap: a per-book run concurrency limit, and the state store's lock."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml
from dagster._utils.tags import TagConcurrencyLimitsCounter

from foxlive_dagster.kill_switch import BOOK_TAG, halt_run_request
from tests.dagster.conftest import B1, step_failure

TEMPLATE = Path(__file__).resolve().parents[2] / "config" / "dagster" / "dagster.yaml"


def _run(tags: dict) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="trading_cycle_job", run_id=f"run-{sorted(tags.items())}", tags=tags)


def test_the_instance_template_limits_runs_to_one_per_book():
    overrides = yaml.safe_load(TEMPLATE.read_text())
    with dg.instance_for_test(overrides=overrides) as instance:
        assert not instance.telemetry_enabled
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.tag_concurrency_limits == [
            {"key": BOOK_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        # What the daemon's dequeuer decides with these limits while a live cycle is in progress:
        counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [_run({BOOK_TAG: "live"})])
        assert counter.is_blocked(_run({BOOK_TAG: "live", "dagster/partition": "2025-05-01"}))
        assert not counter.is_blocked(_run({BOOK_TAG: "replay"}))
        assert not counter.is_blocked(_run({}))
        # The run recording a halt never waits behind the trading runs it stops.
        assert not counter.is_blocked(_run(halt_run_request("live", "test", "pytest").tags))


def test_a_cycle_refuses_a_book_locked_by_another_owner(env, instance):
    book = env.cfg.book
    other = env.store()
    other.acquire_lock(book, "another-process")
    blocked = env.live_cycle(instance, B1, raise_on_error=False)
    assert not blocked.success
    assert "locked by another-process" in step_failure(blocked, "trading_cycle")
    assert not env.store().exists(book) or len(env.store().cycles(book)) == 0
    other.release_lock(book, "another-process")
    ran = env.live_cycle(instance, B1)
    assert ran.success
    assert len(env.store().cycles(book)) == 1
    # Launched without the book tag (as a UI materialisation is), the run tags itself when its first step
    # runs: while it is in progress, the queue holds back the book's other runs.
    run = instance.get_run_by_id(ran.run_id)
    assert run.tags[BOOK_TAG] == book
    limits = yaml.safe_load(TEMPLATE.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
    assert TagConcurrencyLimitsCounter(limits, [run]).is_blocked(_run({BOOK_TAG: book}))
