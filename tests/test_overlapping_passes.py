"""Two complete passes of one day that overlap, and listings shorter than an earlier one (issue 16, item 2).

Such overlaps happen: a backfill run covering yesterday and the daily schedule's run of yesterday, or a
CLI run, which bypasses the queue. A later, longer listing that lands first must not make the earlier
pass's check cry damage; a foreign object must still be caught; and a listing shorter than one Zoom
served before (Zoom never deletes) proves nothing.
"""

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from tests.helpers import api_listing, canonical, days_ago, records_of, resources, s3_day, sim_log
from zoom_pipeline.checks import ride_along_result
from zoom_pipeline.collector import collect
from zoom_pipeline.confirmation import DayState
from zoom_pipeline.day_store import PartWriter, ZoomStore
from zoom_pipeline.landing import land
from zoom_pipeline.ledger import encode_record, line_time


def quiet(_message: str) -> None:
    pass


@pytest.fixture
def day_store(bucket, source):
    return ZoomStore(s3=S3Resource(), s3_bucket=bucket).days(source)


def test_a_longer_listing_landing_first_is_no_damage_to_the_earlier_pass(sim, zoom_env, bucket, s3, source,
                                                                          day_store):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 500, seed=71, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    run_a = collect(zoom, day_store, day, log=quiet)  # lists 500
    sim.add_records(day, sim.make_records(day, 1, seed=72, log=log), log=log)  # a late event
    run_b = collect(zoom, day_store, day, log=quiet)  # lists 501
    assert (run_a.ledger.listed, run_b.ledger.listed) == (500, 501)

    land(day_store, run_b, run_id="b", warn=quiet)
    b_verdict = ride_along_result(day_store, run_b)
    warnings: list[str] = []
    stored = land(day_store, run_a, run_id="a", warn=warnings.append)
    a_verdict = ride_along_result(day_store, run_a)

    assert b_verdict.passed and a_verdict.passed, a_verdict.description
    meta = {k: getattr(v, "value", v) for k, v in a_verdict.metadata.items()}
    assert meta["extra_copies"] == meta["missing_copies"] == 0
    assert meta["copies_from_other_listings"] == 1
    assert "from its own, later listing" in a_verdict.description
    # A wrote nothing; the day holds Zoom's 501 once; B's record of the day stands (A's older listing is
    # not recorded after it), and A reports the day as B proved it.
    assert stored["records_written"] == 0 and stored["dagster/row_count"] == 501
    assert records_of(s3_day(s3, bucket, day, prefix=source.prefix[1])) == canonical(
        api_listing(sim, zoom_env, day, source))
    assert run_a.state.exact and run_a.state.listed == 501
    assert day_store.day_state(day) == DayState(501, 501, 300)
    assert any("later listing is the day's record" in w for w in warnings)
    # The next pass starts from that record and finds the day exact with nothing to write.
    again = collect(zoom, day_store, day, log=quiet)
    assert again.ledger.new == 0 and again.state.exact


def test_a_foreign_object_racing_a_pass_is_still_damage_with_an_example(sim, zoom_env, bucket, s3, source,
                                                                         day_store):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 500, seed=73, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    run = collect(zoom, day_store, day, log=quiet)
    # Someone drops an object named like the day's first part: Zoom's 500 records plus one it never listed.
    forged = sim.make_records(day, 1, seed=74, log=log)[0]
    lines = [encode_record(r) for r in api_listing(sim, zoom_env, day, source)] + [encode_record(forged)]
    writer = PartWriter()
    writer.write(lines, [line_time(x) for x in lines])
    part = writer.finish()
    day_store.put_part(day_store.parts(day).key(day_store.part_name(day, 1)), part)
    part.discard()

    land(day_store, run, run_id="a", warn=quiet)
    verdict = ride_along_result(day_store, run)
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: getattr(v, "value", v) for k, v in verdict.metadata.items()}
    assert meta["extra_copies"] == 1 and meta["copies_from_other_listings"] == 0
    assert [line.encode() for line in meta["extra_examples"]] == [encode_record(forged)]
    assert not run.state.exact


def test_a_listing_shorter_than_an_earlier_one_proves_nothing(sim, zoom_env, bucket, s3, source, day_store):
    """Zoom listed 1,000 and storage holds them; a later listing of 999 (one record gone from it) is not
    damage and not proof: the day is not exact, and the check says why."""
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 1000, seed=75, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    first = collect(zoom, day_store, day, log=quiet)
    land(day_store, first, run_id="1", warn=quiet)
    assert first.state.exact
    listing = api_listing(sim, zoom_env, day, source)
    sim.set_day(day, listing[:400] + listing[401:], log=log)  # the listing lacks one record from now on

    said: list[str] = []
    short = collect(zoom, day_store, day, log=said.append)
    land(day_store, short, run_id="2", warn=quiet)
    verdict = ride_along_result(day_store, short)
    assert short.ledger.listed == 999 and short.ledger.new == 0
    assert not short.state.exact and short.state.short_by == 1
    assert verdict.severity == dg.AssetCheckSeverity.WARN and not verdict.passed
    meta = {k: getattr(v, "value", v) for k, v in verdict.metadata.items()}
    assert meta["listing_short_by"] == 1 and meta["extra_copies"] == 0 and meta["missing_copies"] == 0
    assert "fewer than an earlier complete pass listed" in verdict.description
    assert any("fewer than the 1000 an earlier complete pass listed" in m for m in said)
    # The day's record keeps the longer listing: a later short listing is still not proof.
    assert day_store.day_state(day).longest_listed == 1000
    assert not collect(zoom, day_store, day, log=quiet).state.exact
    # Once Zoom lists the record again, a pass proves the day exact once more.
    sim.set_day(day, listing, log=log)
    assert collect(zoom, day_store, day, log=quiet).state.exact


def test_a_short_listing_that_matches_storage_is_not_exact():
    """Storage holds 999 and a listing of 999 arrives, but an earlier pass listed 1,000: without the
    earlier listing this would count as proof."""
    state = DayState(listed=999, stored=999, page_size=300, longest_listed=1000)
    assert not state.exact and state.short_by == 1
    assert DayState.from_json(state.to_json()) == state
    # Records written before this field existed read as their own listing.
    old = {"listed": 999, "stored": 999, "page_size": 300, "awaiting": [], "passes": 2, "extra": 0}
    assert DayState.from_json(old).exact and DayState.from_json(old).longest_listed == 999
