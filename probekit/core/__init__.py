"""What every stage shares: the typed config, the run folder and feature cache, errors, metrics."""
