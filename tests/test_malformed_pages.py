"""A 200 that is not a page of the report never ends a day early (issue 16, item 1).

Gateways, proxies and load balancers in front of an API answer 200 with bodies such as `{}` or
`{"message": "upstream timeout"}`. Taken for "the last page" (no `next_page_token`), they would land
the first pages of a day, and the counting proof would then call the short day exact.
"""

import orjson
import pytest

from tests.helpers import (
    api_listing,
    canonical,
    days_ago,
    error_text,
    materialize,
    output_metadata,
    records_of,
    resources,
    s3_day,
    sim_log,
)
from zoom_pipeline.simulator import MALFORMED_SHAPES
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS
from zoom_pipeline.zoom_client import MalformedPage, parse_page

KEY = OPERATION_LOGS.records_key
REC = {"action": "Update", "time": "2026-11-20T10:00:00Z"}


# ---- the page shape, pure ------------------------------------------------------------------------

@pytest.mark.parametrize("body, says", [
    (b"{}", 'no "operation_logs" list (its keys: none)'),
    (b'{"operation_logs": null}', '"operation_logs" is null, not a list'),
    (b'{"operation_logs": {}}', '"operation_logs" is an object, not a list'),
    (b'{"operation_logs": "[]"}', '"operation_logs" is a string, not a list'),
    (b'{"message": "upstream timeout"}', 'its keys: message) saying "upstream timeout"'),
    (b'{"page_size": 300, "next_page_token": ""}', "its keys: next_page_token, page_size)"),
    (b'{"code": 124, "message": "Invalid access token."}', 'saying "code 124: Invalid access token."'),
    (b'{"operation_logs": [1, 2]}', 'record 1 of "operation_logs" is a number, not an object'),
    (b'{"operation_logs": [{"time": "x"}, null]}', 'record 2 of "operation_logs" is null, not an object'),
    (b'{"operation_logs": [], "next_page_token": 7}', '"next_page_token" is a number, not a string'),
    (b'[{"time": "x"}]', "the body is a list, not an object"),
    (b"null", "the body is null, not an object"),
    (b'{"operation_logs": [', "the body is not JSON (20 bytes)"),
    (b"<html>502 Bad Gateway</html>", "the body is not JSON"),
])
def test_anything_but_a_page_is_malformed_and_says_what(body, says):
    with pytest.raises(MalformedPage) as raised:
        parse_page(body, KEY, 300)
    assert says in str(raised.value)


def test_a_page_longer_than_asked_for_is_malformed():
    body = orjson.dumps({KEY: [REC] * 3})
    assert parse_page(body, KEY, 3)[0][KEY] == [REC] * 3
    with pytest.raises(MalformedPage, match="holds 3 records, more than the page size of 2"):
        parse_page(body, KEY, 2)


@pytest.mark.parametrize("end", [{"next_page_token": ""}, {"next_page_token": None}, {}])
def test_every_documented_last_page_is_a_page(end):
    for records in ([], [REC]):
        page, invalid = parse_page(orjson.dumps({"page_size": 300, KEY: records, **end}), KEY, 300)
        assert page[KEY] == records and invalid == 0


def test_the_records_key_is_the_sources_own():
    with pytest.raises(MalformedPage, match='no "activity_logs" list'):
        parse_page(orjson.dumps({KEY: [REC]}), ACTIVITY_LOGS.records_key, 300)


# ---- against the simulator, as a run meets them ------------------------------------------------------

@pytest.mark.parametrize("shape", MALFORMED_SHAPES)
def test_a_passing_malformed_answer_is_retried_and_the_day_lands_whole(sim, zoom_env, bucket, s3, source, shape):
    day, log = days_ago(6), sim_log(source)
    sim.generate_day(day, 1000, seed=3, twins=3, log=log)
    expected = canonical(api_listing(sim, zoom_env, day, source))
    sim.inject("malformed_page", times=2, after_calls=1, log=log, shape=shape)  # page 2, twice
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert result.success
    assert records_of(s3_day(s3, bucket, day, prefix=source.prefix[1])) == expected
    meta = output_metadata(result, source.name)
    assert meta["records_written"] == 1000 and meta["day_exact"] is True
    assert meta["malformed_pages_retried"] == 2
    assert sim.stats()["by_log"][log]["faults_by_kind"] == {"malformed_page": 2}


@pytest.mark.parametrize("shape", ["missing", "message"])
def test_a_lasting_malformed_answer_fails_the_run_naming_day_and_page_and_lands_nothing(
        sim, zoom_env, bucket, s3, source, shape):
    day, log = days_ago(6), sim_log(source)
    sim.generate_day(day, 1000, seed=3, log=log)
    sim.inject("malformed_page", times=1000, after_calls=1, log=log, shape=shape)
    result = materialize(day, resources(zoom_env, bucket=bucket, max_attempts=3), source=source)
    assert not result.success
    message = error_text(result.failure_data_for_node(source.name).error)
    # The first attempt met it on page 2; the step's retries meet it on page 1.
    assert f"Zoom {source.title} for {day}, page 1: gave up after 3 attempts" in message
    assert f'HTTP 200 with a body that is not a page of {source.title}' in message
    assert f'no "{source.records_key}" list' in message
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}
    # No materialization, so no passing day_matches_zoom either.
    assert list(result.asset_materializations_for_node(source.name)) == []
    assert not [e for e in result.get_asset_check_evaluations() if e.passed]


@pytest.mark.parametrize("body", [
    b"{}", b'{"operation_logs": null}', b'{"operation_logs": {}}', b'{"message": "upstream timeout"}',
    b'{"page_size": 300, "next_page_token": ""}',
])
def test_the_bodies_of_the_report_never_make_a_short_day_exact(sim, zoom_env, bucket, s3, body):
    """The five bodies the issue reproduced, on page 2 of a 1,000-record day, lasting: the run fails."""
    day = days_ago(7)
    sim.generate_day(day, 1000, seed=5)
    sim.inject("raw_body", times=1000, after_calls=1, body=body.decode())
    result = materialize(day, resources(zoom_env, bucket=bucket, max_attempts=2))
    assert not result.success
    assert s3_day(s3, bucket, day) == {}
