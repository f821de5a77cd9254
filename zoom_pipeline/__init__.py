"""zoom_pipeline: Zoom operation logs to S3, exactly once, as Dagster daily partitions."""
