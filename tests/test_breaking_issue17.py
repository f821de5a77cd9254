"""Second reader's attacks on how the store builds its S3 clients (`day_store.store_client`, issue 17).

A first version cached one client per process; these tests broke it (keys rotated behind a credential
process, a proxy set later, a fork while a thread built a client) and now guard its replacement, which
shares only botocore's parsed model files. A store's client must: pick up the credentials, endpoint and
proxy the standard chain gives *now* (wrong keys fail clearly, fixed keys work without a restart), keep
each store's bucket and SSE-KMS setting to itself, and keep writes create-only for every store and thread.
Real local servers only: moto S3 processes (one with IAM authentication on) and the Zoom simulator.
"""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from dagster_aws.s3 import S3Resource

from tests.helpers import (
    FAKE_AWS,
    HttpForwarder,
    api_listing,
    canonical,
    days_ago,
    error_text,
    free_port,
    materialize,
    records_of,
    resources,
    s3_day,
    wait_for_port,
)
from zoom_pipeline import storage
from zoom_pipeline.day_store import ZoomStore, store_client
from zoom_pipeline.storage import KeyTaken, file_sha256

pytestmark = pytest.mark.io

REGION = "us-east-1"
ADMIN = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap", "region_name": REGION}
WRONG_SECRET = "wrong-secret-0123456789-MUST-NOT-LEAK"
SESSION_TOKEN = "session-token-abcdef-MUST-NOT-LEAK"


def start_moto(extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **FAKE_AWS, **(extra_env or {})},
    )
    wait_for_port(port)
    return proc, f"http://127.0.0.1:{port}"


class AuthedS3:
    """A moto server that checks every request's access key and signature (IAM authentication on).

    The first three requests (creating an all-powerful user and its key) go unauthenticated; everything
    after needs a real key of that server's IAM."""

    def __init__(self):
        self.proc, self.url = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        iam = boto3.client("iam", endpoint_url=self.url, **ADMIN)
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        self.admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
        self.iam = self.client("iam")

    def client(self, service: str, key: dict | None = None):
        key = key or self.admin_key
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])

    def new_user(self) -> str:
        name = f"writer-{uuid.uuid4().hex[:8]}"
        self.iam.create_user(UserName=name)
        self.iam.attach_user_policy(UserName=name, PolicyArn=self.iam.create_policy(
            PolicyName=f"{name}-s3", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
        )["Policy"]["Arn"])
        return name

    def new_key(self, user: str) -> dict:
        return self.iam.create_access_key(UserName=user)["AccessKey"]

    def bucket(self) -> str:
        name = f"zoom-authed-{uuid.uuid4().hex[:10]}"
        self.client("s3").create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="module")
def authed():
    server = AuthedS3()
    try:
        yield server
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def second_s3_endpoint():
    proc, url = start_moto()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def use_keys(monkeypatch, endpoint: str, key: dict) -> None:
    """The standard chain's environment, as a user sets it: endpoint and a key pair."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def stored_records(s3, bucket: str, day: str) -> int:
    return sum(len(lines) - 1 for lines in s3_day(s3, bucket, day).values())


def all_event_text(result) -> str:
    return "\n".join(str(event) for event in result.all_events)


# ---- credentials change between runs of one process -----------------------------------------------------


def test_wrong_keys_after_good_ones_fail_clearly_without_leaking_and_fixed_keys_land_again(
    sim, zoom_env, authed, monkeypatch, capfd
):
    """Same resources, same process: a cached client with the good keys must not quietly serve a run whose
    environment holds a wrong secret (and a session token); that run fails once, naming S3's refusal, and
    shows no secret; putting the good secret back lands the next day without a restart."""
    key = authed.new_key(authed.new_user())
    bucket = authed.bucket()
    good, bad, fixed = days_ago(2), days_ago(3), days_ago(4)
    for n, day in enumerate((good, bad, fixed)):
        sim.generate_day(day, 40 + n, seed=170 + n)
    use_keys(monkeypatch, authed.url, key)
    res = resources(zoom_env, bucket=bucket)  # one set of resources for every run, as a code location has

    assert materialize(good, res).success

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    for refusal in ("SignatureDoesNotMatch", "InvalidToken"):  # a wrong secret, then also a session token
        failed = materialize(bad, res)
        assert not failed.success, "a run with wrong keys succeeded: it used a cached client with the old keys"
        message = error_text(failed.failure_data_for_node("zoom_operation_logs").error)
        assert f"An error occurred ({refusal}) when calling the ListObjectsV2 operation" in message
        shown = message + all_event_text(failed) + "".join(capfd.readouterr())
        for secret in (WRONG_SECRET, SESSION_TOKEN, key["SecretAccessKey"]):
            assert secret not in shown
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    assert materialize(fixed, res).success

    admin = authed.client("s3")
    assert [stored_records(admin, bucket, d) for d in (good, bad, fixed)] == [40, 0, 42]


def test_keys_rotated_behind_a_credential_process_are_used_by_the_next_run(
    sim, zoom_env, authed, monkeypatch, tmp_path
):
    """AWS_PROFILE with `credential_process` (a vault helper) is part of boto3's standard chain. Its keys are
    rotated (new key issued, old key deleted) while the process lives; neither the AWS_* environment nor
    the config file changes. Before the cache every run asked the chain again and got the new key; the
    cached client keeps the deleted one, and every later run of the process fails."""
    user = authed.new_user()
    old = authed.new_key(user)
    keys = tmp_path / "vault.json"
    keys.write_text(json.dumps({k: old[k] for k in ("AccessKeyId", "SecretAccessKey")}))
    helper = tmp_path / "vault_helper.py"
    helper.write_text(
        "import json, sys\n"
        "k = json.load(open(sys.argv[1]))\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': k['AccessKeyId'], "
        "'SecretAccessKey': k['SecretAccessKey']}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile vault]\ncredential_process = {sys.executable} {helper} {keys}\n"
                      f"region = {REGION}\n")
    bucket, admin = authed.bucket(), authed.client("s3")  # before the environment names a profile
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials-file"))
    monkeypatch.setenv("AWS_PROFILE", "vault")
    monkeypatch.setenv("AWS_ENDPOINT_URL", authed.url)
    first, second = days_ago(2), days_ago(3)
    sim.generate_day(first, 30, seed=180)
    sim.generate_day(second, 31, seed=181)
    res = resources(zoom_env, bucket=bucket)

    assert materialize(first, res).success

    new = authed.new_key(user)
    keys.write_text(json.dumps({k: new[k] for k in ("AccessKeyId", "SecretAccessKey")}))
    authed.iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
    # The chain itself now gives the new key: a client built now works.
    S3Resource().get_client().list_objects_v2(Bucket=bucket)

    result = materialize(second, res)
    assert result.success, error_text(result.failure_data_for_node("zoom_operation_logs").error)
    assert stored_records(admin, bucket, second) == 31


def test_a_new_aws_endpoint_url_sends_the_next_run_to_the_new_store(
    sim, zoom_env, s3_endpoint, second_s3_endpoint, aws_env, monkeypatch
):
    bucket = f"zoom-moved-{uuid.uuid4().hex[:10]}"
    one = boto3.client("s3", endpoint_url=s3_endpoint)
    two = boto3.client("s3", endpoint_url=second_s3_endpoint)
    one.create_bucket(Bucket=bucket)
    two.create_bucket(Bucket=bucket)
    before, after = days_ago(2), days_ago(3)
    sim.generate_day(before, 25, seed=190)
    sim.generate_day(after, 26, seed=191)
    res = resources(zoom_env, bucket=bucket)

    assert materialize(before, res).success
    monkeypatch.setenv("AWS_ENDPOINT_URL", second_s3_endpoint)
    assert materialize(after, res).success

    assert [stored_records(one, bucket, d) for d in (before, after)] == [25, 0]
    assert [stored_records(two, bucket, d) for d in (before, after)] == [0, 26]


def test_an_http_proxy_set_after_a_first_run_carries_the_next_runs_requests(
    sim, zoom_env, bucket, s3, aws_env, monkeypatch
):
    """HTTP(S)_PROXY / NO_PROXY and REQUESTS_CA_BUNDLE are read by botocore when a client is built; they are
    not AWS_* variables, so they are not in the cache's key. Before the cache every run read them anew."""
    first, second = days_ago(2), days_ago(3)
    sim.generate_day(first, 20, seed=200)
    sim.generate_day(second, 21, seed=201)
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    res = resources(zoom_env, bucket=bucket)
    assert materialize(first, res).success

    proxy = HttpForwarder()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        result = materialize(second, res)
        assert result.success, error_text(result.failure_data_for_node("zoom_operation_logs").error)
        s3_host = aws_env.removeprefix("http://")
        assert s3_host in proxy.seen, "the run's S3 calls ignored HTTP_PROXY: a client built before it was set"
    finally:
        proxy.close()
    assert stored_records(s3, bucket, second) == 21


# ---- one client shared by several stores, and threads ------------------------------------------------------


def payload(tmp_path, name: str, size: int, fill: bytes) -> tuple[str, str]:
    path = tmp_path / name
    block = hashlib.sha256(fill).digest() * 32  # 1 KiB, distinct per fill
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return str(path), file_sha256(str(path))


def test_stores_of_one_process_keep_their_bucket_and_encryption_and_stay_create_only_across_threads(
    aws_env, s3, tmp_path
):
    """Two buckets, one with SSE-KMS and one without, eight stores of one process (clients on shared parsed
    models; the first version shared one client among them). Single PUTs
    and multipart uploads: each object lands in its store's bucket, encrypted exactly when its store asks,
    and no thread's store can replace an object another store created (If-None-Match on every create)."""
    plain, sealed = (f"zoom-shared-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for name in (plain, sealed):
        s3.create_bucket(Bucket=name)
    kms_key = boto3.client("kms", endpoint_url=aws_env).create_key()["KeyMetadata"]["Arn"]
    configs = [(plain, ""), (sealed, kms_key)] * 4
    stores = [ZoomStore(s3=S3Resource(), s3_bucket=b, sse_kms_key_id=k).days().store for b, k in configs]
    assert len({id(store.client) for store in stores}) == len(stores)  # a client each, as dagster-aws gives
    for store in stores:
        store.transfer_config.multipart_threshold = 5 << 20
        store.transfer_config.multipart_chunksize = 5 << 20
    small = [payload(tmp_path, f"small-{i}", 2048, b"s%d" % i) for i in range(len(stores))]
    big = [payload(tmp_path, f"big-{i}", 6 << 20, b"b%d" % i) for i in range(len(stores))]

    # The first store of each bucket creates both objects (a multipart upload for the big one).
    for i in (0, 1):
        for key, (path, sha) in (("race/small", small[i]), ("race/big", big[i])):
            stores[i].put_new(key, path, content_type="application/octet-stream", sha256=sha)

    def overwrite(i: int) -> list[str]:
        outcomes = []
        for key, (path, sha) in (("race/small", small[i]), ("race/big", big[i])):
            try:
                stores[i].put_new(key, path, content_type="application/octet-stream", sha256=sha)
                outcomes.append("replaced")
            except KeyTaken:
                outcomes.append("refused")
        return outcomes

    with ThreadPoolExecutor(len(stores) - 2) as pool:
        outcomes = list(pool.map(overwrite, range(2, len(stores))))
    assert outcomes == [["refused", "refused"]] * (len(stores) - 2)
    # Repeating a store's own write is harmless (a lost response).
    stores[1].put_new("race/small", small[1][0], content_type="application/octet-stream", sha256=small[1][1])

    for i, name in enumerate((plain, sealed)):
        for key, (path, sha) in (("race/small", small[i]), ("race/big", big[i])):
            body = s3.get_object(Bucket=name, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == sha == file_sha256(path)
            head = s3.head_object(Bucket=name, Key=key)
            if name == sealed:
                assert head.get("ServerSideEncryption") == "aws:kms" and head.get("SSEKMSKeyId") == kms_key
            else:
                assert head.get("ServerSideEncryption") != "aws:kms" and "SSEKMSKeyId" not in head
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=plain)["Contents"]) == ["race/big", "race/small"]
    for name in (plain, sealed):  # a refused completion leaves no multipart upload behind (it is aborted)
        assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def test_many_threads_building_clients_at_once_while_the_models_are_first_parsed_stay_create_only(
    aws_env, bucket, s3, tmp_path
):
    """32 threads each build a store client at the same moment, while botocore's model files are being
    parsed for the first time in this process, and each tries to create the same key with its own bytes:
    exactly one creates it, every other is refused, and the object holds the winner's bytes."""
    storage._parsed.cache_clear()
    barrier = threading.Barrier(32)
    bodies = [payload(tmp_path, f"body{n}", 1000, f"thread {n}".encode()) for n in range(32)]

    def race(n):
        barrier.wait()
        store = ZoomStore(s3=S3Resource(), s3_bucket=bucket).days().store
        path, sha = bodies[n]
        try:
            store.put_new("raced/x", path, content_type="application/gzip", sha256=sha)
            return sha
        except KeyTaken:
            return None

    with ThreadPoolExecutor(32) as pool:
        winners = [sha for sha in pool.map(race, range(32)) if sha]
    assert len(winners) == 1
    assert hashlib.sha256(s3.get_object(Bucket=bucket, Key="raced/x")["Body"].read()).hexdigest() == winners[0]


# ---- the simulator's faults, two buckets, one process -------------------------------------------------------


def test_faulty_zoom_and_two_buckets_through_one_client_store_each_day_once_in_each(
    sim, zoom_env, aws_env, s3
):
    """Zoom answers with 5xx, a truncated body and a reset connection; the same day goes to two buckets
    (two stores, one client) and then to the first again: each bucket holds the day exactly once."""
    day = days_ago(2)
    sim.generate_day(day, 650, seed=210)
    one, two = (f"zoom-twice-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for name in (one, two):
        s3.create_bucket(Bucket=name)
    expected = canonical(api_listing(sim, zoom_env, day))
    for target in (one, two, one):
        sim.inject("server_error", times=1)
        sim.inject("truncated_body", times=1, after_calls=1)
        sim.inject("connection_reset", times=1, after_calls=2)
        result = materialize(day, resources(zoom_env, bucket=target), udm=True)
        assert result.success, error_text(result.failure_data_for_node("zoom_operation_logs").error)
    for name in (one, two):
        assert records_of(s3_day(s3, name, day)) == expected


def test_a_forked_child_gets_a_working_client_of_its_own_even_while_a_thread_builds_one(aws_env, bucket, s3):
    """A child forked while another thread of the parent is building a store client (the first version held
    a lock there, which the child inherited held and hung on) must get a client of its own and write with it."""
    parent = store_client(S3Resource())
    stop = threading.Event()

    def keep_building():
        n = 0
        while not stop.is_set():
            store_client(S3Resource(region_name=f"eu-fork-{n % 40}"))
            n += 1

    builder = threading.Thread(target=keep_building, daemon=True)
    builder.start()
    outcomes = []
    try:
        for attempt in range(2):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:  # the child: a thread tries, the main thread waits at most 3 s
                code = 3
                try:
                    done = threading.Event()

                    def child(key=f"forked/{attempt}", done=done):
                        client = store_client(S3Resource())
                        if client is not parent:
                            client.put_object(Bucket=bucket, Key=key, Body=b"child")
                            done.set()

                    threading.Thread(target=child, daemon=True).start()
                    code = 0 if done.wait(3) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            outcomes.append(os.waitstatus_to_exitcode(status))
    finally:
        stop.set()
        builder.join()
    assert outcomes == [0, 0], "2: the child hung building its client"
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="forked/").get("Contents", [])) == 2
