"""The Zoom logs this project collects, each described once.

A source is one Zoom report: where it is (endpoint, records key, scope), where its days go (the settings
and defaults of its three prefixes, its part names), what its assets are called, and how a record maps
to UDM. The client, the store, the assets, the checks and the automation are built from these entries,
so a third source is one more entry here.
"""

from collections.abc import Callable
from dataclasses import dataclass

from zoom_pipeline import udm, udm_activity


@dataclass(frozen=True)
class Source:
    name: str  # the raw asset's name; the UDM asset is `{name}_udm`
    title: str  # what Zoom's documentation calls the report, for messages and the UI
    summary: str  # what it tells a security team, for the UI
    path: str  # the endpoint under the API base URL
    records_key: str  # the list of records in each page
    scope: str  # the granular scope the app needs (the classic report:read:admin grants it too)
    access_hint: str  # what a "no permission" answer means for this report
    # (setting, default) of the raw, UDM and manifest prefixes; the feed reads only the first.
    prefix: tuple[str, str]
    udm_prefix: tuple[str, str]
    manifest_prefix: tuple[str, str]
    part_prefix: str  # every object of a day is named `{part_prefix}YYYYMMDD-...`
    map_line: Callable  # (raw line, occurrence, day start) -> (UDM event, problems, fields covered)
    udm_description: str

    @property
    def udm_name(self) -> str:
        return f"{self.name}_udm"


OPERATION_LOGS = Source(
    name="zoom_operation_logs",
    title="operation logs",
    summary="the account's admin audit trail: who changed which user, role, setting or recording",
    path="report/operationlogs",
    records_key="operation_logs",
    scope="report:read:operation_logs:admin",
    access_hint="the app needs a role with 'Admin activity logs: View' on a Pro or higher plan",
    # The variable names and defaults of Google's Lambda for this feed, so its users can switch as they are.
    prefix=("S3_PREFIX", "zoom/operationlogs/"),
    udm_prefix=("UDM_S3_PREFIX", "zoom/operationlogs-udm/"),
    manifest_prefix=("MANIFEST_S3_PREFIX", "zoom/operationlogs-manifests/"),
    part_prefix="zoom-operationlogs-",
    map_line=udm.map_line,
    udm_description="Each raw operation log normalized to a Google SecOps UDM event (one event per record).",
)

ACTIVITY_LOGS = Source(
    name="zoom_activity_logs",
    title="sign-in/sign-out activity logs",
    summary="who signed in and out, when, from which IP address and with which client",
    path="report/activities",
    records_key="activity_logs",
    scope="report:read:user_activities:admin",
    access_hint="the app needs a role with 'Sign In/Sign Out: View' (under Reports) on a Pro or higher plan",
    prefix=("ACTIVITY_S3_PREFIX", "zoom/activitylogs/"),
    udm_prefix=("ACTIVITY_UDM_S3_PREFIX", "zoom/activitylogs-udm/"),
    manifest_prefix=("ACTIVITY_MANIFEST_S3_PREFIX", "zoom/activitylogs-manifests/"),
    part_prefix="zoom-activitylogs-",
    map_line=udm_activity.map_activity_line,
    udm_description=(
        "Each sign-in or sign-out record normalized to a Google SecOps UDM USER_LOGIN / USER_LOGOUT event "
        "(one event per record)."
    ),
)

SOURCES = (OPERATION_LOGS, ACTIVITY_LOGS)


def source_of(asset_name: str) -> Source:
    """The source whose raw or UDM asset is called `asset_name`."""
    for source in SOURCES:
        if asset_name in (source.name, source.udm_name):
            return source
    raise KeyError(f"No Zoom source has an asset called {asset_name!r}.")
