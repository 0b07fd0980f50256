"""The extraction engine: token-budget batches through a frozen encoder, every pooling at once.

:class:`Extractor` tokenizes a list of texts once (fast tokenizer), sorts the rows by
length, cuts batches of at most ``max_tokens`` padded tokens, runs the model under
``torch.inference_mode()`` and computes every requested pooling from the same forward
pass. Results come back in the input order, as float32 arrays. On CUDA the next batches
are padded and pinned in a background thread while the GPU works, copies are
non-blocking, and results are gathered once per call.

    ex = Extractor(tokenizer, model, "cpu", [parse_pooling("cls")], max_length=128, max_tokens=2048)
    arrays, stats = ex.encode(texts)        # {"cls": (n, 384) float32}, {"real_tokens": ..., ...}

torch is imported inside the methods, so importing this module stays torch-free.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from probekit.core.pooling import PoolingSpec, needs_hidden_states
from probekit.stages.extract.engine.batching import Tokenized, aggregate_windows, pad_batch, plan_batches, tokenize
from probekit.stages.extract.engine.fastpath import first_token_only, fused_last_layer
from probekit.stages.extract.engine.pooling import pool_batch

logger = logging.getLogger(__name__)

_DONE = object()


def is_out_of_memory(e: BaseException) -> bool:
    """Whether `e` is torch running out of device (or host) memory."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(e, oom):
        return True
    text = str(e) if isinstance(e, RuntimeError) else ""
    return "out of memory" in text.lower() or "can't allocate memory" in text


class Extractor:
    """A frozen encoder plus how to batch and pool its outputs.

    Args:
        tokenizer: a fast Hugging Face tokenizer.
        model: the encoder, in eval mode, on `device`, in its compute dtype.
        device: "cpu", "cuda" or "cuda:N".
        poolings: the poolings to compute (see ``extract.pooling``).
        max_length: tokens per row, special tokens included.
        max_tokens: padded tokens per forward pass (rows x longest row).
        long_text: "truncate" (keep the first max_length tokens) or "window".
        stride: window mode: tokens shared by consecutive windows.
        window_agg: window mode: "mean" or "max" of a text's window vectors.
        max_rows: most rows per batch (0: only the token budget limits it).
        overlap: pad the next batches in a background thread while the device computes
            (None: on CUDA only, where the copies are pinned and non-blocking too).
    """

    def __init__(self, tokenizer, model, device: str, poolings: list[PoolingSpec], max_length: int,
                 max_tokens: int, long_text: str = "truncate", stride: int = 0, window_agg: str = "mean",
                 max_rows: int = 0, overlap: bool | None = None, workers: int = 1):
        self.tokenizer, self.model, self.device = tokenizer, model, device
        self.poolings = list(poolings)
        self.max_length, self.max_tokens, self.max_rows = max_length, max(max_tokens, max_length), max_rows
        self.long_text, self.stride, self.window_agg = long_text, stride, window_agg
        self.n_layers = int(model.config.num_hidden_layers)
        self.hidden = int(model.config.hidden_size)
        for p in self.poolings:
            try:
                p.resolve(self.n_layers)  # a layer the model does not have fails here, before any work
            except ValueError as e:
                from probekit.core.errors import ProbekitError

                raise ProbekitError(f"[encoder] {e}; choose a layer of this model.") from None
        self.need_hidden_states = needs_hidden_states(self.poolings)
        # Only the last layer's [CLS] is read: a fused last layer computes that row alone.
        self.first_token_only = (all(p.token == "cls" and p.layers == (-1,) for p in self.poolings)
                                 and fused_last_layer(model) is not None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.cuda = str(device).startswith("cuda")
        self.overlap = self.cuda if overlap is None else overlap
        self.oom_halvings = 0  # how often an out-of-memory error halved max_tokens
        self.workers = max(1, workers) if not self.cuda else 1

    @property
    def dims(self) -> dict[str, int]:
        return {p.name: p.hidden_size(self.hidden) for p in self.poolings}

    def tokenize(self, texts: list[str]) -> Tokenized:
        return tokenize(self.tokenizer, texts, self.max_length, self.long_text, self.stride)

    def encode(self, texts: list[str], bar=None) -> tuple[dict[str, np.ndarray], dict]:
        return self.encode_tokenized(self.tokenize(texts), bar=bar)

    def encode_tokenized(self, tok: Tokenized, bar=None) -> tuple[dict[str, np.ndarray], dict]:
        """Every pooling of every text of `tok`, in input order, and counts of what was done.

        An out-of-memory error halves the token budget (``max_tokens``, kept for later calls)
        and computes the chunk again; batches run longest first, so that error comes early.

        Args:
            tok: the output of :meth:`tokenize`.
            bar: an optional tqdm bar, advanced by texts.

        Raises:
            ProbekitError: out of memory with a budget of one full-length row.
        """
        halvings = 0
        while True:
            start = bar.n if bar is not None else 0
            try:
                out, stats = self._encode_once(tok, bar)
                stats.update(oom_halvings=halvings, max_tokens=self.max_tokens)
                return out, stats
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                self._after_oom(e, start, bar)
                halvings += 1

    def _after_oom(self, error: Exception, bar_start: float, bar) -> None:
        """Free what the failed batch held and halve the token budget, or give up at one row."""
        import gc

        import torch

        from probekit.core.errors import ProbekitError

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
        if self.max_tokens <= self.max_length:
            raise ProbekitError(
                f"extract: out of memory on {self.device} with one text of up to {self.max_length} tokens per "
                "batch; lower encoder.max_length, set encoder.dtype='bfloat16', or use another device "
                f"({type(error).__name__})."
            ) from None
        old, self.max_tokens = self.max_tokens, max(self.max_length, self.max_tokens // 2)
        self.oom_halvings += 1
        logger.warning("extract: out of memory on %s with %d tokens per batch; halved the token budget to %d "
                       "and carrying on (set encoder.max_batch_tokens=%d to start there)", self.device, old,
                       self.max_tokens, self.max_tokens)
        if bar is not None:  # the chunk starts again: take back what the failed pass counted
            bar.n = bar_start
            bar.refresh()

    def _encode_once(self, tok: Tokenized, bar=None) -> tuple[dict[str, np.ndarray], dict]:
        import torch

        t0 = time.perf_counter()
        batches = plan_batches(tok.lengths, self.max_tokens, self.max_rows)
        rows_out = {name: np.empty((tok.n_rows, d), dtype=np.float32) for name, d in self.dims.items()}
        padded = 0
        per_row = tok.n_texts / max(tok.n_rows, 1)  # the bar counts texts, batches hold rows (windows)
        with torch.inference_mode(), first_token_only(self.model, self.first_token_only):
            if self.overlap:
                padded = self._run_overlapped(tok, batches, rows_out, bar, per_row)
            elif self.workers > 1 and len(batches) > 1:
                padded = self._run_workers(tok, batches, rows_out, bar, per_row)
            else:
                lock = threading.Lock()
                padded = sum(self._run_batch(tok, rows, rows_out, bar, per_row, lock) for rows in batches)
        out = {name: aggregate_windows(X, tok.sample, tok.n_texts, self.window_agg) for name, X in rows_out.items()}
        stats = {"n_texts": tok.n_texts, "n_rows": tok.n_rows, "n_truncated": tok.n_truncated,
                 "real_tokens": int(tok.offsets[-1]), "padded_tokens": int(padded), "n_batches": len(batches),
                 "seconds": time.perf_counter() - t0}
        return out, stats

    def _forward(self, ids, mask, full: bool) -> dict:
        # A batch of equal lengths (common once sorted) needs no mask: attention skips building one.
        out = self.model(input_ids=ids, attention_mask=None if full else mask,
                         output_hidden_states=self.need_hidden_states)
        states = out.hidden_states if self.need_hidden_states else (out.last_hidden_state,)
        return pool_batch(self.poolings, states, mask, self.n_layers)

    def _run_batch(self, tok: Tokenized, rows, rows_out: dict, bar, per_row: float, lock) -> int:
        """Pad, encode and store one batch (in the caller's thread); its padded token count."""
        import torch

        ids, mask = pad_batch(tok, rows, self.pad_id)
        with torch.inference_mode():  # per thread: a worker's too
            pooled = self._forward(torch.from_numpy(ids), torch.from_numpy(mask), bool(mask.all()))
        for name, v in pooled.items():
            rows_out[name][rows] = v.numpy()
        if bar is not None:
            with lock:
                bar.update(len(rows) * per_row)
        return ids.size

    def _run_workers(self, tok: Tokenized, batches: list, rows_out: dict, bar, per_row: float) -> int:
        """CPU: `workers` threads of one torch thread each, each taking the next batch as it frees up.

        On a few cores this beats splitting every op across them: no core waits for the others
        at each op's end (on shared machines one core is often slower than another). The model
        is shared (read-only); its hidden-states capture is per thread in transformers.
        """
        from concurrent.futures import ThreadPoolExecutor

        import torch

        threads, lock = torch.get_num_threads(), threading.Lock()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="probekit-encode",
                                  initializer=torch.set_num_threads, initargs=(1,))
        try:
            return sum(f.result() for f in [pool.submit(self._run_batch, tok, rows, rows_out, bar, per_row, lock)
                                            for rows in batches])
        finally:
            pool.shutdown(cancel_futures=True)
            torch.set_num_threads(threads)  # a worker's setting is also the default of threads started later

    def _run_overlapped(self, tok: Tokenized, batches: list, rows_out: dict, bar, per_row: float) -> int:
        """Pad (and on CUDA pin) in a producer thread; copy in and out without blocking; gather at the end."""
        import torch

        q: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def produce():
            try:
                for rows in batches:
                    if stop.is_set():
                        return
                    ids, mask = pad_batch(tok, rows, self.pad_id)
                    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                    if self.cuda:
                        ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
                    q.put((rows, ids_t, mask_t, bool(mask.all())))
            except BaseException as e:  # surfaced in the consumer
                q.put(e)
                return
            q.put(_DONE)

        thread = threading.Thread(target=produce, name="probekit-pad", daemon=True)
        thread.start()
        pending, padded = [], 0
        try:
            while (item := q.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                rows, ids, mask, full = item
                padded += ids.numel()
                ids = ids.to(self.device, non_blocking=True)
                mask = mask.to(self.device, non_blocking=True)
                host = self._forward(ids, mask, full)
                if self.cuda:  # into pinned buffers, without waiting; read after the synchronize below
                    for name, v in host.items():
                        host[name] = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
                        host[name].copy_(v, non_blocking=True)
                pending.append((rows, host))
                if bar is not None:
                    bar.update(len(rows) * per_row)
            if self.cuda:
                torch.cuda.synchronize(self.device)
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)
        for rows, host in pending:
            for name, v in host.items():
                rows_out[name][rows] = v.numpy()
        return padded
