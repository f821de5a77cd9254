"""Instance configs (local and production) and the AWS policies under deploy/, held to what the code does."""

import json
import shutil
from fnmatch import fnmatchcase

import dagster as dg
import pytest
from dagster._core.instance.config import dagster_instance_config

from tests.helpers import REPO, days_ago, materialize, resources
from zoom_pipeline import storage
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import SOURCES

DEPLOY = REPO / "deploy"
# The IAM action each S3 API operation needs.
IAM_ACTION = {
    "ListObjectsV2": "s3:ListBucket",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}


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


def policy(name: str) -> list[dict]:
    statements = json.loads((DEPLOY / "iam" / name).read_text())["Statement"]
    assert all(s["Effect"] == "Allow" for s in statements)
    return statements


def s3_statements(statements: list[dict]) -> list[dict]:
    return [s for s in statements if str(s["Action"]).startswith(("s3:", "['s3:"))]


def allowed(statements: list[dict], action: str, bucket: str, key: str | None = None, prefix: str | None = None):
    """Whether the policy's S3 statements allow `action` (placeholders stand for `bucket`)."""
    for s in s3_statements(statements):
        actions = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        resources = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        resources = [r.replace("YOUR-BUCKET", bucket) for r in resources]
        if action not in actions:
            continue
        if key is not None and any(fnmatchcase(f"arn:aws:s3:::{bucket}/{key}", r) for r in resources):
            return True
        if prefix is not None and f"arn:aws:s3:::{bucket}" in resources:
            patterns = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix", [])
            if any(fnmatchcase(prefix, p) for p in patterns):
                return True
    return False


def test_writer_policy_allows_every_s3_call_the_pipeline_makes_and_no_delete(
    sim, zoom_env, bucket, monkeypatch, tmp_path
):
    calls: list[tuple[str, dict]] = []
    real_init = storage.S3Store.__init__

    def recording_init(self, client, *args, **kwargs):
        real_init(self, client, *args, **kwargs)
        client.meta.events.register(
            "before-parameter-build.s3", lambda params, model, **_: calls.append((model.name, dict(params)))
        )

    monkeypatch.setattr(storage.S3Store, "__init__", recording_init)
    day = days_ago(3)
    sim.generate_day(day, 500, seed=3)
    res = resources(zoom_env, bucket=bucket)
    with dg.instance_for_test() as instance:
        assert materialize(day, res, udm=True, instance=instance).success
        sim.add_records(day, sim.make_records(day, 2, seed=4))
        assert materialize(day, res, udm=True, instance=instance).success
        monkeypatch.setenv("S3_BUCKET", bucket)
        job = build_defs().resolve_job_def("zoom_completeness_job")
        assert job.execute_in_process(instance=instance, tags={"dagster/partition": day}).success

    statements = policy("zoom-pipeline-writer.json")
    operations = {name for name, _ in calls}
    assert {"ListObjectsV2", "GetObject", "PutObject"} <= operations
    for name, params in calls:
        assert name in IAM_ACTION, f"the pipeline calls {name}, which the writer policy does not cover"
        if name == "ListObjectsV2":
            assert allowed(statements, "s3:ListBucket", bucket, prefix=params["Prefix"]), params["Prefix"]
        else:
            assert allowed(statements, IAM_ACTION[name], bucket, key=params["Key"]), (name, params["Key"])
    every_action = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not {a for a in every_action if "Delete" in a or a.endswith("*")}
    assert set(every_action) == {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_secops_reader_sees_the_feed_prefixes_only(source):
    statements = policy("secops-feed-reader.json")
    feed = source.prefix[1]
    feed_key = f"{feed}2026/11/20/{source.part_prefix}20261120-000001.json.gz"
    assert allowed(statements, "s3:GetObject", "b", key=feed_key)
    assert allowed(statements, "s3:ListBucket", "b", prefix=f"{feed}2026/11/20/")
    for prefix in (source.udm_prefix[1], source.manifest_prefix[1], "other/"):
        assert not allowed(statements, "s3:GetObject", "b", key=f"{prefix}2026/11/20/x.json.gz")
        assert not allowed(statements, "s3:ListBucket", "b", prefix=prefix)
    actions = {
        a for s in s3_statements(statements) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"s3:ListBucket", "s3:GetObject"}


def test_lifecycle_rule_is_accepted_by_s3(s3, bucket):
    rules = json.loads((DEPLOY / "s3-lifecycle.json").read_text())
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "Expiration" not in rule  # it never deletes a finished object
