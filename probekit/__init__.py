"""probekit: a frozen transformer encoder -> cached features -> classical ML, and what fine-tuning adds."""
