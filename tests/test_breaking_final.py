"""Breaking the store end to end (a second reader): S3 answers lost, replaced or held on their way (an HttpForwarder
in front of the S3 server, AWS_ENDPOINT_URL pointed at it), with the simulator's faults, then the same day again.

What held, not kept here: lost/503/500/timed-out answers to PutObject, UploadPart and CompleteMultipartUpload
(single and multipart parts, manifests, pass records, UDM parts), retries exhausted after the object was written
(the step retry heals the manifest), ranged runs of both sources with 429/5xx/truncated/malformed pages: every
day held the simulator's listing exactly once and no error text carried a secret."""

import base64
import random
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import (
    CONFLICT,
    HttpForwarder,
    api_listing,
    canonical,
    days_ago,
    error_text,
    materialize,
    output_metadata,
    records_of,
    resources,
    s3_day,
)
from zoom_pipeline.storage import S3Store


def op_of(command: str, target: str) -> str:
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    if command == "PUT":
        return "UploadPart" if "partNumber" in query else "PutObject"
    if command == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    return {"HEAD": "HeadObject", "DELETE": "Delete"}.get(command, "Get")


@pytest.fixture
def s3_proxy(s3_endpoint, aws_env, monkeypatch):
    """Start an HttpForwarder in front of the S3 server with `answer` and point AWS_ENDPOINT_URL at it."""
    proxies = []

    def start(answer):
        upstream = urlsplit(s3_endpoint)
        proxy = HttpForwarder(upstream=(upstream.hostname, upstream.port), answer=answer)
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def incompressible_day(day: str, n: int) -> list[dict]:
    """`n` records whose details do not compress, so the day's part is several MiB (multipart when lowered)."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        sec = 86_399 - i * 20
        out.append({"action": "Update", "category_type": "User", "operator": "admin@example.com",
                    "operation_detail": base64.b64encode(rng.randbytes(2250)).decode(),
                    "time": f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"})
    return out


@pytest.mark.xfail(strict=True, reason="A lost CreateMultipartUpload answer leaves an empty upload open: no run knows "
                   "its id, and aborting it would need s3:ListBucketMultipartUploads, which the writer's policy does "
                   "not grant. deploy/s3-lifecycle.json aborts it after a day; the day itself is exact.")
def test_a_lost_create_multipart_upload_answer_leaves_no_incomplete_upload_behind(
    sim, zoom_env, bucket, s3, s3_proxy, monkeypatch
):
    """A part large enough to go multipart (thresholds lowered to S3's 5 MiB minimum on the store object). The
    first CreateMultipartUpload reaches S3 and its answer is lost; botocore retries it and the write completes
    under a second upload id. The run succeeds and the day is exact on rerun, but the first upload id (which
    no run knows) stays open in the bucket: after the key exists it can never complete (If-None-Match), so it
    is abandoned by the pipeline itself, not by a killed run. A timed-out CreateMultipartUpload does the same."""
    real_init = S3Store.__init__

    def lowered(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.transfer_config.multipart_threshold = 5 << 20
        self.transfer_config.multipart_chunksize = 5 << 20

    monkeypatch.setattr(S3Store, "__init__", lowered)
    day = days_ago(2)
    sim.set_day(day, incompressible_day(day, 3000))
    sim.inject("server_error", times=1)
    sim.inject("rate_limit_qps", times=1, retry_after=0, after_calls=2)
    lost = []

    def lose_the_first_create(command, target, forward):
        if op_of(command, target) == "CreateMultipartUpload" and not lost:
            lost.append(forward()[0])
            return None
        return forward()

    s3_proxy(lose_the_first_create)
    for _ in range(2):  # the run, and the same day again
        result = materialize(day, resources(zoom_env, bucket=bucket), udm=True)
        assert result.success, error_text(result.failure_data_for_node("zoom_operation_logs").error)
    assert lost == [200], "the fault never fired: the part did not go multipart"
    assert records_of(s3_day(s3, bucket, day)) == canonical(api_listing(sim, zoom_env, day))
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == []


def test_a_part_write_still_in_flight_when_its_retry_meets_409_is_stored_once_as_this_runs(
    sim, zoom_env, bucket, s3, s3_proxy
):
    """The pass's PutObject of its part is still being processed (a first attempt that timed out) when S3
    answers the write 409 ConditionalRequestConflict, as it does while another conditional write of the key is
    in flight. The in-flight write then lands. Taking 409 at once for another run's part (HEAD: 404, the
    listing: empty) wrote the records again under the next part number; S3 asks for a retry, whose answer
    (412, our own sha256) says this run's write won."""
    day = days_ago(2)
    sim.generate_day(day, 650, seed=3)
    sim.inject("truncated_body", times=1, after_calls=1)
    in_flight: dict[str, threading.Thread] = {}

    def first_part_write_in_flight(command, target, forward):
        if op_of(command, target) != "PutObject" or not urlsplit(target).path.endswith(".json.gz"):
            return forward()
        if target in in_flight and in_flight[target].is_alive():
            return CONFLICT
        if in_flight:
            return forward()
        in_flight[target] = threading.Thread(target=lambda: (time.sleep(0.6), forward()), daemon=True)
        in_flight[target].start()
        return CONFLICT

    s3_proxy(first_part_write_in_flight)
    result = materialize(day, resources(zoom_env, bucket=bucket), udm=True)
    assert result.success, error_text(result.failure_data_for_node("zoom_operation_logs").error)
    assert in_flight, "the fault never fired"
    for thread in in_flight.values():
        thread.join(timeout=10)
    stored = s3_day(s3, bucket, day)
    assert records_of(stored) == canonical(api_listing(sim, zoom_env, day))
    metadata = output_metadata(result)
    assert (metadata["dagster/row_count"], metadata["records_written"]) == (650, 650)
    assert metadata["day_objects"] == len(metadata["objects_written"]) == len(stored) == 1
