"""Which failures a step's RetryPolicy may retry: the transient ones only.

An error that can never pass on a retry (bad credentials, a missing scope, a day outside Zoom's window,
a spent quota, invalid configuration, a bug of ours) fails the step once, with its sentence, through
`dg.Failure(allow_retries=False)`: three more tries spread over minutes would only delay the same answer.
What may pass later keeps Dagster's retries: network trouble, Zoom 5xx and 429 storms that outlasted the
client's own retries, S3 throttling and 5xx, a run that lost the race for a part number. An account
store that cannot be reached fails once, with the sentence naming it (mostly a setting to fix). A crashed
run worker is the instance's run retries' business (deploy/dagster.yaml).
"""

from contextlib import contextmanager

import dagster as dg
import requests
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from zoom_pipeline.landing import ConcurrentWriteError
from zoom_pipeline.zoom_client import ZoomError, ZoomRetryableError

# S3 error codes that mean "not now" rather than "never" (AWS's retryable codes, as botocore's own retry
# handler lists them, and plain 5xx statuses).
TRANSIENT_S3_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
    "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "EC2ThrottledException", "PriorRequestNotComplete", "TransactionInProgressException", "OperationAborted",
    "500", "502", "503", "504",
})


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the step may succeed where this attempt failed."""
    if isinstance(exc, ZoomError):  # its sentence says what to check (an unreachable account store included)
        return False
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.get("Code") in TRANSIENT_S3_CODES or status >= 500
    return isinstance(exc, (ZoomRetryableError, ConcurrentWriteError, requests.RequestException,
                            BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError))


@contextmanager
def retry_only_transient():
    """Around a step's work: transient errors go up as they are (the step's RetryPolicy retries them);
    anything else becomes a Failure that is not retried, with one sentence."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        if isinstance(exc, ZoomError | ClientError):
            raise dg.Failure(str(exc), allow_retries=False) from None
        raise dg.Failure(
            f"{type(exc).__name__}: {exc}. A retry cannot fix this, so the step was not retried; if it is not a "
            "problem of configuration, it is a defect of zoom_pipeline: please report it with this run's logs.",
            allow_retries=False,
        ) from exc
