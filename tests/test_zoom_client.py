"""The Zoom client against the simulator over real HTTP: OAuth, paging, retries, limits, early stop."""

import time

import pytest

from tests.helpers import days_ago, sim_log, zoom_client
from zoom_pipeline.simulator import ZoomSimulator
from zoom_pipeline.zoom_client import RESTART, ZoomClient, ZoomDailyLimitError, ZoomError


def records(day_pass, **kw) -> list[dict]:
    return [r for page in day_pass.pages(**kw) if page is not RESTART for r in page.records]


@pytest.mark.parametrize("style", ["empty", "null", "missing"])
def test_every_end_of_paging_style_processes_the_last_page(style, source):
    with ZoomSimulator(last_token_style=style) as sim:
        env = {"ZOOM_ACCOUNT_ID": sim.account_id, "ZOOM_CLIENT_ID": sim.client_id,
               "ZOOM_CLIENT_SECRET": sim.client_secret, "ZOOM_API_BASE_URL": sim.base_url,
               "ZOOM_OAUTH_TOKEN_URL": sim.token_url}
        day = days_ago(1)
        sim.generate_day(day, 601, log=sim_log(source))
        day_pass = zoom_client(env).day_pass(day, source=source)
        assert len(records(day_pass)) == 601
        assert day_pass.stats.pages == 3 and day_pass.stats.api_calls == 3
        assert day_pass.complete


def test_token_is_cached_across_pages_and_reminted_before_expiry(sim, zoom_env, source):
    day = days_ago(1)
    sim.generate_day(day, 3000, log=sim_log(source))
    client = zoom_client(zoom_env)
    assert len(records(client.day_pass(day, source=source))) == 3000
    assert sim.stats()["token_calls"] == 1
    sim.configure(token_ttl=1)
    client.authenticate(force=True)
    time.sleep(1.1)  # a 1 s token is renewed at 90 % of its life, never used expired
    assert len(records(client.day_pass(day, source=source))) == 3000
    assert sim.stats()["status_counts"].get("401", 0) == 0
    assert sim.stats()["by_log"][sim_log(source)]["report_calls"] == 20  # two passes of 10 pages, none retried


def test_page_size_is_sent(sim, zoom_env, source):
    day = days_ago(1)
    sim.generate_day(day, 100, log=sim_log(source))
    day_pass = zoom_client(zoom_env, page_size=30).day_pass(day, source=source)
    assert len(records(day_pass)) == 100 and day_pass.stats.api_calls == 4


def test_retry_after_seconds_is_honoured(sim, zoom_env, source):
    day = days_ago(1)
    sim.generate_day(day, 10, log=sim_log(source))
    sim.inject("rate_limit_qps", times=1, retry_after=1, log=sim_log(source))
    started = time.monotonic()
    assert len(records(zoom_client(zoom_env).day_pass(day, source=source))) == 10
    assert time.monotonic() - started >= 1.0


def test_daily_limit_carries_the_reset_time(sim, zoom_env, source):
    day = days_ago(1)
    sim.generate_day(day, 10, log=sim_log(source))
    sim.inject("rate_limit_daily", times=1, log=sim_log(source))
    with pytest.raises(ZoomDailyLimitError) as err:
        records(zoom_client(zoom_env).day_pass(day, source=source))
    assert err.value.reset_at.hour == 0 and err.value.reset_at.minute == 0
    assert sim.stats()["report_calls"] == sim.stats()["by_log"][sim_log(source)]["report_calls"] == 1


def test_retention_error_is_one_clear_sentence(sim, zoom_env, source):
    with pytest.raises(ZoomError, match="keeps about six months") as err:
        records(zoom_client(zoom_env).day_pass(days_ago(200), source=source))
    assert source.title in str(err.value)
    assert sim.stats()["by_log"][sim_log(source)]["report_calls"] == 1


@pytest.mark.parametrize("setting, hint", [("client_secret", "ZOOM_CLIENT_SECRET"), ("account_id", "ZOOM_ACCOUNT_ID")])
def test_credential_errors_name_what_to_check(sim, zoom_env, setting, hint):
    env = dict(zoom_env)
    env["ZOOM_CLIENT_SECRET" if setting == "client_secret" else "ZOOM_ACCOUNT_ID"] = "wrong-value-123"
    with pytest.raises(ZoomError, match=hint) as err:
        zoom_client(env).authenticate()
    assert "wrong-value-123" not in str(err.value) or setting == "account_id"
    assert zoom_env["ZOOM_CLIENT_SECRET"] not in str(err.value)


def test_early_stop_makes_no_call_past_the_stop(sim, zoom_env, source):
    day, log = days_ago(0), sim_log(source)
    sim.set_day(day, sim.make_records(day, 3000, seed=1, start_time="10:00:00", log=log), log=log)
    listing = records(zoom_client(zoom_env).day_pass(day, source=source))
    newest_stored = listing[0]["time"]
    sim.add_records(day, sim.make_records(day, 450, seed=2, start_time="20:00:00", log=log), log=log)
    sim.reset_stats()
    day_pass = zoom_client(zoom_env).day_pass(day, source=source)
    got = records(day_pass, stop_before_time=newest_stored)
    assert day_pass.stats.stopped_early
    # ceil(450/300)+1 at most, no prefetch
    assert sim.stats()["report_calls"] == sim.stats()["by_log"][log]["report_calls"] == 2 == day_pass.stats.api_calls
    assert len(got) == 600


def test_records_without_a_parseable_time_never_stop_a_refresh(sim, zoom_env, source):
    day, log = days_ago(0), sim_log(source)
    odd_times = [f"{day} 10:00:00Z", "0000-00-00 0:00:00Z", None, 1234, "2026-11-20T10:00:00+00:00"]
    made = sim.make_records(day, 650, seed=9, log=log)
    sim.set_day(day, [dict(r, time=odd_times[i % 5]) for i, r in enumerate(made)], log=log)
    day_pass = zoom_client(zoom_env).day_pass(day, source=source)
    got = records(day_pass, stop_before_time="2999-01-01T00:00:00Z")  # any parseable time would stop
    assert len(got) == 650 and day_pass.stats.api_calls == 3 and not day_pass.stats.stopped_early


def test_an_abandoned_pass_stops_its_fetcher_at_once_instead_of_waiting_out_retries(sim, zoom_env, source):
    day = days_ago(1)
    sim.generate_day(day, 900, log=sim_log(source))
    sim.inject("server_error", times=5, after_calls=1, log=sim_log(source))  # page 2 fails: the fetcher backs off 30 s
    day_pass = zoom_client(zoom_env, backoff_base_seconds=30, backoff_max_seconds=30).day_pass(day, source=source)
    pages = day_pass.pages()
    assert len(next(pages).records) == 300
    time.sleep(0.3)  # the fetcher is now waiting to retry page 2
    started = time.monotonic()
    pages.close()  # what a failing step or a terminated run does to the pass
    assert time.monotonic() - started < 2
    assert sim.stats()["report_calls"] == sim.stats()["by_log"][sim_log(source)]["report_calls"] == 2


@pytest.mark.parametrize("setting, field", [("ZOOM_API_BASE_URL", "api_base_url"),
                                            ("ZOOM_OAUTH_TOKEN_URL", "oauth_token_url")])
def test_a_url_requests_cannot_call_fails_at_once_naming_its_setting(sim, zoom_env, source, setting, field,
                                                                       monkeypatch):
    backoffs = []
    monkeypatch.setattr(ZoomClient, "_sleep_backoff", lambda self, attempt, *a, **kw: backoffs.append(attempt))
    day = days_ago(1)
    sim.generate_day(day, 10, log=sim_log(source))
    day_pass = zoom_client(dict(zoom_env, **{setting: "not-a-url"})).day_pass(day, source=source)
    with pytest.raises(ZoomError, match=rf"^{setting} must be an absolute http\(s\) URL with a host, .* got "
                                        r"'not-a-url', which requests cannot call \(MissingSchema\)\.$"):
        records(day_pass)
    assert backoffs == [] and day_pass.stats.retries == 0  # not taken for a connection error: no retry
    assert sim.stats()["report_calls"] == 0
    if field == "api_base_url":
        assert day_pass.stats.api_calls == 1 and sim.stats()["token_calls"] == 1
    else:
        assert day_pass.stats.api_calls == 0 and sim.stats()["token_calls"] == 0
