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
        assert entry["examples_per_s"] > 0 and 0 < entry["fp32_peak_share"] <= 1
        assert entry["bf16_peak_share"] is None or 0 < entry["bf16_peak_share"] <= 1
        assert 0 <= entry["validation_macro_f1"] <= 1
    assert written["hf_trainer"]["ratio_vs_hf"] == 1.0 and written["train_rows"] == 24
    assert written["conditions"]["validation_rows"] == 12
    out = capsys.readouterr().out
    assert "hf_trainer" in out and "probekit float32" in out and "written:" in out


def test_bench_finetune_settings_are_checked():
    from probekit.core.config import load_config
    from probekit.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[bench\] finetune_rows=0 must be >= 1"):
        load_config(None, ["bench.finetune_rows=0"])
