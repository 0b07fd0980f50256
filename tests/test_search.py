"""The search over a model's classify grid on cached features, its W&B runs and the sweep file.

A fake feature cache (conftest.write_fake_cache); no server, no network; W&B offline only in
the test that checks the trials' runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, make_config, write_fake_cache

from probekit.core.config import SearchSection
from probekit.core.errors import ConfigError
from probekit.stages.classify.search import main, parse_trial, run_search, search_path, trial_keys

PARAMS = trial_keys("logreg")


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    write_fake_cache(tmp_path / "artifacts" / "demo", n_labels=3)
    return make_config(tmp_path, "classify.n_jobs=1")


def test_search_grid_trials_and_best(cfg):
    section = SearchSection(grid={"C": (0.01, 1.0), "class_weight": ("none", "balanced")}, thresholds=("tune", "fixed"))
    path = run_search(cfg, section)
    assert path == search_path(cfg) == cfg.run_dir / "search" / "search.json"
    result = json.loads(path.read_text())
    assert result["grid"] == {"C": [0.01, 1.0], "class_weight": ["none", "balanced"], "pooling": ["cls"],
                              "thresholds": ["tune", "fixed"]}
    trials = result["trials"]
    assert len(trials) == result["n_trials"] == 8
    assert {tuple(t["params"][k] for k in PARAMS) for t in trials} == {
        (c, w, "cls", s) for c in (0.01, 1.0) for w in ("none", "balanced") for s in ("tune", "fixed")}
    best = max(trials, key=lambda t: (t["validation_score"], t["validation_macro_auc"]))  # cross-fitted (cv_folds)
    assert result["best"] == best
    assert all(0 <= t["test_macro_f1"] <= 1 and t["validation_macro_auc"] > 0.5 for t in trials)


def test_search_subset_and_errors(cfg):
    section = SearchSection(grid={"C": (0.1, 1.0, 10.0)}, thresholds=("tune",), max_trials=2)
    result = json.loads(run_search(cfg, section).read_text())
    assert result["n_trials"] == 2
    with pytest.raises(ConfigError, match=r"\[search\] pooling=\['mean'\]: the cache holds \['cls'\]"):
        run_search(cfg, SearchSection(pooling=("mean",)))
    assert parse_trial(["C=0.1", "--class_weight=balanced", "thresholds=tune"]) == {
        "C": 0.1, "class_weight": "balanced", "thresholds": "tune"}
    with pytest.raises(ConfigError, match="trial parameter 'alpha=1'.*one of C, class_weight, pooling, thresholds"):
        parse_trial(["alpha=1"])
    assert parse_trial(["alpha=1"], "sgd_stream") == {"alpha": 1}  # each model's own grid keys


def test_the_grid_is_the_models_classify_grid(cfg, tmp_path):
    """With no [search.grid], the trials are classify's candidates of the model, times thresholds."""
    cfg = make_config(tmp_path, "classify.n_jobs=1", "classify.logreg.C=[0.1, 1.0]",
                      "classify.logreg.class_weight=none", "search.thresholds=tune", "search.wandb=false")
    result = json.loads(run_search(cfg).read_text())
    assert result["grid"] == {"C": [0.1, 1.0], "class_weight": ["none"], "pooling": ["cls"], "thresholds": ["tune"]}
    assert [t["params"]["C"] for t in result["trials"]] == [0.1, 1.0]
    # another model: its own grid keys; a model on the texts has no pooling
    cfg = make_config(tmp_path, "classify.n_jobs=1", "classify.tfidf_logreg.min_df=1", "search.model=tfidf_logreg",
                      "search.grid.C=[1.0, 4.0]", "search.grid.class_weight=balanced", "search.thresholds=fixed",
                      "search.wandb=false")
    result = json.loads(run_search(cfg).read_text())
    assert result["grid"] == {"C": [1.0, 4.0], "class_weight": ["balanced"], "analyzer": ["word"], "pooling": ["-"],
                              "thresholds": ["fixed"]}
    assert result["model"] == "tfidf_logreg" and result["n_trials"] == 2
    cfg = make_config(tmp_path, "classify.n_jobs=1", "search.model=random_forest", "search.grid.n_estimators=[5, 10]",
                      "search.thresholds=tune", "search.wandb=false")
    result = json.loads(run_search(cfg).read_text())
    assert list(result["grid"]) == ["n_estimators", "max_depth", "min_samples_leaf", "class_weight", "pooling",
                                    "thresholds"]
    assert [t["params"]["n_estimators"] for t in result["trials"]] == [5, 10]


def test_each_trial_is_an_offline_wandb_run_in_one_group(cfg, tmp_path, monkeypatch):
    import wandb

    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = json.loads(run_search(cfg, SearchSection(grid={"C": (0.1, 1.0), "class_weight": ("none",)},
                                                      thresholds=("tune",))).read_text())
    wandb.teardown()  # flush the service's writes before reading the run files
    run_dirs = sorted((cfg.run_dir / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and sorted(Path(t["wandb_run_dir"]) for t in result["trials"]) == run_dirs
    # (folder names sort by start second and then a random id: take each trial's own folder)
    for k, trial in enumerate(result["trials"]):
        record = next(Path(trial["wandb_run_dir"]).glob("*.wandb")).read_bytes()
        assert b"demo-search" in record  # the group every trial shares
        assert b"validation/macro_f1" in record and b"class_weight" in record
        assert f"demo-search-00{k}".encode() in record


def test_sweep_file_matches_the_trial_entry_point(cfg, tmp_path):
    yaml = pytest.importorskip("yaml")
    sweep = yaml.safe_load((ROOT / "configs" / "sweep.yaml").read_text())
    assert sweep["method"] == "grid" and sweep["metric"] == {"name": "validation/macro_f1", "goal": "maximize"}
    params = {k: v["values"] for k, v in sweep["parameters"].items()}
    assert set(params) == set(PARAMS)
    SearchSection(grid={"C": params["C"], "class_weight": params["class_weight"]},
                  thresholds=tuple(params["thresholds"]))  # every value is valid
    command = sweep["command"]
    assert command[2:4] == ["-m", "probekit.stages.classify.search"] and command[-1] == "${args_no_hyphens}"
    assert (ROOT / command[command.index("--config") + 1]).is_file()
    # what an agent runs, one trial per call (W&B disabled here)
    argv = ["--artifacts", str(tmp_path / "artifacts"), "--set", "classify.n_jobs=1",
            *(f"{k}={v[0]}" for k, v in params.items())]
    assert main(argv) == 0
    assert main([*argv[:-1], "pooling=mean"]) == 2  # a pooling the cache lacks: one error line, exit 2
