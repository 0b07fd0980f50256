"""Pooling in the forward pass: every requested pooling of a batch from one set of hidden states.

The pooling names and their parsing live in :mod:`probekit.core.pooling` (torch-free).
"""

from __future__ import annotations

from probekit.core.pooling import PoolingSpec


def pool_batch(specs: list[PoolingSpec], hidden_states, mask, n_layers: int) -> dict:
    """Every pooling of one batch as float32 tensors (rows, hidden_size of that pooling).

    Args:
        specs: the poolings to compute.
        hidden_states: the model's per-layer outputs (n_layers + 1 tensors of (rows, seq, hidden)),
            or a 1-tuple holding the last hidden state when no pooling needs other layers.
        mask: (rows, seq) attention mask, 1 on real tokens.
        n_layers: the model's number of layers.
    """
    import torch

    cache: dict = {}
    weights = None

    def one(token: str, layer: int):
        nonlocal weights
        if (token, layer) not in cache:
            h = hidden_states[-1] if len(hidden_states) == 1 else hidden_states[layer]
            if token == "cls":
                v = h[:, 0].float()
            else:
                if weights is None:  # masked mean: padding positions get weight 0
                    m = mask.to(torch.float32).unsqueeze(-1)
                    weights = m / m.sum(dim=1, keepdim=True).clamp_min(1.0)
                v = (h.float() * weights).sum(dim=1)
            cache[(token, layer)] = v
        return cache[(token, layer)]

    out = {}
    for s in specs:
        vecs = [one(s.token, i) for i in s.resolve(n_layers)]
        if len(vecs) == 1:
            out[s.name] = vecs[0]
        elif s.agg == "avg":
            out[s.name] = torch.stack(vecs).mean(dim=0)
        else:
            out[s.name] = torch.cat(vecs, dim=1)
    return out
