"""Where a run embeds: in this process (local) or on a Ray cluster (ray); the driver records either's events."""
