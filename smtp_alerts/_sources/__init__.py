"""Sources above the engine: jobs, heartbeats, crash hooks and the cron wrapper."""
