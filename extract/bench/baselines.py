"""What ``make bench-extract`` compares probekit with, how it counts FLOPs, and the
random-weight models of ``[bench] model_shape``.

* the book's recipe ("Natural Language Processing with Transformers", chapter 2):
  ``Dataset.map`` tokenizing with ``padding=True`` in batches of 1,000 (the default),
  ``set_format("torch")``, then a second batched ``map`` running the model under
  ``torch.no_grad()`` and keeping the [CLS] vector;
* sentence-transformers' ``encode`` with its defaults (length-sorted batches of 32);
* this machine's fp32 matmul peak, the yardstick of the achieved GFLOP/s, measured two
  ways: the fastest single 2048 x 2048 matmul (a burst, as short as 50 ms) and the rate of
  back-to-back matmuls over a second and a half (sustained, closer to the timed runs,
  which last seconds; on these shared machines the burst is 10-20% higher).

Useful FLOPs count real tokens only: 2 x (weights of every Linear layer but the pooler)
per token, plus the attention products (4 x hidden_size x n_layers per pair of tokens
of a text). Padding is work, not useful work. When only the last layer's [CLS] is read,
probekit's last layer computes that row alone; :func:`flop_counter` also counts those
executed FLOPs, so the report shows both.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

BOOK_MAP_BATCH = 1000  # Dataset.map's default batch_size


PEAK_N = {"cpu": 2048, "cuda": 8192}  # the matmul size of the peak: a GPU needs a bigger one to be busy


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def peak_gflops(dtype: str = "float32", n: int | None = None, repeats: int = 10, device: str = "cpu") -> float:
    """The best GFLOP/s of an n x n matmul in `dtype` on `device` (CPU: with torch's current threads).

    Fewer repeats when they would take over a second (bf16 on a CPU that emulates it).
    """
    import torch

    n = n or PEAK_N[device.split(":")[0]]
    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    t = time.perf_counter()
    for _ in range(3):
        a @ b
    _sync(device)
    repeats = max(1, min(repeats, int(3.0 / max(time.perf_counter() - t, 1e-9))))  # 3 warm-ups: ~1 s
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def peak_fp32_gflops(n: int | None = None, repeats: int = 10, device: str = "cpu") -> float:
    """:func:`peak_gflops` in float32."""
    return peak_gflops("float32", n, repeats, device)


def sustained_fp32_gflops(n: int | None = None, seconds: float = 1.5, device: str = "cpu") -> float:
    """The fp32 GFLOP/s of back-to-back n x n matmuls on `device` for `seconds`."""
    import torch

    n = n or PEAK_N[device.split(":")[0]]
    a, b, out = torch.randn(n, n, device=device), torch.randn(n, n, device=device), torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)
    _sync(device)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        torch.mm(a, b, out=out)
        _sync(device)  # one at a time: the loop's clock sees each finish (a GPU queues them otherwise)
        count += 1
    return 2 * n ** 3 * count / elapsed / 1e9


def flop_counter(model):
    """A function: (token lengths, first_token_only) -> forward FLOPs of those texts (no padding).

    With ``first_token_only`` the last layer counts keys and values for every token and the
    rest (query, attention output, feed-forward) for position 0 only, as
    ``extract.fastpath.first_token_only`` runs it.
    """
    import torch

    linear = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and "pooler" not in name)
    if not linear:  # a quantised model: count the fp32 twin's weights instead
        linear = sum(m.weight().numel() for name, m in model.named_modules()
                     if hasattr(m, "weight") and callable(m.weight) and "pooler" not in name)
    cfg = model.config
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    last = linear / layers  # every layer has the same Linear weights
    kv = 2 * d * d

    def count(lengths: np.ndarray, first_token_only: bool = False) -> float:
        lengths = np.asarray(lengths, dtype=np.float64)
        full = 2 * linear * lengths.sum() + 4 * d * layers * (lengths ** 2).sum()
        if not first_token_only:
            return float(full)
        saved = 2 * (last - kv) * (lengths - 1).sum() + 4 * d * (lengths ** 2 - lengths).sum()
        return float(full - saved)

    return count


class BookRecipe:
    """The book's feature extraction, verbatim apart from max_length (for equal truncation), the
    device (the book's `inputs.to(device)`), and token_type_ids only where the tokenizer makes them."""

    def __init__(self, path: str, max_length: int, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.max_length, self.device = max_length, device

    def padded_tokens(self, lengths: np.ndarray) -> int:
        """Every map batch of 1,000 texts is padded to its longest."""
        return int(sum(len(lengths[i:i + BOOK_MAP_BATCH]) * lengths[i:i + BOOK_MAP_BATCH].max()
                       for i in range(0, len(lengths), BOOK_MAP_BATCH)))

    def __call__(self, texts: list[str]) -> np.ndarray:
        import datasets
        import torch

        tokenizer, model = self.tokenizer, self.model

        def tokenize(batch):
            return tokenizer(batch["text"], padding=True, truncation=True, max_length=self.max_length)

        def extract_hidden_states(batch):
            inputs = {k: v.to(self.device) for k, v in batch.items() if k in tokenizer.model_input_names}
            with torch.no_grad():
                last_hidden_state = model(**inputs).last_hidden_state
            return {"hidden_state": last_hidden_state[:, 0].cpu().numpy()}

        ds = datasets.Dataset.from_dict({"text": texts})
        encoded = ds.map(tokenize, batched=True)
        # the book's columns, less those this tokenizer does not make (DistilBERT: no token_type_ids)
        encoded.set_format("torch", columns=[c for c in ("input_ids", "attention_mask", "token_type_ids")
                                             if c in encoded.column_names])
        hidden = encoded.map(extract_hidden_states, batched=True)
        return np.asarray(hidden.with_format("numpy")["hidden_state"], dtype=np.float32)


class SentenceTransformersEncode:
    """``SentenceTransformer(path).encode(texts)`` with its defaults (its own pooling and normalisation)."""

    def __init__(self, path: str, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    def padded_tokens(self, texts: list[str], lengths: np.ndarray) -> int:
        """Its batches: 32 texts in order of decreasing character length, each padded to its longest."""
        lengths = np.minimum(lengths, self.model.max_seq_length)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        return int(sum(len(b) * lengths[b].max() for b in np.array_split(order, range(32, len(order), 32))))

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, show_progress_bar=False), dtype=np.float32)


def random_model(shape: str, out: Path, seed: int = 0) -> str:
    """A model of transformers' default config for model type `shape`, with random weights
    (seeded) and the packaged encoder's tokenizer (bert-base-uncased's vocabulary), saved in
    `out`; a description for the report. No download: timing needs the shape, not the weights.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from probekit.core.config import EncoderSection
    from probekit.core.errors import ConfigError
    from probekit.stages.extract.engine.loading import resolve_model

    hint = "use e.g. 'distilbert' (distilbert-base-uncased's shape) or 'bert', or '' for [encoder] model."
    try:
        config = AutoConfig.for_model(shape)
    except ValueError:
        raise ConfigError(f"[bench] model_shape={shape!r} is not a transformers model type; {hint}") from None
    if config.is_encoder_decoder or not hasattr(config, "vocab_size") or not hasattr(config, "num_hidden_layers"):
        raise ConfigError(f"[bench] model_shape={shape!r} is not a text encoder; {hint}")
    path, _ = resolve_model(EncoderSection())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    torch.manual_seed(seed)
    model = AutoModel.from_config(config).eval()
    takes = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "token_type_ids", "attention_mask") if n in takes]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, model_input_names=names)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return (f"{type(model).__name__}, {shape}'s default shape ({config.num_hidden_layers} layers, "
            f"hidden {config.hidden_size}), random weights (seed {seed})")
