"""zoom_pipeline: Zoom operation logs and sign-in/sign-out activity logs into S3, exactly once, for SIEMs.

`zoom_pipeline.ZoomAccount` is the Dagster component type (component.py); it is imported on first use,
so `python -m zoom_pipeline.simulator` and friends do not load Dagster.
"""

__all__ = ["ZoomAccount"]


def __getattr__(name: str):
    if name == "ZoomAccount":
        from zoom_pipeline.component import ZoomAccount

        return ZoomAccount
    raise AttributeError(f"module 'zoom_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
