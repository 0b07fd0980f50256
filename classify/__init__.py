"""The classify stage: scikit-learn models on the cached features (no torch)."""
