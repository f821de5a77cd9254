"""Dagster's step retries are for what may pass later: errors that never can fail the step once."""

import dagster as dg
import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.helpers import days_ago, materialize, output_metadata, resources, s3_day
from zoom_pipeline import assets
from zoom_pipeline.failures import is_transient, retry_only_transient
from zoom_pipeline.landing import ConcurrentWriteError
from zoom_pipeline.zoom_client import (
    ZoomAccountStoreError,
    ZoomBudgetSpentError,
    ZoomError,
    ZoomRetryableError,
)


def s3_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize("exc, transient", [
    (ZoomRetryableError("5xx storm"), True),
    (ZoomAccountStoreError("PostgreSQL unreachable"), False),
    (ConcurrentWriteError("lost the race five times"), True),
    (requests.ConnectionError("reset"), True),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (s3_error("SlowDown", 503), True),
    (s3_error("InternalError", 500), True),
    (TimeoutError(), True),
    (ZoomError("Zoom refused the OAuth credentials"), False),
    (ZoomBudgetSpentError(10, __import__("datetime").datetime(2026, 12, 8)), False),
    (s3_error("AccessDenied", 403), False),
    (s3_error("NoSuchBucket", 404), False),
    (KeyError("time"), False),
    (TypeError("unsupported operand"), False),
    (ValueError("a bug"), False),
])
def test_what_counts_as_transient(exc, transient):
    assert is_transient(exc) is transient
    with pytest.raises(type(exc) if transient else dg.Failure) as raised:
        with retry_only_transient():
            raise exc
    if not transient:
        assert raised.value.allow_retries is False


def test_a_bug_fails_the_step_once_without_dagsters_retries(sim, zoom_env, bucket, s3, monkeypatch):
    day = days_ago(3)
    sim.generate_day(day, 500, seed=31)
    calls = []

    def broken_land(*args, **kwargs):
        calls.append(1)
        raise KeyError("records_written")  # a defect of ours: no retry can fix it

    monkeypatch.setattr(assets, "land", broken_land)
    result = materialize(day, resources(zoom_env, bucket=bucket))  # the step may be retried twice (conftest)
    assert not result.success
    assert calls == [1] and sim.stats()["report_calls"] == 2  # one attempt: one pass of two pages
    message = result.failure_data_for_node("zoom_operation_logs").error.message
    assert "KeyError: 'records_written'. A retry cannot fix this, so the step was not retried" in message
    assert s3_day(s3, bucket, day) == {}


def test_bad_credentials_fail_once(sim, zoom_env, bucket):
    sim.generate_day(days_ago(3), 10, seed=32)
    result = materialize(days_ago(3), resources({**zoom_env, "ZOOM_CLIENT_SECRET": "wrong"}, bucket=bucket))
    assert not result.success
    assert sim.stats()["token_calls"] == 1 and sim.stats()["report_calls"] == 0
    assert "Zoom refused the OAuth credentials" in result.failure_data_for_node("zoom_operation_logs").error.message


def test_a_transient_s3_error_keeps_its_retries(sim, zoom_env, bucket, s3, monkeypatch):
    day = days_ago(3)
    sim.generate_day(day, 500, seed=33)
    real_land, calls = assets.land, []

    def throttled_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise s3_error("SlowDown", 503)
        return real_land(*args, **kwargs)

    monkeypatch.setattr(assets, "land", throttled_once)
    result = materialize(day, resources(zoom_env, bucket=bucket))
    assert result.success and len(calls) == 2  # the step's retry landed the day
    assert output_metadata(result)["records_written"] == 500
