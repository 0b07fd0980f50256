"""Issue 19, round two: a table of bad run folders, inputs and settings, each one line and exit 2.

Each case damages a copy of a finished run (or gives extract a setting the model cannot
honour) and runs the command a user would: the message must be one line naming the file or
field and the fix, the exit code 2, no traceback.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from conftest import toy_overrides, write_fake_cache

from probekit.cli import main

MODELS = "classify.models=['dummy','tfidf_logreg']"
SETS = [MODELS, "classify.n_jobs=1", "classify.n_bootstrap=0", "classify.tfidf_logreg.C=[1.0]",
        "classify.tfidf_logreg.class_weight=['none']", "report.wandb=False"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reliab2")
    write_fake_cache(root / "demo")
    assert main(["classify", "--artifacts", str(root), *sum((["--set", s] for s in SETS), [])]) == 0
    return root / "demo"


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def _fix_manifest(run: Path, edit) -> None:
    """Edit the manifest and re-seal its checksum, so the check behind the checksum is reached."""
    from probekit.core.cache_reader import MANIFEST_SHA_KEY, manifest_digest

    p = run / "features" / "manifest.json"
    m = edit(_json(p))
    m[MANIFEST_SHA_KEY] = manifest_digest(m)
    _write(p, m)


def _reseal_model(run: Path, name: str) -> None:
    """Record a replaced model file's checksum in its sidecar and in metrics.json (a careful forger)."""
    from probekit.core.runfolder import sha256_file

    side = run / "models" / f"{name}.json"
    meta = _json(side)
    meta["sha256"] = sha256_file(run / "models" / f"{name}.skops")
    _write(side, meta)
    metrics = _json(run / "metrics.json")
    for f in (f"models/{name}.skops", f"models/{name}.json"):
        metrics["files"][f] = sha256_file(run / f)
    _write(run / "metrics.json", metrics)


def _pickle_as_skops(run: Path) -> None:
    import pickle

    (run / "models" / "tfidf_logreg.skops").write_bytes(pickle.dumps({"payload": "os.system"}))
    _reseal_model(run, "tfidf_logreg")


def _drop(key):
    def edit(m):
        m.pop(key)
        return m
    return edit


PREDICT = ["predict", "--text", "hello", "--model", "tfidf_logreg"]

# id -> (damage(run, tmp_path) returning extra args or None, command, what the line must say)
CASES = {
    "input file not UTF-8": (lambda run, tmp: (tmp / "in.txt").write_bytes(b"caf\xe9\n\xff\xfe") and
                             ["--file", str(tmp / "in.txt")], PREDICT, "not UTF-8 text"),
    "metrics.json not JSON": (lambda run, tmp: (run / "metrics.json").write_text('{"models": {'), PREDICT,
                              "metrics.json: not valid JSON"),
    "metrics.json a list": (lambda run, tmp: _write(run / "metrics.json", [1, 2]), PREDICT,
                            "metrics.json: holds a JSON list"),
    "metrics.json without labels": (lambda run, tmp: _write(run / "metrics.json", {
        **_json(run / "metrics.json"), "labels": None}), PREDICT, "'labels' is missing"),
    "metrics.json files not a table": (lambda run, tmp: _write(run / "metrics.json", {
        **_json(run / "metrics.json"), "files": ["x"]}), PREDICT, "'files' must map file names"),
    "manifest without label_names": (lambda run, tmp: _fix_manifest(run, _drop("label_names")), PREDICT,
                                     "field 'label_names' is missing"),
    "manifest a JSON list": (lambda run, tmp: _write(run / "features" / "manifest.json", ["a"]), PREDICT,
                             "manifest.json: holds a JSON list"),
    "manifest edited": (lambda run, tmp: _write(run / "features" / "manifest.json", {
        **_json(run / "features" / "manifest.json"), "model_id": "package:this"}), PREDICT,
        "the manifest was edited"),
    "manifest edited (classify)": (lambda run, tmp: _write(run / "features" / "manifest.json", {
        **_json(run / "features" / "manifest.json"), "max_length": 9}), ["classify", *sum(
            (["--set", s] for s in SETS), [])], "the manifest was edited"),
    "model sidecar deleted": (lambda run, tmp: (run / "models" / "tfidf_logreg.json").unlink(), PREDICT,
                              "tfidf_logreg.json: missing, but metrics.json records it"),
    "model sidecar edited": (lambda run, tmp: _write(run / "models" / "tfidf_logreg.json", {
        **_json(run / "models" / "tfidf_logreg.json"), "input": "features"}), PREDICT,
        "tfidf_logreg.json: not the file metrics.json was written with"),
    "model sidecar not JSON (resealed)": (lambda run, tmp: ((run / "models" / "tfidf_logreg.json").write_text(
        "{oops"), _write(run / "metrics.json", {k: v for k, v in _json(run / "metrics.json").items()
                                                if k != "files"})) and None, PREDICT,
        "tfidf_logreg.json: not valid JSON"),
    "pickle saved as .skops (resealed)": (lambda run, tmp: _pickle_as_skops(run), PREDICT,
                                          "not a skops model file this probekit can read"),
    "model file edited": (lambda run, tmp: (run / "models" / "tfidf_logreg.skops").write_bytes(b"PK"), PREDICT,
                          "tfidf_logreg.skops: not the file metrics.json was written with"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_run_folder_or_input_is_one_line_and_exit_2(case, finished_run, tmp_path, capsys):
    damage, command, message = CASES[case]
    run = tmp_path / "demo"
    shutil.copytree(finished_run, run)
    extra = damage(run, tmp_path)
    extra = extra if isinstance(extra, list) else []  # most damages return nothing (or a byte count)
    if command[0] == "predict":
        argv = [command[0], "--run", str(run), *command[1:], *extra]
    else:
        argv = [command[0], "--artifacts", str(tmp_path), *command[1:], *extra]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err


EXTRACT_CASES = {  # --set -> what the line must say, before any work
    "max_length above the positions": ("encoder.max_length=100000", "has 64 positions"),
    "max_length above, windows": ("encoder.max_length=100 encoder.long_text='window'", "each window can hold"),
    "pooling layer outside the model": ("encoder.pooling='cls_layer99'", "layer index 99 is outside 0..2"),
    "extra pooling outside the model": ("encoder.extra_poolings=['mean_layers1.7_avg']", "outside 0..2"),
    "missing local model folder": ("encoder.model='./no/such/bert'", "no such folder"),
    "package that is no model": ("encoder.model='package:this'", "no installed distribution provides"),
}


@pytest.mark.parametrize("case", list(EXTRACT_CASES))
def test_a_setting_the_model_cannot_honour_is_one_line_before_any_work(case, tmp_path, toy_data, tiny_encoder,
                                                                       capsys):
    pytest.importorskip("torch")
    sets, message = EXTRACT_CASES[case]
    argv = ["extract", "--artifacts", str(tmp_path / "a")]
    for s in [*toy_overrides(toy_data, tiny_encoder), "report.wandb=False", *sets.split(" ")]:
        argv += ["--set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and message in err, err
    assert not list((tmp_path / "a").glob("*/features*"))  # nothing was computed


def test_extract_with_a_finished_cache_runs_on_a_read_only_folder(tmp_path, toy_data, tiny_encoder, monkeypatch):
    pytest.importorskip("torch")
    from probekit.core import runlock

    argv = ["extract", "--artifacts", str(tmp_path / "a")]
    for s in [*toy_overrides(toy_data, tiny_encoder), "report.wandb=False"]:
        argv += ["--set", s]
    assert main(argv) == 0
    manifest = tmp_path / "a" / "demo" / "features" / "manifest.json"
    built = manifest.read_bytes()
    real_open = runlock.os.open

    def read_only(path, flags, mode=0o777):
        if flags & runlock.os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(runlock.os, "open", read_only)
    assert main(argv) == 0  # nothing to write: the cache is reused
    assert manifest.read_bytes() == built
