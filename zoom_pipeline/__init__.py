"""zoom_pipeline: Zoom operation logs and sign-in/sign-out activity logs into S3, exactly once, for SIEMs.

`zoom_pipeline.ZoomAccount` is the Dagster component type (component.py); it is imported on first use,
so `python -m zoom_pipeline.simulator` and friends do not load Dagster.
"""

import warnings

__all__ = ["ZoomAccount"]

# The one place this project quiets Dagster. Its definitions use, on purpose, a beta and a preview feature
# of Dagster 1.13: the raw assets' backfill policies (many days per backfill run) and partitioned asset
# checks (a check's result recorded against its day). Dagster warns about each on every load of the
# definitions (every CLI command, every run worker), which tells the user nothing they can act on. The
# day job holds assets with two backfill policies on purpose too (automation.py says why). Only these
# three messages are silenced; every other warning still shows.
for _message in (
    r"Parameter `backfill_policy` of function `(multi_)?asset` is currently in beta",
    r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
    r"Asset job \S+ materializes assets with varying BackfillPolicies",
):
    warnings.filterwarnings("ignore", message=_message)


def __getattr__(name: str):
    if name == "ZoomAccount":
        from zoom_pipeline.component import ZoomAccount

        return ZoomAccount
    raise AttributeError(f"module 'zoom_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
