"""Partial fine-tuning and the cheaper training forward: which layers train, and what they skip.

* :func:`encoder_layers` finds a model's list of encoder layers (BERT, RoBERTa, MiniLM,
  ELECTRA: ``encoder.layer``; DistilBERT: ``transformer.layer``).
* :func:`freeze_below` freezes the embeddings and every layer under the top ``train_layers``
  (``requires_grad`` off, eval mode: no dropout, so their output is a function of the text).
* :class:`FrozenStates` runs that frozen part once per text (length-sorted batches, no
  gradients) and keeps each text's hidden states (float32, flat with offsets, in memory);
  :func:`from_states` then swaps the embeddings for those states and the layer list for its
  trained top, so a step costs only the top layers.
* :func:`cls_only_last_layer`: the classification heads read only position 0 of the last
  layer; its query, attention output and feed-forward run for that row alone (keys and values
  for every token), about a seventh of a 6-layer model's work, with the same loss and gradients.

torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

from probekit.core.errors import ProbekitError

_LAYER_PATHS = (("encoder", "layer"), ("transformer", "layer"))


def encoder_layers(model):
    """(the module holding the layer list, its attribute name, the list) of a sequence-classification model.

    Raises:
        ProbekitError: a model whose layer list is not where BERT- or DistilBERT-style models keep it.
    """
    base = model.base_model
    for outer, attr in _LAYER_PATHS:
        holder = getattr(base, outer, None)
        layers = getattr(holder, attr, None)
        if holder is not None and layers is not None and hasattr(base, "embeddings") and len(layers):
            return holder, attr, layers
    raise ProbekitError(f"[finetune] train_layers: cannot find the encoder's layer list in {type(base).__name__} "
                        "(probekit knows encoder.layer and transformer.layer); use train_layers=0 (all layers).")


def check_train_layers(model, k: int) -> int:
    """The number of frozen layers under the top `k` (k = 0: all layers train, none frozen).

    Raises:
        ProbekitError: k outside 0..n_layers, or a model whose layer list cannot be found.
    """
    if k == 0:
        return 0
    n = len(encoder_layers(model)[2])
    if not 0 <= k <= n:
        raise ProbekitError(f"[finetune] train_layers={k}: the model has {n} encoder layers; use 0 (all layers) "
                            f"to {n}.")
    return n - k


def freeze_below(model, n_frozen: int) -> list:
    """Freeze the embeddings and the bottom `n_frozen` layers; return the frozen modules."""
    layers = encoder_layers(model)[2]
    frozen = [model.base_model.embeddings, *layers[:n_frozen]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


class _States:
    """Stands in for the embeddings: returns the hidden states set for the current batch."""

    def __init__(self):
        self.value = None

    def __call__(self, *args, **kwargs):
        return self.value


@contextlib.contextmanager
def from_states(model, n_frozen: int):
    """Within: the model starts at layer `n_frozen` from states given with ``feed.value = ...``; yields feed."""
    import torch

    base = model.base_model
    holder, attr, layers = encoder_layers(model)
    embeddings, feed = base.embeddings, _States()
    base.__dict__["embeddings"] = feed  # shadows the submodule without registering a module
    setattr(holder, attr, torch.nn.ModuleList(list(layers)[n_frozen:]))
    try:
        yield feed
    finally:
        del base.__dict__["embeddings"]
        assert base.embeddings is embeddings
        setattr(holder, attr, layers)


@contextlib.contextmanager
def frozen_part(model, n_frozen: int):
    """Within: the base model runs the embeddings and the bottom `n_frozen` layers only."""
    import torch

    holder, attr, layers = encoder_layers(model)
    setattr(holder, attr, torch.nn.ModuleList(list(layers)[:n_frozen]))
    try:
        yield model.base_model
    finally:
        setattr(holder, attr, layers)


class FrozenStates:
    """The output of the frozen bottom for some rows of a split (float32, real tokens only), computed once.

    Args:
        tok: the split's token arrays; rows: the rows to keep (positions in `tok`).
        make_inputs: rows -> the model inputs of those rows (padded tensors).
    """

    def __init__(self, model, n_frozen: int, tok, rows, make_inputs, batch_size: int, device: str, amp_context):
        import torch

        from probekit.stages.extract.finetune.batches import sorted_batches

        rows = np.asarray(rows)
        lengths = tok.lengths[rows]
        self.index = {int(r): j for j, r in enumerate(rows)}  # row of the split -> slot here
        self.offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        self.states = np.zeros((int(self.offsets[-1]), model.config.hidden_size), dtype=np.float32)
        model.eval()  # the caller restores its modes
        with torch.inference_mode(), frozen_part(model, n_frozen) as base, amp_context():
            for pos in sorted_batches(lengths, batch_size):
                inputs = {k: v.to(device) for k, v in make_inputs(rows[pos]).items()}
                out = base(**inputs).last_hidden_state.float().cpu().numpy()
                for j, p in enumerate(pos):
                    self.states[self.offsets[p]:self.offsets[p + 1]] = out[j, :lengths[p]]

    @property
    def nbytes(self) -> int:
        return self.states.nbytes

    def batch(self, rows, width: int):
        """(len(rows), width, hidden) float32 tensor: the rows' states, zeros where they are padding."""
        import torch

        out = np.zeros((len(rows), width, self.states.shape[1]), dtype=np.float32)
        for j, r in enumerate(rows):
            s = self.index[int(r)]
            a, b = self.offsets[s], self.offsets[s + 1]
            out[j, :b - a] = self.states[a:b]
        return torch.from_numpy(out)


def _cls_forward(self, hidden_states, attention_mask=None, *args, **kwargs):
    """A BERT layer's forward for the [CLS] row alone: keys and values of every token, the rest of row 0."""
    import torch.nn.functional as F

    att = self.attention.self
    b, t, d = hidden_states.shape
    heads = att.num_attention_heads
    first = hidden_states[:, :1]
    q = att.query(first).view(b, 1, heads, -1).transpose(1, 2)
    k = att.key(hidden_states).view(b, t, heads, -1).transpose(1, 2)
    v = att.value(hidden_states).view(b, t, heads, -1).transpose(1, 2)
    mask = attention_mask[:, :, :1, :] if attention_mask is not None and attention_mask.dim() == 4 else attention_mask
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=att.dropout.p if self.training else 0.0,
                                         scale=att.scaling)
    attention_output = self.attention.output(ctx.transpose(1, 2).reshape(b, 1, d), first)
    return self.output(self.intermediate(attention_output), attention_output)


@contextlib.contextmanager
def cls_only_last_layer(model, on: bool = True):
    """Within: a BERT-style model's last layer computes position 0 only (what the heads read).

    Other families, cross-attention or chunked feed-forward layers are left as they are.
    """
    try:
        layer = encoder_layers(model)[2][-1] if on else None
    except ProbekitError:
        layer = None
    ok = (layer is not None and hasattr(getattr(getattr(layer, "attention", None), "self", None), "query")
          and not getattr(layer, "add_cross_attention", False) and not getattr(layer, "chunk_size_feed_forward", 0)
          and getattr(model.config, "_attn_implementation", "sdpa") in ("sdpa", "eager")
          and hasattr(layer.attention.self, "scaling"))
    if not ok:
        yield False
        return
    layer.forward = types.MethodType(_cls_forward, layer)
    try:
        yield True
    finally:
        del layer.forward
