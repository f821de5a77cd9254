"""zoom_pipeline: Zoom operation logs and sign-in/sign-out activity logs to S3, exactly once, by UTC day."""
