"""The encoder engine: tokenised batches through a frozen model, pooled and streamed to disk."""
