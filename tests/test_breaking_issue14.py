"""A second reader tries to break the multi-account support (ZOOM_ACCOUNTS_FILE, the ZoomAccount component):
odd names and YAML, prefixes that meet, accounts in one simulator at once, automation with one account busy
or failing, and secrets in the event log."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from tests.helpers import REPO, canonical, days_ago, records_of, s3_day, user_project
from zoom_pipeline.accounts import AccountsFileError, load_accounts_file
from zoom_pipeline.automation import CONFIRMATION_SENSOR_NAME
from zoom_pipeline.config import build_defs
from zoom_pipeline.simulator import ZoomSimulator
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES

SECRETS = {"acme": "acme-secret-NEVER-SHOWN-91b2", "beta": "beta-secret-NEVER-SHOWN-c04d"}


def write(tmp_path, text: str, name: str = "accounts.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(tmp_path, text: str, env: dict | None = None):
    return load_accounts_file(write(tmp_path, text), env or {})


def refused(tmp_path, text: str, env: dict | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(AccountsFileError) as raised:
        load_accounts_file(path, env or {})
    message = str(raised.value)
    assert message.startswith(f"The accounts file {path} (ZOOM_ACCOUNTS_FILE)") and "\n" not in message
    return message


def fake_credentials(monkeypatch, *names: str) -> None:
    for name in names:
        for what in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"):
            monkeypatch.setenv(f"ZOOM_{name.upper()}_{what}", f"fake-{name}-{what.lower()}")


def selection(account: str) -> list[dg.AssetKey]:
    return [dg.AssetKey([account, n]) for s in SOURCES for n in (s.name, s.udm_name)]


# ---- the file: names ---------------------------------------------------------------------------------


def test_no_two_valid_names_share_a_credential_variable():
    """`acme` and `acme_` (ZOOM_ACME__...), names that end like a variable suffix, digits, a lone `_`: every
    account's three variables are its own and none is a single-account variable."""
    from zoom_pipeline.accounts import Account

    names = ["acme", "acme_", "_acme", "a", "a_account", "a_client", "account", "client", "acme_client", "0", "_",
             "__", "zoom", "id", "secret", "client_secret"]
    seen: dict[str, str] = {}
    for name in names:
        for what in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"):
            var = Account(name=name).env_var(what)
            assert var not in seen, (name, seen.get(var))
            assert var not in ("ZOOM_ACCOUNT_ID", "ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET")
            seen[var] = name


def test_names_differing_only_by_a_trailing_underscore_get_variables_prefixes_and_pools_of_their_own(tmp_path):
    acme, acme_ = load(tmp_path, "accounts:\n  acme: {}\n  acme_: {}\n")
    assert acme.env_var("CLIENT_SECRET") == "ZOOM_ACME_CLIENT_SECRET"
    assert acme_.env_var("CLIENT_SECRET") == "ZOOM_ACME__CLIENT_SECRET"
    assert acme.prefix("S3_PREFIX", {}) == "zoom/acme/operationlogs/"
    assert acme_.prefix("S3_PREFIX", {}) == "zoom/acme_/operationlogs/"
    assert (acme.pool, acme_.pool) == ("zoom_api_acme", "zoom_api_acme_")


@pytest.mark.parametrize("other", ["store_acme", "logs_io_manager_acme"])
def test_a_name_that_is_another_accounts_name_with_a_resource_stem_works_or_is_refused_by_the_file(tmp_path, other):
    path = write(tmp_path, f"accounts:\n  acme: {{}}\n  {other}: {{}}\n")
    try:
        defs = build_defs({"ZOOM_ACCOUNTS_FILE": path})
    except AccountsFileError as exc:  # a refusal is fine if it is the file's sentence
        assert str(exc).startswith(f"The accounts file {path}")
        return
    for account in ("acme", other):
        node = defs.resolve_assets_def(dg.AssetKey([account, OPERATION_LOGS.name]))
        assert node.required_resource_keys >= {f"zoom__{account}", f"zoom_store__{account}"}
    assert type(defs.resources["zoom_store__acme"]).__name__ == "ZoomStore"


def test_names_like_a_source_or_zoom_itself_stay_apart(tmp_path):
    defs = build_defs({"ZOOM_ACCOUNTS_FILE": write(tmp_path, "accounts:\n  zoom: {}\n  zoom_operation_logs: {}\n"
                                                               "  api: {}\n")})
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert len(keys) == 12 and "zoom/zoom_operation_logs" in keys
    assert "zoom_operation_logs/zoom_operation_logs_udm" in keys
    assert defs.resolve_assets_def(dg.AssetKey(["api", OPERATION_LOGS.name])).op.pool == "zoom_api_api"
    assert defs.resolve_assets_def(dg.AssetKey(["zoom", OPERATION_LOGS.name])).op.pool == "zoom_api_zoom"


@pytest.mark.parametrize("name, shown", [("no", "no"), ("on", "on"), ("123", "123")])
def test_a_name_yaml_reads_as_a_bool_or_number_loads_or_is_refused_in_its_own_words(tmp_path, name, shown):
    path = write(tmp_path, f"accounts:\n  {name}: {{}}\n")
    try:
        [account] = load_accounts_file(path, {})
    except AccountsFileError as exc:
        assert f"'{shown}'" in str(exc) or "quote" in str(exc), str(exc)
    else:
        assert account.name == shown


def test_quoted_numeric_names_load(tmp_path):
    assert [a.name for a in load(tmp_path, "accounts:\n  '123': {}\n  '0123': {}\n")] == ["123", "0123"]


@pytest.mark.parametrize("text, says", [
    ("", "must hold one mapping"),
    ("accounts: null\n", "must hold one mapping"),
    ("accounts: []\n", "must hold one mapping"),
    ("accounts:\n  acme: {}\nextra: 1\n", "must hold one mapping"),
    ("accounts:\n  Acme: {}\n  acme: {}\n", "the account name 'Acme'"),
    ("accounts:\n  acme: {}\n  acme: {s3_bucket: x}\n", "'acme' is given twice"),
    ("accounts:\n  acme: {s3_bucket: x, s3_bucket: y}\n", "'s3_bucket' is given twice"),
    ("accounts:\n  acme: {max_requests_per_second: true}\n", "max_requests_per_second must be a positive number"),
    ("accounts:\n  acme: {max_requests_per_second: .nan}\n", "max_requests_per_second must be a positive number"),
    ("accounts:\n  acme: {daily_request_budget: .inf}\n", "daily_request_budget must be a positive whole number"),
    ("accounts:\n  acme: {logs_start_date: 2026-01-05 10:00:00}\n", "logs_start_date must be a date YYYY-MM-DD"),
    ("accounts:\n  acme: {logs_start_date: 20260105}\n", "logs_start_date must be a date YYYY-MM-DD"),
    ("accounts:\n  acme: {logs_start_date: '2999-01-01'}\n", "logs_start_date must not be after today"),
    ("accounts:\n  acme: {s3_bucket: 123}\n", "s3_bucket must be a non-empty string"),
    ("accounts:\n  acme: {s3_bucket: ''}\n", "s3_bucket must be a non-empty string"),
    ("accounts:\n  acme: {s3_prefix: {a: 1}}\n", "s3_prefix must be a non-empty string"),
    ("accounts:\n  acme: {manifest_s3_prefix: /abs/}\n", "must be a key prefix ending in '/'"),
    ("accounts:\n  acme: {oauth_token_url: 'ftp://zoom.us/oauth'}\n", "oauth_token_url must be an absolute"),
    ("accounts:\n  acme: {api_base_url: 'https://user:hunter2@api.zoom.us/v2 x'}\n", "***@"),
    ("accounts:\n  acme: {S3_PREFIX: zoom/a/}\n", "unknown setting(s) S3_PREFIX"),
    ("accounts:\n  acme: {account_id: x}\n", "unknown setting(s) account_id"),
    ("accounts:\n  acme: {client_secret: x}\n", "unknown setting(s) client_secret"),
    ("accounts:\n  acme: !!python/object:object {}\n", "not valid YAML"),
])
def test_every_bad_file_is_one_sentence_naming_the_file(tmp_path, text, says):
    message = refused(tmp_path, text)
    assert says in message, message
    assert "hunter2" not in message


def test_a_date_unquoted_an_alias_and_an_empty_entry_are_fine(tmp_path):
    acme, beta, gamma = load(tmp_path, "accounts:\n  acme: &common {max_requests_per_second: 2, "
                                       "logs_start_date: 2026-01-05}\n  beta: *common\n  gamma:\n")
    assert (acme.logs_start_date, acme.max_requests_per_second) == ("2026-01-05", 2.0)
    assert (beta.logs_start_date, beta.max_requests_per_second) == ("2026-01-05", 2.0)
    assert gamma.logs_start_date is None and gamma.prefix("S3_PREFIX", {}) == "zoom/gamma/operationlogs/"


def test_a_merge_key_shares_settings_between_accounts(tmp_path):
    acme, beta = load(tmp_path, "accounts:\n  acme: &defaults {max_requests_per_second: 2, daily_request_budget: 9}\n"
                                "  beta:\n    <<: *defaults\n    daily_request_budget: 5\n")
    assert (acme.max_requests_per_second, acme.daily_request_budget) == (2.0, 9)
    assert (beta.max_requests_per_second, beta.daily_request_budget) == (2.0, 5)


# ---- the file: prefixes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [
    "{s3_prefix: zoom/acme/operationlogs-udm/}",  # the raw feed of beta = acme's UDM prefix
    "{activity_s3_prefix: zoom/acme/operationlogs-manifests/}",  # = acme's manifests
    "{udm_s3_prefix: zoom/acme/activitylogs/}",  # beta's UDM = acme's activity feed
    "{s3_prefix: zoom/}",  # holds every prefix of acme
    "{s3_prefix: zoom/acme/}",  # likewise
    "{activity_manifest_s3_prefix: zoom/acme/activitylogs/2026/}",  # inside acme's activity feed
])
def test_one_accounts_prefix_at_or_inside_any_of_anothers_in_one_bucket_is_refused(tmp_path, beta):
    message = refused(tmp_path, f"accounts:\n  acme: {{}}\n  beta: {beta}\n", {"S3_BUCKET": "b"})
    assert "accounts acme and beta have" in message and "in one bucket, so their days would mix" in message


def test_a_bucket_given_in_the_file_equal_to_s3_bucket_is_the_same_bucket(tmp_path):
    message = refused(tmp_path, "accounts:\n  acme: {}\n  beta: {s3_bucket: main, s3_prefix: zoom/acme/operationlogs/}"
                                "\n", {"S3_BUCKET": "main"})
    assert "the same prefix" in message
    # Without S3_BUCKET both sit in the local store: one bucket too.
    assert "the same prefix" in refused(tmp_path, "accounts:\n  acme: {}\n  beta: {s3_prefix: zoom/acme/operationlogs/}"
                                                  "\n", {})
    # In two buckets they may.
    assert len(load(tmp_path, "accounts:\n  acme: {s3_bucket: one}\n  beta: {s3_bucket: two, s3_prefix: "
                              "zoom/acme/operationlogs/}\n", {"S3_BUCKET": "one"})) == 2


def test_names_sharing_a_stem_never_nest_their_default_prefixes(tmp_path):
    names = ["a", "a_", "a_b", "ab", "a0", "_a"]
    accounts = load(tmp_path, "accounts:\n" + "".join(f"  {n}: {{}}\n" for n in names), {"S3_BUCKET": "b"})
    assert [a.name for a in accounts] == names


# ---- without the file ----------------------------------------------------------------------------------


def test_without_the_file_the_names_are_those_of_one_account():
    defs = build_defs({})
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {n for s in SOURCES for n in (s.name, s.udm_name)}
    repo = defs.get_repository_def()
    assert {"zoom_operation_logs_job", "zoom_freshness_job", "zoom_completeness_job"} <= set(repo.job_names)
    assert {s.name for s in repo.sensor_defs} == {"zoom_today_sensor", CONFIRMATION_SENSOR_NAME}
    assert {"zoom", "zoom_store", "zoom_logs_io_manager"} <= set(defs.resources)
    assert not any(key.startswith("zoom_") and key not in ("zoom_store", "zoom_logs_io_manager")
                   for key in defs.resources)
    node = defs.resolve_assets_def(dg.AssetKey(OPERATION_LOGS.name))
    assert node.op.pool == "zoom_api"
    client = defs.resources["zoom"]
    assert client.client_secret == dg.EnvVar("ZOOM_CLIENT_SECRET") and client.account_name == ""
    assert defs.resources["zoom_store"].prefixes == {}


# ---- automation ----------------------------------------------------------------------------------------


def two_account_defs(tmp_path, monkeypatch, beta: str = "{}", acme: str = "{}") -> dg.Definitions:
    fake_credentials(monkeypatch, "acme", "beta")
    return build_defs({"ZOOM_ACCOUNTS_FILE": write(tmp_path, f"accounts:\n  acme: {acme}\n  beta: {beta}\n")})


def add_run(instance, job_def, status, *, tags: dict, assets=None):
    if status != dg.DagsterRunStatus.QUEUED:
        return instance.create_run_for_job(job_def=job_def, status=status, tags=tags,
                                           asset_selection=frozenset(assets) if assets else None)
    # A queued run needs the code origin a launch from the UI gives it.
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(LoadableTargetOrigin(
        python_file=__file__)), "__repository__"), job_def.name)
    return instance.create_run_for_job(job_def=job_def, status=status, tags=tags, remote_job_origin=origin,
                                       asset_selection=frozenset(assets))


def today_tick(defs, instance):
    repo = defs.get_repository_def()
    context = dg.build_sensor_context(instance=instance, repository_def=repo)
    return repo.get_sensor_def("zoom_today_sensor").evaluate_tick(context)


def test_the_today_sensor_skips_only_the_account_whose_today_is_in_flight(tmp_path, monkeypatch):
    defs = two_account_defs(tmp_path, monkeypatch)
    today = days_ago(0)
    job = defs.resolve_job_def("zoom_operation_logs_job")
    with dg.instance_for_test() as instance:
        busy = add_run(instance, job, dg.DagsterRunStatus.STARTED, tags={"dagster/partition": today},
                       assets=selection("acme"))
        tick = today_tick(defs, instance)
        [request] = tick.run_requests
        assert request.tags["zoom/account"] == "beta" and request.run_key.startswith(f"beta/{today}@")
        assert request.tags["zoom/account_day"] == f"beta/{today}"
        assert {k.path[0] for k in request.asset_selection} == {"beta"}
        # acme's asset-page run of today (one raw asset only) holds back acme, not beta:
        instance.delete_run(busy.run_id)
        add_run(instance, defs.resolve_implicit_global_asset_job_def(), dg.DagsterRunStatus.STARTING,
                tags={"dagster/asset_partition_range_start": days_ago(3), "dagster/asset_partition_range_end": today},
                assets=[dg.AssetKey(["acme", ACTIVITY_LOGS.name])])
        [request] = today_tick(defs, instance).run_requests
        assert request.tags["zoom/account"] == "beta"
        # Both busy: one skip naming both runs, nothing requested.
        add_run(instance, job, dg.DagsterRunStatus.CANCELING, tags={"dagster/partition": today},
                assets=selection("beta"))
        tick = today_tick(defs, instance)
        assert not tick.run_requests and "of acme" in tick.skip_message and "of beta" in tick.skip_message


def test_a_queued_backfill_run_of_one_accounts_today_never_holds_back_either(tmp_path, monkeypatch):
    defs = two_account_defs(tmp_path, monkeypatch)
    today = days_ago(0)
    with dg.instance_for_test() as instance:
        add_run(instance, defs.resolve_implicit_global_asset_job_def(), dg.DagsterRunStatus.QUEUED,
                tags={"dagster/backfill": "abc", "dagster/asset_partition_range_start": today,
                      "dagster/asset_partition_range_end": today}, assets=[dg.AssetKey(["acme", OPERATION_LOGS.name])])
        requests = today_tick(defs, instance).run_requests
    assert sorted(r.tags["zoom/account"] for r in requests) == ["acme", "beta"]


def schedule_requests(defs, instance, today):
    repo = defs.get_repository_def()
    when = datetime.combine(today, datetime.min.time(), UTC) + timedelta(minutes=15)
    context = dg.build_schedule_context(instance=instance, repository_def=repo, scheduled_execution_time=when)
    return repo.get_schedule_def("zoom_daily_schedule").evaluate_tick(context)


def test_the_schedule_when_one_account_starts_today_asks_only_for_the_other(tmp_path, monkeypatch):
    today = datetime.now(UTC).date()
    defs = two_account_defs(tmp_path, monkeypatch, beta=f"{{logs_start_date: '{today.isoformat()}'}}")
    with dg.instance_for_test() as instance:
        tick = schedule_requests(defs, instance, today)
    assert [(r.run_key, r.tags["zoom/account"]) for r in tick.run_requests] == [
        (f"acme/{days_ago(1)}", "acme"), (f"acme/{days_ago(2)}", "acme")]
    # beta's start does not shift acme's first day, and both started today: nothing, with a reason.
    defs = two_account_defs(tmp_path, monkeypatch, beta=f"{{logs_start_date: '{today.isoformat()}'}}",
                            acme=f"{{logs_start_date: '{today.isoformat()}'}}")
    with dg.instance_for_test() as instance:
        tick = schedule_requests(defs, instance, today)
    assert not tick.run_requests and "is a partition yet" in tick.skip_message
    # And the today sensor still asks for today for both.
    with dg.instance_for_test() as instance:
        assert sorted(r.tags["zoom/account"] for r in today_tick(defs, instance).run_requests) == ["acme", "beta"]


def complete_pass_events(instance, events: list[tuple[str, str, str, bool]]):
    """Materializations as the raw assets report them after a complete pass: (account, source name, day, exact)."""
    @dg.op
    def passes():
        for account, source, day, exact in events:
            key = dg.AssetKey([account, source] if account else [source])
            yield dg.AssetMaterialization(asset_key=key, partition=day,
                                          metadata={"pass": "complete", "day_exact": exact, "complete_passes": 1})
        yield dg.Output(None)

    dg.GraphDefinition(name="passes", node_defs=[passes]).to_job().execute_in_process(instance=instance)


def test_the_confirmation_sensor_takes_an_old_single_account_cursor_and_one_busy_account_never_blocks_another(
        tmp_path, monkeypatch):
    defs = two_account_defs(tmp_path, monkeypatch)
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def(CONFIRMATION_SENSOR_NAME)
    day = days_ago(3)
    with dg.instance_for_test() as instance:
        complete_pass_events(instance, [("acme", OPERATION_LOGS.name, day, False),
                                        ("beta", ACTIVITY_LOGS.name, day, False)])
        # The cursor a single-account deployment left: its unprefixed keys and an awaiting day.
        old = json.dumps({"after_by_source": {OPERATION_LOGS.name: 10**9, ACTIVITY_LOGS.name: 10**9},
                          "awaiting_by_source": {f"{OPERATION_LOGS.name}/{day}": 1}})
        # acme has a run of that day in flight; beta must still be confirmed.
        add_run(instance, defs.resolve_job_def("zoom_operation_logs_job"), dg.DagsterRunStatus.STARTED,
                tags={"dagster/partition": day}, assets=selection("acme"))
        context = dg.build_sensor_context(instance=instance, repository_def=repo, cursor=old)
        tick = sensor.evaluate_tick(context)
        [request] = tick.run_requests
        assert request.tags["zoom/account"] == "beta" and request.partition_key == day
        assert request.asset_selection == [dg.AssetKey(["beta", ACTIVITY_LOGS.name]),
                                           dg.AssetKey(["beta", ACTIVITY_LOGS.udm_name])]
        state = json.loads(tick.cursor)
        assert f"{OPERATION_LOGS.name}/{day}" not in state["awaiting_by_source"]  # not this deployment's
        assert f"acme/{OPERATION_LOGS.name}/{day}" in state["awaiting_by_source"]  # waits for acme's run


def test_the_freshness_job_judges_each_account_alone(tmp_path, monkeypatch):
    """acme collected yesterday and every day since its start; beta collected nothing: acme's freshness and
    window checks pass, beta's only warn that there is nothing to judge."""
    start = days_ago(3)
    defs = two_account_defs(tmp_path, monkeypatch, acme=f"{{logs_start_date: '{start}'}}")
    with dg.instance_for_test() as instance:
        complete_pass_events(instance, [("acme", s.name, days_ago(n), True) for s in SOURCES for n in (3, 2, 1)])
        result = defs.resolve_job_def("zoom_freshness_job").execute_in_process(instance=instance)
        assert result.success
        evaluations = {(e.asset_key.to_user_string(), e.check_name): e
                       for e in (ev.event_specific_data for ev in result.all_events
                                 if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)}
    assert len(evaluations) == 8
    for source in SOURCES:
        for check in ("yesterday_landed_by_deadline", "every_day_in_zoom_window_collected"):
            assert evaluations[(f"acme/{source.name}", check)].passed, (source.name, check)
            beta = evaluations[(f"beta/{source.name}", check)]
            assert not beta.passed and beta.severity == dg.AssetCheckSeverity.WARN
            assert beta.metadata["nothing_to_judge"].value is True


# ---- runs: several accounts in one simulator ---------------------------------------------------------


@pytest.fixture
def one_zoom():
    """One simulator holding accounts acme and beta (plus its unused default)."""
    with ZoomSimulator(client_secret="default-secret-unused") as sim:
        ids = {name: sim.add_account(name, client_secret=SECRETS[name]) for name in ("acme", "beta")}
        sim.ids = ids
        yield sim


def account_env(monkeypatch, tmp_path, sim, bucket, *, entries: dict[str, str] | None = None,
                creds: dict[str, tuple[str, str, str]] | None = None, store: str | None = None) -> None:
    """ZOOM_ACCOUNTS_FILE and each account's variables for `sim`; `entries` adds settings to an entry."""
    entries = entries or {"acme": "", "beta": ""}
    lines = ["accounts:"]
    for name, extra in entries.items():
        lines.append(f"  {name}: {{api_base_url: '{sim.base_url}', oauth_token_url: '{sim.token_url}'{extra}}}")
    creds = creds or {n: (sim.ids[n].account_id, sim.ids[n].client_id, SECRETS[n]) for n in entries}
    for name, (account_id, client_id, secret) in creds.items():
        monkeypatch.setenv(f"ZOOM_{name.upper()}_ACCOUNT_ID", account_id)
        monkeypatch.setenv(f"ZOOM_{name.upper()}_CLIENT_ID", client_id)
        monkeypatch.setenv(f"ZOOM_{name.upper()}_CLIENT_SECRET", secret)
    monkeypatch.setenv("ZOOM_ACCOUNTS_FILE", write(tmp_path, "\n".join(lines) + "\n"))
    monkeypatch.setenv("S3_BUCKET", bucket)
    monkeypatch.setenv("ZOOM_ACCOUNT_STORE", store or str(tmp_path / "accounts.sqlite"))
    monkeypatch.setenv("ZOOM_MAX_REQUESTS_PER_SECOND", "1000")


def run_account(defs, account: str, day: str, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("zoom_operation_logs_job").execute_in_process(
        partition_key=day, asset_selection=selection(account), instance=instance, raise_on_error=False,
        tags={"zoom/account": account, "zoom/account_day": f"{account}/{day}"}, **kwargs)


def stored(s3, bucket, account: str, day: str, source) -> dict:
    return s3_day(s3, bucket, day, prefix=source.prefix[1].replace("zoom/", f"zoom/{account}/"))


def listing(sim, account: str, day: str, source):
    return canonical(sim.day_records(day, log=source.path.rsplit("/", 1)[-1], account=account))


# Each run in a process of its own, as the run launcher starts them (Dagster's execute_in_process configures
# logging, which is not safe from two threads at once): one Dagster instance, one account store in it.
RUN_ONE_ACCOUNT = """
import sys
import dagster as dg
from zoom_pipeline.config import build_defs

account, day = sys.argv[1], sys.argv[2]
selection = [dg.AssetKey([account, n]) for n in ("zoom_operation_logs", "zoom_operation_logs_udm",
                                                 "zoom_activity_logs", "zoom_activity_logs_udm")]
with dg.DagsterInstance.get() as instance:
    result = build_defs().resolve_job_def("zoom_operation_logs_job").execute_in_process(
        partition_key=day, asset_selection=selection, instance=instance, raise_on_error=False,
        tags={"zoom/account": account, "zoom/account_day": f"{account}/{day}"})
sys.exit(0 if result.success else 1)
"""


def test_two_accounts_of_one_zoom_run_at_once_one_under_a_storm_each_exact_and_apart(
        one_zoom, bucket, s3, monkeypatch, tmp_path, aws_env):
    sim, day = one_zoom, days_ago(2)
    for seed, name in enumerate(("acme", "beta"), start=1):
        sim.generate_day(day, 650, seed=seed, twins=2, account=name)
        sim.generate_day(day, 320, seed=seed + 10, log="activities", account=name)
    sim.inject("rate_limit_qps", times=1, after_calls=1, account="beta")
    sim.inject("server_error", times=1, after_calls=1, status=500, log="activities", account="beta")
    sim.inject("slow", times=1, seconds=2, account="acme")  # both runs surely overlap
    account_env(monkeypatch, tmp_path, sim, bucket)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.delenv("ZOOM_ACCOUNT_STORE")  # auto: $DAGSTER_HOME/zoom_account.sqlite, shared by both runs
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get():  # its storage created once (Dagster's SQLite schema setup is not race-free)
        pass
    env = dict(os.environ)
    procs = {name: subprocess.Popen([sys.executable, "-c", RUN_ONE_ACCOUNT, name, day], cwd=REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name in ("acme", "beta")}
    outputs = {name: proc.communicate(timeout=240)[0].decode(errors="replace") for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, outputs[name][-3000:]
        assert SECRETS[name] not in outputs["acme"] + outputs["beta"]
    with dg.DagsterInstance.get() as instance:
        records = {r.dagster_run.tags["zoom/account"]: r for r in instance.get_run_records()}
        assert {n: r.dagster_run.status for n, r in records.items()} == {
            "acme": dg.DagsterRunStatus.SUCCESS, "beta": dg.DagsterRunStatus.SUCCESS}
        acme, beta = records["acme"], records["beta"]
        assert acme.start_time < beta.end_time and beta.start_time < acme.end_time  # they ran at once
    for name in ("acme", "beta"):
        for source in SOURCES:
            assert records_of(stored(s3, bucket, name, day, source)) == listing(sim, name, day, source), (name, source)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert all(k.startswith(("zoom/acme/", "zoom/beta/")) for k in keys)
    assert sim.stats(account="beta")["faults_served"] == 2 and sim.stats(account="acme")["faults_served"] == 1
    assert sim.stats()["report_calls"] == 0 and sim.stats()["token_calls"] == 0  # the default: never touched
    assert [sim.stats(account=n)["tokens_issued"] for n in ("acme", "beta")] == [1, 1]
    assert (home / "zoom_account.sqlite").exists()


def test_a_missing_scope_on_one_accounts_activities_fails_only_that_step(
        bucket, s3, monkeypatch, tmp_path, aws_env):
    day = days_ago(2)
    with ZoomSimulator(client_secret="unused") as sim:
        sim.ids = {"acme": sim.add_account("acme", client_secret=SECRETS["acme"]),
                   "beta": sim.add_account("beta", client_secret=SECRETS["beta"],
                                           scopes="report:read:operation_logs:admin")}
        for name in ("acme", "beta"):
            sim.generate_day(day, 40, seed=3, account=name)
            sim.generate_day(day, 30, seed=4, log="activities", account=name)
        account_env(monkeypatch, tmp_path, sim, bucket)
        defs = build_defs()
        with dg.instance_for_test() as instance:
            beta = run_account(defs, "beta", day, instance)
            acme = run_account(defs, "acme", day, instance)
        assert acme.success and not beta.success
        message = beta.failure_data_for_node(f"beta__{ACTIVITY_LOGS.name}").error.message
        assert "lacks a required scope" in message and ACTIVITY_LOGS.scope in message
        # beta's operation logs still landed in that run; its activities did not.
        assert len(records_of(stored(s3, bucket, "beta", day, OPERATION_LOGS))) == 40
        assert stored(s3, bucket, "beta", day, ACTIVITY_LOGS) == {}
        for source in SOURCES:
            assert records_of(stored(s3, bucket, "acme", day, source)) == listing(sim, "acme", day, source)


def test_secrets_never_reach_the_event_log_of_good_bad_and_missing_credentials(
        one_zoom, bucket, s3, monkeypatch, tmp_path, aws_env, capsys):
    sim, day = one_zoom, days_ago(2)
    for name in ("acme", "beta"):
        sim.generate_day(day, 30, seed=5, account=name)
        sim.generate_day(day, 30, seed=6, log="activities", account=name)
    wrong = "wrong-secret-NEVER-SHOWN-77aa"
    account_env(monkeypatch, tmp_path, sim, bucket, entries={"acme": "", "beta": "", "gamma": ""}, creds={
        "acme": (sim.ids["acme"].account_id, sim.ids["acme"].client_id, SECRETS["acme"]),
        "beta": (sim.ids["beta"].account_id, sim.ids["beta"].client_id, wrong)})
    monkeypatch.setenv("ZOOM_GAMMA_ACCOUNT_ID", "acct-gamma")
    monkeypatch.setenv("ZOOM_GAMMA_CLIENT_ID", "client-gamma")  # its secret is missing
    # The single account's variables hold valid credentials (of the simulator's default account): a named
    # account never falls back to them.
    for what, value in (("ACCOUNT_ID", sim.account_id), ("CLIENT_ID", sim.client_id),
                        ("CLIENT_SECRET", "default-secret-unused")):
        monkeypatch.setenv(f"ZOOM_{what}", value)
    defs = build_defs()
    with dg.instance_for_test() as instance:
        assert run_account(defs, "acme", day, instance).success
        bad = run_account(defs, "beta", day, instance)
        assert not bad.success
        assert "ZOOM_BETA_CLIENT_SECRET" in bad.failure_data_for_node(f"beta__{OPERATION_LOGS.name}").error.message
        with pytest.raises(Exception, match="ZOOM_GAMMA_CLIENT_SECRET"):
            run_account(defs, "gamma", day, instance)
        logged = [serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)]
        runs = [serialize_value(run) for run in instance.get_runs()]
    out = capsys.readouterr()
    for secret in (*SECRETS.values(), wrong):
        assert not any(secret in text for text in logged + runs), secret
        assert secret not in out.out + out.err
    assert records_of(stored(s3, bucket, "beta", day, OPERATION_LOGS)) == canonical([])
    assert sim.stats()["token_calls"] == 0 and sim.stats()["report_calls"] == 0


def test_one_zoom_account_under_two_names_shares_its_budget_and_token(
        one_zoom, bucket, s3, monkeypatch, tmp_path, aws_env):
    """Not detected at load (credentials are resolved at launch), but safe: the account store keys pace,
    budget and token by the Zoom account, so two entries of one Zoom account share its daily budget."""
    sim, day = one_zoom, days_ago(2)
    sim.generate_day(day, 20, seed=7, account="acme")
    sim.generate_day(day, 20, seed=8, log="activities", account="acme")
    same = (sim.ids["acme"].account_id, sim.ids["acme"].client_id, SECRETS["acme"])
    account_env(monkeypatch, tmp_path, sim, bucket, entries={"acme": ", daily_request_budget: 3",
                                                             "acme_copy": ", daily_request_budget: 3"},
                creds={"acme": same, "acme_copy": same})
    defs = build_defs()
    with dg.instance_for_test() as instance:
        assert run_account(defs, "acme", day, instance).success
        used = sim.stats(account="acme")["report_calls"]
        assert used == 2
        copy = run_account(defs, "acme_copy", day, instance)
    assert not copy.success  # 2 + 2 calls exceed the shared 3
    assert sim.stats(account="acme")["report_calls"] == 3
    assert sim.stats(account="acme")["tokens_issued"] == 1  # the copy took the shared token


def test_an_asset_backfill_of_two_accounts_raw_assets_over_a_range_lands_each_account_exactly(
        one_zoom, bucket, s3, monkeypatch, tmp_path, aws_env):
    """One run of the implicit asset job over three days selecting both accounts' raw assets, as a backfill
    launched from the UI for both groups would; beta starts on the second day, so its first day fails alone
    after the rest of the run has landed."""
    sim = one_zoom
    days = [days_ago(n) for n in (4, 3, 2)]
    for i, day in enumerate(days):
        for name in ("acme", "beta"):
            sim.generate_day(day, 50 + i, seed=i, account=name)
            sim.generate_day(day, 20 + i, seed=i + 5, log="activities", account=name)
    account_env(monkeypatch, tmp_path, sim, bucket, entries={"acme": "", "beta": f", logs_start_date: '{days[1]}'"})
    defs = build_defs()
    job = defs.resolve_implicit_global_asset_job_def()
    raw = [dg.AssetKey([n, s.name]) for n in ("acme", "beta") for s in SOURCES]
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, asset_selection=raw, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]})
        assert not result.success
        failed = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE}
        assert failed == {f"beta__{s.name}" for s in SOURCES}
        message = result.failure_data_for_node(f"beta__{OPERATION_LOGS.name}").error.message
        assert days[0] in message and "Zoom no longer serves" in message
        for name in ("acme", "beta"):
            for source in SOURCES:
                landed = instance.get_materialized_partitions(dg.AssetKey([name, source.name]))
                assert landed == (set(days) if name == "acme" else set(days[1:])), (name, source.name)
    for name in ("acme", "beta"):
        for source in SOURCES:
            for day in days:
                got = records_of(stored(s3, bucket, name, day, source))
                want = listing(sim, name, day, source) if (name == "acme" or day != days[0]) else canonical([])
                assert got == want, (name, source.name, day)


# ---- the component -------------------------------------------------------------------------------------


def component(name: str, **attributes) -> str:
    lines = ["type: zoom_pipeline.ZoomAccount", "attributes:", f"  name: {name}"]
    return "\n".join(lines + [f"  {k}: {v}" for k, v in attributes.items()]) + "\n"


def root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def test_a_component_with_a_word_for_a_number_fails_to_load_naming_the_attribute(tmp_path, monkeypatch):
    with pytest.raises(Exception) as raised:
        user_project(tmp_path, monkeypatch, {"a": component("acme", max_requests_per_second="fast")})
    assert "max_requests_per_second" in str(root_cause(raised.value))


def test_a_component_takes_an_unquoted_date(tmp_path, monkeypatch):
    defs = user_project(tmp_path, monkeypatch, {"a": component("acme", logs_start_date="2026-01-05")})
    node = defs.resolve_assets_def(dg.AssetKey(["acme", OPERATION_LOGS.name]))
    assert node.partitions_def.start.date().isoformat() == "2026-01-05"


def test_two_components_with_one_name_never_load(tmp_path, monkeypatch):
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Dagster wraps the cause in a tree of where it failed
        user_project(tmp_path, monkeypatch, {"a": component("acme"), "b": component("acme", s3_bucket="x")})
    assert "acme" in str(root_cause(raised.value))


@pytest.mark.parametrize("attribute", ["max_requests_per_second", "daily_request_budget"])
def test_a_component_refuses_a_boolean_limit_as_the_file_does(tmp_path, monkeypatch, attribute):
    with pytest.raises(Exception) as raised:
        user_project(tmp_path, monkeypatch, {"a": component("acme", **{attribute: "true"})})
    assert attribute in str(root_cause(raised.value))


def project_refused(tmp_path, monkeypatch, files: dict[str, str]) -> str:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Dagster wraps the cause in a tree of where it failed
        user_project(tmp_path, monkeypatch, files)
    message = str(root_cause(raised.value))
    assert message.startswith("The ZoomAccount component at ")
    return message


@pytest.mark.parametrize(("beta", "how"), [
    ({"s3_prefix": "zoom/acme/operationlogs/"}, "the same prefix"),
    ({"s3_prefix": "zoom/"}, "prefixes inside one another"),
    ({"udm_s3_prefix": "zoom/acme/operationlogs/udm/"}, "prefixes inside one another"),
])
def test_two_components_whose_prefixes_meet_in_one_bucket_never_load(tmp_path, monkeypatch, beta, how):
    """As the accounts file refuses two entries whose days would mix, so are two components of one defs folder."""
    message = project_refused(tmp_path, monkeypatch, {"a": component("acme", s3_bucket="logs"),
                                                      "b": component("beta", s3_bucket="logs", **beta)})
    assert f"/defs/b: accounts acme and beta have {how}" in message
    assert "in one bucket, so their days would mix" in message


def test_components_declared_in_one_file_are_held_apart_too(tmp_path, monkeypatch):
    """A defs.yaml may hold several components (YAML documents) and a component.py several instances: Dagster
    gives them one path, so they are told apart by their place in the file and their names."""
    acme, beta = component("acme", s3_bucket="logs"), component("beta", s3_bucket="logs")
    meets_acme = component("gamma", s3_bucket="logs", s3_prefix="zoom/acme/operationlogs/")
    assert "accounts acme and gamma have the same prefix" in project_refused(
        tmp_path / "1", monkeypatch, {"a": acme + "---\n" + meets_acme})
    # the second document of a/ must not hide the first from z/
    assert "accounts acme and gamma have the same prefix" in project_refused(
        tmp_path / "2", monkeypatch, {"a": acme + "---\n" + beta, "z": meets_acme})
    assert "two accounts are named acme" in project_refused(
        tmp_path / "3", monkeypatch, {"a": acme + "---\n" + component("acme", s3_bucket="other-logs")})
    instances = """
        import dagster as dg
        from zoom_pipeline.component import ZoomAccount

        @dg.component_instance
        def acme(context):
            return ZoomAccount(name="acme", s3_bucket="logs")

        @dg.component_instance
        def beta(context):
            return ZoomAccount(name="beta", s3_bucket="logs", s3_prefix="zoom/acme/operationlogs/")
    """
    assert "accounts acme and beta have the same prefix" in project_refused(
        tmp_path / "4", monkeypatch, {"zoom/component.py": instances})


def test_components_with_one_prefix_in_two_buckets_load_and_a_project_loads_again_in_one_process(
    tmp_path, monkeypatch
):
    """Prefixes meet only within a bucket; and what one load of a defs folder has seen is not held against the
    next load of it (a code server reloading, `dg` listing defs): each load sees its own components only."""
    components = {"a": component("acme", s3_bucket="logs"),
                  "b": component("beta", s3_bucket="other-logs", s3_prefix="zoom/acme/operationlogs/")}
    for load in ("first", "second"):
        (tmp_path / load).mkdir()
        defs = user_project(tmp_path / load, monkeypatch, components)
        assert {k.path[0] for k in defs.resolve_all_asset_keys()} == {"acme", "beta"}


def test_components_acme_and_store_acme_sit_side_by_side(tmp_path, monkeypatch):
    defs = user_project(tmp_path, monkeypatch, {"a": component("acme"), "b": component("store_acme")})
    assert type(defs.resources["zoom_store__acme"]).__name__ == "ZoomStore"


def test_a_failing_account_with_many_unconfirmed_days_never_holds_back_anothers_confirmation(tmp_path, monkeypatch):
    defs = two_account_defs(tmp_path, monkeypatch)
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def(CONFIRMATION_SENSOR_NAME)
    job = defs.resolve_job_def("zoom_operation_logs_job")
    acme_days = [days_ago(n) for n in range(30, 18, -1)]  # 12 days, all older than beta's
    beta_day = days_ago(3)
    with dg.instance_for_test() as instance:
        complete_pass_events(instance, [("acme", OPERATION_LOGS.name, d, False) for d in acme_days]
                             + [("beta", OPERATION_LOGS.name, beta_day, False)])
        cursor = None
        for _ in range(2):  # acme's confirming runs fail at once (say, its secret was rotated)
            tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo, cursor=cursor))
            cursor = tick.cursor
            if any(r.tags["zoom/account"] == "beta" for r in tick.run_requests):
                return
            for request in tick.run_requests:
                add_run(instance, job, dg.DagsterRunStatus.FAILURE, assets=request.asset_selection, tags={
                    **request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": CONFIRMATION_SENSOR_NAME,
                    "dagster/partition": request.partition_key})
        pytest.fail(f"beta's {beta_day} was not requested in two ticks; acme's failing days took every slot")
