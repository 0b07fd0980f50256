"""A fused CPU forward for BERT-style encoder layers (BERT, RoBERTa, MiniLM, DistilBERT, ...).

Hugging Face's layer runs three query/key/value matmuls, then adds biases, residuals and
GELU as separate passes over memory. On a CPU those passes cost about as much as the
matmuls' last fifth. :func:`fuse_encoder_layers` replaces the ``forward`` of each
matching layer (in eval mode, on the CPU) with one that runs

* one matmul for query, key and value together (their weights concatenated),
* SDPA on views of its output,
* oneDNN linears with the bias and the GELU, or the residual add, fused in
  (``torch.ops.mkldnn._linear_pointwise``, what ``torch.compile`` emits on CPU), on
  weights laid out once in oneDNN's blocked format (:func:`_packed`),

and keeps Hugging Face's LayerNorm modules. The matmuls run on row counts rounded up to a
few steps (:func:`padded_rows`), so that oneDNN compiles a few kernels rather than one per
batch shape; a layer's padded output goes to the next layer as it is. Layers of another
shape are left alone, and nothing is fused unless a check on the first layer reproduces
its original output.
Same weights, same math: the features move by float rounding only (~1e-6 in float32).

When every pooling reads only the last layer's [CLS] vector, :func:`first_token_only`
lets the last layer compute just that row: keys and values for every token, then the
query, attention, output and feed-forward of position 0 alone, which skips about 5/6 of
that layer's work (a seventh of a 6-layer model's).
"""

from __future__ import annotations

import contextlib
import logging
import types
from typing import NamedTuple

logger = logging.getLogger(__name__)


class _Parts(NamedTuple):
    """One encoder layer's pieces, whatever the family calls them (post-LayerNorm layout)."""

    q: object  # the query, key, value and attention-output Linears
    k: object
    v: object
    o: object
    ln_1: object  # LayerNorm after attention + residual
    ffn_in: object  # feed-forward Linears, exact GELU between them
    ffn_out: object
    ln_2: object  # LayerNorm after feed-forward + residual
    act: object
    heads: int
    scaling: float
    causal: bool


def _bert_parts(layer) -> _Parts:
    """BERT, RoBERTa, MiniLM, ELECTRA, ... (``layer.attention.self``, ``layer.intermediate``)."""
    att, out_att, inter = layer.attention.self, layer.attention.output, layer.intermediate
    return _Parts(att.query, att.key, att.value, out_att.dense, out_att.LayerNorm, inter.dense,
                  layer.output.dense, layer.output.LayerNorm, getattr(inter, "intermediate_act_fn", None),
                  int(att.num_attention_heads), float(att.scaling),
                  bool(getattr(att, "is_causal", False) or getattr(layer, "add_cross_attention", False)))


def _distilbert_parts(layer) -> _Parts:
    """DistilBERT's ``TransformerBlock`` (``q_lin`` ... ``out_lin``, ``ffn.lin1``/``lin2``)."""
    att, ffn = layer.attention, layer.ffn
    return _Parts(att.q_lin, att.k_lin, att.v_lin, att.out_lin, layer.sa_layer_norm, ffn.lin1, ffn.lin2,
                  layer.output_layer_norm, getattr(ffn, "activation", None), int(att.n_heads),
                  float(att.scaling), bool(getattr(att, "is_causal", False)))


def _parts(layer) -> _Parts | None:
    """The pieces of a layer we can fuse, or None when it is not one."""
    import torch

    for family in (_bert_parts, _distilbert_parts):
        try:
            p = family(layer)
            break
        except AttributeError:
            continue
    else:
        return None
    if not all(type(m) is torch.nn.Linear and m.bias is not None for m in (p.q, p.k, p.v, p.o, p.ffn_in, p.ffn_out)):
        return None
    if not all(type(m) is torch.nn.LayerNorm for m in (p.ln_1, p.ln_2)):
        return None
    exact_gelu = getattr(p.act, "act", None) is torch.nn.functional.gelu or p.act is torch.nn.functional.gelu
    return p if exact_gelu and not p.causal else None


def padded_rows(m: int) -> int:
    """The row count a fused matmul runs with for m rows: the next of 32, 48, 64, 96, 128, 192, ...

    oneDNN builds (JIT-compiles) a kernel for every new matmul shape, about 6 ms each here;
    with length-sorted batches almost every batch has another row count, and on 4,000
    GoEmotions texts building kernels took as long as running them. Rounding the rows up
    to these steps leaves a few shapes (a full 2,048-token batch pads at most one text's
    worth of rows); the extra rows are zeros whose results are dropped.
    """
    step = 32
    while True:
        if m <= step:
            return step
        if m <= step * 3 // 2:
            return step * 3 // 2
        step *= 2


def _pad(t, rows: int):
    """`t` as a (rows, d) matrix of its elements in row order (d: its last dim), zeros below.

    When `t` is the first rows of a buffer of `rows` rows (a fused layer's output, which the
    next layer reads), that buffer is returned as it is: its rows below are the previous
    layer's padding, whose results are dropped too (a matmul or LayerNorm row depends on its
    own input row only), so they need no zeroing.
    """
    d = t.shape[-1] * (t.shape[-2] if t.dim() == 4 else 1)  # (b, n, heads, dh) -> rows of heads x dh
    m = t.numel() // d
    if t.is_contiguous() and (m == rows or (t.storage_offset() == 0 and t.untyped_storage().nbytes()
                                            == rows * d * t.element_size())):
        return t.as_strided((rows, d), (d, 1))
    out = t.new_empty(rows, d)
    out[:m].view(t.shape).copy_(t)
    out[m:].zero_()
    return out


def _packed(w, rows: int):
    """`w` reordered once into oneDNN's blocked layout for matmuls of about `rows` rows.

    Otherwise oneDNN reorders the plain weight on every call (3-4% of a 384-wide matmul's
    time here). Falls back to `w` on builds without the op.
    """
    import torch

    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    try:
        return reorder(w, rows) if reorder is not None else w
    except RuntimeError:
        return w


def _fused_forward(layer, p: _Parts, rows: int = 2048, first_token_weights: bool = True):
    """The fused forward of `layer`, on copies of its weights laid out now.

    `first_token_weights`: also lay out the query's and the keys'/values' weights apart, for
    ``probekit_first_token_only`` (only the last layer, and the layer checked at load, need them).
    """
    import torch
    import torch.nn.functional as F

    linear_pw = torch.ops.mkldnn._linear_pointwise
    heads, scaling = p.heads, p.scaling
    w_qkv = _packed(torch.cat([p.q.weight, p.k.weight, p.v.weight]).contiguous(), rows)
    b_qkv = torch.cat([p.q.bias, p.k.bias, p.v.bias]).contiguous()
    d = p.q.in_features
    b_q, b_kv = b_qkv[:d], b_qkv[d:]
    split = ((_packed(p.q.weight.contiguous(), 64), _packed(torch.cat([p.k.weight, p.v.weight]).contiguous(), rows))
             if first_token_weights else None)
    w_o, b_o, ln_1 = _packed(p.o.weight, rows), p.o.bias, p.ln_1
    w_i, b_i = _packed(p.ffn_in.weight, rows), p.ffn_in.bias
    w_2, b_2, ln_2 = _packed(p.ffn_out.weight, rows), p.ffn_out.bias, p.ln_2

    def qkv_linear(x, w, b):
        return linear_pw(x, w, b, "none", [], "")

    def first_token(hidden_states, attention_mask):
        """The layer's output at position 0 only, as (b, 1, d)."""
        b, n, d = hidden_states.shape
        m, r = b * n, padded_rows(b)
        if split is None:
            raise RuntimeError("probekit: position 0 alone is computed by the last fused layer only")
        w_q, w_kv = split
        kv = qkv_linear(_pad(hidden_states.reshape(m, d), padded_rows(m)), w_kv, b_kv)[:m]
        kv = kv.view(b, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        x0 = _pad(hidden_states[:, 0], r)
        q = qkv_linear(x0, w_q, b_q)[:b].view(b, heads, 1, d // heads)
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1]  # the query row of position 0
        a = _pad(F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=attention_mask, scale=scaling)
                 .transpose(1, 2), r)
        h = ln_1(linear_pw.binary(a, x0, w_o, b_o, "add"))
        i = linear_pw(h, w_i, b_i, "gelu", [], "none")
        return ln_2(linear_pw.binary(i, h, w_2, b_2, "add"))[:b].view(b, 1, d)

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        if getattr(self, "probekit_first_token_only", False):
            return first_token(hidden_states, attention_mask)
        b, n, d = hidden_states.shape
        m, r = b * n, padded_rows(b * n)
        x = _pad(hidden_states.reshape(m, d), r)
        qkv = qkv_linear(x, w_qkv, b_qkv)[:m].view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attention_mask, scale=scaling)
        a = _pad(a.transpose(1, 2), r)
        h = ln_1(linear_pw.binary(a, x, w_o, b_o, "add"))  # dense(a) + x, one pass
        i = linear_pw(h, w_i, b_i, "gelu", [], "none")  # gelu(dense(h)), exact (erf) GELU
        return ln_2(linear_pw.binary(i, h, w_2, b_2, "add"))[:m].view(b, n, d)

    return types.MethodType(forward, layer)


def fuse_encoder_layers(model, device: str, rows: int = 2048) -> int:
    """Swap in the fused forward on every BERT-style layer; return how many were fused (0: none).

    `rows`: the usual matmul row count (the token budget), for which the weights are laid out.
    """
    import torch

    attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if device != "cpu" or model.training or attn not in ("sdpa", "eager") or not hasattr(
            torch.ops.mkldnn, "_linear_pointwise"):
        return 0
    found = [(m, p) for m in model.modules()
             if not getattr(m, "probekit_fused", False) and (p := _parts(m)) is not None]
    if not found:
        return 0
    last = _last_layer(model)
    first, parts = found[0]
    fused = _fused_forward(first, parts, rows=rows)
    d, dtype = parts.q.in_features, parts.q.weight.dtype
    x = torch.randn(2, 5, d, generator=torch.Generator().manual_seed(0)).to(dtype)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False
    if attn == "eager":  # its mask is added to the scores: 0 where a key is seen, the dtype's minimum where not
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    try:
        with torch.inference_mode():
            want = [first(x, None), first(x, mask)]
            got = [fused(x, None), fused(x, mask)]
            first.probekit_first_token_only = True
            want += [w[:, :1] for w in want]
            got += [fused(x, None), fused(x, mask)]
    except RuntimeError as e:  # an op this build lacks
        logger.info("extract: the fused layer does not run here (%s); keeping the model's own", str(e)[:120])
        return 0
    finally:
        first.probekit_first_token_only = False
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    if not all(torch.allclose(g.float(), w.float(), atol=tol, rtol=tol) for g, w in zip(got, want)):
        logger.info("extract: the fused layer does not reproduce the model's; keeping the model's own")
        return 0
    for layer, p in found:  # the first layer keeps the forward just checked (its weights laid out once)
        layer.forward = fused if layer is first else _fused_forward(layer, p, rows, first_token_weights=layer is last)
        layer.probekit_fused = True
    return len(found)


def _last_layer(model):
    """The model's last encoder layer (whose output is ``last_hidden_state``), or None."""
    import torch

    for stack in ("encoder", "transformer"):  # BERT-style, DistilBERT
        layers = getattr(getattr(model, stack, None), "layer", None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers):
            return layers[-1]
    return None


def fused_last_layer(model):
    """The model's last encoder layer (whose output is ``last_hidden_state``) when it is fused, else None."""
    layer = _last_layer(model)
    return layer if getattr(layer, "probekit_fused", False) else None


@contextlib.contextmanager
def first_token_only(model, on: bool = True):
    """Within the block, the model's fused last layer returns position 0 only ((b, 1, d)).

    For a forward whose caller reads nothing but ``last_hidden_state[:, 0]``; a model with
    no fused last layer runs unchanged.
    """
    layer = fused_last_layer(model) if on else None
    if layer is None:
        yield
        return
    layer.probekit_first_token_only = True
    try:
        yield
    finally:
        layer.probekit_first_token_only = False
