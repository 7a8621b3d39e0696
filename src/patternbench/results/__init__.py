"""A run's results, offline: the run directory's layout, each case's summary and claims,
trials and intervals, baselines, the report and its plots. Nothing here talks to a cluster."""
