"""The kill switch in Dagster: which runs trade which book, refusing and cancelling them, halt and resume jobs.

The state store is the authority (foxlive_core refuses risk-increasing orders
while its flag is set, whoever calls it). Dagster adds three layers:

- **Binding.** Whether a run trades, and which book, follows from the run
  itself: its steps (does it execute ``trading_cycle``?), its tags (a backfill
  or a partition range is a replay) and its run config (``trading_cycle``'s
  ``book``). So a run is bound to its book however it was launched: schedule,
  UI Materialize (``__ASSET_JOB``, no tags), backfill, ``dg launch``, GraphQL.
  Its first trading step also tags it ``foxlive/book``, so the one-run-per-book
  queue limit and the run list see UI runs too.
- **Refusal.** A bound run's steps that read or trade the book refuse to run
  while the book is halted.
- **Cancellation.** Tripping the switch cancels the book's queued and running
  bound runs, except a run whose cycle is already committed: its remaining
  steps (snapshot, risk report) only report, and the cycle that tripped a
  halt must show its snapshot and risk report.

The flag is mirrored on the ``risk/kill_switch`` asset (downstream of
``risk_report``) so every halt and resume is visible in the UI.
"""


from dataclasses import dataclass

import dagster as dg

from foxlive_core.config import FoxliveConfig
from foxlive_core.state import StateStore
from foxlive_dagster.resources import FoxliveConfigResource, StateStoreResource

KILL_SWITCH_KEY = dg.AssetKey(["risk", "kill_switch"])
BOOK_TAG = "foxlive/book"
# The bar close (UTC, ISO 8601) a live cycle run trades: set by the schedule, or by the run itself once it
# has resolved its bar. A halt spares a running run whose bar is already committed.
BAR_TAG = "foxlive/bar_close"
# The book a halt/resume run acts on. Not BOOK_TAG: that tag carries the one-run-per-book concurrency limit
# (config/dagster/dagster.yaml), and the run recording a halt must never queue behind the runs it stops.
KILL_SWITCH_BOOK_TAG = "foxlive/kill_switch_book"
EVENT_TAG = "foxlive/kill_switch"
TRADING_JOB = "trading_cycle_job"
TRADING_STEP = "trading_cycle"
BACKFILL_TAG = "dagster/backfill"
RANGE_START_TAG = "dagster/asset_partition_range_start"

kill_switch_spec = dg.AssetSpec(
    KILL_SWITCH_KEY,
    deps=["risk_report"],
    description="The book's halt flag as the state store holds it: every halt and resume is a materialisation "
    "with who, why and when (description HALTED or TRADING, tag foxlive/kill_switch = halt or resume). Set by "
    "the risk sensors (risk_sensor, cycle_failure_sensor, stale_data_sensor, all running halt_book) or "
    "`foxlive halt`; cleared only by the resume_book job.",
    group_name="risk",
    kinds={"sqlite"},
)

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def is_replay(tags) -> bool:
    """A run tagged as a backfill or with a partition range replays history; a single partition is live."""
    return BACKFILL_TAG in tags or RANGE_START_TAG in tags


def book_for(cfg: FoxliveConfig, configured: str, replay: bool) -> str:
    """The book a cycle run trades: ``configured`` (trading_cycle's ``book``), else the live or replay book."""
    return configured or (cfg.replay_book if replay else cfg.book)


@dataclass(frozen=True)
class RunBinding:
    """The book a run trades, whether it replays, and the bar a live run trades ('' until known)."""

    book: str
    replay: bool
    bar_close: str


def _executes_trading(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    if run.step_keys_to_execute is not None:
        return TRADING_STEP in run.step_keys_to_execute
    if run.asset_selection is not None:
        return dg.AssetKey(TRADING_STEP) in run.asset_selection
    if run.execution_plan_snapshot_id:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        return any(step.key == TRADING_STEP for step in plan.steps)
    return run.job_name == TRADING_JOB


def run_binding(instance: dg.DagsterInstance, run: dg.DagsterRun, cfg: FoxliveConfig) -> RunBinding | None:
    """The book ``run`` trades, or None when it executes no trading step (training, reports, halt/resume)."""
    if not _executes_trading(instance, run):
        return None
    ops = (run.run_config or {}).get("ops", {})
    configured = ((ops.get(TRADING_STEP) or {}).get("config") or {}).get("book", "")
    replay = is_replay(run.tags)
    return RunBinding(book_for(cfg, configured, replay), replay, run.tags.get(BAR_TAG, ""))


def bind_run(context: dg.AssetExecutionContext, cfg: FoxliveConfig, store: StateStore) -> RunBinding | None:
    """Refuse this run's step while its book is halted, and tag the run with its book (and bar, if known).

    Called by the steps that read or trade a book before they do; returns the run's binding (None when the
    run trades no book, e.g. market bars materialised alone).
    """
    binding = run_binding(context.instance, context.run, cfg)
    if binding is None:
        return None
    halted, reason = store.halt_status(binding.book)
    if halted:
        raise dg.Failure(
            f"book {binding.book!r} is halted ({reason}); this run trades it, so it is refused. Resume the book "
            "with the resume_book job (operator and reason) before running its cycles"
        )
    if context.run.tags.get(BOOK_TAG) != binding.book:
        context.instance.add_run_tags(context.run.run_id, {BOOK_TAG: binding.book})
    return binding


def tag_bar(context: dg.AssetExecutionContext, bar_close: str) -> None:
    """Record on the run the bar its live cycle trades (see BAR_TAG)."""
    if context.run.tags.get(BAR_TAG) != bar_close:
        context.instance.add_run_tags(context.run.run_id, {BAR_TAG: bar_close})


def _committed(run: dg.DagsterRun, binding: RunBinding, store: StateStore) -> bool:
    """Whether a started run's live cycle is already committed (so it only reports from here on)."""
    started = run.status in (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
    return started and bool(binding.bar_close) and store.cycle_done(binding.book, binding.bar_close)


def cancel_book_runs(instance: dg.DagsterInstance, cfg: FoxliveConfig, store: StateStore, book: str,
                     reason: str) -> list[str]:
    """Cancel the queued and in-progress runs bound to ``book`` (see the module docstring); returns their ids."""
    cancelled = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES)):
        binding = run_binding(instance, run, cfg)
        if binding is None or binding.book != book or _committed(run, binding, store):
            continue
        # The run coordinator dequeues a queued run or asks the launcher to stop a started one; with no
        # launcher able to (a unit test, a dead code server, a launcher without termination) the run is
        # marked cancelled directly. Tripping the kill switch never stops half way on a launcher error.
        try:
            stopped = instance.run_coordinator.cancel_run(run.run_id)
        except Exception:  # noqa: BLE001 - any launcher failure falls back to marking the run cancelled
            stopped = False
        if not stopped:
            latest = instance.get_run_by_id(run.run_id) or run
            if not latest.is_finished:
                instance.report_run_canceled(latest, message=f"kill switch: {reason}")
        cancelled.append(run.run_id)
    return cancelled


def _not_blank(job: str, **values: str) -> None:
    blank = [k for k, v in values.items() if not v.strip()]
    if blank:
        raise dg.DagsterInvalidConfigError(
            f"{job}: {' and '.join(blank)} must not be blank; say who acts and why, e.g. "
            "{operator: alice, reason: 'loss reviewed, limits unchanged'}", [], values,
        )


class HaltConfig(dg.Config):
    """``book`` to halt, ``reason`` (why trading stops), ``actor`` (who or what halts it)."""

    book: str
    reason: str
    actor: str = "dagster"


class ResumeConfig(dg.Config):
    """Resuming needs both: ``operator`` (who resumes the book) and ``reason`` (why it is safe to);
    ``book``: empty = the live book."""

    operator: str
    reason: str
    book: str = ""


@dg.config_mapping
def halt_config(config: HaltConfig) -> dict:
    _not_blank("halt_book", book=config.book, reason=config.reason, actor=config.actor)
    return {"ops": {"record_halt": {"config": config.model_dump()}}}


@dg.config_mapping
def resume_config(config: ResumeConfig) -> dict:
    # Checked when the run is launched (the launchpad, GraphQL, execute_in_process), not when it runs.
    _not_blank("resume_book", operator=config.operator, reason=config.reason)
    return {"ops": {"record_resume": {"config": config.model_dump()}}}


def halt_run_request(book: str, reason: str, actor: str, run_key: str | None = None) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        job_name="halt_book",
        run_config={"book": book, "reason": reason, "actor": actor},
        tags={KILL_SWITCH_BOOK_TAG: book, EVENT_TAG: "halt"},
    )


@dg.op(out=dg.Out(dg.Nothing))
def record_halt(context: dg.OpExecutionContext, config: HaltConfig, foxlive: FoxliveConfigResource,
                state: StateStoreResource):
    """Set the halt flag (if a sensor has not already), cancel the book's runs, record it on risk/kill_switch."""
    store = state.get()
    store.halt(config.book, config.reason, config.actor)
    halted, reason = store.halt_status(config.book)
    cancelled = cancel_book_runs(context.instance, foxlive.get(), store, config.book, reason)
    context.log_event(
        dg.AssetMaterialization(
            KILL_SWITCH_KEY,
            description=f"HALTED {config.book}: {reason}",
            metadata={"event": "halt", "state": "HALTED", "book": config.book, "halted": halted, "reason": reason,
                      "actor": config.actor, "cancelled_runs": len(cancelled)},
            tags={EVENT_TAG: "halt"},
        )
    )


@dg.op(out=dg.Out(dg.Nothing))
def record_resume(context: dg.OpExecutionContext, config: ResumeConfig, foxlive: FoxliveConfigResource,
                  state: StateStoreResource):
    """Clear the halt flag, recording the operator and the reason: the only way trading resumes."""
    book = config.book or foxlive.get().book
    store = state.get()
    _, old_reason = store.halt_status(book)
    if not store.resume(book, config.operator, config.reason):
        raise dg.Failure(f"book {book!r} is not halted; nothing to resume")
    context.log_event(
        dg.AssetMaterialization(
            KILL_SWITCH_KEY,
            description=f"TRADING {book}: resumed by {config.operator}: {config.reason}",
            metadata={"event": "resume", "state": "TRADING", "book": book, "halted": False, "reason": config.reason,
                      "actor": config.operator, "cleared_halt_reason": old_reason},
            tags={EVENT_TAG: "resume"},
        )
    )


@dg.job(config=halt_config, tags={EVENT_TAG: "halt"},
        description="Halt a book: set the flag, cancel its trading runs, record it. Config: book, reason, actor.")
def halt_book():
    record_halt()


@dg.job(config=resume_config, tags={EVENT_TAG: "resume"},
        description="Resume a halted book. Config: operator (who) and reason (why), both required and not blank; "
        "book (empty = the live book).")
def resume_book():
    record_resume()
