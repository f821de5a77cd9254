"""Exactly once while Zoom's listing moves, end to end: the simulator and the S3 server over real HTTP.

Each situation pages an ended day of each source (its raw asset, `zoom_operation_logs` or
`zoom_activity_logs`) while the simulator moves the listing
(late events among rows already served, a fresh order within each second, genuine twins). After every
pass: no stored record has more copies than Zoom lists, and the ride-along `day_matches_zoom` is never
an ERROR, WARNs while the day is not proven exact, and passes only when storage equals the listing.
Then, with the listing quiet, the day becomes exact within the passes the rule promises.
"""

import gzip
from collections import Counter

import dagster as dg
import orjson
import pytest

from tests.helpers import (
    api_listing,
    canonical,
    days_ago,
    materialize,
    output_metadata,
    records_of,
    resources,
    s3_day,
    sim_log,
)
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def zoom_lists(sim, env, day: str, source) -> Counter:
    """What Zoom lists for the day, copy for copy. A paged listing of a day served in a fresh order
    each call repeats and skips records, so then the simulator's own (unshuffled) records are used."""
    if sim.config()["shuffle_within_second"]:
        return canonical(sim.day_records(day, log=sim_log(source)))
    return canonical(api_listing(sim, env, day, source))


def stored_day(s3, bucket: str, day: str, source) -> dict[str, list[bytes]]:
    return s3_day(s3, bucket, day, prefix=source.prefix[1])


def verdict(evaluation) -> str:
    if evaluation.passed:
        return "passed"
    return "WARN" if evaluation.severity == dg.AssetCheckSeverity.WARN else "ERROR"


def ride_along(result):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "day_matches_zoom"]
    return evaluation


class Passes:
    """Runs complete passes over one day and checks what must hold after every one of them."""

    def __init__(self, sim, env, s3, bucket, day, source, instance=None):
        self.sim, self.env, self.s3, self.bucket, self.day, self.source = sim, env, s3, bucket, day, source
        self.res = resources(env, bucket=bucket)
        self.instance = instance
        self.log: list[tuple] = []

    def run(self, *, late_events: list[dict] = ()):
        """One materialization; `late_events` are scheduled with call numbers counted from this pass."""
        self.sim.reset_stats()
        for spec in late_events:
            self.sim.late_events(self.day, **spec, log=sim_log(self.source))
        result = materialize(self.day, self.res, instance=self.instance, source=self.source)
        assert result.success
        meta = output_metadata(result, self.source.name)
        assert meta["pass"] == "complete"
        stored = records_of(stored_day(self.s3, self.bucket, self.day, self.source))
        listed = zoom_lists(self.sim, self.env, self.day, self.source)
        over = {r: (c, listed[r]) for r, c in stored.items() if c > listed[r]}
        assert not over, f"stored more copies than Zoom lists: {list(over.values())[:3]}"
        evaluation = ride_along(result)
        said = verdict(evaluation)
        check = {k: v.value for k, v in evaluation.metadata.items()}
        assert said != "ERROR", evaluation.description
        assert check["missing_copies"] == check["extra_copies"] == 0
        # Exact by counting: storage holds as many records as Zoom lists (and never more of any one).
        awaiting = listed.total() - stored.total()
        assert meta["awaiting_confirmation_records"] == check["awaiting_confirmation_records"] == awaiting
        assert meta["day_exact"] == (stored == listed) == (awaiting == 0)
        assert said == ("passed" if meta["day_exact"] else "WARN"), evaluation.description
        self.log.append((meta["page_size"], meta["api_calls"], meta["records_written"], meta["day_exact"], said))
        self.last = (meta, stored, listed, said, check)
        return meta, stored, listed, said

    def until_exact(self, most: int) -> int:
        """Quiet passes until the day is exact; how many it took (asserting at most `most`)."""
        for n in range(1, most + 1):
            meta, stored, listed, said = self.run()
            if meta["day_exact"]:
                return n
        raise AssertionError(f"not exact after {most} quiet passes: {self.log}")


def ended_day(sim, source, n: int, seed: int, start_time: str = "23:30:00") -> tuple[str, list[dict]]:
    day = days_ago(1)
    records = sim.make_records(day, n, seed=seed, start_time=start_time, log=sim_log(source))
    sim.set_day(day, records, log=sim_log(source))
    return day, records


# ---- late events among rows already served --------------------------------------------------------


@pytest.mark.parametrize(
    "records, late, calls",
    [
        # (a) two late events just above row 299, the last row page 1 served: rows 298-299 come again
        (900, {"after_call": 1, "position": 298, "count": 2, "seed": 1}, 4),
        # (b) more than a page of them among rows already served
        (900, {"after_call": 1, "position": 100, "count": 400, "seed": 2}, 5),
        # (c) a thousand, hundreds of rows back
        (1500, {"after_call": 2, "position": 350, "count": 1000, "seed": 3}, 9),
        # a late identical twin of the last row served
        (900, {"after_call": 1, "position": 299, "count": 1, "twins": True}, 4),
    ],
    ids=["2-just-above-the-last-row-served", "400-among-rows-served", "1000-among-rows-served", "late-twin"],
)
def test_late_events_among_rows_already_served(sim, zoom_env, bucket, s3, records, late, calls, source):
    day, _ = ended_day(sim, source, records, seed=60)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    meta, stored, listed, said = passes.run(late_events=[late])
    assert meta["api_calls"] == calls and meta["records_from_api"] == records + late["count"]
    assert not meta["day_exact"] and said == "WARN" and meta["awaiting_confirmation_groups"] >= 1
    assert sum((listed - stored).values()) >= 1  # the late events behind the cursor are not stored yet
    if not late.get("twins"):
        assert max(stored.values()) == 1
    # The listing is quiet now: at most two complete passes make the day exact.
    took = passes.until_exact(2)
    assert passes.last[3] == "passed"
    meta, stored, listed, said = passes.run()  # a later run: nothing to write, the day stays exact
    assert stored == listed and meta["day_exact"] and said == "passed" and meta["records_written"] == 0
    print(f"{late}: exact after {took} quiet pass(es): {passes.log}")


def test_a_day_that_moves_during_every_pass_settles_within_two_quiet_passes(sim, zoom_env, bucket, s3, source):
    day, _ = ended_day(sim, source, 900, seed=61)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    for n, (position, count) in enumerate([(299, 1), (150, 40), (10, 350)]):
        meta, stored, listed, said = passes.run(late_events=[
            {"after_call": 1 + n % 2, "position": position, "count": count, "seed": n},
            {"after_call": 3, "position": 890, "count": 2, "seed": 10 + n},
        ])
        assert meta["records_moved_in_listing"] + meta["awaiting_confirmation_groups"] > 0
        assert not meta["day_exact"] and said == "WARN"
    took = passes.until_exact(2)
    assert passes.last[1] == passes.last[2] and sum(passes.last[1].values()) == 900 + 1 + 40 + 350 + 3 * 2
    print(f"exact after {took} quiet pass(es): {passes.log}")


def test_late_events_below_the_cursor_are_collected_in_the_same_pass(sim, zoom_env, bucket, s3, source):
    day, _ = ended_day(sim, source, 900, seed=62)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    meta, stored, listed, said = passes.run(late_events=[{"after_call": 1, "position": 700, "count": 25, "seed": 4}])
    assert meta["day_exact"] and said == "passed" and stored == listed and sum(stored.values()) == 925
    assert meta["records_moved_in_listing"] == 0


# ---- (d) a busy day served in a fresh order within each second --------------------------------------

# (first position, records) of same-second groups, each cut by a boundary of 300-record pages.
BULK = [(220, 180), (560, 120), (850, 240), (1160, 90), (1400, 200)]


def busy_day(sim, source, seed: int) -> tuple[str, list[dict]]:
    day, records = ended_day(sim, source, 1800, seed=seed)
    for first, n in BULK:
        for rec in records[first:first + n]:
            # One bulk operation (an admin's, or a sign-in storm): hundreds of events in one second.
            rec["time"] = records[first]["time"]
    sim.set_day(day, records, log=sim_log(source))
    return day, records


@pytest.mark.parametrize("shuffle_seed", [5, 6, 7])
def test_a_busy_day_served_in_a_fresh_order_each_call_converges(sim, zoom_env, bucket, s3, shuffle_seed, source):
    day, records = busy_day(sim, source, seed=63)
    assert len(canonical(records)) == 1800
    sim.configure(shuffle_within_second=True, shuffle_seed=shuffle_seed)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    meta, stored, listed, said = passes.run()
    assert not meta["day_exact"] and said == "WARN" and meta["awaiting_confirmation_groups"] == len(BULK)
    assert max(stored.values()) == 1 and stored != listed  # repeats were not written; what they hid is missing
    took = 1
    while not meta["day_exact"]:
        assert took < 6, passes.log
        meta, stored, listed, said = passes.run()
        took += 1
    assert stored == listed and max(stored.values()) == 1
    print(f"shuffle seed {shuffle_seed}: exact after {took} complete passes: {passes.log}")


# ---- (e) genuine identical twins ------------------------------------------------------------------


def test_identical_twins_on_one_page_and_across_a_boundary(sim, zoom_env, bucket, s3, source):
    day = days_ago(1)
    records = sim.make_records(day, 900, seed=64, start_time="22:00:00", log=sim_log(source))
    records[101] = dict(records[100])  # both on page 1
    records[300] = dict(records[299])  # the last row of page 1 and the first of page 2
    records[650:652] = [dict(records[649]), dict(records[649])]  # three copies inside page 3
    sim.set_day(day, records, log=sim_log(source))
    truth = canonical(records)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    meta, stored, listed, said = passes.run()
    assert listed == truth
    assert stored == truth - canonical([records[299]])  # the one pair no page showed whole: one copy
    assert not meta["day_exact"] and said == "WARN"
    assert (meta["awaiting_confirmation_groups"], meta["awaiting_confirmation_records"]) == (1, 1)
    meta, stored, listed, said = passes.run()
    assert meta["page_size"] == 299 and meta["records_written"] == 1
    assert meta["day_exact"] and said == "passed" and stored == truth
    assert sorted(Counter(stored.values()).items()) == [(1, 893), (2, 2), (3, 1)]


def test_late_twins_and_late_events_together(sim, zoom_env, bucket, s3, source):
    day, _ = ended_day(sim, source, 1000, seed=65)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    passes.run(late_events=[
        {"after_call": 1, "position": 299, "count": 2, "twins": True},  # a record of page 1 now thrice
        {"after_call": 2, "position": 400, "count": 5, "seed": 7},
    ])
    assert passes.until_exact(2) <= 2
    meta, stored, listed, said = passes.last[:4]
    assert stored == listed and max(stored.values()) == 3


@pytest.mark.parametrize("situation", ["twins re-cut once exact", "shuffled day"])
def test_the_ride_along_passes_whenever_the_day_is_exact(sim, zoom_env, bucket, s3, situation, source):
    """Also on the runs after: a page size that cuts a pair (or a reorder) the day already holds in full
    leaves stored copies no page showed; they are not awaiting anything."""
    if situation == "twins re-cut once exact":
        day = days_ago(1)
        records = sim.make_records(day, 900, seed=64, start_time="22:00:00", log=sim_log(source))
        records[300] = dict(records[299])
        sim.set_day(day, records, log=sim_log(source))
        runs = 3  # 300 (cuts the pair), 299 (exact), then 300 again (exact day, the pair cut again)
    else:
        day, _ = busy_day(sim, source, seed=63)
        sim.configure(shuffle_within_second=True, shuffle_seed=5)
        runs = 4  # exact at the third pass here; the fourth (300 again) re-cuts the groups
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    for _ in range(runs):
        meta, stored, listed, said = passes.run()  # run() asserts: passed if exact, else WARN
    assert meta["day_exact"] and said == "passed", passes.log
    assert passes.log[-2][3], passes.log  # the last run came after the day was exact


# ---- the fresh listing (zoom_completeness_job) on a day that moved -----------------------------------


def completeness(defs, instance, day: str, source):
    """zoom_completeness_job for one day: `source`'s verdict (the job lists the day of every source)."""
    job = defs.resolve_job_def("zoom_completeness_job")
    result = job.execute_in_process(instance=instance, tags={"dagster/partition": day}, raise_on_error=False)
    by_source = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert set(by_source) == {s.name for s in SOURCES}
    evaluation = by_source[source.name]
    return evaluation, {k: v.value for k, v in evaluation.metadata.items()}


def gz(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize("how", ["extra copy in a new part", "line removed"])
def test_fresh_listing_catches_a_tampered_day_that_had_moved(sim, zoom_env, bucket, s3, instance, monkeypatch, how,
                                                            source):
    monkeypatch.setenv("S3_BUCKET", bucket)
    defs = build_defs()
    day, _ = ended_day(sim, source, 900, seed=66)
    passes = Passes(sim, zoom_env, s3, bucket, day, source, instance=instance)
    passes.run(late_events=[{"after_call": 1, "position": 298, "count": 2, "seed": 1}])
    passes.until_exact(2)
    evaluation, meta = completeness(defs, instance, day, source)
    assert evaluation.passed, evaluation.description

    objects = stored_day(s3, bucket, day, source)
    first, last = sorted(objects)[0], sorted(objects)[-1]
    lines = objects[first][:-1]
    if how == "extra copy in a new part":
        seq = int(last[-14:-8])
        s3.put_object(Bucket=bucket, Key=f"{last[:-14]}{seq + 1:06d}.json.gz", Body=gz(lines[5:6]))
        expected = (0, 1)
    else:
        s3.put_object(Bucket=bucket, Key=first, Body=gz(lines[:5] + lines[6:]))
        expected = (1, 0)
    evaluation, meta = completeness(defs, instance, day, source)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert (meta["missing_copies"], meta["extra_copies"]) == expected
    assert meta["zoom_records_listed"] == 902


def far_apart_twins(sim, source, seed: int) -> tuple[str, list[dict]]:
    """An ended day whose rows 200-600 are one second, its first and last rows identical twins: every page
    size from 150 to 300 puts them on different pages, so no page shows both copies."""
    day, records = ended_day(sim, source, 900, seed=seed)
    for rec in records[200:601]:
        rec["time"] = records[200]["time"]
    records[600] = dict(records[200])
    sim.set_day(day, records, log=sim_log(source))
    return day, records


def test_fresh_listing_warns_on_a_day_awaiting_confirmation(sim, zoom_env, bucket, s3, instance, monkeypatch,
                                                            source):
    monkeypatch.setenv("S3_BUCKET", bucket)
    defs = build_defs()
    day, records = far_apart_twins(sim, source, seed=67)
    passes = Passes(sim, zoom_env, s3, bucket, day, source, instance=instance)
    for _ in range(2):
        meta, stored, listed, said = passes.run()
        assert not meta["day_exact"] and said == "WARN" and meta["awaiting_confirmation_records"] == 1
    assert stored == canonical(records) - canonical([records[200]])  # never more; one copy still unproven

    sim.reset_stats()
    evaluation, check = completeness(defs, instance, day, source)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN, evaluation.description
    assert (check["missing_copies"], check["extra_copies"]) == (0, 0)
    assert check["awaiting_confirmation_records"] == 1 and check["awaiting_confirmation_groups"] == 1
    assert check["api_calls"] == sim.stats()["by_log"][sim_log(source)]["report_calls"] == 3
    assert len(stored_day(s3, bucket, day, source)) == 1  # a check writes nothing


def test_fresh_listing_passes_on_an_exact_day_whose_pair_it_cuts(sim, zoom_env, bucket, s3, instance, monkeypatch,
                                                                 source):
    monkeypatch.setenv("S3_BUCKET", bucket)
    defs = build_defs()
    day = days_ago(1)
    records = sim.make_records(day, 900, seed=69, start_time="22:00:00", log=sim_log(source))
    records[300] = dict(records[299])
    sim.set_day(day, records, log=sim_log(source))
    passes = Passes(sim, zoom_env, s3, bucket, day, source, instance=instance)
    passes.run()
    meta, stored, listed, said = passes.run()
    assert meta["day_exact"] and meta["page_size"] == 299
    evaluation, check = completeness(defs, instance, day, source)  # exact: 300 again, which cuts the pair
    assert evaluation.passed, evaluation.description
    assert check["unproven_stored_copies"] == 1 and check["awaiting_confirmation_records"] == 0


def test_damage_is_not_reported_exact_while_the_listing_moves(sim, zoom_env, bucket, s3, source):
    day, _ = ended_day(sim, source, 900, seed=70)
    passes = Passes(sim, zoom_env, s3, bucket, day, source)
    meta, *_ = passes.run()
    assert meta["day_exact"]
    [key] = stored_day(s3, bucket, day, source)
    lines = stored_day(s3, bucket, day, source)[key][:-1]
    s3.put_object(Bucket=bucket, Key=key.replace("-000001.", "-000002."), Body=gz(lines[5:6]))  # damage
    sim.reset_stats()
    sim.late_events(day, after_call=1, position=298, count=1, seed=1, log=sim_log(source))
    result = materialize(day, passes.res, source=source)
    assert result.success
    stored, listed = records_of(stored_day(s3, bucket, day, source)), zoom_lists(sim, zoom_env, day, source)
    assert stored != listed and stored.total() == listed.total()  # one record twice, the late one missing
    meta, evaluation = output_metadata(result, source.name), ride_along(result)
    assert not meta["day_exact"] and not evaluation.passed


# ---- a record that is not UTF-8 -----------------------------------------------------------------

# The field naming who acted, in each source's records.
WHO = {OPERATION_LOGS.name: "operator", ACTIVITY_LOGS.name: "email"}


def test_a_raw_invalid_utf8_byte_in_one_record(sim, zoom_env, bucket, s3, source):
    day, who = days_ago(2), WHO[source.name]
    records = sim.make_records(day, 700, seed=68, log=sim_log(source))
    bad = {**records[350], who: b"ops\xffadmin@acme-corp.com"}
    sim.set_day(day, records[:350] + [bad] + records[351:], log=sim_log(source))
    mended = {**records[350], who: "ops\ufffdadmin@acme-corp.com"}
    res = resources(zoom_env, bucket=bucket)
    result = materialize(day, res, source=source)
    assert result.success
    meta = output_metadata(result, source.name)
    assert meta["invalid_utf8_records"] == 1 and meta["records_written"] == 700 and meta["day_exact"]
    assert ride_along(result).passed
    lines = [line for part in stored_day(s3, bucket, day, source).values() for line in part[:-1]]
    for line in lines:
        line.decode("utf-8")  # every stored line is valid UTF-8
    [stored_bad] = [line for line in lines if "ops\ufffdadmin@acme-corp.com".encode() in line]
    assert orjson.loads(stored_bad) == mended
    assert records_of(stored_day(s3, bucket, day, source)) == canonical(records[:350] + [mended] + records[351:])

    again = materialize(day, res, source=source)  # the mended record has the same digest every pass: nothing new
    meta = output_metadata(again, source.name)
    assert meta["records_written"] == 0 and meta["day_exact"] and meta["invalid_utf8_records"] == 1
    assert ride_along(again).passed
