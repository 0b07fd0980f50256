"""make bench-finetune on tiny data: HF Trainer and probekit side by side, the JSON and the table."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_config, toy_overrides

pytest.importorskip("torch")
pytest.importorskip("accelerate")  # HF Trainer's dependency: the bench extra


def test_bench_finetune_runs_on_tiny_data_and_writes_its_json(tmp_path, toy_data, tiny_encoder, capsys):
    from probekit.stages.extract.bench.finetune import run_bench_finetune

    cfg = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), "bench.finetune_rows=24",
                      "bench.finetune_validation_rows=12", "bench.finetune_turn_steps=2", "finetune.batch_size=8",
                      "finetune.eval_batch_size=8", "finetune.num_threads=1")
    result = run_bench_finetune(cfg)
    written = json.loads((tmp_path / "artifacts" / "bench" / "finetune.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert {"default_dtype", "hf_trainer", "probekit"} <= set(written)
    assert written["default_dtype"] in written["probekit"] and "float32" in written["probekit"]
    keys = {"examples_per_s", "ratio_vs_hf", "useful_gflops", "fp32_peak_share", "bf16_peak_share",
            "validation_macro_f1", "rss_mb"}
    for entry in [written["hf_trainer"], *written["probekit"].values()]:
        assert keys <= set(entry)
        assert entry["examples_per_s"] > 0
        # one share per method, against the ceiling of the precision it computes in, never above 100%
        own = entry["fp32_peak_share"] if entry["dtype"] == "float32" else entry["bf16_peak_share"]
        other = entry["bf16_peak_share"] if entry["dtype"] == "float32" else entry["fp32_peak_share"]
        assert 0 < own <= 1 and other is None
        assert 0 <= entry["validation_macro_f1"] <= 1
    assert written["hf_trainer"]["ratio_vs_hf"] == 1.0 and written["train_rows"] == 24
    assert written["conditions"]["validation_rows"] == 12
    out = capsys.readouterr().out
    assert "hf_trainer" in out and "probekit float32" in out and "written:" in out


def test_shares_are_bounded_by_a_method_faster_than_every_peak_sample():
    """A busy moment during a peak sample cannot push a share above 100%: the method bounds the ceiling."""
    from probekit.stages.extract.bench.finetune_report import format_table, summarise

    results = {"hf_trainer": {"seconds": 10.0, "validation_macro_f1": 0.1},
               "probekit.float32": {"seconds": 5.0, "validation_macro_f1": 0.12},
               "probekit.bfloat16": {"seconds": 2.0, "validation_macro_f1": 0.11}}
    # 6 x 1e6 parameters x 1e4 tokens = 60 GFLOP: 6, 12 and 30 GFLOP/s
    r = summarise(results, 100, 10_000, 1_000_000, {"float32": [8.0, 10.0], "bfloat16": [20.0]}, "bfloat16")
    fp32 = {"gflops": 12.0, "sampled_max": 10.0, "peak_source": "bounded by probekit.float32"}
    assert r["ceilings"]["float32"] == fp32
    assert r["ceilings"]["bfloat16"]["peak_source"] == "bounded by probekit.bfloat16"
    assert r["probekit"]["float32"]["fp32_peak_share"] == 1.0 and r["hf_trainer"]["fp32_peak_share"] == 0.5
    assert r["probekit"]["bfloat16"]["bf16_peak_share"] == 1.0 and r["probekit"]["bfloat16"]["fp32_peak_share"] is None
    assert r["probekit"]["bfloat16"]["ratio_vs_hf"] == 5.0 and r["probekit"]["float32"]["f1_delta_vs_hf"] == 0.02
    assert "bounded by probekit.float32" in format_table(r)
    # a CPU that emulates bf16 and runs float32 only: no bf16 ceiling, no bf16 share
    del results["probekit.bfloat16"]
    r = summarise(results, 100, 10_000, 1_000_000, {"float32": [20.0], "bfloat16": [1.0]}, "float32")
    assert r["peak_bf16_gflops"] is None and "bfloat16" not in r["ceilings"]
    assert r["probekit"]["float32"]["fp32_peak_share"] == 0.6 and r["probekit"]["float32"]["bf16_peak_share"] is None


def test_bench_finetune_settings_are_checked():
    from probekit.core.config import load_config
    from probekit.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[bench\] finetune_rows=0 must be >= 1"):
        load_config(None, ["bench.finetune_rows=0"])
