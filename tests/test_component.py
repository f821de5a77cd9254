"""The `zoom_pipeline.ZoomAccount` component in a user's own Dagster project (defs.yaml), loaded the way
`dg` and `dagster dev` load a project's defs folder."""


import dagster as dg
import pytest

from tests.helpers import SIM_SECRET, days_ago, s3_day, user_project
from zoom_pipeline.accounts import FILE_KEYS
from zoom_pipeline.component import ZoomAccount
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS


def test_the_attributes_are_one_entry_of_the_accounts_file():
    assert set(ZoomAccount.model_fields) == {"name", *FILE_KEYS}


def test_two_components_declare_two_accounts_side_by_side(tmp_path, monkeypatch):
    defs = user_project(tmp_path, monkeypatch, {
        "zoom_acme": """
            type: zoom_pipeline.ZoomAccount
            attributes:
              name: acme
        """,
        "zoom_beta": """
            type: zoom_pipeline.ZoomAccount
            attributes:
              name: beta
              s3_bucket: beta-logs
              max_requests_per_second: 20
              logs_start_date: "2026-11-01"
        """,
    })
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {f"{a}/{n}" for a in ("acme", "beta") for s in (OPERATION_LOGS, ACTIVITY_LOGS)
                    for n in (s.name, s.udm_name)}
    repo = defs.get_repository_def()
    assert {s.name for s in repo.schedule_defs} == {f"{a}_{n}" for a in ("acme", "beta")
                                                   for n in ("zoom_daily_schedule", "zoom_freshness_schedule")}
    assert {s.name for s in repo.sensor_defs} == {f"{a}_{n}" for a in ("acme", "beta")
                                                 for n in ("zoom_today_sensor", "zoom_confirmation_sensor")}
    assert {"acme_zoom_operation_logs_job", "beta_zoom_completeness_job"} <= set(repo.job_names)
    beta = defs.resolve_assets_def(dg.AssetKey(["beta", OPERATION_LOGS.name]))
    assert beta.op.pool == "zoom_api_beta" and beta.partitions_def.start.date().isoformat() == "2026-11-01"
    assert defs.resources["zoom_store__beta"].s3_bucket == "beta-logs"
    assert defs.resources["zoom__beta"].max_requests_per_second == 20


def test_a_bad_attribute_is_one_sentence_naming_the_component(tmp_path, monkeypatch):
    with pytest.raises(Exception) as raised:
        user_project(tmp_path, monkeypatch, {"zoom_x": """
            type: zoom_pipeline.ZoomAccount
            attributes:
              name: Acme-Corp
        """})
    cause = raised.value
    while cause.__cause__ is not None:  # Dagster wraps it in a tree of where it failed
        cause = cause.__cause__
    assert str(cause).startswith("The ZoomAccount component at ")
    assert str(cause).endswith("the account name 'Acme-Corp' must be lowercase letters, digits and _.")


def test_a_components_account_collects_its_day(tmp_path, monkeypatch, sim, bucket, s3, aws_env):
    day = days_ago(2)
    sim.generate_day(day, 400, seed=8)
    sim.generate_day(day, 100, seed=8, log="activities")
    for what, value in {"ACCOUNT_ID": sim.account_id, "CLIENT_ID": sim.client_id, "CLIENT_SECRET": SIM_SECRET}.items():
        monkeypatch.setenv(f"ZOOM_ACME_{what}", value)
    monkeypatch.setenv("ZOOM_ACCOUNT_STORE", "memory")
    defs = user_project(tmp_path, monkeypatch, {"zoom_acme": f"""
        type: zoom_pipeline.ZoomAccount
        attributes:
          name: acme
          s3_bucket: {bucket}
          api_base_url: {sim.base_url}
          oauth_token_url: {sim.token_url}
    """})
    job = defs.resolve_job_def("acme_zoom_operation_logs_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
    assert result.success
    [part] = s3_day(s3, bucket, day, prefix="zoom/acme/operationlogs/").values()
    assert len(part) - 1 == 400
    assert len(next(iter(s3_day(s3, bucket, day, prefix="zoom/acme/activitylogs/").values()))) - 1 == 100


def test_dagster_finds_the_component_type_through_the_packages_entry_point():
    """What `dg list components` lists: registry modules named by installed packages' entry points."""
    from dagster.components.core.package_entry import discover_entry_point_package_objects

    found = discover_entry_point_package_objects()
    assert [key.name for key in found if key.namespace == "zoom_pipeline"] == ["ZoomAccount"]
