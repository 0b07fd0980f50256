"""Tokenize once, sort by length, and cut token-budget batches (torch-free).

A chunk of texts is tokenized in one call of the fast tokenizer. With
``long_text="truncate"`` a text keeps its first ``max_length`` tokens; with ``"window"``
it is split into ``max_length`` windows that share ``stride`` tokens, each window is
encoded as its own row, and :func:`aggregate_windows` folds the window vectors back into
one vector per text. Rows are sorted longest first and grouped so that a batch holds at
most ``max_tokens`` padded tokens: padding stays within a batch of near-equal lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Tokenized:
    """Token ids of a chunk's rows (one row per text, or per window), flat with offsets."""

    ids: np.ndarray  # int64, every row's ids back to back
    offsets: np.ndarray  # int64 (n_rows + 1,): row r is ids[offsets[r]:offsets[r + 1]]
    sample: np.ndarray  # int64 (n_rows,): the text each row came from (non-decreasing)
    n_texts: int
    n_truncated: int  # texts longer than max_length (cut, or split into windows)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1


# With long_text="truncate" only a text's head is tokenized: its first HEAD_CHARS_PER_TOKEN x
# max_length characters (at least MIN_HEAD_CHARS), cut at a space, grown while it yields too few
# tokens. A 50 MB one-line text cost minutes and GBs when tokenized whole; its head costs
# microseconds, and gives the same first max_length tokens.
HEAD_CHARS_PER_TOKEN = 64
MIN_HEAD_CHARS = 4096


def text_heads(tokenizer, texts: list[str], max_length: int) -> list[str]:
    """Each text, or for a long one the head that holds more than its first `max_length` tokens."""
    out = list(texts)
    cap = max(MIN_HEAD_CHARS, HEAD_CHARS_PER_TOKEN * max_length)
    todo = [i for i, t in enumerate(texts) if len(t) > cap]
    while todo:
        heads = [_cut(texts[i], cap) for i in todo]
        counts = tokenizer(heads, add_special_tokens=False, return_attention_mask=False,
                           return_token_type_ids=False)["input_ids"]
        short = []
        for i, head, ids in zip(todo, heads, counts):
            if len(ids) > max_length:  # already past max_length: the text is truncated at that same token
                out[i] = head
            else:
                short.append(i)
        cap *= 4
        todo = [i for i in short if len(texts[i]) > cap]  # the others are tokenized whole
    return out


def _cut(text: str, n: int) -> str:
    """The first `n` characters, ending at the last space of their second half (a word is not cut)."""
    space = text.rfind(" ", n // 2, n)
    return text[:space if space > 0 else n]


def tokenize(tokenizer, texts: list[str], max_length: int, long_text: str = "truncate",
             stride: int = 0) -> Tokenized:
    """Tokenize `texts` with the fast tokenizer: one row per text, or per window."""
    if long_text == "truncate":
        texts = text_heads(tokenizer, texts, max_length)
    enc = tokenizer(texts, truncation=True, max_length=max_length, stride=stride if long_text == "window" else 0,
                    return_overflowing_tokens=True, return_attention_mask=False, return_token_type_ids=False)
    rows = enc["input_ids"]
    sample = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    n_windows = np.bincount(sample, minlength=len(texts))
    n_truncated = int(np.count_nonzero(n_windows > 1))
    if long_text == "truncate" and n_truncated:
        # With overflow on, a long text yields several windows; the first one is exactly
        # the plain truncation.
        first = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
        rows = [rows[j] for j in first]
        sample = sample[first]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(offsets[-1]))
    return Tokenized(ids=flat, offsets=offsets, sample=sample, n_texts=len(texts), n_truncated=n_truncated)


def plan_batches(lengths: np.ndarray, max_tokens: int, max_rows: int = 0) -> list[np.ndarray]:
    """Row indices of each batch: longest rows first, at most `max_tokens` padded tokens each.

    Longest first, so that an out-of-memory error shows on the first batch, not the last.
    """
    order = np.argsort(-lengths, kind="stable")
    batches, i, n = [], 0, len(order)
    while i < n:
        rows = max(1, max_tokens // max(int(lengths[order[i]]), 1))  # the first row is the longest
        if max_rows:
            rows = min(rows, max_rows)
        batches.append(order[i:i + rows])
        i += rows
    return batches


def pad_batch(tok: Tokenized, rows: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), int64 arrays of shape (len(rows), longest row), right-padded."""
    lengths = tok.lengths[rows]
    col = np.arange(int(lengths.max()))
    real = col[None, :] < lengths[:, None]
    ids = np.full(real.shape, pad_id, dtype=np.int64)
    # Gather every row's tokens at once: position (r, c) reads ids[offset_r + c] where c < length_r.
    ids[real] = tok.ids[(tok.offsets[rows][:, None] + col[None, :])[real]]
    return ids, real.astype(np.int64)


def aggregate_windows(X: np.ndarray, sample: np.ndarray, n_texts: int, agg: str) -> np.ndarray:
    """Fold window rows (grouped by text, in order) into one row per text: mean or max."""
    if len(sample) == n_texts:
        return X
    starts = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]])
    if agg == "max":
        return np.maximum.reduceat(X, starts, axis=0)
    counts = np.diff(np.r_[starts, len(sample)]).astype(np.float32)
    return (np.add.reduceat(X, starts, axis=0) / counts[:, None]).astype(np.float32)
