"""Fine-tuning's token arrays: every split tokenized once, batches padded from them (torch only for tensors).

Texts are tokenized once per run with the extraction engine's :func:`tokenize` (flat ids with
offsets). A training epoch orders the rows as Hugging Face's ``group_by_length`` does
(:class:`LengthGroupedSampler`: shuffled, then sorted by length within mega-batches of 50
batches), so a batch holds texts of similar length; each batch is padded to its own longest
text with :func:`pad_batch`, without a collator. Prediction runs length-sorted batches.
"""

from __future__ import annotations

import numpy as np

from probekit.stages.extract.engine.batching import Tokenized, pad_batch, tokenize


def tokenize_split(tokenizer, texts: list[str], max_length: int) -> Tokenized:
    return tokenize(tokenizer, texts, max_length)


def inputs(tok: Tokenized, rows, pad_id: int, type_ids: bool) -> dict:
    """The model inputs of `rows` (tensors), right-padded to their longest."""
    import torch

    ids, mask = pad_batch(tok, np.asarray(rows), pad_id)
    out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if type_ids:
        out["token_type_ids"] = torch.zeros_like(out["input_ids"])
    return out


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Positions of `lengths` in each batch of one epoch, in HF Trainer's group_by_length order."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    order = np.fromiter(LengthGroupedSampler(batch_size, lengths=[int(n) for n in lengths], generator=generator),
                        dtype=np.int64, count=len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Positions in batches of `batch_size`, shortest first (prediction and the frozen states)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
