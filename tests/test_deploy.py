"""Instance configs (local and production) and the AWS policies under deploy/, held to what the code does.

The policies are held to the S3 requests the pipeline really sends, recorded on the wire (botocore's
`before-send` event) against the moto S3 server, through a small evaluator of the part of IAM's policy
language they use. moto cannot judge them itself: moto 5.2.6 returns DENIED for a bucket-policy statement
whose condition does not hold, whatever its effect, so with the create-only bucket policy on a moto bucket
every write under zoom/ fails, conditional or not.
"""

import json
import re
import shutil
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config

from tests.helpers import REPO, days_ago, materialize, resources
from zoom_pipeline import storage
from zoom_pipeline.accounts import Account
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES

DEPLOY = REPO / "deploy"
IAM = DEPLOY / "iam"
WRITER = "zoom-pipeline-writer.json"
READER = "secops-feed-reader.json"
BUCKET_POLICY = "bucket-policy-create-only.json"


def test_local_instance_config_loads(tmp_path):
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.pool_granularity.value == "run"
    assert concurrency.pool_config.default_pool_limit == 2
    # One automated run per account and day: never a limit that holds one account's runs behind another's.
    assert concurrency.run_queue_config.tag_concurrency_limits == [
        {"key": "zoom/account_day", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]


def test_production_instance_config_is_valid_and_matches_the_local_limits(tmp_path):
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # schema-validated
    database = config["storage"]["postgres"]["postgres_db"]
    for field, var in [("hostname", "HOST"), ("port", "PORT"), ("username", "USER"), ("password", "PASSWORD")]:
        assert database[field] == {"env": f"DAGSTER_PG_{var}"}
    assert database["db_name"] == {"env": "DAGSTER_PG_DB"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["run_monitoring"]["enabled"] is True
    local, _ = dagster_instance_config(str(REPO / "dagster_home"))
    assert config["concurrency"]["pools"] == local["concurrency"]["pools"]
    assert (
        config["concurrency"]["runs"]["tag_concurrency_limits"]
        == local["concurrency"]["runs"]["tag_concurrency_limits"]
    )


# ---- The part of IAM's policy language that deploy/iam/ uses, evaluated as AWS documents it ----------------
# IAM User Guide, "IAM JSON policy elements: Condition operators": a condition on a key that the request
# context lacks is false, except Null, which tests presence ("true": the key is absent). "IAM JSON policy
# elements: Condition": every operator of a block and every key of an operator must hold, a key's listed
# values are alternatives, key names are case-insensitive. "IAM JSON policy elements: Action" / "Resource":
# `*` and `?` wildcards, actions case-insensitive, ARNs case-sensitive. "Policy evaluation for requests within
# a single account": an explicit Deny in any policy wins; else an Allow in the identity-based or in the
# resource-based policy allows. Whatever else a policy might use (another operator, IfExists, NotAction, a
# named Principal) fails the test rather than being evaluated wrongly.

STATEMENT_ELEMENTS = {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}


def wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def condition_holds(operator: str, key: str, expected, context: dict[str, str]) -> bool:
    expected = [str(e) for e in as_list(expected)]
    actual = context.get(key.lower())
    if operator == "Null":
        [absent] = expected
        return (actual is None) == (absent.lower() == "true")
    assert operator in {"StringEquals", "StringLike", "Bool"}, f"the evaluator does not model {operator}"
    if actual is None:
        return False
    if operator == "StringEquals":
        return actual in expected
    if operator == "StringLike":
        return any(wildcard(e, actual) for e in expected)
    return actual.lower() in {e.lower() for e in expected}  # Bool


@dataclass(frozen=True)
class Authorization:
    """What IAM evaluates for one request: an action on a resource, with the request's condition keys."""

    action: str
    resource: str
    context: dict[str, str]  # lower-case key names


def applies(statement: dict, auth: Authorization) -> bool:
    assert set(statement) <= STATEMENT_ELEMENTS, f"the evaluator does not model {set(statement) - STATEMENT_ELEMENTS}"
    assert statement.get("Principal", "*") == "*", "the evaluator models only Principal '*' (everyone)"
    return (
        any(wildcard(a, auth.action, ignore_case=True) for a in as_list(statement["Action"]))
        and any(wildcard(r, auth.resource) for r in as_list(statement["Resource"]))
        and all(
            condition_holds(operator, key, expected, auth.context)
            for operator, block in statement.get("Condition", {}).items()
            for key, expected in block.items()
        )
    )


def decide(auth: Authorization, *policies: dict) -> str:
    """'Deny' (explicit), 'Allow' or 'ImplicitDeny': one principal's request, policies of the bucket's account."""
    effects = {s["Effect"] for policy in policies for s in policy["Statement"] if applies(s, auth)}
    return "Deny" if "Deny" in effects else "Allow" if "Allow" in effects else "ImplicitDeny"


def load_policy(name: str, bucket: str = "YOUR-BUCKET") -> dict:
    return json.loads((IAM / name).read_text().replace("YOUR-BUCKET", bucket))


# ---- S3 requests, and what IAM evaluates for each ------------------------------------------------------------
# Every object write needs s3:PutObject ("Required permissions for Amazon S3 API operations"). S3 sets
# s3:ObjectCreationOperation true on the requests that create the object and false on CreateMultipartUpload,
# UploadPart and UploadPartCopy, which take no conditional header: "Enforce conditional writes on Amazon S3
# buckets" exempts those three with `Bool s3:ObjectCreationOperation false`, requires the header on PutObject and
# CompleteMultipartUpload, and notes that CopyObject without it gets 403 under such a policy. s3:if-none-match
# is in the request context only when the request carries If-None-Match.
OPERATIONS = {  # operation: (IAM action, s3:ObjectCreationOperation, None where S3 does not set it)
    "ListObjectsV2": ("s3:ListBucket", None),
    "GetObject": ("s3:GetObject", None),
    "HeadObject": ("s3:GetObject", None),
    "PutObject": ("s3:PutObject", "true"),
    "CopyObject": ("s3:PutObject", "true"),
    "CreateMultipartUpload": ("s3:PutObject", "false"),
    "UploadPart": ("s3:PutObject", "false"),
    "UploadPartCopy": ("s3:PutObject", "false"),
    "CompleteMultipartUpload": ("s3:PutObject", "true"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
}


def creates_object(operation: str) -> bool:
    return OPERATIONS[operation][1] == "true"


@dataclass(frozen=True)
class Call:
    """One S3 request as it went on the wire."""

    operation: str
    bucket: str
    key: str = ""  # "" for a bucket operation
    prefix: str | None = None  # ListObjectsV2's
    if_none_match: str | None = None
    copy_source: str | None = None  # x-amz-copy-source: "bucket/key"

    def authorizations(self) -> list[Authorization]:
        assert self.operation in OPERATIONS, f"{self.operation}: no IAM action modelled for it"
        action, creation = OPERATIONS[self.operation]
        if action == "s3:ListBucket":
            return [Authorization(action, f"arn:aws:s3:::{self.bucket}",
                                  {} if self.prefix is None else {"s3:prefix": self.prefix})]
        context = {}
        if creation is not None:
            context["s3:objectcreationoperation"] = creation
        if self.if_none_match is not None:
            context["s3:if-none-match"] = self.if_none_match
        needed = [Authorization(action, f"arn:aws:s3:::{self.bucket}/{self.key}", context)]
        if self.copy_source is not None:  # a copy also reads its source
            source = unquote(self.copy_source).lstrip("/").split("?versionId=")[0]
            needed.append(Authorization("s3:GetObject", f"arn:aws:s3:::{source}", {}))
        return needed


def decision(call: Call, *policies: dict) -> str:
    """The decision on a whole request: it fails if any of its authorizations does."""
    verdicts = {decide(auth, *policies) for auth in call.authorizations()}
    return next(v for v in ("Deny", "ImplicitDeny", "Allow") if v in verdicts)


def without_header(call: Call) -> Call:
    return replace(call, if_none_match=None)


def record_s3_calls(client, calls: list[Call] | None = None) -> list[Call]:
    """Record every request `client` sends, as it goes on the wire (path-style, as to the local endpoint)."""
    calls = [] if calls is None else calls

    def on_send(request, event_name: str, **_):
        url = urlsplit(request.url)
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        prefix = parse_qs(url.query, keep_blank_values=True).get("prefix", [None])[0]

        def header(name: str) -> str | None:
            value = request.headers.get(name)
            return value.decode() if isinstance(value, bytes) else value

        calls.append(Call(event_name.rsplit(".", 1)[1], bucket, key, prefix,
                          header("If-None-Match"), header("x-amz-copy-source")))

    client.meta.events.register("before-send.s3", on_send, unique_id="test_deploy.record_s3_calls")
    return calls


def test_the_evaluator_reads_aws_examples_as_aws_describes_them():
    # Example 1 of "Enforce conditional writes on Amazon S3 buckets" (its principal left out): PutObject and
    # CompleteMultipartUpload only with if-none-match; multipart's other steps through the second statement.
    arn = "arn:aws:s3:::amzn-s3-demo-bucket1/*"
    example = {"Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": arn,
         "Condition": {"Null": {"s3:if-none-match": "false"}}},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": arn,
         "Condition": {"Bool": {"s3:ObjectCreationOperation": "false"}}},
    ]}
    for operation in ("PutObject", "CompleteMultipartUpload"):
        assert decision(Call(operation, "amzn-s3-demo-bucket1", "k", if_none_match="*"), example) == "Allow"
        assert decision(Call(operation, "amzn-s3-demo-bucket1", "k"), example) == "ImplicitDeny"
    for operation in ("CreateMultipartUpload", "UploadPart", "UploadPartCopy"):
        assert decision(Call(operation, "amzn-s3-demo-bucket1", "k"), example) == "Allow"
    copy = Call("CopyObject", "amzn-s3-demo-bucket1", "k", copy_source="amzn-s3-demo-bucket1/j")
    assert decision(copy, example) == "ImplicitDeny"  # the page's note: 403
    # Wildcards, case, and a key the request lacks.
    listing = {"Statement": [{"Effect": "Allow", "Action": "S3:List*", "Resource": "arn:aws:s3:::b?",
                              "Condition": {"StringLike": {"S3:Prefix": ["zoom/*"]}}}]}
    assert decision(Call("ListObjectsV2", "b1", prefix="zoom/operationlogs/"), listing) == "Allow"
    assert decision(Call("ListObjectsV2", "b1", prefix="other/"), listing) == "ImplicitDeny"
    assert decision(Call("ListObjectsV2", "b1"), listing) == "ImplicitDeny"  # no prefix: the condition is false
    assert decision(Call("ListObjectsV2", "B1", prefix="zoom/"), listing) == "ImplicitDeny"  # ARNs keep case
    unmodelled = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
                                 "Condition": {"StringNotEqualsIfExists": {"s3:prefix": "x"}}}]}
    with pytest.raises(AssertionError, match="does not model"):
        decision(Call("GetObject", "b", "k"), unmodelled)


def test_the_create_only_bucket_policy_binds_every_principal_and_grants_nothing():
    policy = load_policy(BUCKET_POLICY)
    [deny] = policy["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Resource"]) == ("Deny", "*", "arn:aws:s3:::YOUR-BUCKET/zoom/*")
    # The writer's own Deny is the same rule (for its role, in any bucket).
    [own] = [s for s in load_policy(WRITER)["Statement"] if s["Effect"] == "Deny"]
    assert (own["Action"], own["Condition"], own["Resource"]) == (deny["Action"], deny["Condition"], "arn:aws:s3:::*/*")
    # A principal allowed everything (a second writer, an administrator) is held to it too, under zoom/ only.
    everything = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    bucket_policy = load_policy(BUCKET_POLICY, "b")
    key = "zoom/acme/operationlogs/2026/11/20/zoom-operationlogs-20261120-000001.json.gz"
    assert decision(Call("PutObject", "b", key), everything, bucket_policy) == "Deny"
    assert decision(Call("PutObject", "b", key, if_none_match="*"), everything, bucket_policy) == "Allow"
    assert decision(Call("CopyObject", "b", key, copy_source=f"b/{key}"), everything, bucket_policy) == "Deny"
    assert decision(Call("PutObject", "b", "elsewhere/x"), everything, bucket_policy) == "Allow"
    assert decision(Call("GetObject", "b", key), everything, bucket_policy) == "Allow"


@pytest.mark.parametrize("account", [Account(), Account(name="acme")], ids=["one account", "account acme"])
def test_create_only_covers_every_prefix_the_pipeline_writes(account):
    """Raw, UDM and manifests of both sources; in both layouts: zoom/operationlogs/..., zoom/acme/operationlogs/..."""
    writer, bucket_policy = load_policy(WRITER, "b"), load_policy(BUCKET_POLICY, "b")
    prefixes = account.all_prefixes({})
    assert len(set(prefixes.values())) == 3 * len(SOURCES)
    for prefix in prefixes.values():
        key = f"{prefix}2026/11/20/part.json.gz"
        for operation in ("PutObject", "CompleteMultipartUpload"):
            conditional = Call(operation, "b", key, if_none_match="*")
            assert decision(conditional, bucket_policy) == "ImplicitDeny"  # not denied (and granted elsewhere)
            assert decision(without_header(conditional), bucket_policy) == "Deny", (operation, key)
            assert decision(without_header(conditional), writer) == "Deny", (operation, key)
        copy = Call("CopyObject", "b", key, copy_source=f"b/{key}")
        assert decision(copy, bucket_policy) == decision(copy, writer) == "Deny"
        for operation in ("CreateMultipartUpload", "UploadPart"):  # no header to carry: exempt
            assert decision(Call(operation, "b", key), bucket_policy) == "ImplicitDeny"
        if not account.name:  # the shipped writer names one account's prefixes (the README says how to widen them)
            for operation in ("PutObject", "CompleteMultipartUpload"):
                assert decision(Call(operation, "b", key, if_none_match="*"), writer, bucket_policy) == "Allow"
            for operation in ("CreateMultipartUpload", "UploadPart", "AbortMultipartUpload"):
                assert decision(Call(operation, "b", key), writer, bucket_policy) == "Allow"


@pytest.mark.parametrize("multipart", [False, True], ids=["single PutObject", "multipart upload"])
def test_put_new_sends_only_requests_the_policies_allow(s3, bucket, tmp_path, multipart):
    store = storage.S3Store(s3, bucket)  # the production transfer settings: multipart from 16 MiB, 8 MiB parts
    calls = record_s3_calls(s3)
    config = store.transfer_config
    size = config.multipart_threshold + 1 if multipart else 1000
    key = f"{OPERATION_LOGS.prefix[1]}2026/11/20/{OPERATION_LOGS.part_prefix}20261120-000001.json.gz"
    first, other = tmp_path / "first", tmp_path / "other"
    first.write_bytes(b"a" * size)
    other.write_bytes(b"b" * size)
    sha = storage.file_sha256(str(first))
    store.put_new(key, str(first), content_type="application/gzip", sha256=sha)
    store.put_new(key, str(first), content_type="application/gzip", sha256=sha)  # a retry: 412, then HEAD
    with pytest.raises(storage.KeyTaken):
        store.put_new(key, str(other), content_type="application/gzip", sha256=storage.file_sha256(str(other)))

    assert {(c.bucket, c.key) for c in calls} == {(bucket, key)}
    counts = {operation: sum(c.operation == operation for c in calls) for operation in {c.operation for c in calls}}
    if multipart:
        parts = -(-size // config.multipart_chunksize)
        assert counts == {"CreateMultipartUpload": 3, "UploadPart": 3 * parts, "CompleteMultipartUpload": 3,
                          "AbortMultipartUpload": 2, "HeadObject": 2}
    else:
        assert counts == {"PutObject": 3, "HeadObject": 2}
    writer, bucket_policy = load_policy(WRITER, bucket), load_policy(BUCKET_POLICY, bucket)
    for call in calls:
        assert decision(call, writer, bucket_policy) == "Allow", call
        assert call.if_none_match == ("*" if creates_object(call.operation) else None), call
        if creates_object(call.operation):
            assert decision(without_header(call), bucket_policy) == "Deny", call
            assert decision(without_header(call), writer) == "Deny", call


def test_writes_without_if_none_match_are_denied(bucket, aws_env):
    """What another tool sends (a plain client: no put_new hooks), recorded and judged."""
    plain = boto3.client("s3", endpoint_url=aws_env)
    calls = record_s3_calls(plain)
    key = f"{OPERATION_LOGS.prefix[1]}2026/11/20/{OPERATION_LOGS.part_prefix}20261120-000001.json.gz"
    plain.put_object(Bucket=bucket, Key=key, Body=b"one")
    plain.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    upload = plain.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = plain.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"two")["ETag"]
    plain.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                    MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})

    writer, bucket_policy = load_policy(WRITER, bucket), load_policy(BUCKET_POLICY, bucket)
    assert [(c.operation, c.if_none_match, decision(c, bucket_policy), decision(c, writer)) for c in calls] == [
        ("PutObject", None, "Deny", "Deny"),
        ("CopyObject", None, "Deny", "Deny"),
        ("CreateMultipartUpload", None, "ImplicitDeny", "Allow"),  # exempt: it takes no conditional header
        ("UploadPart", None, "ImplicitDeny", "Allow"),
        ("CompleteMultipartUpload", None, "Deny", "Deny"),
    ]


def test_writer_and_bucket_policies_allow_every_s3_call_the_pipeline_makes_and_no_delete(
    sim, zoom_env, bucket, monkeypatch
):
    calls: list[Call] = []
    real_init = storage.S3Store.__init__

    def recording_init(self, client, *args, **kwargs):
        real_init(self, client, *args, **kwargs)
        record_s3_calls(client, calls)

    monkeypatch.setattr(storage.S3Store, "__init__", recording_init)
    day = days_ago(3)
    sim.generate_day(day, 500, seed=3)
    sim.generate_day(day, 50, seed=5, log="activities")
    res = resources(zoom_env, bucket=bucket)
    with dg.instance_for_test() as instance:
        assert materialize(day, res, udm=True, instance=instance).success
        assert materialize(day, res, udm=True, instance=instance, source=ACTIVITY_LOGS).success
        sim.add_records(day, sim.make_records(day, 2, seed=4))
        assert materialize(day, res, udm=True, instance=instance).success
        monkeypatch.setenv("S3_BUCKET", bucket)
        job = build_defs().resolve_job_def("zoom_completeness_job")
        assert job.execute_in_process(instance=instance, tags={"dagster/partition": day}).success

    assert {c.bucket for c in calls} == {bucket}
    assert {"ListObjectsV2", "GetObject", "PutObject"} <= {c.operation for c in calls}
    written = {c.key for c in calls if creates_object(c.operation)}
    every_prefix = {prefix for s in SOURCES for _, prefix in (s.prefix, s.udm_prefix, s.manifest_prefix)}
    assert {p for p in every_prefix if any(k.startswith(p) for k in written)} == every_prefix
    writer, bucket_policy = load_policy(WRITER, bucket), load_policy(BUCKET_POLICY, bucket)
    for call in calls:
        assert decision(call, writer, bucket_policy) == "Allow", call
        if creates_object(call.operation):
            assert call.if_none_match == "*", call
            assert decision(without_header(call), writer) == decision(without_header(call), bucket_policy) == "Deny"

    every_action = {a for s in writer["Statement"] for a in as_list(s["Action"])}
    assert not {a for a in every_action if "Delete" in a or a.endswith("*")}
    assert every_action == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_secops_reader_sees_the_feed_prefixes_only(source):
    reader = load_policy(READER, "b")
    assert all(s["Effect"] == "Allow" for s in reader["Statement"])
    feed = source.prefix[1]
    feed_key = f"{feed}2026/11/20/{source.part_prefix}20261120-000001.json.gz"
    assert decision(Call("GetObject", "b", feed_key), reader) == "Allow"
    assert decision(Call("ListObjectsV2", "b", prefix=f"{feed}2026/11/20/"), reader) == "Allow"
    assert decision(Call("PutObject", "b", feed_key, if_none_match="*"), reader) == "ImplicitDeny"
    for prefix in (source.udm_prefix[1], source.manifest_prefix[1], "other/"):
        assert decision(Call("GetObject", "b", f"{prefix}2026/11/20/x.json.gz"), reader) == "ImplicitDeny"
        assert decision(Call("ListObjectsV2", "b", prefix=prefix), reader) == "ImplicitDeny"
    actions = {a for s in reader["Statement"] for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert actions == {"s3:ListBucket", "s3:GetObject"}


def test_lifecycle_rule_is_accepted_by_s3(s3, bucket):
    rules = json.loads((DEPLOY / "s3-lifecycle.json").read_text())
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "Expiration" not in rule  # it never deletes a finished object
