"""The exactly-once arithmetic, without servers."""

from zoom_pipeline.ledger import PassLedger, StoredMultiset, encode_record, line_digest, line_time

A, B, C = (line_digest(encode_record({"time": "2026-11-20T10:00:00Z", "n": i})) for i in range(3))


def test_complete_pass_writes_multiset_difference():
    ledger = PassLedger(StoredMultiset([A, B]), complete=True)
    admitted = [d for d in [A, A, B, C, C] if ledger.admit(d)]
    assert admitted == [A, C, C]  # second A and both Cs are new; twins kept
    assert (ledger.listed, ledger.new, ledger.already_stored) == (5, 3, 2)


def test_refresh_pass_keeps_one_copy_of_each_distinct_record():
    ledger = PassLedger(StoredMultiset([A]), complete=False)
    admitted = [d for d in [A, B, B, C, A] if ledger.admit(d)]
    assert admitted == [B, C]
    assert ledger.repeats_skipped == 2


def test_complete_pass_after_refresh_adds_only_missing_twin_copies():
    # A refresh stored one copy of a twin; the pass after the day ended lists it twice.
    ledger = PassLedger(StoredMultiset([A, B]), complete=True)
    assert [d for d in [A, A, B] if ledger.admit(d)] == [A]


def test_reset_forgets_the_pass_but_not_the_store():
    ledger = PassLedger(StoredMultiset([A]), complete=True)
    assert not ledger.admit(A)
    ledger.reset()
    assert not ledger.admit(A)  # the stored copy can be matched again after a restart
    assert ledger.admit(A)


def test_encoding_keeps_keys_values_and_escapes_newlines():
    rec = {"time": "2026-11-20T10:00:00Z", "operation_detail": "a\nb – ünï", "operator": None, "x": 1}
    line = encode_record(rec)
    assert b"\n" not in line
    assert line == '{"time":"2026-11-20T10:00:00Z","operation_detail":"a\\nb – ünï","operator":null,"x":1}'.encode()
    assert line_time(line) == "2026-11-20T10:00:00Z"
    assert line_time(encode_record({"time": "yesterday"})) is None
