"""The command line: user errors are one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, write_jsonl


def probekit(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "probekit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_help_lists_the_stages():
    r = probekit("--help")
    assert r.returncode == 0
    for cmd in ("extract", "classify", "report"):
        assert cmd in r.stdout


def test_classify_without_a_cache(tmp_path):
    r = probekit("classify", "--artifacts", str(tmp_path))
    assert_one_line_error(r, "manifest.json not found", "make extract")


def test_report_without_metrics(tmp_path):
    from conftest import write_fake_cache

    write_fake_cache(tmp_path / "demo")
    r = probekit("report", "--artifacts", str(tmp_path))
    assert_one_line_error(r, "metrics.json not found", "make classify")


def test_misspelled_key_on_the_command_line(tmp_path):
    r = probekit("classify", "--artifacts", str(tmp_path), "--set", "classify.logreg_c=2")
    assert_one_line_error(r, "[classify] has no key 'logreg_c'", "classify.logreg.C")


def test_misspelled_key_in_a_preset(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("[encoder]\nmax_len = 64\n")
    r = probekit("classify", "--config", str(p))
    assert_one_line_error(r, "mine.toml", "[encoder] has no key 'max_len'")


def test_local_preset_without_data_dir(tmp_path):
    pytest.importorskip("datasets")
    r = probekit("extract", "--config", "configs/goemotions-local.toml", "--artifacts", str(tmp_path))
    assert_one_line_error(r, "[data] path is empty", "DATA=")


def test_missing_text_column(tmp_path, toy_data):
    pytest.importorskip("torch")
    for split in ("train", "validation", "test"):
        write_jsonl(toy_data / f"{split}.jsonl", [{"body": "hi", "labels": ["joy"]}])
    r = probekit("extract", "--data", str(toy_data), "--artifacts", str(tmp_path))
    assert_one_line_error(r, "train.jsonl: no column 'text'", "text_field")
    assert not (tmp_path / "demo" / "features").exists()


def test_unreachable_hub_says_which_presets_work_offline(tmp_path):
    pytest.importorskip("torch")
    r = probekit("extract", "--config", "configs/emotion.toml", "--artifacts", str(tmp_path))
    assert_one_line_error(r, "dair-ai/emotion", "Presets that work offline: demo")


def test_unreachable_hub_model(tmp_path, toy_data):
    pytest.importorskip("torch")
    r = probekit("extract", "--data", str(toy_data), "--artifacts", str(tmp_path),
                 "--set", "encoder.model='distilbert-base-uncased'", "--set", "data.label_names_file='labels.txt'")
    assert_one_line_error(r, "[encoder] model='distilbert-base-uncased'", "Presets that work offline")


def test_predict_without_a_run(tmp_path):
    r = probekit("predict", "--run", str(tmp_path / "nope"), "--text", "hello")
    assert_one_line_error(r, "metrics.json not found", "make classify")


def test_predict_needs_texts(tmp_path):
    r = probekit("predict", "--run", str(tmp_path))
    assert_one_line_error(r, "nothing to predict")


def test_a_warm_rerun_reuses_the_cache_and_logs_no_second_wandb_run(tmp_path, toy_data, tiny_encoder, monkeypatch):
    pytest.importorskip("torch")
    from probekit.cli import main

    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["extract", "--data", str(toy_data), "--artifacts", str(tmp_path / "a"),
            "--set", f"encoder.model={str(tiny_encoder)!r}", "--set", "data.label_names_file='labels.txt'",
            "--set", "encoder.max_length=16"]
    assert main(args) == 0
    manifest = tmp_path / "a" / "demo" / "features" / "manifest.json"
    built = manifest.read_bytes()
    assert main(args) == 0
    assert manifest.read_bytes() == built  # reused as it was
    import wandb

    wandb.teardown()
    runs = list((tmp_path / "a" / "demo" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # the rerun had nothing new to log
