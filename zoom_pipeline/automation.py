"""What runs the pipeline on its own: the day-by-day job, the daily schedule, the 15-minute sensor, the
confirmation sensor, and the jobs and schedule of the checks.

One set of each serves every account of the deployment (accounts.py): the job holds every account's assets,
and the schedule and sensors request one run per account and day, each selecting that account's assets
and tagged with its name, so an account that is skipped or fails never holds back another's request.
`build_automation()` builds them; the module's names are those of the single account of a deployment
without an accounts file.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import dagster as dg

from zoom_pipeline.accounts import DEFAULT_ACCOUNT, Account
from zoom_pipeline.checks import DEFAULT_FRESHNESS_DEADLINE_HOUR
from zoom_pipeline.constants import DAY_MATCHES_FRESH_LISTING, DAY_MATCHES_ZOOM, WINDOW_COLLECTED, YESTERDAY_LANDED
from zoom_pipeline.partitions import daily_partitions, oldest_served_day
from zoom_pipeline.sources import SOURCES

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

def raw_keys(account: Account) -> list[dg.AssetKey]:
    return [account.asset_key(source.name) for source in SOURCES]


def account_assets(account: Account) -> list[dg.AssetKey]:
    """The raw and UDM assets of every source of `account`."""
    return [account.asset_key(name) for source in SOURCES for name in (source.name, source.udm_name)]


def ride_along_checks(account: Account) -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(key, DAY_MATCHES_ZOOM) for key in raw_keys(account)]


def _checks_named(accounts: Sequence[Account], *names: str) -> dg.AssetSelection:
    return dg.AssetSelection.checks(*(dg.AssetCheckKey(key, name) for account in accounts
                                      for key in raw_keys(account) for name in names))


def _request(account: Account, day: str, *, run_key: str, tags: dict, several: bool,
             assets: list[dg.AssetKey] | None = None) -> dg.RunRequest:
    """One run of `account`'s `day`: with several accounts it selects that account's assets (with only
    their ride-along checks), and carries the account's name."""
    selected = assets or (account_assets(account) if several else None)
    checks = [key for key in ride_along_checks(account) if key.asset_key in selected] if selected else None
    return dg.RunRequest(run_key=run_key, partition_key=day, asset_selection=selected, asset_check_keys=checks,
                         tags={**tags, **account.run_tags, **account.day_tag(day)})


def _run_key(account: Account, key: str) -> str:
    return f"{account.name}/{key}" if account.name else key


def _requestable(keys: list[str], account: Account = DEFAULT_ACCOUNT,
                 partitions_def: dg.DailyPartitionsDefinition = daily_partitions) -> list[str]:
    """The keys that are partitions, from the account's first day on (a late start date can exclude yesterday)."""
    first = max(partitions_def.start.date().isoformat(), account.logs_start_date or "")
    return [key for key in keys if key >= first]


def today_run_key(now: datetime) -> str:
    """`<today>@<bucket>`: the same within one 15-minute bucket, new in the next."""
    return f"{now.astimezone(UTC).date().isoformat()}@{int(now.timestamp()) // TODAY_BUCKET_SECONDS}"


def unfinished_runs_of(instance: dg.DagsterInstance, partition_key: str, keys: Sequence[dg.AssetKey] | None = None,
                       job_name: str = "zoom_operation_logs_job") -> list[dg.DagsterRun]:
    """Runs of `partition_key` that may still write one of the raw assets `keys` (default: the single
    account's; queued, starting, started, cancelling), whichever way they were launched: the day job, the
    asset page, or a backfill."""
    keys = set(keys or raw_keys(DEFAULT_ACCOUNT))
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
        if ((keys & set(run.asset_selection)) if run.asset_selection else run.job_name == job_name)
    ]


def holds_back_refresh(run: dg.DagsterRun) -> bool:
    """Whether an unfinished run of today makes the sensor wait. A backfill run of today that merely waits
    in the queue (for a pool slot, behind other days) does not: the refresh has a higher priority, and the
    conditional writes keep both exact."""
    return run.status != dg.DagsterRunStatus.QUEUED or "dagster/backfill" not in run.tags


# A backfilled day gets one complete pass; if a page boundary cut a same-second group with a record on
# both sides, that pass could not prove the group and the day awaits confirmation. The confirmation sensor
# reads each new materialization's verdict (no Zoom call, no storage read) and asks for one more complete
# pass of each such day, which reads it with a page size that keeps the awaiting groups whole.
#
# How many passes (README, "How many passes"; bench/convergence.py measures them). Let λ = Σ (w − 1) / 216
# over the groups a day's first complete pass left awaiting (w: a group's width in positions): how many of
# them a page size from 150 to 300 cuts on average. In a quiet listing the day was exact after its second
# complete pass for λ up to ~6 (issue 17's 1,000,001-record day with 5,500 twin pairs: λ 6.1), after the
# third up to λ ~30 (its ~11,000 copies as 370 bulk operations of 10-50: λ 7.5; 30,000 twin pairs: λ 28;
# a fresh order within each second on every call: λ 160, three passes too), after the fourth at λ 71-81
# (3,000 bulk operations, the busiest days measured; one size at a time needed five there once).
CONFIRM_QUIET_PASSES = 4  # the first pass included: the most any quiet day of the measurement needed
# One pass more for a late event that arrives between two passes (that pass is not quiet). A day still
# unproven after this many passes holds a group no page size proves (wider than a page, or reordered
# beyond what pages can show) or still receives late events: more passes would cost a full read of the
# day each, so the sensor reports it once and stops; its day_matches_zoom check keeps warning.
CONFIRM_MAX_PASSES = CONFIRM_QUIET_PASSES + 1
CONFIRM_RUNS_PER_TICK = 10  # per account: one account's many unproven (or failing) days never crowd out another's
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
    """The run keys of the tries at confirming the pass `storage_id` of `waiting` ("<raw asset>/<day>"):
    the first is `<raw asset>/<day>@confirm-<storage_id>` (as before retries existed), then `...-try2`,
    `...-try3`."""
    first = f"{waiting}@confirm-{storage_id}"
    return [first] + [f"{first}-try{n}" for n in range(2, CONFIRM_TRIES_PER_PASS + 1)]


class Automation(NamedTuple):
    jobs: list  # the day job, the freshness job, the completeness job
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(accounts: Sequence[Account] = (DEFAULT_ACCOUNT,), *,
                     cron_schedule: str = DEFAULT_DAILY_SCHEDULE_CRON,
                     deadline_hour: int = DEFAULT_FRESHNESS_DEADLINE_HOUR,
                     partitions_def: dg.DailyPartitionsDefinition = daily_partitions,
                     prefix: str = "") -> Automation:
    """The jobs, schedules and sensors of a deployment of `accounts`; config.py passes
    ZOOM_DAILY_SCHEDULE_CRON and ZOOM_FRESHNESS_DEADLINE_HOUR. `prefix` starts every name (a
    `ZoomAccount` component's automation is its own, beside other components')."""
    several = any(account.name for account in accounts)
    every = "every account's" if several else "the account's"
    all_raw = [key for account in accounts for key in raw_keys(account)]
    owner = {key: account for account in accounts for key in raw_keys(account)}

    # One run a day collects every source of an account, one step after another (the in-process executor),
    # so a run holds one slot of the account's pool at a time and the account-wide pace covers both; a
    # source that fails (a missing scope) fails only its own steps. Partitioning is inferred from the assets
    # (all daily). The ride-along checks come with the raw assets; the fresh listings (a second full pass)
    # and freshness checks do not. The raw asset runs many days per backfill run, the UDM asset a backfill's
    # landed days at once: unlike policies keep the two out of one backfill run (whose raw step reports its
    # days one by one, leaving no output for UDM to read). This job runs one day, where the policies do not
    # matter, so Dagster's warning that they differ is noise (silenced in zoom_pipeline/__init__.py).
    confirmation_sensor_name = prefix + CONFIRMATION_SENSOR_NAME
    day_job = dg.define_asset_job(
        prefix + "zoom_operation_logs_job",
        selection=dg.AssetSelection.assets(*(k for account in accounts for k in account_assets(account)))
        - _checks_named(accounts, DAY_MATCHES_FRESH_LISTING, YESTERDAY_LANDED, WINDOW_COLLECTED),
        description=f"Collect one UTC day of every Zoom source (operation logs, sign-in/sign-out activity logs) "
                    f"of {'every account' if several else 'the account'} and normalize it to UDM; automation "
                    f"runs one account a run.",
    )

    # Not build_schedule_from_partitioned_job: with end_offset=1 its "last partition" is today, so the
    # day that has just closed would never get its complete pass.
    @dg.schedule(
        name=prefix + "zoom_daily_schedule",
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        job=day_job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            "Collects yesterday (UTC) in full once it has ended, and re-reads the day before it, where Zoom's "
            "late logs still show up: one run per account and day. Each run adds only what its day lacks, for "
            "every source."
        ),
    )
    def zoom_daily_schedule(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.astimezone(UTC).date()
        requests = [
            _request(account, day, run_key=_run_key(account, day), tags=AUTOMATION_RUN_TAGS, several=several)
            for account in accounts
            for day in _requestable([(today - timedelta(days=n)).isoformat() for n in (1, 2)], account,
                                    partitions_def)
        ]
        if not requests:
            return dg.SkipReason(f"Neither {today - timedelta(days=1)} nor the day before is a partition yet.")
        return requests

    # The daemon evaluates this at most every 15 minutes. A date-only run_key would fire once a day (the
    # daemon dedups run keys forever), hence the bucket; skipping an account while a run of its today is in
    # flight keeps refreshes from piling up behind a slow one.
    @dg.sensor(
        name=prefix + "zoom_today_sensor",
        job=day_job,
        minimum_interval_seconds=TODAY_BUCKET_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Keeps today's (UTC) partition of {every} sources fresh: requests it at most once per 15-minute "
            "bucket, and skips an account while an earlier run of its today has not finished. A refresh stops "
            "paging at what is already stored."
        ),
    )
    def zoom_today_sensor(context: dg.SensorEvaluationContext):
        now = datetime.now(UTC)
        today = now.date().isoformat()
        requests, skipped = [], []
        for account in accounts:
            if not _requestable([today], account, partitions_def):
                continue
            busy = [run for run in unfinished_runs_of(context.instance, today, raw_keys(account), day_job.name)
                    if holds_back_refresh(run)]
            if busy:
                skipped.append(f"Run {busy[0].run_id} of {today}{' of ' + account.name if account.name else ''} is "
                               f"still {busy[0].status.value.lower()}")
                continue
            requests.append(_request(account, today, run_key=_run_key(account, today_run_key(now)),
                                     tags=AUTOMATION_RUN_TAGS, several=several))
        if not requests:
            return dg.SkipReason("; ".join(skipped) + "; the next tick after it finishes requests today again."
                                 if skipped else f"{today} is not a partition of any account yet.")
        return requests

    @dg.sensor(
        name=confirmation_sensor_name,
        job=day_job,
        minimum_interval_seconds=15 * 60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "Confirms days whose latest complete pass left same-second groups unproven (day_exact false): "
            f"requests one more complete pass of each, with another page size, up to {CONFIRM_MAX_PASSES} passes "
            "a day, and logs once each day still unproven then; a confirming run that fails is requested again, "
            f"up to {CONFIRM_TRIES_PER_PASS} runs per unproven pass."
        ),
    )
    def zoom_confirmation_sensor(context: dg.SensorEvaluationContext):
        # Cursor: the last materialization read per raw asset, and the awaiting days as "<raw asset>/<day>"
        # (the asset as Dagster writes it: `zoom_operation_logs`, `acme/zoom_operation_logs`). The tries of
        # each pass are not in it: they are the runs carrying its run keys.
        state = json.loads(context.cursor) if context.cursor else {}
        after: dict[str, int] = state.get("after_by_source", {})
        awaiting: dict[str, int] = state.get("awaiting_by_source", {})
        # Days reported as still awaiting at CONFIRM_MAX_PASSES ("<raw asset>/<day>"; absent from older
        # cursors), kept until the day is exact or no longer a partition, so each is reported once.
        capped: set[str] = set(state.get("reported_at_cap", []))
        at_cap: list[str] = []
        for key in all_raw:
            name = key.to_user_string()
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
                if getattr(meta.get("day_exact"), "value", True):
                    awaiting.pop(waiting, None)
                    capped.discard(waiting)
                elif passes >= CONFIRM_MAX_PASSES:
                    awaiting.pop(waiting, None)
                    if waiting not in capped:  # once per day, not at every pass a rerun adds
                        capped.add(waiting)
                        at_cap.append(f"{name} {record.partition_key}")
                        account = owner[key].name
                        records_left = getattr(meta.get("awaiting_confirmation_records"), "value", None)
                        groups_left = getattr(meta.get("awaiting_confirmation_groups"), "value", None)
                        context.log.warning(
                            f"{name} {record.partition_key}{f' (account {account})' if account else ''} still "
                            f"awaits confirmation after {passes} complete passes: {records_left} record(s) Zoom "
                            f"lists in {groups_left} same-second group(s) that no page has shown whole. The sensor "
                            f"requests no more passes of it (at most {CONFIRM_MAX_PASSES} a day; a quiet day is "
                            f"exact within {CONFIRM_QUIET_PASSES}): the day still receives late events, or holds a "
                            "group no page size can show whole (copies farther apart than a page within one "
                            "second). Storage never holds more copies than Zoom lists, and day_matches_zoom keeps "
                            "warning; materialize the day again to try once more."
                        )
                else:
                    awaiting[waiting] = record.storage_id
        requests, given_up = [], []
        requested: dict[str, int] = {}  # requests of this tick per account
        for waiting, storage_id in sorted(awaiting.items(), key=lambda item: item[0].rsplit("/", 1)[1]):
            name, day = waiting.rsplit("/", 1)
            key = dg.AssetKey.from_user_string(name)
            account = owner.get(key)
            if account is None or not _requestable([day], account, partitions_def):
                awaiting.pop(waiting)  # no longer a partition (or an asset) of this deployment
                continue
            if (requested.get(account.name, 0) >= CONFIRM_RUNS_PER_TICK
                    or unfinished_runs_of(context.instance, day, raw_keys(account), day_job.name)):
                continue
            # The run key names the pass that left the day open: one request per unproven pass (and per try),
            # of that source only, with its UDM asset so the part the pass adds is mapped in the same run.
            keys = confirm_run_keys(waiting, storage_id)
            tried = {
                run.tags[RUN_KEY_TAG]: run
                for run in context.instance.get_runs(
                    dg.RunsFilter(tags={RUN_KEY_TAG: keys, SENSOR_NAME_TAG: confirmation_sensor_name})
                )
            }
            if tried and (
                any(run.status not in FINISHED_RUN_STATUSES for run in tried.values())
                # A try that landed its pass after the reads above: the next tick reads its verdict.
                or context.instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day],
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
            source = next(s for s in SOURCES if s.name == key.path[-1])
            selection = [key, account.asset_key(source.udm_name)]
            requests.append(_request(account, day, run_key=untried[0], tags=CONFIRM_RUN_TAGS, several=True,
                                     assets=selection))
            requested[account.name] = requested.get(account.name, 0) + 1
        oldest = oldest_served_day().isoformat()
        for waiting in list(capped):
            name, day = waiting.rsplit("/", 1)
            account = owner.get(dg.AssetKey.from_user_string(name))
            if account is None or day < oldest or not _requestable([day], account, partitions_def):
                capped.discard(waiting)  # no pass can confirm it any more: no need to remember it
        cursor = {"after_by_source": after, "awaiting_by_source": awaiting}
        if capped:
            cursor["reported_at_cap"] = sorted(capped)
        context.update_cursor(json.dumps(cursor))
        if not requests:
            stopped = (f"; stopped requesting {', '.join(given_up)} after {CONFIRM_TRIES_PER_PASS} failed "
                       "confirming runs" if given_up else "")
            if at_cap:
                stopped += (f"; {', '.join(at_cap)} still await(s) confirmation after {CONFIRM_MAX_PASSES} complete "
                            "passes: no more passes requested")
            return dg.SkipReason(f"No day awaits confirmation ({len(awaiting)} waiting for a running pass){stopped}.")
        return requests

    freshness_job = dg.define_asset_job(
        prefix + "zoom_freshness_job",
        selection=_checks_named(accounts, YESTERDAY_LANDED, WINDOW_COLLECTED),
        description=(
            f"Evaluate whether yesterday's Zoom logs ({every} sources) landed by the deadline, and whether any "
            "day inside Zoom's window is still uncollected."
        ),
    )
    # Before the deadline the check can only say "not due"; from it until midnight, hourly, so a late
    # landing turns the check green within the hour.
    freshness_schedule = dg.ScheduleDefinition(
        name=prefix + "zoom_freshness_schedule",
        job=freshness_job,
        cron_schedule=f"5 {deadline_hour}-23 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Hourly from {deadline_hour:02d}:05 UTC: did yesterday's Zoom logs land on time?",
    )
    completeness_job = dg.define_asset_job(
        prefix + "zoom_completeness_job",
        selection=_checks_named(accounts, DAY_MATCHES_FRESH_LISTING),
        description="List one finished day from Zoom again and compare it, copy for copy, with what storage holds"
                    + (" (every account; select one account's checks to list only its day)." if several else "."),
    )
    return Automation([day_job, freshness_job, completeness_job], [zoom_daily_schedule, freshness_schedule],
                      [zoom_today_sensor, zoom_confirmation_sensor])


# The single account of a deployment without an accounts file.
_SINGLE = build_automation()
zoom_operation_logs_job, zoom_freshness_job, zoom_completeness_job = _SINGLE.jobs
zoom_today_sensor, zoom_confirmation_sensor = _SINGLE.sensors
RAW_KEYS = raw_keys(DEFAULT_ACCOUNT)


def build_zoom_daily_schedule(cron_schedule: str = DEFAULT_DAILY_SCHEDULE_CRON) -> dg.ScheduleDefinition:
    """The single account's daily schedule on `cron_schedule` (UTC)."""
    return build_automation(cron_schedule=cron_schedule).schedules[0]


def build_zoom_freshness_schedule(deadline_hour: int = DEFAULT_FRESHNESS_DEADLINE_HOUR) -> dg.ScheduleDefinition:
    """The single account's freshness schedule, hourly from `deadline_hour` (UTC)."""
    return build_automation(deadline_hour=deadline_hour).schedules[1]
