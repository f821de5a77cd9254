"""The demo (`make demo`): the last three UTC days of both Zoom sources (operation logs and sign-in/sign-out
activity logs) from the bundled Zoom simulator into the local store.

No AWS account and no Zoom account: S3_BUCKET is unset, so the IO manager writes the same layout as
in S3 to a local directory, ./.zoom_demo/store. Runs both assets through Dagster with its own
instance (./.zoom_demo/dagster_home, so simulated days never count as collected in your real
instance) and prints where the files are and how many records each day holds. Run it twice: the
second run writes nothing.
"""

import gzip
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEMO_RECORDS_PER_DAY = (1200, 950, 400)  # operation logs: day before yesterday, yesterday, today so far
DEMO_SIGN_INS_PER_DAY = (800, 700, 300)  # sign-in/sign-out activity logs, the same days


def main() -> int:
    import dagster as dg

    from zoom_pipeline.simulator import ZoomSimulator
    from zoom_pipeline.sources import ACTIVITY_LOGS, SOURCES

    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    root = Path(".zoom_demo").absolute()
    store = root / "store"
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.pop("S3_BUCKET", None)
    os.environ.update(LOCAL_STORE_DIR=str(store), DAGSTER_HOME=str(home))

    with ZoomSimulator() as sim:
        for n, (day, count, sign_ins) in enumerate(zip(days, DEMO_RECORDS_PER_DAY, DEMO_SIGN_INS_PER_DAY,
                                                        strict=True)):
            sim.generate_day(day, count, seed=n, twins=2)
            sim.generate_day(day, sign_ins, seed=10 + n, twins=1, log=ACTIVITY_LOGS.path.rsplit("/", 1)[-1])
        os.environ.update(
            ZOOM_ACCOUNT_ID=sim.account_id,
            ZOOM_CLIENT_ID=sim.client_id,
            ZOOM_CLIENT_SECRET=sim.client_secret,
            ZOOM_API_BASE_URL=sim.base_url,
            ZOOM_OAUTH_TOKEN_URL=sim.token_url,
        )
        from zoom_pipeline.definitions import build_defs

        defs = build_defs(os.environ)
        job = defs.resolve_implicit_global_asset_job_def()
        instance = dg.DagsterInstance.get()
        print(f"Zoom simulator at {sim.base_url}; Dagster instance at {home}")
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        for day in days:
            result = job.execute_in_process(
                partition_key=day, instance=instance, run_config=quiet, raise_on_error=False
            )
            if not result.success:
                print(f"{day}: FAILED, see the log above", file=sys.stderr)
                return 1
            for source in SOURCES:
                [mat] = result.asset_materializations_for_node(source.name)
                meta = {k: v.value for k, v in mat.metadata.items()}
                state = "exact" if meta["day_exact"] else (
                    "still open" if meta["pass"] != "complete"
                    else f"{meta['awaiting_confirmation_records']} awaiting confirmation")
                print(
                    f"{day} {source.title}: {meta['records_from_api']} records from the API, "
                    f"{meta['records_written']} newly written, {meta['dagster/row_count']} stored in "
                    f"{meta['day_objects']} object(s) ({state})"
                )

    print("(today is still open: the 15-minute sensor adds what arrives, the run after midnight completes it)")
    print(f"\nLocal store: {store}")
    for path in sorted(store.rglob("*.json.gz")):
        lines = gzip.decompress(path.read_bytes()).count(b"\n")
        print(f"  {path.relative_to(store)}  ({lines} lines)")
    print("\nTo see these runs, the lineage and the checks in the Dagster UI, run")
    print(f"  DAGSTER_HOME={home} LOCAL_STORE_DIR={store} .venv/bin/dagster dev -w workspace.yaml")
    print("and open http://127.0.0.1:3000 (Ctrl-C stops it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
