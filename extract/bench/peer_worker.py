"""The process that runs the bench's peers in their own venv: ``python -m probekit.stages.extract.bench.peer_worker``.

The peers' exporters pin an older transformers than probekit's, so ``make bench-extract`` runs them
in ``.venv-peers`` ([bench] peers_python): the bench starts this worker there once, and it builds
the peers once, then encodes on request. One JSON object a line each way (stdin, stdout):

    {"op": "build", "names", "path", "cache_dir", "texts", "lengths", "max_length", "pooling", "threads"}
        -> {"ok": true, "detail": {name: {...}}, "versions": {...}}
    {"op": "encode", "name", "n", "save"}  encodes the first n texts with one peer, timing that call
        alone; "save": an .npy path for the vectors, or null -> {"ok": true, "seconds", "padded_tokens"}
    {"op": "quit"}

A failure answers {"ok": false, "error": "<one line>"}; its traceback goes to stderr, the log.
Anything a library prints goes to stderr too, so stdout carries the protocol alone.
:class:`Peers` is the same work in-process ([bench] peers_python = "").
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback

import numpy as np

from probekit.core.errors import ProbekitError


class Peers:
    """The built peers and the bench's texts; :meth:`encode` times one peer's call."""

    def __init__(self):
        self.peers: dict = {}
        self.texts: list[str] = []
        self.lengths = np.zeros(0, dtype=np.int64)

    def build(self, names, path, cache_dir, texts, lengths, max_length, pooling, threads=None, ov_precision=None):
        from probekit.stages.extract.bench.peer_exports import library_versions
        from probekit.stages.extract.bench.peers import build_peers

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.texts, self.lengths = list(texts), np.asarray(lengths, dtype=np.int64)
        self.peers = build_peers(names, path, cache_dir, calibration_texts=self.texts, max_length=max_length,
                                 pooling=pooling, threads=threads, ov_precision=ov_precision)
        return {"detail": {n: p.detail for n, p in self.peers.items()}, "versions": library_versions()}

    def encode(self, name, n, save=None):
        peer, texts = self.peers[name], self.texts[:n]
        start = time.perf_counter()
        X = peer(texts)
        seconds = time.perf_counter() - start
        if save:
            np.save(save, X)
        return {"seconds": seconds, "padded_tokens": peer.padded_tokens(texts, self.lengths[:n])}


def serve(requests, reply) -> None:
    """Answer each request line of `requests` with one dict passed to `reply`, until "quit" or the end."""
    peers = Peers()
    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        op = req.pop("op", None)
        if op == "quit":
            reply({"ok": True})
            return
        try:
            if op not in ("build", "encode"):
                raise ProbekitError(f"bench peer worker: unknown op {op!r}")
            reply({"ok": True, **getattr(peers, op)(**req)})
        except ProbekitError as e:
            reply({"ok": False, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - the parent names it in one line; the traceback goes to the log
            traceback.print_exc()
            reply({"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]})


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # what libraries print (progress bars, exporters' notes) goes to the log
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")

    def reply(obj: dict) -> None:
        protocol.write(json.dumps(obj) + "\n")
        protocol.flush()

    serve(sys.stdin, reply)


if __name__ == "__main__":
    main()
