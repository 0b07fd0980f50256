"""Issue 14: one process per core with DDP over gloo, against one process with intra-op threads.

Fine-tuning on a CPU can use its cores two ways: one process whose matmuls split over every
core (torch intra-op threads, what probekit does), or one single-threaded process per core,
each taking half of every batch, with DDP averaging the gradients over gloo after each
backward. This script trains the packaged MiniLM on the first N GoEmotions train texts, one
epoch, batch 32, with the same loop in both ways, and reports examples/s, in interleaved
rounds:

* ``threads``: 1 process, ``torch.set_num_threads(cores)``, batch 32;
* ``ddp``: ``cores`` processes, 1 thread each, ``DistributedDataParallel`` over gloo, each rank
  the rows ``rank::cores`` of the same batch of 32 (the same examples per step);
* each of the two again with the word embeddings frozen (11.7 M of MiniLM's 22.7 M parameters:
  no dense gradient, optimiser update or all-reduce for them), the profile's next lever.

The loop is probekit's pieces: its tokenizer arrays, Hugging Face's group_by_length batch
order (extract.finetune.batches), the [CLS]-only last layer, autocast to the dtype ``auto``
picks (bf16 on a CPU with native bf16), BCE, fused AdamW, gradient clipping. Setup (loading,
tokenizing, DDP's first broadcast) is outside the clock; the first 3 steps are warm-up.

Run from the repository root:

    .venv/bin/python docs/experiments/ddp_gloo.py ../shared/data/goemotions 2000

The output of 2026-12-05 is in docs/finetune.md ("DDP over gloo").
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import torch

WARMUP = 3


def train(rank: int, world: int, data: str, n: int, threads: int, seconds_file: str, frozen_words: bool) -> None:
    """One epoch; rank 0 writes (timed examples, seconds, final loss) to `seconds_file`."""
    import torch.distributed as dist
    from transformers import get_linear_schedule_with_warmup, set_seed

    import probekit.stages.extract.finetune.batches as B
    import probekit.stages.extract.finetune.layers as L
    from probekit.core.config import load_config
    from probekit.stages.extract.data import load
    from probekit.stages.extract.engine.loading import resolve_model
    from probekit.stages.extract.finetune.loss import label_matrix
    from probekit.stages.extract.finetune.steps import amp_dtype, autocast, load_model

    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    cfg = load_config("configs/goemotions-local.toml", [f"data.path={data!r}"])
    ds = load(cfg.data)  # probekit's loader: the release TSVs, labels as the stages read them
    names, train_split = ds.label_names, ds.splits["train"]
    texts, Y = train_split.texts[:n], label_matrix(train_split.y[:n], len(names)).astype(np.float32)
    path, local = resolve_model(dataclasses.replace(cfg.encoder, model=cfg.finetune.model or cfg.encoder.model))
    set_seed(cfg.run.seed)
    tokenizer, model, _ = load_model(cfg, path, local, names, multi=True)
    model.train()
    if frozen_words:  # no dense gradient, optimiser update or all-reduce for the word embeddings
        model.get_input_embeddings().weight.requires_grad_(False)
    inner = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    tok = B.tokenize_split(tokenizer, texts, cfg.finetune.max_length or cfg.encoder.max_length)
    type_ids = "token_type_ids" in tokenizer.model_input_names
    amp = amp_dtype("auto", "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.finetune.lr, fused=True)
    plan = B.epoch_batches(tok.lengths, cfg.finetune.batch_size, cfg.run.seed)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(plan))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seen, losses = 0, []
    for b, pos in enumerate(plan):
        if b == WARMUP:
            if world > 1:
                dist.barrier()
            t0 = time.perf_counter()
        mine = pos[rank::world]
        inputs = B.inputs(tok, mine, tokenizer.pad_token_id or 0, type_ids)
        with L.cls_only_last_layer(inner), autocast("cpu", amp):
            logits = model(**inputs).logits.float()
        loss = loss_fn(logits, torch.from_numpy(Y[mine]))
        loss.backward()  # DDP: the gradients are averaged over the ranks here
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.finetune.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if b >= WARMUP:
            seen += len(pos)
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - t0
    if rank == 0:
        with open(seconds_file, "w", encoding="utf-8") as f:
            f.write(f"{seen} {seconds} {np.mean(losses[-20:])} {amp}")
    if world > 1:
        dist.destroy_process_group()


def _spawned(rank, world, data, n, out, frozen_words):
    train(rank, world, data, n, 1, out, frozen_words)


WAYS = {  # name -> (DDP, word embeddings frozen)
    "threads": (False, False),
    "ddp": (True, False),
    "threads, frozen words": (False, True),
    "ddp, frozen words": (True, True),
}


def run(way: str, data: str, n: int, cores: int) -> tuple[float, float, str]:
    fd, out = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    ddp, frozen_words = WAYS[way]
    if not ddp:
        train(0, 1, data, n, cores, out, frozen_words)
    else:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000))
        torch.multiprocessing.spawn(_spawned, args=(cores, data, n, out, frozen_words), nprocs=cores, join=True)
    with open(out, encoding="utf-8") as f:
        seen, seconds, loss, amp = f.read().split()
    os.unlink(out)
    return int(seen) / float(seconds), float(loss), amp


def main(data: str, n: int, rounds: int = 2) -> None:
    cores = len(os.sched_getaffinity(0))
    rates: dict = {k: [] for k in WAYS}
    losses: dict = {}
    for r in range(rounds):
        for way in (list(WAYS) if r % 2 == 0 else list(WAYS)[::-1]):
            rate, losses[way], amp = run(way, data, n, cores)
            rates[way].append(rate)
            print(f"round {r + 1} {way:22s} {rate:7.1f} examples/s  (mean train loss of the last 20 steps "
                  f"{losses[way]:.4f}, {amp})", flush=True)
    best = {k: max(v) for k, v in rates.items()}
    print(f"\n{n} GoEmotions train texts, one epoch, batch 32, {cores} cores, {amp} autocast, best of {rounds} "
          "interleaved rounds")
    print(f"{'way':56s} {'examples/s':>10s} {'x threads':>9s} {'loss':>7s}")
    label = {"threads": f"1 process, {cores} intra-op threads", "ddp": f"{cores} processes x 1 thread, DDP gloo"}
    for way in WAYS:
        name = label[way.split(",")[0]] + (", word embeddings frozen" if "frozen" in way else "")
        print(f"{name:56s} {best[way]:10.1f} {best[way] / best['threads']:9.2f} {losses[way]:7.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000, int(sys.argv[3]) if len(sys.argv) > 3 else 2)
