"""kill -9 during classify, then the same command: finished models are kept, the result is
the uninterrupted run's (a real subprocess, a real kill). A finished run's models are kept too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, make_config, write_fake_cache

MODELS = '["dummy", "logreg", "random_forest"]'
SETS = ["--set", f"classify.models={MODELS}", "--set", "classify.random_forest.n_estimators=[400]",
        "--set", "classify.random_forest.min_samples_leaf=[1]", "--set", "classify.logreg.C=[0.1]",
        "--set", "classify.n_jobs=1",
        "--set", "report.wandb=False", "--set", "classify.n_bootstrap=200"]


def _cmd(artifacts: Path) -> list[str]:
    return [sys.executable, "-m", "probekit", "classify", "--config", "configs/demo.toml", "--artifacts",
            str(artifacts), *SETS]


def _stable(obj):
    """metrics.json without what differs between two runs of the same thing: timings and the time."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if "seconds" not in k and k not in ("created_at", "files")}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


@pytest.mark.slow
def test_kill_9_during_classify_then_the_same_command_again(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = {}
    for name in ("reference", "killed"):
        write_fake_cache(tmp_path / name / "demo", sizes=(3000, 300, 300), dim=32, n_labels=4)
        runs[name] = tmp_path / name / "demo"
    subprocess.run(_cmd(tmp_path / "reference"), cwd=ROOT, env=env, check=True, capture_output=True)

    proc = subprocess.Popen(_cmd(tmp_path / "killed"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = runs["killed"] / "classify.progress" / "logreg.json"
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # while the forest is being fitted
    proc.wait()
    assert marker.exists() and not (runs["killed"] / "metrics.json").exists()

    done = subprocess.run(_cmd(tmp_path / "killed"), cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "logreg" in done.stderr and "kept from an earlier run" in done.stderr
    assert "random_forest        kept" not in done.stderr  # the unfinished model was fitted again
    assert (runs["killed"] / "classify.progress" / "random_forest.json").is_file()  # kept for the next rerun
    want, got = (json.loads((runs[n] / "metrics.json").read_text()) for n in ("reference", "killed"))
    assert _stable(got) == _stable(want)
    for f in sorted((runs["reference"] / "scores").glob("*.npy")):
        np.testing.assert_array_equal(np.load(runs["killed"] / "scores" / f.name), np.load(f), err_msg=f.name)


def test_a_changed_file_or_setting_means_the_model_is_fitted_again(tmp_path):
    from probekit.stages.classify.checkpoint import Progress
    from probekit.stages.classify.train import run_classify

    write_fake_cache(tmp_path / "artifacts" / "demo")
    cfg = make_config(tmp_path, "classify.models=['dummy','logreg']", "classify.logreg.C=[0.1]",
                      "classify.n_bootstrap=0", "classify.n_jobs=1")
    run_dir = cfg.run_dir
    progress = Progress(run_dir, {"setting": 1})
    run_classify(cfg)
    model_file = run_dir / "models" / "logreg.skops"
    entry = json.loads((run_dir / "metrics.json").read_text())["models"]["logreg"]
    progress.record("logreg", entry, model_file)
    assert progress.done("logreg") == entry
    assert Progress(run_dir, {"setting": 2}).done("logreg") is None  # other settings
    scores = run_dir / "scores" / "logreg.test.npy"
    arr = np.load(scores)
    arr[0, 0] += 0.5
    np.save(scores, arr)
    assert progress.done("logreg") is None  # a file that changed since is not trusted
    progress.clear()
    assert not progress.dir.exists()


def test_a_rerun_of_a_finished_run_fits_nothing_and_writes_the_same_metrics(tmp_path, caplog, monkeypatch):
    from probekit.stages.classify import train

    write_fake_cache(tmp_path / "artifacts" / "demo")
    cfg = make_config(tmp_path, "classify.models=['dummy','logreg']", "classify.logreg.C=[0.1]",
                      "classify.n_bootstrap=50", "classify.n_jobs=1")
    first = json.loads(train.run_classify(cfg).read_text())

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished model was fitted again")

    monkeypatch.setattr(train, "select", no_fit)
    with caplog.at_level("INFO"):
        again = json.loads(train.run_classify(cfg).read_text())
    assert caplog.text.count("kept from an earlier run") == 2
    assert _stable(again) == _stable(first)
    monkeypatch.undo()
    other = make_config(tmp_path, "classify.models=['dummy','logreg']", "classify.logreg.C=[0.3]",
                        "classify.n_bootstrap=50", "classify.n_jobs=1")
    caplog.clear()
    with caplog.at_level("INFO"):
        train.run_classify(other)  # another setting: both fitted anew
    assert "kept from an earlier run" not in caplog.text
