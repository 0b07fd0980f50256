"""Poolings: names, validation, and every pooling against a direct computation (tiny random BERT)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_config, toy_overrides

from probekit.core.config import EncoderSection
from probekit.core.errors import ConfigError
from probekit.core.pooling import parse_pooling


def test_pooling_names_parse():
    assert parse_pooling("cls").layers == (-1,) and parse_pooling("mean").token == "mean"
    p = parse_pooling("mean_last4_avg")
    assert (p.token, p.layers, p.agg) == ("mean", (-4, -3, -2, -1), "avg")
    assert p.resolve(6) == (3, 4, 5, 6) and p.hidden_size(384) == 384
    c = parse_pooling("cls_layers0.2_concat")
    assert c.resolve(2) == (0, 2) and c.hidden_size(32) == 64
    assert parse_pooling("mean_layer1").resolve(6) == (1,)
    assert parse_pooling("cls_last1").layers == (-1,)


@pytest.mark.parametrize("name, match", [
    ("max", "is not one of"), ("mean_last4", "end it with _avg or _concat"), ("cls_layer2_avg", "drop the _avg"),
    ("cls_last0_avg", "K >= 1"), ("mean_layers1.1_avg", "names a layer twice"), ("CLS", "is not one of"),
])
def test_bad_pooling_names_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        parse_pooling(name)


def test_a_layer_the_model_lacks_is_refused():
    with pytest.raises(ValueError, match="layer index 9 is outside 0..6"):
        parse_pooling("mean_layer9").resolve(6)
    with pytest.raises(ValueError, match="outside 0..2"):
        parse_pooling("mean_last4_avg").resolve(2)


@pytest.mark.parametrize("overrides, match", [
    (("encoder.pooling='max'",), r"\[encoder\] pooling: pooling 'max' is not one of"),
    (("encoder.extra_poolings=['cls']",), "name a pooling twice"),
    (("encoder.dtype='float64'",), r"\[encoder\] dtype='float64' is not one of"),
    (("encoder.quantize='int8'", "encoder.dtype='bfloat16'"), "set encoder.dtype='float32' or 'auto'"),
    (("encoder.long_text='window'", "encoder.window_stride=100"), r"window_stride=100 must be in 0..63"),
    (("encoder.window_agg='median'",), "window_agg='median' is not one of"),
    (("encoder.shard_rows=0",), "shard_rows=0 must be >= 1"),
])
def test_bad_encoder_settings_are_one_line_errors(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_config(tmp_path, *overrides)


def test_encoder_poolings_put_the_default_first():
    assert EncoderSection().poolings == ("cls", "mean")
    assert EncoderSection(pooling="mean", extra_poolings=()).poolings == ("mean",)


POOLINGS = ["cls", "mean", "mean_last2_avg", "cls_layers0.2_concat", "mean_layer1", "cls_last2_avg"]


def _reference(model, tokenizer, text: str, name: str) -> np.ndarray:
    """One text alone, no padding: the pooling computed from its hidden states by hand."""
    import torch

    with torch.inference_mode():
        hs = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states
    p = parse_pooling(name)
    vecs = [hs[i][0, 0] if p.token == "cls" else hs[i][0].mean(0) for i in p.resolve(len(hs) - 1)]
    v = torch.stack(vecs).mean(0) if p.agg == "avg" else torch.cat(vecs)
    return v.numpy()


def test_every_pooling_from_one_forward_pass_matches_a_direct_computation(tiny_encoder):
    torch = pytest.importorskip("torch")
    from probekit.stages.extract.engine.loading import load_encoder, make_extractor

    enc = EncoderSection(model=str(tiny_encoder), dtype="float32")
    tokenizer, model = load_encoder(enc, str(tiny_encoder), True, "cpu")
    assert model.config._attn_implementation == "sdpa"
    texts = ["happy", "the sad movie was so very gloomy today", "my friend", "angry angry mad rage it is", "a"]
    ex = make_extractor(enc, tokenizer, model, "cpu", poolings=POOLINGS)
    ex.max_tokens = 16  # several batches, each padded to its own longest text
    arrays, stats = ex.encode(texts)
    assert stats["n_batches"] > 1 and stats["padded_tokens"] > stats["real_tokens"]
    assert ex.dims["cls_layers0.2_concat"] == 64 and arrays["cls_layers0.2_concat"].shape == (5, 64)
    for name in POOLINGS:
        assert arrays[name].dtype == np.float32
        for i, t in enumerate(texts):
            np.testing.assert_allclose(arrays[name][i], _reference(model, tokenizer, t, name), atol=2e-5,
                                       err_msg=f"{name}, text {i}")
    assert torch.is_inference_mode_enabled() is False


def test_extract_writes_every_pooling_and_keys_on_them(tmp_path, toy_data, tiny_encoder):
    pytest.importorskip("torch")
    from probekit.core.cache_reader import read_cache
    from probekit.core.errors import CacheError
    from probekit.core.runfolder import features_dir
    from probekit.stages.extract.encode import run_extract

    base = toy_overrides(toy_data, tiny_encoder)
    c = read_cache(run_extract(make_config(tmp_path, *base, "encoder.extra_poolings=['mean', 'cls_last2_concat']")))
    assert c.poolings == ["cls", "mean", "cls_last2_concat"] and c.X("test", "cls_last2_concat").shape == (16, 64)
    np.testing.assert_allclose(c.X("test", "cls_last2_concat")[:, 32:], c.X("test"), atol=1e-6)  # last layer's [CLS]
    key, mean = c.manifest["cache_key"], np.array(c.X("test", "mean"))
    with pytest.raises(CacheError, match="no pooling 'mean_last2_avg'"):
        c.X("test", "mean_last2_avg")
    c2 = read_cache(run_extract(make_config(tmp_path, *base, "encoder.pooling='mean'", "encoder.extra_poolings=[]")))
    assert c2.manifest["cache_key"] != key and c2.poolings == ["mean"] and c2.manifest["pooling"] == "mean"
    np.testing.assert_allclose(c2.X("test"), mean, atol=1e-6)
    assert sorted(p.name for p in features_dir(c2.path.parent).parent.iterdir()) == ["features"]
