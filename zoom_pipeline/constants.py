"""Names and defaults shared across the project (configuration enters in `definitions.py`)."""

# Each source's prefixes and part names are in sources.py.
DEFAULT_PAGE_SIZE = 300
ZOOM_MAX_PAGE_SIZE = 300  # the most records Zoom serves on one page of a report
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_API_BASE_URL = "https://api.zoom.us/v2"
DEFAULT_OAUTH_TOKEN_URL = "https://zoom.us/oauth/token"
DEFAULT_LOCAL_STORE_DIR = ".zoom_store"

# Zoom keeps operation logs for a rolling ~6 months ("Only provide report in recent 6 months"): the
# oldest day it still serves is taken as UTC today minus this many days.
RETENTION_DAYS = 179

PART_SUFFIX = ".json.gz"

# Dagster names used by assets, checks, automation, instance config and tests.
ZOOM_API_POOL = "zoom_api"
DAY_MATCHES_ZOOM = "day_matches_zoom"
DAY_MATCHES_FRESH_LISTING = "day_matches_fresh_listing"
YESTERDAY_LANDED = "yesterday_landed_by_deadline"
WINDOW_COLLECTED = "every_day_in_zoom_window_collected"

# Days one backfill run collects, one after another with one client (ZOOM_BACKFILL_DAYS_PER_RUN): a
# six-month backfill is then 6 runs, few enough that run start-up is no longer the cost.
DEFAULT_BACKFILL_DAYS_PER_RUN = 30
