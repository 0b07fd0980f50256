"""Token-budget batches, padding, input order, long texts in windows, compute dtypes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from probekit.stages.extract.engine.batching import Tokenized, aggregate_windows, pad_batch, plan_batches


def _tok(lengths) -> Tokenized:
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    ids = np.arange(1, offsets[-1] + 1, dtype=np.int64)
    return Tokenized(ids=ids, offsets=offsets, sample=np.arange(len(lengths)), n_texts=len(lengths), n_truncated=0)


def test_batches_cover_every_row_once_within_the_budget():
    lengths = np.random.default_rng(0).integers(1, 60, size=500)
    batches = plan_batches(lengths, max_tokens=256)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(500))
    assert all(len(b) * lengths[b].max() <= 256 for b in batches)
    longest = [lengths[b].max() for b in batches]
    assert longest == sorted(longest, reverse=True)  # longest first
    assert all(len(b) <= 7 for b in plan_batches(lengths, max_tokens=10_000, max_rows=7))
    assert [len(b) for b in plan_batches(np.array([300, 5]), max_tokens=100)] == [1, 1]  # a row over budget goes alone


def test_padding_is_right_sided_and_masked():
    tok = _tok([3, 1, 2])
    ids, mask = pad_batch(tok, np.array([2, 0, 1]), pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 0], [1, 2, 3], [4, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 1, 1], [1, 0, 0]])


def test_windows_fold_into_one_row_per_text():
    X = np.arange(10, dtype=np.float32).reshape(5, 2)
    sample = np.array([0, 0, 1, 2, 2])
    np.testing.assert_allclose(aggregate_windows(X, sample, 3, "mean"), [[1, 2], [4, 5], [7, 8]])
    np.testing.assert_allclose(aggregate_windows(X, sample, 3, "max"), [[2, 3], [4, 5], [8, 9]])
    assert aggregate_windows(X, np.arange(5), 5, "mean") is X


@pytest.fixture
def tiny(tiny_encoder):
    pytest.importorskip("torch")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import load_encoder

    enc = EncoderSection(model=str(tiny_encoder), dtype="float32", max_length=12)
    tokenizer, model = load_encoder(enc, str(tiny_encoder), True, "cpu")
    return enc, tokenizer, model


def test_order_is_restored_whatever_the_batching(tiny):
    from probekit.stages.extract.engine.loading import make_extractor

    enc, tokenizer, model = tiny
    rng = np.random.default_rng(1)
    words = "happy sad angry the movie was my friend so very gloomy".split()
    texts = [" ".join(rng.choice(words, rng.integers(1, 15))) for _ in range(40)]
    ex = make_extractor(enc, tokenizer, model, "cpu", poolings=["cls", "mean"])
    results = []
    for budget in (12, 40, 1000):
        ex.max_tokens = budget
        results.append(ex.encode(texts)[0])
    one = make_extractor(enc, tokenizer, model, "cpu", poolings=["cls", "mean"])
    singles = [one.encode([t])[0] for t in texts[:5]]
    for arrays in results:
        for name in ("cls", "mean"):
            np.testing.assert_allclose(arrays[name], results[0][name], atol=2e-5)
            for i, s in enumerate(singles):
                np.testing.assert_allclose(arrays[name][i], s[name][0], atol=2e-5)


def _window_reference(tokenizer, model, text, max_length, stride, name, agg):
    """Every window of `text` encoded alone, then pooled and aggregated by hand."""
    import torch

    enc = tokenizer(text, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True)
    vecs = []
    with torch.inference_mode():
        for ids in enc["input_ids"]:
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            vecs.append((h[0] if name == "cls" else h.mean(0)).numpy())
    return len(vecs), (np.mean(vecs, axis=0) if agg == "mean" else np.max(vecs, axis=0))


@pytest.mark.parametrize("agg", ["mean", "max"])
def test_long_texts_in_windows(tiny, agg):
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import make_extractor

    _, tokenizer, model = tiny
    enc = EncoderSection(model="x", max_length=12, long_text="window", window_stride=3, window_agg=agg)
    long = " ".join(["happy sad angry the movie was my friend"] * 4)  # 32 word tokens: several windows
    texts = ["glad", long, "so very gloomy today", long[:60]]
    ex = make_extractor(enc, tokenizer, model, "cpu", poolings=["cls", "mean"])
    arrays, stats = ex.encode(texts)
    assert stats["n_texts"] == 4 and stats["n_truncated"] == 2 and stats["n_rows"] > 6
    for name in ("cls", "mean"):
        assert arrays[name].shape == (4, 32)
        for i, t in enumerate(texts):
            n_windows, ref = _window_reference(tokenizer, model, t, 12, 3, name, agg)
            assert (n_windows > 1) == (i in (1, 3))
            np.testing.assert_allclose(arrays[name][i], ref, atol=2e-5, err_msg=f"{name} text {i}")
    trunc = make_extractor(EncoderSection(model="x", max_length=12), tokenizer, model, "cpu", ["cls"])
    cut, tstats = trunc.encode(texts)
    assert tstats["n_truncated"] == 2 and tstats["n_rows"] == 4
    np.testing.assert_allclose(cut["cls"][0], arrays["cls"][0], atol=2e-5)  # short texts: one window, no change
    assert not np.allclose(cut["cls"][1], arrays["cls"][1], atol=1e-3)


def test_bfloat16_and_int8_stay_close_to_float32(tiny_encoder):
    pytest.importorskip("torch")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import load_encoder, make_extractor, resolve_dtype

    texts = ["happy glad joy", "the sad movie was so very gloomy today", "my friend is angry"] * 3
    out = {}
    for dtype, quantize in (("float32", "none"), ("bfloat16", "none"), ("float32", "int8")):
        enc = EncoderSection(model=str(tiny_encoder), dtype=dtype, quantize=quantize)
        assert resolve_dtype(enc, "cpu") == dtype
        tokenizer, model = load_encoder(enc, str(tiny_encoder), True, "cpu", dtype, quantize)
        out[dtype + quantize] = make_extractor(enc, tokenizer, model, "cpu")
        out[dtype + quantize] = out[dtype + quantize].encode(texts)[0]["mean"]
    ref = out["float32none"]
    for other in ("bfloat16none", "float32int8"):
        X = out[other]
        assert X.dtype == np.float32
        cos = (X * ref).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() > 0.98, other


def test_overlapped_padding_gives_the_same_features_and_surfaces_errors(tiny, monkeypatch):
    """The CUDA pipeline (a padding thread feeding the device) run on the CPU."""
    import threading

    from probekit.stages.extract.engine import extractor
    from probekit.stages.extract.engine.loading import make_extractor

    enc, tokenizer, model = tiny
    texts = ["happy glad", "the sad movie was so very gloomy today", "my friend", "a"] * 5
    plain = make_extractor(enc, tokenizer, model, "cpu")
    piped = make_extractor(enc, tokenizer, model, "cpu")
    piped.overlap, piped.max_tokens = True, 24  # several batches through the queue
    a, b = plain.encode(texts), piped.encode(texts)
    for name in a[0]:
        np.testing.assert_allclose(b[0][name], a[0][name], atol=1e-6)
    assert b[1]["n_batches"] > 3 and b[1]["padded_tokens"] >= b[1]["real_tokens"]

    def broken(*args):
        raise RuntimeError("padding failed")

    monkeypatch.setattr(extractor, "pad_batch", broken)
    with pytest.raises(RuntimeError, match="padding failed"):
        piped.encode(texts)
    assert not any(t.name == "probekit-pad" for t in threading.enumerate())


@pytest.mark.parametrize("family", ["tiny_encoder", "tiny_distilbert"])
def test_fused_cpu_layers_give_the_model_s_own_features(family, request):
    pytest.importorskip("torch")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import load_encoder, make_extractor

    model_dir = request.getfixturevalue(family)  # a BERT, or a DistilBERT (other module names)
    texts = ["happy glad joy", "the sad movie was so very gloomy today", "my friend", "a b c"] * 3
    out = {}
    for fuse in (False, True):
        enc = EncoderSection(model=str(model_dir), dtype="float32", fuse_layers=fuse,
                             extra_poolings=("mean", "mean_last2_avg", "cls_layers0.1_concat"))
        tokenizer, model = load_encoder(enc, str(model_dir), True, "cpu")
        assert getattr(model, "probekit_fused_layers", 0) == (2 if fuse else 0)
        ex = make_extractor(enc, tokenizer, model, "cpu")
        ex.max_tokens = 40  # padded batches: the attention mask goes through the fused layers too
        out[fuse] = ex.encode(texts)[0]
    for name in out[False]:
        np.testing.assert_allclose(out[True][name], out[False][name], atol=1e-5, err_msg=name)
    enc = EncoderSection(model=str(model_dir), quantize="int8")
    assert getattr(load_encoder(enc, str(model_dir), True, "cpu", "float32", "int8")[1],
                   "probekit_fused_layers", 0) == 0  # quantised Linear layers are not fused


@pytest.mark.parametrize("family", ["tiny_encoder", "tiny_distilbert"])
def test_cls_only_runs_the_last_layer_on_position_0_alone(family, request):
    pytest.importorskip("torch")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.fastpath import fused_last_layer
    from probekit.stages.extract.engine.loading import load_encoder, make_extractor

    model_dir = request.getfixturevalue(family)
    texts = ["happy glad joy", "the sad movie was so very gloomy today", "my friend", "a b c"] * 3
    enc = EncoderSection(model=str(model_dir), dtype="float32", fuse_layers=False)
    want = make_extractor(enc, *load_encoder(enc, str(model_dir), True, "cpu"), "cpu").encode(texts)[0]["cls"]
    enc = EncoderSection(model=str(model_dir), dtype="float32")
    tokenizer, model = load_encoder(enc, str(model_dir), True, "cpu")
    shapes, last = [], fused_last_layer(model)
    assert last is (model.transformer if family == "tiny_distilbert" else model.encoder).layer[-1]
    last.register_forward_hook(lambda m, args, out: shapes.append(tuple(out.shape)))
    ex = make_extractor(enc, tokenizer, model, "cpu", poolings=["cls"])
    ex.max_tokens = 40  # padded batches: position 0's row of the attention mask is used
    got = ex.encode(texts)[0]["cls"]
    assert ex.first_token_only and shapes and all(s[1] == 1 for s in shapes)
    np.testing.assert_allclose(got, want, atol=1e-5)
    shapes.clear()  # another pooling reads every position: the last layer computes them all
    make_extractor(enc, tokenizer, model, "cpu", poolings=["cls", "mean"]).encode(texts)
    assert shapes and any(s[1] > 1 for s in shapes)
    assert not getattr(last, "probekit_first_token_only", False)  # reset after the pass


def test_fused_matmuls_run_on_few_row_counts():
    from probekit.stages.extract.engine.fastpath import padded_rows

    assert [padded_rows(m) for m in (1, 32, 33, 48, 49, 97, 2000, 2048, 2049)] == [
        32, 32, 48, 48, 64, 128, 2048, 2048, 3072]
    # a 2,048-token budget: every full batch of texts up to 128 tokens runs as 2,048 rows
    assert {padded_rows((2048 // n) * n) for n in range(1, 129)} == {2048}
    assert len({padded_rows(m) for m in range(1, 4097)}) == 15


def test_only_bert_style_layers_on_the_cpu_are_fused(tiny_encoder):
    torch = pytest.importorskip("torch")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.fastpath import fuse_encoder_layers
    from probekit.stages.extract.engine.loading import load_encoder

    enc = EncoderSection(model=str(tiny_encoder), fuse_layers=False)
    model = load_encoder(enc, str(tiny_encoder), True, "cpu")[1]
    assert fuse_encoder_layers(model, "cuda:0") == 0  # oneDNN fusions are for the CPU
    model.train()
    assert fuse_encoder_layers(model, "cpu") == 0  # dropout would be skipped
    model.eval()
    model.encoder.layer[1].intermediate.intermediate_act_fn = torch.nn.ReLU()
    assert fuse_encoder_layers(model, "cpu") == 1  # the layer whose activation is not GELU keeps its own
    assert fuse_encoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)), "cpu") == 0
    from transformers import DistilBertConfig, DistilBertModel

    for act, n in (("gelu", 2), ("relu", 0)):  # DistilBERT's layers too, when their GELU is exact
        small = DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2, hidden_dim=24, activation=act,
                                 attn_implementation="sdpa")
        assert fuse_encoder_layers(DistilBertModel(small).eval(), "cpu") == n
    # eager attention (an additive float mask) too: the model's own output, padding included
    small = DistilBertConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2, hidden_dim=24, attn_implementation="eager")
    eager = DistilBertModel(small).eval()
    ids, mask = torch.randint(5, 50, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = mask[2, 2:] = 0
    with torch.inference_mode():
        want = eager(input_ids=ids, attention_mask=mask).last_hidden_state
        assert fuse_encoder_layers(eager, "cpu") == 2
        got = eager(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], atol=1e-5, rtol=1e-5)


def test_layers_are_fused_once_and_only_the_last_lays_out_its_query_apart():
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel

    from probekit.stages.extract.engine.fastpath import fuse_encoder_layers, fused_last_layer

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=24, attn_implementation="sdpa")
    model = BertModel(config).eval()
    assert fuse_encoder_layers(model, "cpu") == 3
    forwards = [layer.forward for layer in model.encoder.layer]
    assert fuse_encoder_layers(model, "cpu") == 0  # fused already: left as they are
    assert [layer.forward for layer in model.encoder.layer] == forwards
    x = torch.randn(2, 5, 16)
    middle = model.encoder.layer[1]
    middle.probekit_first_token_only = True  # position 0 alone is the last layer's job: its weights are not kept
    with pytest.raises(RuntimeError, match="last fused layer only"), torch.inference_mode():
        middle(x)
    middle.probekit_first_token_only = False
    last = fused_last_layer(model)
    with torch.inference_mode():
        full = last(x)
        last.probekit_first_token_only = True
        torch.testing.assert_close(last(x), full[:, :1], atol=1e-5, rtol=1e-5)


def test_a_fused_layer_reads_the_previous_layer_s_padded_buffer_without_a_copy():
    torch = pytest.importorskip("torch")
    from probekit.stages.extract.engine.fastpath import _packed, _pad

    buf = torch.randn(48, 8)  # a fused layer's output: 40 real rows of 48
    got = _pad(buf[:40].view(5, 8, 8), 48)
    assert got.data_ptr() == buf.data_ptr() and got.shape == (48, 8)  # the buffer itself, no copy
    for t in (torch.randn(5, 8, 8), buf[8:48].view(5, 8, 8), buf.view(6, 8, 8)[:5].transpose(1, 2)):
        got = _pad(t, 48)  # not the head of a 48-row buffer: copied and zero-padded
        assert got.data_ptr() != buf.data_ptr()
        np.testing.assert_array_equal(got[:t.numel() // 8].numpy(), t.reshape(-1, 8).numpy())
        assert not got[t.numel() // 8:].any()
    w, b, x = torch.randn(16, 8), torch.randn(16), torch.randn(48, 8)
    linear = torch.ops.mkldnn._linear_pointwise
    np.testing.assert_allclose(linear(x, _packed(w, 48), b, "none", [], "").numpy(),
                               torch.nn.functional.linear(x, w, b).numpy(), atol=1e-5)


def test_cpu_workers_give_the_same_features_in_order_and_leave_nothing_behind(tiny_encoder, monkeypatch):
    torch = pytest.importorskip("torch")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine import extractor
    from probekit.stages.extract.engine.loading import load_encoder, make_extractor

    class Bar:  # what the extractor asks of a tqdm bar
        n = 0

        def update(self, k):
            self.n += k

    texts = ["happy glad joy", "the sad movie was so very gloomy today", "my friend", "a b c d e f g", "x"] * 6
    threads, out, names = torch.get_num_threads(), {}, set()
    for workers in (1, 3):
        enc = EncoderSection(model=str(tiny_encoder), dtype="float32", cpu_workers=workers,
                             extra_poolings=("mean", "mean_last2_avg"))
        tokenizer, model = load_encoder(enc, str(tiny_encoder), True, "cpu")
        model.embeddings.register_forward_hook(lambda *a: names.add(threading.current_thread().name))
        ex = make_extractor(enc, tokenizer, model, "cpu")
        ex.max_tokens = 40  # many batches
        names.clear()
        bar = Bar()
        out[workers] = ex.encode(texts, bar=bar)[0]
        assert ex.workers == workers and bar.n == pytest.approx(len(texts))
    assert names and all(n.startswith("probekit-encode") for n in names)  # the batches ran in the workers
    for name in out[1]:
        np.testing.assert_allclose(out[3][name], out[1][name], atol=1e-6, err_msg=name)
    assert torch.get_num_threads() == threads  # the caller's thread count is as it was
    calls = []

    def broken(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("padding failed")
        return pad_batch(*args)

    monkeypatch.setattr(extractor, "pad_batch", broken)
    with pytest.raises(RuntimeError, match="padding failed"):
        ex.encode(texts)
    assert not any(t.name.startswith("probekit-encode") for t in threading.enumerate())
    assert torch.get_num_threads() == threads and not getattr(model.encoder.layer[-1], "probekit_first_token_only", 0)
