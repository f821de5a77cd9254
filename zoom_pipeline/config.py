"""The one place where configuration enters: the environment (and ZOOM_ACCOUNTS_FILE) becomes Definitions.

`build_defs(env)` is what `zoom_pipeline.definitions` loads; `build_account_defs` is what one account
contributes, shared with the `zoom_pipeline.ZoomAccount` component. Nothing here runs at import.
"""

import os
import re
from collections.abc import Mapping

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string
from dagster_aws.s3 import S3Resource

from zoom_pipeline.account import (
    DEFAULT_DAILY_REQUEST_BUDGET,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    check_store_setting,
)
from zoom_pipeline.accounts import DEFAULT_ACCOUNT, Account, load_accounts_file, prefix_settings
from zoom_pipeline.alerts import build_alert_sensors  # ALERT_WEBHOOK_URL, DAGSTER_WEBSERVER_URL
from zoom_pipeline.assets import SOURCE_ASSETS, build_source_assets
from zoom_pipeline.automation import DEFAULT_DAILY_SCHEDULE_CRON, build_automation
from zoom_pipeline.checks import build_source_checks, freshness_deadline_hour
from zoom_pipeline.constants import (
    DEFAULT_API_BASE_URL,
    DEFAULT_BACKFILL_DAYS_PER_RUN,
    DEFAULT_LOCAL_STORE_DIR,
    DEFAULT_OAUTH_TOKEN_URL,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
)
from zoom_pipeline.day_store import ZoomStore
from zoom_pipeline.io_manager import ZoomLogsIOManager
from zoom_pipeline.partitions import build_daily_partitions, daily_partitions
from zoom_pipeline.settings import check_positive, check_url
from zoom_pipeline.sources import SOURCES
from zoom_pipeline.zoom_client import ZoomClient

MAX_PAGE_SIZE = 300  # Zoom serves at most 300 records a page


def _setting(env: Mapping[str, str], name: str, default: str):
    """An optional text setting: resolved at launch from the environment when set, else its default."""
    return dg.EnvVar(name) if env.get(name) else default


def _url(env: Mapping[str, str], name: str, default: str):
    """An optional URL setting, checked when the definitions load (settings.check_url); still an EnvVar
    when set."""
    raw = env.get(name)
    if not raw:
        return default
    check_url(name, raw, default)
    return _setting(env, name, default)


def _page_size(env: Mapping[str, str]) -> int:
    """PAGE_SIZE, read when the definitions load: a whole number from 1 to 300, else ValueError."""
    raw = (env.get("PAGE_SIZE") or "").strip()
    if not raw:
        return DEFAULT_PAGE_SIZE
    if re.fullmatch(r"[0-9]+", raw) and 1 <= int(raw) <= MAX_PAGE_SIZE:
        return int(raw)
    raise ValueError(f"PAGE_SIZE must be a whole number from 1 to {MAX_PAGE_SIZE} (Zoom serves at most "
                     f"{MAX_PAGE_SIZE} records a page), got {env['PAGE_SIZE']!r}.")


def daily_cron(env: Mapping[str, str]) -> str:
    """ZOOM_DAILY_SCHEDULE_CRON, or the default when unset: a cron expression Dagster accepts, else
    ValueError with one sentence."""
    value = env.get("ZOOM_DAILY_SCHEDULE_CRON") or DEFAULT_DAILY_SCHEDULE_CRON
    if not is_valid_cron_string(value):  # what Dagster's ScheduleDefinition checks (no exception of its own)
        raise ValueError("ZOOM_DAILY_SCHEDULE_CRON must be a five-field cron expression that can fire (minute hour "
                         f"day month weekday, UTC), such as {DEFAULT_DAILY_SCHEDULE_CRON!r}, got {value!r}.")
    return value


def _positive(env: Mapping[str, str], name: str, default: float | int, what: str):
    """A limit read when the definitions load: a positive number (whole for an int default), else
    ValueError with one sentence."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return check_positive(name, raw, whole=isinstance(default, int), what=what)
    except ValueError:
        kind = "a positive whole number" if isinstance(default, int) else "a positive number"
        raise ValueError(f"{name} must be {kind} of {what}, got {env[name]!r}.") from None


def build_resources(env: Mapping[str, str] = os.environ, account: Account = DEFAULT_ACCOUNT) -> dict:
    """The resources of `account` (keys `zoom`, `zoom_store`, `zoom_logs_io_manager`, suffixed with a named
    account's name). Secrets are EnvVars: resolved at launch, never shown; a named account's credentials
    are ZOOM_<NAME>_ACCOUNT_ID, ZOOM_<NAME>_CLIENT_ID and ZOOM_<NAME>_CLIENT_SECRET."""
    named = bool(account.name)
    store = ZoomStore(
        # Endpoint, region and credentials come from boto3's standard chain
        # (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE, instance roles ...).
        s3=S3Resource(),
        s3_bucket=account.s3_bucket if account.s3_bucket is not None else _setting(env, "S3_BUCKET", ""),
        # Each source's three prefixes (S3_PREFIX, UDM_S3_PREFIX, MANIFEST_S3_PREFIX, ACTIVITY_S3_PREFIX, ...;
        # sources.py), read when the definitions load; unset ones take the source's default (a named
        # account's sit under zoom/<name>/: accounts.py).
        prefixes={setting: prefix for setting in prefix_settings() if (prefix := account.prefix(setting, env))},
        local_dir=_setting(env, "LOCAL_STORE_DIR", DEFAULT_LOCAL_STORE_DIR),
        sse_kms_key_id=_setting(env, "S3_SSE_KMS_KEY_ID", ""),
    )
    return {
        account.resource_key("zoom"): ZoomClient(
            account_id=dg.EnvVar(account.env_var("ACCOUNT_ID")),
            client_id=dg.EnvVar(account.env_var("CLIENT_ID")),
            client_secret=dg.EnvVar(account.env_var("CLIENT_SECRET")),
            # Checked when the definitions load, so a bad value fails there with one sentence:
            api_base_url=account.api_base_url or _url(env, "ZOOM_API_BASE_URL", DEFAULT_API_BASE_URL),
            oauth_token_url=account.oauth_token_url or _url(env, "ZOOM_OAUTH_TOKEN_URL", DEFAULT_OAUTH_TOKEN_URL),
            page_size=_page_size(env),
            timeout=_positive(env, "TIMEOUT", DEFAULT_TIMEOUT_SECONDS, "seconds per HTTP request"),
            # What all runs of the instance share about the account (zoom_pipeline/account.py), read when
            # the definitions load so a bad value fails there (an accounts file may set the first two per
            # account):
            #   ZOOM_MAX_REQUESTS_PER_SECOND  report calls a second, all runs together (default 5: half of
            #                                 Zoom's Pro limit of 10, the rest left to the account's other apps)
            #   ZOOM_DAILY_REQUEST_BUDGET     report calls per UTC day, all runs together (default 20000: two
            #                                 thirds of Zoom's Pro limit of 30000)
            #   ZOOM_ACCOUNT_STORE            where they are counted and the token is shared: auto (PostgreSQL
            #                                 with DAGSTER_PG_HOST, else $DAGSTER_HOME/zoom_account.sqlite, else
            #                                 this process), memory, sqlite, postgres, a postgresql:// URL or a
            #                                 path to a .sqlite file
            max_requests_per_second=account.max_requests_per_second or _positive(
                env, "ZOOM_MAX_REQUESTS_PER_SECOND", DEFAULT_MAX_REQUESTS_PER_SECOND, "report calls per second"
            ),
            daily_request_budget=account.daily_request_budget or _positive(
                env, "ZOOM_DAILY_REQUEST_BUDGET", DEFAULT_DAILY_REQUEST_BUDGET, "report calls per UTC day"
            ),
            account_store=check_store_setting(env.get("ZOOM_ACCOUNT_STORE") or "auto"),
            account_name=account.name if named else "",
        ),
        account.resource_key("zoom_store"): store,
        account.resource_key("zoom_logs_io_manager"): ZoomLogsIOManager(store=store),
    }


def build_account_defs(account: Account, env: Mapping[str, str] = os.environ, *,
                       partitions_def: dg.DailyPartitionsDefinition = daily_partitions) -> dg.Definitions:
    """What one account contributes: the raw and UDM assets of every source with their checks, and its
    resources. Built the same way for the single account, each entry of an accounts file, and each
    `zoom_pipeline.ZoomAccount` component."""
    deadline_hour = freshness_deadline_hour(env.get("ZOOM_FRESHNESS_DEADLINE_HOUR"))
    #   ZOOM_BACKFILL_DAYS_PER_RUN     days one backfill run collects, one after another (default 30);
    #                                  schedules and sensors always run one day
    days_per_run = _positive(env, "ZOOM_BACKFILL_DAYS_PER_RUN", DEFAULT_BACKFILL_DAYS_PER_RUN, "days a backfill run")
    policy = dg.BackfillPolicy.multi_run(days_per_run)
    if account.name or partitions_def is not daily_partitions:
        built = [build_source_assets(source, account, partitions_def) for source in SOURCES]
    else:
        built = list(SOURCE_ASSETS.values())
    return dg.Definitions(
        assets=[asset for raw, udm in built for asset in (raw.with_attributes(backfill_policy=policy), udm)],
        asset_checks=[check for source in SOURCES
                      for check in build_source_checks(source, deadline_hour, account, partitions_def)],
        resources=build_resources(env, account),
    )


def load_accounts(env: Mapping[str, str] = os.environ) -> list[Account]:
    """The accounts of ZOOM_ACCOUNTS_FILE, or the single account when it is unset."""
    path = env.get("ZOOM_ACCOUNTS_FILE")
    return load_accounts_file(path, env) if path else [DEFAULT_ACCOUNT]


def shared_partitions(accounts: list[Account], env: Mapping[str, str]) -> dg.DailyPartitionsDefinition:
    """The days of every account: from the earliest first day of any (the deployment's by default)."""
    if accounts == [DEFAULT_ACCOUNT]:
        return daily_partitions
    starts = [a.logs_start_date for a in accounts if a.logs_start_date]
    own = daily_partitions.start.date().isoformat()
    return build_daily_partitions(min([own, *starts]))


def build_defs(env: Mapping[str, str] = os.environ) -> dg.Definitions:
    # Schedule times are part of the definitions, so these two are read when they load (no I/O):
    #   ZOOM_DAILY_SCHEDULE_CRON       when zoom_daily_schedule ticks, UTC (default "15 0 * * *")
    #   ZOOM_FRESHNESS_DEADLINE_HOUR   hour (UTC) by which yesterday must have landed (default 3)
    #   ZOOM_ACCOUNTS_FILE             several Zoom accounts (accounts.py); unset: the one of ZOOM_ACCOUNT_ID
    deadline_hour = freshness_deadline_hour(env.get("ZOOM_FRESHNESS_DEADLINE_HOUR"))
    accounts = load_accounts(env)
    # One job runs any account's day, so every account shares one daily partitioning; an account's
    # logs_start_date bounds what is requested and collected for it.
    partitions_def = shared_partitions(accounts, env)
    automation = build_automation(accounts, cron_schedule=daily_cron(env), deadline_hour=deadline_hour,
                                  partitions_def=partitions_def)
    return dg.Definitions.merge(
        *(build_account_defs(account, env, partitions_def=partitions_def) for account in accounts),
        dg.Definitions(
            jobs=automation.jobs,
            schedules=automation.schedules,
            sensors=automation.sensors + build_alert_sensors(accounts, env),
            # One partition is one step: running it in the launching process saves a process spawn and
            # ~130 MB per run.
            executor=dg.in_process_executor,
        ),
    )

