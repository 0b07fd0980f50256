"""The encoder side (torch, transformers, datasets): the extract stage, fine-tuning and their benchmarks."""
