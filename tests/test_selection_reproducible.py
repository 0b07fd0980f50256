"""The same classify on the same features, into two artifacts folders, gives the same test metrics."""

from __future__ import annotations

import json

import numpy as np
from conftest import ROOT, make_config

from probekit.stages.classify.train import run_classify

DEMO_MODELS = ["dummy", "dummy_stratified", "dummy_most_frequent", "tfidf_logreg", "logreg", "random_forest",
               "hybrid_logreg", "logreg_chain", "random_forest_ovr", "sgd_stream"]


def demo_cache(run_dir) -> None:
    """The demo's texts and labels (extract/demo), with seeded 16-d features carrying the labels (no encoder)."""
    from probekit.core.cache import CacheWriter
    from probekit.core.runfolder import features_dir

    demo = ROOT / "extract" / "demo"
    names = (demo / "labels.txt").read_text().split()
    rng = np.random.default_rng(0)
    W = rng.normal(size=(len(names), 16))
    with CacheWriter(features_dir(run_dir)) as w:
        for split in ("train", "validation", "test"):
            rows = [json.loads(line) for line in (demo / f"{split}.jsonl").read_text().splitlines()]
            Y = np.array([[n in r["labels"] for n in names] for r in rows], dtype=np.uint8)
            X = (rng.normal(size=(len(rows), 16)) + 0.8 * Y @ W).astype(np.float32)
            w.add_split(split, X, Y, [r["text"] for r in rows], [r["id"] for r in rows])
        w.commit({"label_names": names, "problem_type": "multi_label", "hidden_size": 16, "dtype": "float32",
                  "cache_key": "demo-fake", "model_id": "fake", "pooling": "cls", "max_length": 128})


def numbers(block, path: str = "") -> dict[str, float]:
    """Every number in a metrics.json block, by its path."""
    if isinstance(block, dict):
        return {k: v for key, value in block.items() for k, v in numbers(value, f"{path}/{key}").items()}
    if isinstance(block, list):
        return {k: v for i, value in enumerate(block) for k, v in numbers(value, f"{path}/{i}").items()}
    return {path: float(block)} if isinstance(block, (int, float)) and not isinstance(block, bool) else {}


def test_two_runs_into_two_artifacts_folders_give_the_same_test_metrics(tmp_path):
    runs = []
    for folder in ("first", "second"):
        cfg = make_config(tmp_path / folder, "classify.n_bootstrap=100",
                          f"classify.models={DEMO_MODELS!r}", "classify.n_jobs=-1",
                          "classify.logreg.C=[0.1, 1.0]", "classify.logreg_chain.C=[0.1]",
                          "classify.random_forest.n_estimators=30", "classify.random_forest_ovr.n_estimators=10",
                          "classify.tfidf_logreg.C=[1.0, 4.0]", "classify.hybrid_logreg.emb_weight=[0.5, 1.0]",
                          "classify.refit='train+validation'", preset=str(ROOT / "configs" / "demo.toml"))
        demo_cache(cfg.run_dir)
        runs.append(json.loads(run_classify(cfg).read_text()))
    a, b = runs
    assert a["models"].keys() == b["models"].keys() and len(a["models"]) == len(DEMO_MODELS)
    for name in a["models"]:
        got, want = numbers(a["models"][name]["test"]), numbers(b["models"][name]["test"])
        assert got.keys() == want.keys() and len(got) > 20
        diff = {k: (got[k], want[k]) for k in got if not abs(got[k] - want[k]) <= 1e-9}
        assert not diff, f"{name}: {diff}"
        assert a["models"][name]["selection"]["chosen"] == b["models"][name]["selection"]["chosen"]
    assert a["comparisons"] == b["comparisons"]
