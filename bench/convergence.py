#!/usr/bin/env python3
"""Convergence: complete passes and report calls until a day with many cut same-second groups is exact.

Pure and fast (no servers, no Dagster run): complete passes over a model of Zoom's listing
(`tests.helpers.Day`, the model tests/test_confirmation.py runs) with the pipeline's own `PassLedger`,
`after_pass` and `next_page_size`. A day holds N records spread over its seconds (by default as densely
as the 1,000,001-record day of issue 17: ~11.6 a second) and G groups of genuinely identical copies, each
k byte-identical copies of one record (k = 2: twins; 10-50: a bulk admin operation) at random places
inside its second (`--adjacent`: next to each other, as the simulator's `--twins` pairs). Zoom's
listing is quiet: no late events; `--shuffle` serves each second in a fresh order on every call.

After the first pass (page size 300) the day awaits the copies that no page showed, in the groups a
page boundary cut with a copy on both sides; every later pass takes the page size the pipeline's
`next_page_size` gives (strategy `plan`, the default: one size when one proves every awaiting group,
else the next two passes' sizes chosen together) or `next_page_size(..., plan=False)` (strategy
`greedy`: one size at a time, the one that cuts the fewest awaiting groups). Passes run until the day
is exact, at most --max-passes. Printed per (copies, G, strategy), over --seeds days:

  passes     complete passes until exact, the first included (mean, and the most any seed needed)
  exact      days exact within --max-passes
  calls      report calls of all passes, sum of ceil(N / page size) (mean), and ÷ one 300-record pass
  load       after the first pass: sum over the awaiting groups of (width - 1) / 216, the number of
             them a page size drawn from 150..300 cuts on average (README, "How many passes")
  awaiting   groups awaiting after pass 1, 2, 3, ... (mean over the seeds; copies after pass 1)

    .venv/bin/python bench/convergence.py                      # the sweep at 100,000 records (~75 s)
    .venv/bin/python bench/convergence.py --shuffle            # the same with a fresh order each call (~3 min)
    .venv/bin/python bench/convergence.py --busy-day           # issue 17's 1,000,001-record day, once (~1 min)
    .venv/bin/python bench/convergence.py --records 1000001 --groups 370,1000,3000 --copies 10-50 --seeds 1
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ runs as a file: the model lives in tests/helpers.py

from tests.helpers import Day, busy_day  # noqa: E402
from zoom_pipeline.confirmation import SMALLEST_PAGE_SIZE, next_page_size  # noqa: E402
from zoom_pipeline.constants import ZOOM_MAX_PAGE_SIZE  # noqa: E402

BUSY_DAY_RECORDS = 1_000_001
BUSY_DAY_PAIRS = 5_500  # ~11,000 identical copies, as in issue 17
DAY_SECONDS = 86_400
# A page size drawn from 150..300 cuts a span of w positions with probability (w - 1) / size: on average
# over the sizes, (w - 1) / 216.
CUT_SCALE = 1 / (sum(1 / s for s in range(SMALLEST_PAGE_SIZE, ZOOM_MAX_PAGE_SIZE + 1))
                 / (ZOOM_MAX_PAGE_SIZE - SMALLEST_PAGE_SIZE + 1))
STRATEGIES = {
    "plan": lambda state: next_page_size(state, ZOOM_MAX_PAGE_SIZE),
    "greedy": lambda state: next_page_size(state, ZOOM_MAX_PAGE_SIZE, plan=False),
}


def fmt(x: float) -> str:
    """A mean: whole numbers as such, else three significant digits."""
    return f"{x:,.0f}" if x == int(x) or x >= 100 else f"{x:.3g}"


def calls_of(records: int, size: int) -> int:
    return max(1, math.ceil(records / size))


def converge(listing: list[bytes], choose, *, max_passes: int, shuffle: random.Random | None = None,
             per_pass=None) -> dict:
    """Complete passes until the day is exact (at most `max_passes`); what each pass did."""
    day = Day(listing)
    passes = []
    stored = 0
    while len(passes) < max_passes:
        size = choose(day.state) if day.state else ZOOM_MAX_PAGE_SIZE
        started = time.perf_counter()
        day.complete_pass(size=size, rng=shuffle)
        state = day.state
        row = {"size": size, "calls": calls_of(len(listing), size), "written": state.stored - stored,
               "awaiting_records": state.awaiting_records, "awaiting_groups": len(state.awaiting),
               "exact": state.exact, "seconds": time.perf_counter() - started,
               "load": sum(g.last - g.first for g in state.awaiting) / CUT_SCALE}
        stored = state.stored
        passes.append(row)
        if per_pass:
            per_pass(len(passes), row)
        if state.exact:
            break
    assert day.never_more_than_zoom(), "a copy beyond Zoom's was stored"
    assert not passes[-1]["exact"] or day.exact, "the day was called exact but is not"
    return {"passes": passes, "exact": passes[-1]["exact"], "calls": sum(p["calls"] for p in passes)}


def parse_copies(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    pair = (int(low), int(high or low))
    if not 2 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"copies must be K or K-L with 2 <= K <= L, got {text!r}")
    return pair


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000, help="records of each day (default 100,000)")
    ap.add_argument("--groups", default="10,30,100,300,1000,3000",
                    help="comma-separated numbers of groups of identical copies (default 10,30,100,300,1000,3000)")
    ap.add_argument("--copies", default="2,10-50",
                    help="comma-separated copies per group, K or K-L (uniform): 2 = twins (default 2,10-50)")
    ap.add_argument("--per-second", type=float, default=BUSY_DAY_RECORDS / DAY_SECONDS,
                    help="records per second of the day (default that of a 1,000,001-record day, ~11.6)")
    ap.add_argument("--seeds", type=int, default=3, help="days per cell (default 3)")
    ap.add_argument("--strategies", default="plan,greedy", help="plan, greedy or both (default plan,greedy)")
    ap.add_argument("--max-passes", type=int, default=10, help="give up after this many passes (default 10)")
    ap.add_argument("--adjacent", action="store_true", help="copies next to each other, not anywhere in the second")
    ap.add_argument("--shuffle", action="store_true", help="each call serves each second in a fresh order")
    ap.add_argument("--per-pass", action="store_true", help="print every pass")
    ap.add_argument("--busy-day", action="store_true",
                    help=f"issue 17's day: {BUSY_DAY_RECORDS:,} records, {BUSY_DAY_PAIRS:,} twin pairs, one seed, "
                         "every pass printed (overrides --records, --groups, --copies, --seeds)")
    args = ap.parse_args(argv)
    if args.busy_day:
        args.records, args.groups, args.copies, args.seeds, args.per_pass = (
            BUSY_DAY_RECORDS, str(BUSY_DAY_PAIRS), "2", 1, True)
    groups = [int(g) for g in args.groups.split(",") if g]
    copies = [parse_copies(c) for c in args.copies.split(",") if c]
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown strategies {sorted(unknown)}; known: {', '.join(STRATEGIES)}")
    one_pass = calls_of(args.records, ZOOM_MAX_PAGE_SIZE)
    order = "a fresh order within each second on every call" if args.shuffle else "a stable order"
    where = "next to each other" if args.adjacent else "anywhere in their second"
    print(f"convergence: {args.records:,}-record days, {args.per_second:.1f} records a second, copies {where}, "
          f"quiet listing in {order}; {args.seeds} day(s) a cell; one 300-record pass = {one_pass:,} calls")

    def show(n: int, row: dict) -> None:
        print(f"    pass {n}: page size {row['size']}, {row['calls']:,} calls, {row['written']:,} records written, "
              f"awaiting {row['awaiting_records']:,} copies in {row['awaiting_groups']:,} groups"
              f"{' (exact)' if row['exact'] else ''}  [{row['seconds']:.1f} s]", flush=True)

    header = (f"{'copies':>6} {'G':>6} {'strategy':<8} {'passes':>6} {'max':>3} {'exact':>5} {'calls':>7} "
              f"{'÷pass':>5} {'load':>6}  awaiting groups after pass 1, 2, ... (copies after pass 1)")
    if not args.per_pass:
        print(header + "\n" + "-" * len(header))
    table: list[str] = []  # with --per-pass, printed after the passes
    started = time.perf_counter()
    for low, high in copies:
        for g in groups:
            try:
                days = [busy_day(args.records, g, (low, high), random.Random(seed), per_second=args.per_second,
                                 adjacent=args.adjacent) for seed in range(args.seeds)]
            except ValueError as exc:
                print(f"  (skipped: {exc})")
                continue
            for name in strategies:
                runs = []
                for seed, listing in enumerate(days):
                    if args.per_pass:
                        print(f"  {low if low == high else f'{low}-{high}'} copies, {g:,} groups, seed {seed}, "
                              f"{name}:", flush=True)
                    shuffle = random.Random(1000 + seed) if args.shuffle else None
                    runs.append(converge(listing, STRATEGIES[name], max_passes=args.max_passes, shuffle=shuffle,
                                         per_pass=show if args.per_pass else None))
                    if args.per_pass:
                        r = runs[-1]
                        print(f"    total: {len(r['passes'])} passes, {r['calls']:,} calls "
                              f"({r['calls'] / one_pass:.2f} x one pass), "
                              f"{'exact' if r['exact'] else 'NOT exact'}", flush=True)
                n = len(runs)
                passes = [len(r["passes"]) for r in runs]
                longest = max(passes)
                after = [sum(r["passes"][i]["awaiting_groups"] if i < len(r["passes"]) else 0 for r in runs) / n
                         for i in range(longest)]
                first_copies = sum(r["passes"][0]["awaiting_records"] for r in runs) / n
                load = sum(r["passes"][0]["load"] for r in runs) / n
                calls = sum(r["calls"] for r in runs) / n
                label = f"{low}" if low == high else f"{low}-{high}"
                trail = " → ".join(map(fmt, after))
                row = (f"{label:>6} {g:>6,} {name:<8} {sum(passes) / n:>6.2f} {longest:>3} "
                       f"{sum(r['exact'] for r in runs):>2}/{n:<2} {calls:>7,.0f} {calls / one_pass:>5.2f} "
                       f"{load:>6.1f}  {trail} ({fmt(first_copies)})")
                if args.per_pass:
                    table.append(row)
                else:
                    print(row, flush=True)
    if table:
        print("\n" + header + "\n" + "-" * len(header) + "\n" + "\n".join(table))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
