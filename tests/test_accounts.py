"""Several Zoom accounts in one deployment (ZOOM_ACCOUNTS_FILE): the file, the definitions it gives, and
runs of two accounts side by side, each against its own Zoom (a simulator per account)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from tests.helpers import FAKE_AWS, SIM_SECRET, api_listing, canonical, days_ago, records_of, s3_day
from zoom_pipeline.accounts import AccountsFileError, load_accounts_file
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.simulator import ZoomSimulator
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS

# ---- the file ------------------------------------------------------------------------------------------


def accounts_file(tmp_path, text: str) -> str:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    return str(path)


def test_the_example_of_the_issue_loads_with_its_defaults(tmp_path):
    path = accounts_file(tmp_path, """
accounts:
  acme: {}                       # every setting below is optional
  beta:
    s3_bucket: other-bucket      # default S3_BUCKET
    s3_prefix: zoom/beta/operationlogs/
    activity_s3_prefix: zoom/beta/activitylogs/
    max_requests_per_second: 20
    daily_request_budget: 40000
    logs_start_date: "2026-07-01"
    api_base_url: https://api.zoom.us/v2
    oauth_token_url: https://zoom.us/oauth/token
""")
    acme, beta = load_accounts_file(path, {"S3_BUCKET": "main-bucket"})
    assert (acme.name, beta.name) == ("acme", "beta")
    assert acme.all_prefixes({}) == {
        "S3_PREFIX": "zoom/acme/operationlogs/", "UDM_S3_PREFIX": "zoom/acme/operationlogs-udm/",
        "MANIFEST_S3_PREFIX": "zoom/acme/operationlogs-manifests/", "ACTIVITY_S3_PREFIX": "zoom/acme/activitylogs/",
        "ACTIVITY_UDM_S3_PREFIX": "zoom/acme/activitylogs-udm/",
        "ACTIVITY_MANIFEST_S3_PREFIX": "zoom/acme/activitylogs-manifests/",
    }
    assert acme.bucket({"S3_BUCKET": "main-bucket"}) == "main-bucket" and beta.bucket({}) == "other-bucket"
    assert (beta.max_requests_per_second, beta.daily_request_budget) == (20.0, 40000)
    assert beta.logs_start_date == "2026-07-01"
    assert beta.prefix("UDM_S3_PREFIX", {}) == "zoom/beta/operationlogs-udm/"  # beside its own raw prefix
    assert (acme.pool, acme.group, acme.env_var("CLIENT_SECRET")) == ("zoom_api_acme", "zoom_acme",
                                                                     "ZOOM_ACME_CLIENT_SECRET")


@pytest.mark.parametrize("text, says", [
    ("accounts:\n  Acme: {}\n", "the account name 'Acme' must be lowercase letters, digits and _."),
    ("accounts:\n  acme-corp: {}\n", "the account name 'acme-corp' must be lowercase letters, digits and _."),
    ("accounts:\n  acme: {}\n  acme: {}\n", "is not valid: 'acme' is given twice (line 3)."),
    ("accounts:\n  acme: {s3_prefx: zoom/a/}\n", "account acme: unknown setting(s) s3_prefx; known ones: s3_bucket"),
    ("accounts:\n  acme: {}\n  beta: {s3_prefix: zoom/acme/operationlogs/}\n",
     "accounts acme and beta have the same prefix (s3_prefix 'zoom/acme/operationlogs/', s3_prefix "
     "'zoom/acme/operationlogs/') in one bucket, so their days would mix"),
    ("accounts:\n  acme: {}\n  beta: {s3_prefix: zoom/acme/operationlogs/beta/}\n",
     "accounts acme and beta have prefixes inside one another"),
    ("accounts:\n  acme: {max_requests_per_second: 0}\n",
     "account acme: max_requests_per_second must be a positive number of report calls per second, got 0."),
    ("accounts:\n  acme: {daily_request_budget: 2.5}\n",
     "account acme: daily_request_budget must be a positive whole number of report calls per UTC day, got 2.5."),
    ("accounts:\n  acme: {logs_start_date: 2026-02-30}\n",
     "account acme: logs_start_date must be a date YYYY-MM-DD, got '2026-02-30'."),
    ("accounts:\n  acme: {api_base_url: not-a-url}\n",
     "account acme: api_base_url must be an absolute http:// or https:// URL with a host"),
    ("accounts:\n  acme: {s3_prefix: zoom/acme}\n",
     "account acme: s3_prefix must be a key prefix ending in '/' and not starting with one, got 'zoom/acme'."),
    ("accounts:\n  acme: [1]\n", "account acme: its settings must be a mapping (use {} for none)."),
    ("accounts: {}\n", "names no account."),
    ("acme: {}\n", "must hold one mapping, `accounts:`, of account names to their settings."),
    ("accounts:\n  acme: {\n", "is not valid YAML at line 3"),
])
def test_a_bad_file_is_one_sentence_naming_the_file_and_the_entry(tmp_path, text, says):
    path = accounts_file(tmp_path, text)
    with pytest.raises(AccountsFileError) as raised:
        load_accounts_file(path, {})
    message = str(raised.value)
    assert message.startswith(f"The accounts file {path} (ZOOM_ACCOUNTS_FILE)")
    assert says in message and "\n" not in message


def test_accounts_in_other_buckets_may_share_prefixes_and_a_missing_file_is_one_sentence(tmp_path):
    path = accounts_file(tmp_path, "accounts:\n  acme: {}\n  beta: {s3_bucket: b2, s3_prefix: zoom/acme/operationlogs/}"
                                   "\n")
    assert [a.name for a in load_accounts_file(path, {"S3_BUCKET": "b1"})] == ["acme", "beta"]
    with pytest.raises(AccountsFileError, match=r"cannot be read: No such file or directory\.$"):
        load_accounts_file(str(tmp_path / "missing.yaml"), {})
    with pytest.raises(AccountsFileError, match="names no account"):
        build_defs({"ZOOM_ACCOUNTS_FILE": accounts_file(tmp_path, "accounts: {}\n")})


# ---- the definitions -----------------------------------------------------------------------------------

TWO = "accounts:\n  acme: {}\n  beta: {logs_start_date: '%s'}\n"


def test_each_account_gets_its_assets_checks_group_pool_and_resources(tmp_path):
    defs = build_defs({"ZOOM_ACCOUNTS_FILE": accounts_file(tmp_path, TWO % days_ago(1))})
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {f"{a}/{name}" for a in ("acme", "beta") for s in (OPERATION_LOGS, ACTIVITY_LOGS)
                    for name in (s.name, s.udm_name)}
    for account in ("acme", "beta"):
        raw = dg.AssetKey([account, OPERATION_LOGS.name])
        assert graph.get(raw).group_name == f"zoom_{account}"
        assert graph.get(dg.AssetKey([account, OPERATION_LOGS.udm_name])).parent_keys == {raw}
        assert {c.name for c in graph.get(raw).check_keys} == {
            "day_matches_zoom", "day_matches_fresh_listing", "yesterday_landed_by_deadline",
            "every_day_in_zoom_window_collected"}
        node = defs.resolve_assets_def(raw)
        assert node.op.pool == f"zoom_api_{account}"
        assert node.required_resource_keys >= {f"zoom__{account}", f"zoom_store__{account}"}
    repo = defs.get_repository_def()
    assert {s.name for s in repo.schedule_defs} == {"zoom_daily_schedule", "zoom_freshness_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"zoom_today_sensor", "zoom_confirmation_sensor"}


def test_the_schedule_asks_for_yesterday_of_every_account_one_run_each(tmp_path, monkeypatch):
    for name in ("ACME", "BETA"):
        for what in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"):
            monkeypatch.setenv(f"ZOOM_{name}_{what}", "fake")
    defs = build_defs({"ZOOM_ACCOUNTS_FILE": accounts_file(tmp_path, TWO % days_ago(1))})
    today = datetime.now(UTC).date()
    with dg.instance_for_test() as instance:
        repo = defs.get_repository_def()  # inside: building it looks up the current instance
        context = dg.build_schedule_context(instance=instance, repository_def=repo,
                                            scheduled_execution_time=datetime.combine(today, datetime.min.time(), UTC)
                                            + timedelta(minutes=15))
        requests = repo.get_schedule_def("zoom_daily_schedule").evaluate_tick(context).run_requests
    yesterday, day_before = days_ago(1), days_ago(2)
    # beta starts yesterday: the day before is not one of its days.
    assert [(r.run_key, r.partition_key) for r in requests] == [
        (f"acme/{yesterday}", yesterday), (f"acme/{day_before}", day_before), (f"beta/{yesterday}", yesterday)]
    for request in requests:
        account = request.run_key.split("/")[0]
        assert request.tags["zoom/account"] == account
        assert request.tags["zoom/account_day"] == f"{account}/{request.partition_key}"
        assert {k.path[0] for k in request.asset_selection} == {account} and len(request.asset_selection) == 4
        assert {k.name for k in request.asset_check_keys} == {"day_matches_zoom"}


# ---- two accounts running side by side ---------------------------------------------------------------------


@pytest.fixture
def two_zooms():
    with ZoomSimulator(client_secret=SIM_SECRET + "-acme") as acme, \
            ZoomSimulator(client_secret=SIM_SECRET + "-beta") as beta:
        yield {"acme": acme, "beta": beta}


def account_env(monkeypatch, zooms: dict, bucket: str, tmp_path, aws_env) -> dict:
    lines = ["accounts:"]
    for name, sim in zooms.items():
        lines.append(f"  {name}: {{api_base_url: '{sim.base_url}', oauth_token_url: '{sim.token_url}'}}")
        monkeypatch.setenv(f"ZOOM_{name.upper()}_ACCOUNT_ID", sim.account_id)
        monkeypatch.setenv(f"ZOOM_{name.upper()}_CLIENT_ID", sim.client_id)
        monkeypatch.setenv(f"ZOOM_{name.upper()}_CLIENT_SECRET", f"{SIM_SECRET}-{name}")
    env = {"ZOOM_ACCOUNTS_FILE": accounts_file(tmp_path, "\n".join(lines) + "\n"), "S3_BUCKET": bucket,
           "ZOOM_ACCOUNT_STORE": "memory", "ZOOM_MAX_REQUESTS_PER_SECOND": "1000", **FAKE_AWS}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run_account(defs: dg.Definitions, account: str, day: str, instance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("zoom_operation_logs_job")
    selection = [dg.AssetKey([account, name]) for s in (OPERATION_LOGS, ACTIVITY_LOGS) for name in (s.name, s.udm_name)]
    return job.execute_in_process(partition_key=day, asset_selection=selection, instance=instance,
                                  raise_on_error=False, tags={"zoom/account": account})


def zoom_env_of(sim, secret: str) -> dict:
    return {"ZOOM_ACCOUNT_ID": sim.account_id, "ZOOM_CLIENT_ID": sim.client_id, "ZOOM_CLIENT_SECRET": secret,
            "ZOOM_API_BASE_URL": sim.base_url, "ZOOM_OAUTH_TOKEN_URL": sim.token_url}


def test_a_quiet_account_and_one_under_a_storm_each_land_exactly_under_their_own_prefixes(
        two_zooms, bucket, s3, monkeypatch, tmp_path, aws_env):
    day = days_ago(3)
    for seed, sim in enumerate(two_zooms.values(), start=1):
        for log in ("operationlogs", "activities"):
            sim.generate_day(day, 700, seed=seed, twins=2, log=log)
    storm = two_zooms["beta"]
    for log in ("operationlogs", "activities"):
        storm.inject("rate_limit_qps", times=2, after_calls=1, log=log)
        storm.inject("server_error", times=2, after_calls=2, status=503, log=log)
    account_env(monkeypatch, two_zooms, bucket, tmp_path, aws_env)
    defs = build_defs()
    with dg.instance_for_test() as instance:
        for name in ("acme", "beta"):
            assert run_account(defs, name, day, instance).success, name
    everything = {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    for name, sim in two_zooms.items():
        for source in (OPERATION_LOGS, ACTIVITY_LOGS):
            prefix = source.prefix[1].replace("zoom/", f"zoom/{name}/")
            stored = records_of(s3_day(s3, bucket, day, prefix=prefix))
            assert stored == canonical(api_listing(sim, zoom_env_of(sim, f"{SIM_SECRET}-{name}"), day, source))
    assert all(key.startswith(("zoom/acme/", "zoom/beta/")) for key in everything)  # nothing at the top level
    assert storm.stats()["faults_served"] == 8 and two_zooms["acme"].stats()["faults_served"] == 0


def test_a_wrong_secret_or_a_missing_variable_fails_only_that_accounts_runs(
        two_zooms, bucket, s3, monkeypatch, tmp_path, aws_env, capsys):
    day = days_ago(3)
    for sim in two_zooms.values():
        sim.generate_day(day, 50, seed=4)
        sim.generate_day(day, 50, seed=4, log="activities")
    account_env(monkeypatch, two_zooms, bucket, tmp_path, aws_env)
    monkeypatch.setenv("ZOOM_BETA_CLIENT_SECRET", "not-the-secret-of-beta")
    defs = build_defs()
    with dg.instance_for_test() as instance:
        assert run_account(defs, "acme", day, instance).success
        wrong = run_account(defs, "beta", day, instance)
        assert not wrong.success
        failure = wrong.failure_data_for_node("beta__zoom_operation_logs").error.message
        assert "Zoom refused the OAuth credentials of account beta" in failure
        assert "ZOOM_BETA_CLIENT_ID and ZOOM_BETA_CLIENT_SECRET" in failure
        monkeypatch.delenv("ZOOM_BETA_CLIENT_SECRET")
        with pytest.raises(Exception, match="ZOOM_BETA_CLIENT_SECRET"):
            run_account(defs, "beta", day, instance)
        assert run_account(defs, "acme", day, instance).success  # acme is untouched by beta's trouble
    assert s3_day(s3, bucket, day, prefix="zoom/beta/operationlogs/") == {}
    assert len(s3_day(s3, bucket, day, prefix="zoom/acme/operationlogs/")) == 1
    out = capsys.readouterr()
    assert "not-the-secret-of-beta" not in out.out + out.err and SIM_SECRET not in out.out + out.err


def test_the_confirmation_sensor_confirms_each_accounts_days_with_that_accounts_assets(tmp_path, monkeypatch):
    for name in ("ACME", "BETA"):
        for what in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"):
            monkeypatch.setenv(f"ZOOM_{name}_{what}", "fake")
    defs = build_defs({"ZOOM_ACCOUNTS_FILE": accounts_file(tmp_path, TWO % days_ago(5))})
    day = days_ago(3)
    with dg.instance_for_test() as instance:
        repo = defs.get_repository_def()  # inside: building it looks up the current instance

        @dg.op
        def complete_passes():  # what each account's raw asset reports after a complete pass of the day
            for account, exact in (("acme", False), ("beta", True)):
                yield dg.AssetMaterialization(asset_key=dg.AssetKey([account, OPERATION_LOGS.name]), partition=day,
                                              metadata={"pass": "complete", "day_exact": exact, "complete_passes": 1})
            yield dg.Output(None)

        dg.GraphDefinition(name="passes", node_defs=[complete_passes]).to_job().execute_in_process(instance=instance)
        context = dg.build_sensor_context(instance=instance, repository_def=repo)
        [request] = repo.get_sensor_def("zoom_confirmation_sensor").evaluate_tick(context).run_requests
    assert request.run_key.startswith(f"acme/zoom_operation_logs/{day}@confirm-")
    assert request.partition_key == day and request.tags["zoom/account"] == "acme"
    assert request.asset_selection == [dg.AssetKey(["acme", OPERATION_LOGS.name]),
                                       dg.AssetKey(["acme", OPERATION_LOGS.udm_name])]
    assert [k.name for k in request.asset_check_keys] == ["day_matches_zoom"]  # no second, fresh listing


def test_accounts_never_share_a_budget_or_a_token_in_one_account_store(two_zooms, bucket, s3, monkeypatch,
                                                                       tmp_path, aws_env):
    """Both accounts count in the same SQLite account store; acme spends its own budget of 3 calls and stops,
    beta (its own budget) lands its day, and each account minted its own token."""
    day = days_ago(3)
    for sim in two_zooms.values():
        sim.generate_day(day, 1500, seed=6)  # 5 pages
        sim.generate_day(day, 10, seed=6, log="activities")
    account_env(monkeypatch, two_zooms, bucket, tmp_path, aws_env)
    path = accounts_file(tmp_path, "accounts:\n" + "".join(
        f"  {name}: {{api_base_url: '{sim.base_url}', oauth_token_url: '{sim.token_url}'"
        + (", daily_request_budget: 3" if name == "acme" else "") + "}\n" for name, sim in two_zooms.items()))
    monkeypatch.setenv("ZOOM_ACCOUNTS_FILE", path)
    monkeypatch.setenv("ZOOM_ACCOUNT_STORE", str(tmp_path / "accounts.sqlite"))
    defs = build_defs()
    with dg.instance_for_test() as instance:
        spent = run_account(defs, "acme", day, instance)
        assert not spent.success
        message = spent.failure_data_for_node("acme__zoom_operation_logs").error.message
        assert "daily budget of 3 report calls" in message
        assert run_account(defs, "beta", day, instance).success
    assert len(s3_day(s3, bucket, day, prefix="zoom/beta/operationlogs/")) == 1
    assert two_zooms["acme"].stats()["report_calls"] == 3
    assert [sim.stats()["token_calls"] for sim in two_zooms.values()] == [1, 1]
