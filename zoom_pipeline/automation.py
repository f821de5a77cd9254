"""What runs the pipeline on its own: the day-by-day job, the daily schedule, the 15-minute sensor,
and the jobs and schedule of the checks."""

import json
import warnings
from datetime import UTC, datetime, timedelta

import dagster as dg

from zoom_pipeline.assets import SOURCE_ASSETS
from zoom_pipeline.checks import DEFAULT_FRESHNESS_DEADLINE_HOUR
from zoom_pipeline.constants import DAY_MATCHES_FRESH_LISTING, WINDOW_COLLECTED, YESTERDAY_LANDED
from zoom_pipeline.partitions import daily_partitions
from zoom_pipeline.sources import SOURCES, source_of

DEFAULT_DAILY_SCHEDULE_CRON = "15 0 * * *"
TODAY_BUCKET_SECONDS = 15 * 60
# The queued run coordinator launches higher priorities first, so a tick that lands while a long
# backfill (priority 0) waits for `zoom_api` slots takes the next free slot instead of queueing last.
AUTOMATION_RUN_TAGS = {"dagster/priority": "5"}
# Runs in these states may still write today's partition.
UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

# The raw asset runs many days per backfill run, the UDM asset a backfill's landed days at once: unlike
# policies keep the two out of one backfill run (whose raw step reports its days one by one, leaving no
# output for UDM to read). A job holding both runs one day, where the policies do not matter, so Dagster's
# warning that they differ is noise here.
warnings.filterwarnings("ignore", message=r"Asset job \S+ materializes assets with varying BackfillPolicies")

RAW_KEYS = [dg.AssetKey(source.name) for source in SOURCES]


def _checks_named(*names: str) -> dg.AssetSelection:
    return dg.AssetSelection.checks(*(dg.AssetCheckKey(key, name) for key in RAW_KEYS for name in names))


# One run a day collects every source, one step after another (the in-process executor), so a run holds
# one `zoom_api` slot at a time and the account-wide pace covers both; a source that fails (a missing
# scope) fails only its own steps. Partitioning is inferred from the assets (all daily). The ride-along
# checks come with the raw assets; the fresh listings (a second full pass) and freshness checks do not.
zoom_operation_logs_job = dg.define_asset_job(
    "zoom_operation_logs_job",
    selection=dg.AssetSelection.assets(*(asset for pair in SOURCE_ASSETS.values() for asset in pair))
    - _checks_named(DAY_MATCHES_FRESH_LISTING, YESTERDAY_LANDED, WINDOW_COLLECTED),
    description="Collect one UTC day of every Zoom source (operation logs, sign-in/sign-out activity logs) "
                "and normalize it to UDM.",
)


def _requestable(keys: list[str]) -> list[str]:
    """The keys that are partitions (a late ZOOM_LOGS_START_DATE can exclude yesterday)."""
    first = daily_partitions.start.date().isoformat()
    return [key for key in keys if key >= first]


def build_zoom_daily_schedule(cron_schedule: str = DEFAULT_DAILY_SCHEDULE_CRON) -> dg.ScheduleDefinition:
    """The daily schedule on `cron_schedule` (UTC); definitions.py passes ZOOM_DAILY_SCHEDULE_CRON."""

    # Not build_schedule_from_partitioned_job: with end_offset=1 its "last partition" is today, so the
    # day that has just closed would never get its complete pass.
    @dg.schedule(
        name="zoom_daily_schedule",
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        job=zoom_operation_logs_job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            "Collects yesterday (UTC) in full once it has ended, and re-reads the day before it, where Zoom's "
            "late logs still show up. Each run adds only what its day lacks, for every source."
        ),
    )
    def zoom_daily_schedule(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.astimezone(UTC).date()
        days = _requestable([(today - timedelta(days=n)).isoformat() for n in (1, 2)])
        if not days:
            return dg.SkipReason(f"Neither {today - timedelta(days=1)} nor the day before is a partition yet.")
        return [dg.RunRequest(run_key=day, partition_key=day, tags=AUTOMATION_RUN_TAGS) for day in days]

    return zoom_daily_schedule


def today_run_key(now: datetime) -> str:
    """`<today>@<bucket>`: the same within one 15-minute bucket, new in the next."""
    return f"{now.astimezone(UTC).date().isoformat()}@{int(now.timestamp()) // TODAY_BUCKET_SECONDS}"


def unfinished_runs_of(instance: dg.DagsterInstance, partition_key: str) -> list[dg.DagsterRun]:
    """Runs of `partition_key` that may still write zoom_operation_logs (queued, starting, started,
    cancelling), whichever way they were launched: this job, the asset page, or a backfill."""
    # Job runs carry dagster/partition; asset-backfill runs carry a range instead, and a range holding
    # today (the last partition) ends with it.
    runs = {
        run.run_id: run
        for tag in ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
        for run in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED_RUN_STATUSES, tags={tag: partition_key}))
    }
    return [
        run
        for run in runs.values()
        if run.job_name == zoom_operation_logs_job.name or set(RAW_KEYS) & set(run.asset_selection or ())
    ]


def holds_back_refresh(run: dg.DagsterRun) -> bool:
    """Whether an unfinished run of today makes the sensor wait. A backfill run of today that merely waits
    in the queue (for a pool slot, behind other days) does not: the refresh has a higher priority, and the
    conditional writes keep both exact."""
    return run.status != dg.DagsterRunStatus.QUEUED or "dagster/backfill" not in run.tags


# The daemon evaluates this at most every 15 minutes. A date-only run_key would fire once a day (the
# daemon dedups run keys forever), hence the bucket; skipping while a run of today is in flight keeps
# refreshes from piling up behind a slow one.
@dg.sensor(
    job=zoom_operation_logs_job,
    minimum_interval_seconds=TODAY_BUCKET_SECONDS,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Keeps today's (UTC) partition fresh: requests it at most once per 15-minute bucket, and skips while "
        "an earlier run of today has not finished. A refresh stops paging at what is already stored."
    ),
)
def zoom_today_sensor(context: dg.SensorEvaluationContext):
    now = datetime.now(UTC)
    today = now.date().isoformat()
    busy = [run for run in unfinished_runs_of(context.instance, today) if holds_back_refresh(run)]
    if busy:
        return dg.SkipReason(
            f"Run {busy[0].run_id} of {today} is still {busy[0].status.value.lower()}; "
            "the next tick after it finishes requests today again."
        )
    return dg.RunRequest(run_key=today_run_key(now), partition_key=today, tags=AUTOMATION_RUN_TAGS)


# A backfilled day gets one complete pass; if a page boundary cut a same-second group with a record on
# both sides, that pass could not prove the group and the day awaits confirmation. This sensor reads
# each new materialization's verdict (no Zoom call, no storage read) and asks for one more complete
# pass of each such day, which reads it with a page size that keeps the awaiting groups whole.
CONFIRM_MAX_PASSES = 5  # a day still unproven after this many passes is left to the check's warning
CONFIRM_RUNS_PER_TICK = 10
CONFIRM_RUN_TAGS = {"dagster/priority": "-1"}  # behind backfills and the daily automation
CONFIRM_TRIES_PER_PASS = 3  # confirming runs of one unproven pass that may fail (or be canceled)
CONFIRMATION_SENSOR_NAME = "zoom_confirmation_sensor"
# The daemon tags each run a sensor requests with its run key and the sensor's name, and skips any later
# request whose key a run of that sensor already carries, whatever became of that run (Dagster 1.13:
# _create_sensor_run, fetch_existing_runs and _get_or_create_sensor_run in dagster/_daemon/sensor.py).
# So a failed confirming run is retried under a key of its own, found again through these tags.
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
FINISHED_RUN_STATUSES = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def confirm_run_keys(waiting: str, storage_id: int) -> list[str]:
    """The run keys of the tries at confirming the pass `storage_id` of `waiting` ("source/day"): the first
    is `<source>/<day>@confirm-<storage_id>` (as before retries existed), then `...-try2`, `...-try3`."""
    first = f"{waiting}@confirm-{storage_id}"
    return [first] + [f"{first}-try{n}" for n in range(2, CONFIRM_TRIES_PER_PASS + 1)]


@dg.sensor(
    name=CONFIRMATION_SENSOR_NAME,
    job=zoom_operation_logs_job,
    minimum_interval_seconds=15 * 60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Confirms days whose latest complete pass left same-second groups unproven (day_exact false): requests "
        f"one more complete pass of each, with another page size, up to {CONFIRM_MAX_PASSES} passes a day; a "
        f"confirming run that fails is requested again, up to {CONFIRM_TRIES_PER_PASS} runs per unproven pass."
    ),
)
def zoom_confirmation_sensor(context: dg.SensorEvaluationContext):
    # Cursor: the last materialization read per source, and the awaiting days as "source/day". The tries
    # of each pass are not in it: they are the runs carrying its run keys.
    state = json.loads(context.cursor) if context.cursor else {}
    after: dict[str, int] = state.get("after_by_source", {})
    awaiting: dict[str, int] = state.get("awaiting_by_source", {})
    for key in RAW_KEYS:
        name = key.path[-1]
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after.get(name)),
            limit=1000,
            ascending=True,
        ).records
        for record in records:
            after[name] = record.storage_id
            meta = record.asset_materialization.metadata if record.asset_materialization else {}
            if record.partition_key is None or getattr(meta.get("pass"), "value", None) != "complete":
                continue
            passes = getattr(meta.get("complete_passes"), "value", 0) or 0
            waiting = f"{name}/{record.partition_key}"
            if getattr(meta.get("day_exact"), "value", True) or passes >= CONFIRM_MAX_PASSES:
                awaiting.pop(waiting, None)
            else:
                awaiting[waiting] = record.storage_id
    first = daily_partitions.start.date().isoformat()
    requests, given_up = [], []
    for waiting, storage_id in sorted(awaiting.items(), key=lambda item: item[0].split("/")[1]):
        name, day = waiting.split("/")
        if day < first:
            awaiting.pop(waiting)  # no longer a partition
            continue
        if len(requests) >= CONFIRM_RUNS_PER_TICK or unfinished_runs_of(context.instance, day):
            continue
        # The run key names the pass that left the day open: one request per unproven pass (and per try),
        # of that source only, with its UDM asset so the part the pass adds is mapped in the same run.
        keys = confirm_run_keys(waiting, storage_id)
        tried = {
            run.tags[RUN_KEY_TAG]: run
            for run in context.instance.get_runs(
                dg.RunsFilter(tags={RUN_KEY_TAG: keys, SENSOR_NAME_TAG: CONFIRMATION_SENSOR_NAME})
            )
        }
        if tried and (
            any(run.status not in FINISHED_RUN_STATUSES for run in tried.values())
            # A try that landed its pass after the reads above: the next tick reads its verdict.
            or context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[day],
                                      after_storage_id=after.get(name, storage_id)),
                limit=1,
            ).records
        ):
            continue
        untried = [run_key for run_key in keys if run_key not in tried]
        if not untried:
            # Every try ended without a pass: stop asking for this one (a later complete pass of the
            # day, e.g. a rerun, is a new pass with tries of its own).
            awaiting.pop(waiting)
            given_up.append(f"{name} {day}")
            context.log.warning(
                f"{name} {day} still awaits confirmation after {len(keys)} failed confirming runs "
                f"({', '.join(run.run_id for run in tried.values())}); the sensor stops requesting it. "
                "Rerun the day once Zoom answers to confirm it."
            )
            continue
        selection = [dg.AssetKey(name), dg.AssetKey(source_of(name).udm_name)]
        requests.append(dg.RunRequest(run_key=untried[0], partition_key=day,
                                      asset_selection=selection, tags=CONFIRM_RUN_TAGS))
    context.update_cursor(json.dumps({"after_by_source": after, "awaiting_by_source": awaiting}))
    if not requests:
        stopped = (f"; stopped requesting {', '.join(given_up)} after {CONFIRM_TRIES_PER_PASS} failed "
                   "confirming runs" if given_up else "")
        return dg.SkipReason(f"No day awaits confirmation ({len(awaiting)} waiting for a running pass){stopped}.")
    return requests


zoom_freshness_job = dg.define_asset_job(
    "zoom_freshness_job",
    selection=_checks_named(YESTERDAY_LANDED, WINDOW_COLLECTED),
    description=(
        "Evaluate whether yesterday's Zoom logs (every source) landed by the deadline, and whether any day inside "
        "Zoom's window is still uncollected."
    ),
)


def build_zoom_freshness_schedule(deadline_hour: int = DEFAULT_FRESHNESS_DEADLINE_HOUR) -> dg.ScheduleDefinition:
    # Before the deadline the check can only say "not due"; from it until midnight, hourly, so a late
    # landing turns the check green within the hour.
    return dg.ScheduleDefinition(
        name="zoom_freshness_schedule",
        job=zoom_freshness_job,
        cron_schedule=f"5 {deadline_hour}-23 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Hourly from {deadline_hour:02d}:05 UTC: did yesterday's Zoom logs land on time?",
    )


zoom_completeness_job = dg.define_asset_job(
    "zoom_completeness_job",
    selection=_checks_named(DAY_MATCHES_FRESH_LISTING),
    description="List one finished day from Zoom again and compare it, copy for copy, with what storage holds.",
)
