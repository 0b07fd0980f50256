"""The report stage: plots, HTML report and W&B logging, read from the run folder (no torch)."""
