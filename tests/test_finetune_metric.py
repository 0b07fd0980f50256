"""[finetune] metric: binary data stops on the positive class's F1 (auto), as classify selects by it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_config, toy_overrides, toy_rows, write_jsonl

pytest.importorskip("torch")

FT = ["finetune.lr=0.003", "finetune.batch_size=8", "finetune.eval_batch_size=8", "finetune.warmup_ratio=0.0",
      "finetune.patience=0", "finetune.num_threads=1", "finetune.epochs=3"]


@pytest.fixture
def toy_binary(tmp_path):
    """Single-label toy rows with two classes: "joy" rows are the positive class (a quarter of them)."""
    d = tmp_path / "toy2"
    d.mkdir()
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        rows = toy_rows(n, seed, multi=False)
        write_jsonl(d / f"{split}.jsonl", [{**r, "labels": "joy" if r["labels"] == "joy" else "other"} for r in rows])
    return d


def test_binary_fine_tuning_stops_on_the_positive_class_f1(tmp_path, toy_binary, tiny_encoder, caplog):
    import logging

    from sklearn.metrics import f1_score

    from probekit.core.thresholds import tune_binary_threshold
    from probekit.stages.extract.data import load
    from probekit.stages.extract.finetune import run_finetune

    cfg = make_config(tmp_path, *toy_overrides(toy_binary, tiny_encoder, multi=False), *FT)
    assert cfg.finetune.metric == "auto"
    with caplog.at_level(logging.INFO, logger="probekit"):
        out = run_finetune(cfg)
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["metric"] == "positive_f1"  # the resolved name, which the report and classify show
    hist = result["history"]
    assert len(hist) == 3
    assert all(h["validation_metric"] == h["validation_positive_f1"] for h in hist)
    # each epoch's log line names the metric it stops on, with its value
    epochs = [r.getMessage() for r in caplog.records if "finetune: epoch" in r.getMessage()]
    assert len(epochs) == 3
    assert all(f"positive_f1 {h['validation_positive_f1']:.3f} (stops on it)" in m for m, h in zip(epochs, hist))
    best = max(hist, key=lambda h: h["validation_metric"])
    assert result["chosen"]["epoch"] == best["epoch"]
    # the kept epoch's validation scores give that F1 at classify's rule (the F1-best threshold)
    ds = load(cfg.data)
    pos = ds.label_names.index("joy")
    y = (np.asarray(ds.splits["validation"].y) == pos).astype(int)
    p = np.load(out / "scores" / "validation.npy")[:, pos]
    t = tune_binary_threshold(y, p, "f1")
    assert best["validation_positive_f1"] == pytest.approx(f1_score(y, (p >= t).astype(int)), abs=1e-12)


def test_metric_auto_keeps_the_run_key_of_macro_f1_elsewhere(tmp_path, toy_data, tiny_encoder):
    """auto on multi-label data is macro_f1: a run made with the old default is reused, not redone."""
    from probekit.stages.extract.data import load
    from probekit.stages.extract.finetune.stage import run_key

    auto = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), *FT)
    explicit = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), *FT, "finetune.metric='macro_f1'")
    auc = make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), *FT, "finetune.metric='macro_auc'")
    ds = load(auto.data)
    keys = [run_key(c, "m", "r", ds) for c in (auto, explicit, auc)]
    assert keys[0] == keys[1] != keys[2]


def test_positive_f1_on_multi_label_data_is_one_line(tmp_path, toy_data, tiny_encoder, capsys):
    from probekit.cli import main

    args = ["finetune", "--artifacts", str(tmp_path / "a")]
    for o in [*toy_overrides(toy_data, tiny_encoder), "finetune.metric='positive_f1'"]:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert '[finetune] metric="positive_f1" needs binary data (single-label, two labels)' in err
    assert "Traceback" not in err and not list((tmp_path / "a").rglob("finetuned*"))  # stopped before any work
    assert main([*args[:-2], "--set", "finetune.metric='f1'"]) == 2
    assert "[finetune] metric" in capsys.readouterr().err
