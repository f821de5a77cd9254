"""`zoom_pipeline.ZoomAccount`: one Zoom account as a Dagster component, for a project that already has
its own code location.

    # defs/zoom_acme/defs.yaml in the user's project
    type: zoom_pipeline.ZoomAccount
    attributes:
      name: acme
      s3_bucket: security-logs
      max_requests_per_second: 10

The attributes are one entry of the accounts file (accounts.py) plus its `name`, checked the same way,
and the definitions come from the same factory (config.build_account_defs): the account's assets under
its name, their checks and resources, and automation of its own whose names start with `<name>_`
(`acme_zoom_daily_schedule`, ...), so several components sit side by side. Everything else (S3_BUCKET,
PAGE_SIZE, ZOOM_ACCOUNT_STORE, ...) and the credentials (ZOOM_<NAME>_ACCOUNT_ID, ZOOM_<NAME>_CLIENT_ID,
ZOOM_<NAME>_CLIENT_SECRET) come from the environment, as for the accounts file.
"""

import os

import dagster as dg
from pydantic import StrictFloat, StrictInt

from zoom_pipeline.accounts import FILE_KEYS, Account, AccountsFileError, account_entry, check_apart
from zoom_pipeline.alerts import build_alert_sensors
from zoom_pipeline.automation import build_automation
from zoom_pipeline.checks import freshness_deadline_hour
from zoom_pipeline.config import build_account_defs, daily_cron
from zoom_pipeline.partitions import build_daily_partitions, daily_partitions


class ZoomAccount(dg.Component, dg.Model, dg.Resolvable):
    """Collects one Zoom account's operation logs and sign-in/sign-out activity logs into S3, exactly once
    per record, and maps them to UDM (zoom_pipeline)."""

    name: str
    s3_bucket: str | None = None
    s3_prefix: str | None = None
    udm_s3_prefix: str | None = None
    manifest_s3_prefix: str | None = None
    activity_s3_prefix: str | None = None
    activity_udm_s3_prefix: str | None = None
    activity_manifest_s3_prefix: str | None = None
    # Strict: a YAML `true` must be refused here as the accounts file refuses it, not read as 1.
    max_requests_per_second: StrictInt | StrictFloat | None = None
    daily_request_budget: StrictInt | None = None
    logs_start_date: str | None = None
    api_base_url: str | None = None
    oauth_token_url: str | None = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        env = os.environ
        settings = {key: getattr(self, key) for key in FILE_KEYS if getattr(self, key) is not None}
        # One file may declare several components; the account names in a message tell them apart.
        where = f"The {type(self).__name__} component at {context.path}"
        try:
            account = account_entry(where, self.name, settings)
            # Components load one by one; the ones of this project's defs folder are held apart as the
            # accounts file holds its entries apart: one name each, prefixes that never meet in one bucket.
            # By where it was declared and its name: a rebuild of one component is not a second account.
            built = _accounts_of_this_load(context)
            this = (context.component_loc, account.name)
            check_apart([a for key, a in built.items() if key != this] + [account], env, where)
        except AccountsFileError as exc:
            raise ValueError(str(exc)) from None
        built[this] = account
        partitions = build_daily_partitions(account.logs_start_date) if account.logs_start_date else daily_partitions
        automation = build_automation([account], cron_schedule=daily_cron(env), partitions_def=partitions,
                                      deadline_hour=freshness_deadline_hour(env.get("ZOOM_FRESHNESS_DEADLINE_HOUR")),
                                      prefix=f"{account.name}_")
        return dg.Definitions.merge(
            build_account_defs(account, env, partitions_def=partitions),
            dg.Definitions(jobs=automation.jobs, schedules=automation.schedules,
                           sensors=automation.sensors + build_alert_sensors([account], env, prefix=f"{account.name}_")),
        )


def _accounts_of_this_load(context: dg.ComponentLoadContext) -> dict:
    """The accounts of the ZoomAccount components built so far from this defs folder, by where each was declared
    and its name: kept on the component tree, which one load of a project's definitions builds and then drops
    (Dagster offers components no registry of their own per load)."""
    accounts: dict[object, Account] = context.component_tree.__dict__.setdefault("_zoom_pipeline_accounts", {})
    return accounts
