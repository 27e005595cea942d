"""The kill switch in Dagster: halt and resume jobs, and what a sensor does to trip it.

The state store is the authority (foxlive_core refuses risk-increasing orders
while its flag is set, whoever calls it). Dagster mirrors the flag on the
``risk/kill_switch`` asset so a halt and a resume are visible in the UI, and
cancels the book's queued and running trading cycles when it trips.
"""


import dagster as dg

from foxlive_dagster.resources import FoxliveConfigResource, StateStoreResource

KILL_SWITCH_KEY = dg.AssetKey(["risk", "kill_switch"])
BOOK_TAG = "foxlive/book"
# The book a halt/resume run acts on. Not BOOK_TAG: that tag carries the one-run-per-book concurrency limit
# (config/dagster/dagster.yaml), and the run recording a halt must never queue behind the runs it stops.
KILL_SWITCH_BOOK_TAG = "foxlive/kill_switch_book"
TRADING_JOB = "trading_cycle_job"

kill_switch_spec = dg.AssetSpec(
    KILL_SWITCH_KEY,
    description="The book's halt flag as the state store holds it: every halt and resume is a materialisation "
    "with who, why and when. Set by the risk sensors or `foxlive halt`; cleared only by the resume_book job.",
    group_name="risk",
    kinds={"sqlite"},
)

ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class HaltConfig(dg.Config):
    book: str
    reason: str
    actor: str = "dagster"


class ResumeConfig(dg.Config):
    """Resuming needs both: who resumes the book, and why it is safe to."""

    operator: str
    reason: str
    book: str = ""


def cancel_trading_runs(instance: dg.DagsterInstance, book: str, reason: str, exclude_run_id: str | None = None) -> list[str]:
    """Cancel queued and in-progress trading runs of ``book``; returns their run ids."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=TRADING_JOB, statuses=ACTIVE_STATUSES, tags={BOOK_TAG: book})
    )
    cancelled = []
    for run in runs:
        if run.run_id == exclude_run_id:
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


def halt_run_request(book: str, reason: str, actor: str, run_key: str | None = None) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        job_name="halt_book",
        run_config={"ops": {"record_halt": {"config": {"book": book, "reason": reason, "actor": actor}}}},
        tags={KILL_SWITCH_BOOK_TAG: book, "foxlive/kill_switch": "halt"},
    )


@dg.op(out=dg.Out(dg.Nothing))
def record_halt(context: dg.OpExecutionContext, config: HaltConfig, state: StateStoreResource):
    """Set the halt flag (if a sensor has not already) and record the event on risk/kill_switch."""
    store = state.get()
    store.halt(config.book, config.reason, config.actor)
    halted, reason = store.halt_status(config.book)
    cancelled = cancel_trading_runs(context.instance, config.book, reason)
    context.log_event(
        dg.AssetMaterialization(
            KILL_SWITCH_KEY,
            metadata={"book": config.book, "halted": halted, "reason": reason, "actor": config.actor,
                      "cancelled_runs": len(cancelled), "event": "halt"},
        )
    )


@dg.op(out=dg.Out(dg.Nothing))
def record_resume(context: dg.OpExecutionContext, config: ResumeConfig, foxlive: FoxliveConfigResource,
                  state: StateStoreResource):
    """Clear the halt flag, recording the operator and the reason: the only way trading resumes."""
    book = config.book or foxlive.get().book
    store = state.get()
    halted_before, old_reason = store.halt_status(book)
    if not store.resume(book, config.operator, config.reason):
        raise dg.Failure(f"book {book!r} is not halted; nothing to resume")
    context.log_event(
        dg.AssetMaterialization(
            KILL_SWITCH_KEY,
            metadata={"book": book, "halted": False, "reason": config.reason, "actor": config.operator,
                      "cleared_halt_reason": old_reason, "event": "resume"},
        )
    )


@dg.job(tags={"foxlive/kill_switch": "halt"}, description="Halt a book: set the flag, cancel its trading runs, record it.")
def halt_book():
    record_halt()


@dg.job(tags={"foxlive/kill_switch": "resume"},
        description="Resume a halted book. Requires config: operator (who) and reason (why).")
def resume_book():
    record_resume()
