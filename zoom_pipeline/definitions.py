"""Everything Dagster loads: `dagster dev -m zoom_pipeline.definitions` (workspace.yaml) and the CLI.

Configuration enters in zoom_pipeline/config.py; this module only builds the definitions from the
environment when Dagster loads it.
"""

from zoom_pipeline.config import build_defs, build_resources

__all__ = ["build_defs", "build_resources", "defs"]

defs = build_defs()
