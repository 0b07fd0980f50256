"""The sentence-transformers peers of the extraction bench (extract/bench/peers.py, peer_exports.py).

The checks of names and packages run everywhere; st_torch needs sentence-transformers; the ONNX
and OpenVINO peers need the ``peers`` extra and skip without it. All build from the tiny random
BERT (tests/conftest.py), offline.
"""

from __future__ import annotations

import numpy as np
import pytest

from probekit.core.errors import ProbekitError
from probekit.stages.extract.bench import peer_exports, peers

TEXTS = ["happy day", "the movie was very sad", "my friend is so angry today", "a", "scared of the news",
         "glad it was a joy", "i cry tears", "it is gloomy and the day was bad"]


def _cosine(A, B):
    return (A * B).sum(1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))


def test_a_missing_package_is_one_line_naming_the_peers_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(peers, "_present", lambda module: module == "sentence_transformers")
    assert peers.missing_packages(["st_torch"]) == []
    assert peers.missing_packages(["st_onnx", "st_onnx_int8"]) == ["onnxruntime", "optimum-onnx"]
    assert peers.missing_packages() == ["onnxruntime", "optimum-onnx", "openvino", "nncf", "optimum-intel",
                                        "datasets"]
    peers.check_peers(["st_torch"])
    with pytest.raises(ProbekitError, match=r"^bench peers st_torch, st_openvino need openvino, nncf, optimum-intel, "
                                            r"datasets, not installed: run pip install -e '\.\[peers\]'"):
        peers.check_peers(["st_torch", "st_openvino"])
    with pytest.raises(ProbekitError, match=r"need onnxruntime, optimum-onnx, not installed"):  # before any export
        peers.build_peers(["st_onnx_int8"], tmp_path / "no-model", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ProbekitError, match=r"'st_tensorrt' is not a peer; choose from st_torch, st_onnx, "):
        peers.check_peers(["st_tensorrt"])


def test_peer_names_and_precisions_are_those_of_the_bench_json():
    assert peers.PEERS == ("st_torch", "st_onnx", "st_openvino", "st_onnx_int8", "st_openvino_int8")
    assert [n for n in peers.PEERS if peers.PRECISION[n] == "int8"] == ["st_onnx_int8", "st_openvino_int8"]
    assert peer_exports.onnx_quantization_isa() in ("arm64", "avx2", "avx512", "avx512_vnni")
    assert "sentence-transformers" in peer_exports.VERSIONED


def test_an_export_is_renamed_into_place_only_when_complete(tmp_path):
    final = tmp_path / "cache" / "st_onnx-abc"
    with pytest.raises(RuntimeError, match="exporter failed"), peer_exports._staged(final) as tmp:
        (tmp / "half.onnx").write_text("x")
        raise RuntimeError("exporter failed")
    assert not final.exists() and list((tmp_path / "cache").iterdir()) == []  # nothing half-written is left
    with peer_exports._staged(final) as tmp:
        (tmp / "model.onnx").write_text("x")
    assert (final / "model.onnx").read_text() == "x" and len(list((tmp_path / "cache").iterdir())) == 1


def test_the_export_key_follows_the_weights_and_the_calibration(tiny_encoder):
    key = peer_exports._key(tiny_encoder, "onnx")
    assert key == peer_exports._key(tiny_encoder, "onnx") and len(key) == 12
    assert key != peer_exports._key(tiny_encoder, "openvino")
    weights = next(tiny_encoder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # a retrained model is a new export
    assert peer_exports._key(tiny_encoder, "onnx") != key


def _tiny_reference(folder, texts):
    """The tiny BERT's last layer: [CLS] rows and masked means, straight from transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return hidden[:, 0].numpy(), ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def test_st_torch_peer_gives_the_cls_row_or_sentence_transformers_mean(tiny_encoder, tmp_path):
    pytest.importorskip("sentence_transformers")
    cls, mean = _tiny_reference(tiny_encoder, TEXTS)
    peer = peers.build_peer("st_torch", tiny_encoder, tmp_path / "cache", pooling="cls", max_length=16)
    assert peer.precision == "fp32" and peer.model.max_seq_length == 16
    assert peer.detail == {"backend": "torch", "precision": "fp32", "pooling": "cls", "max_seq_length": 16}
    X = peer(TEXTS)
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(X, cls, atol=1e-5)
    mean_peer = peers.build_peer("st_torch", tiny_encoder, tmp_path / "cache", max_length=16)
    assert _cosine(mean_peer(TEXTS), mean).min() > 0.99999
    lengths = np.array([len(peer.model.tokenizer(t)["input_ids"]) for t in TEXTS])
    assert peer.padded_tokens(TEXTS, lengths) == len(TEXTS) * lengths.max()  # one batch of 32, padded to its longest
    with pytest.raises(ProbekitError, match=r"pooling='max' is not one of mean, cls"):
        peers.build_peer("st_torch", tiny_encoder, tmp_path / "cache", pooling="max")


def test_onnx_peers_export_once_and_match_torch(tiny_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.onnxruntime")
    cls, _ = _tiny_reference(tiny_encoder, TEXTS)
    cache = tmp_path / "cache"
    built = peers.build_peers(["st_onnx", "st_onnx_int8"], tiny_encoder, cache, pooling="cls", max_length=16,
                              threads=1)
    fp32, int8 = built["st_onnx"](TEXTS), built["st_onnx_int8"](TEXTS)
    assert fp32.shape == int8.shape == (len(TEXTS), 32)
    assert _cosine(fp32, cls).min() > 0.99999
    assert 0.8 < _cosine(int8, cls).min() < 1 - 1e-7  # quantised: close, not equal
    assert built["st_onnx_int8"].detail["file"].startswith("onnx/model_") and built["st_onnx_int8"].precision == "int8"
    folders = sorted(p.name for p in cache.iterdir())
    assert [f.split("-")[0] for f in folders] == ["st_onnx", "st_onnx_int8"]
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*.onnx")}
    again = peers.build_peer("st_onnx", tiny_encoder, cache, pooling="cls", max_length=16)  # reuses the export
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.onnx")} == stamp
    np.testing.assert_allclose(again(TEXTS), fp32, atol=1e-6)


@pytest.mark.slow
def test_openvino_peers_calibrate_on_given_texts(tiny_encoder, tmp_path):
    for module in ("openvino", "optimum.intel", "nncf", "datasets"):
        pytest.importorskip(module)
    cls, _ = _tiny_reference(tiny_encoder, TEXTS)
    cache = tmp_path / "cache"
    with pytest.raises(ProbekitError, match="st_openvino_int8 needs calibration texts"):
        peers.build_peer("st_openvino_int8", tiny_encoder, cache, calibration_texts=["  "])
    built = peers.build_peers(["st_openvino", "st_openvino_int8"], tiny_encoder, cache, pooling="cls",
                              max_length=16, threads=1, ov_precision="f32", calibration_texts=TEXTS * 4)
    assert built["st_openvino"].detail["inference_precision"] == "f32"
    assert _cosine(built["st_openvino"](TEXTS), cls).min() > 0.9999
    int8 = built["st_openvino_int8"]
    assert int8.detail["file"] == "openvino/openvino_model_qint8_quantized.xml"
    assert int8.detail["quantization"] == "static int8 (NNCF), 32 texts"
    assert 0.8 < _cosine(int8(TEXTS), cls).min() < 1 - 1e-7
