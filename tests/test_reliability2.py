"""Issue 19, round two: a classify commits as a whole, every write error is one line, a run
folder is data (its manifest checksummed, nothing it names imported), huge texts cost little.

The fault is injected where the bytes go (skops' dump, numpy's save): the run stops with one
line, and the run folder is compared byte for byte with what it was before.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_fake_cache

from probekit.cli import main
from probekit.core.errors import ProbekitError
from probekit.core.runfolder import verify_run_outputs

MODELS = "classify.models=['dummy','logreg','tfidf_logreg']"
FAST = ["classify.n_jobs=1", "classify.n_bootstrap=20", "classify.tfidf_logreg.C=[1.0]",
        "classify.tfidf_logreg.class_weight=['none']", "report.wandb=False"]


def _classify(tmp_path, *sets: str) -> int:
    args = ["classify", "--artifacts", str(tmp_path / "artifacts")]
    for s in (MODELS, *FAST, *sets):
        args += ["--set", s]
    return main(args)


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every byte of what classify publishes: metrics.json, models/, scores/."""
    files = [run_dir / "metrics.json", *(run_dir / "models").rglob("*"), *(run_dir / "scores").rglob("*")]
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def finished(tmp_path):
    """A finished classify run (logreg C=0.1) over a fake cache."""
    write_fake_cache(tmp_path / "artifacts" / "demo")
    assert _classify(tmp_path, "classify.logreg.C=[0.1]") == 0
    return tmp_path / "artifacts" / "demo"


def test_metrics_json_records_every_model_and_score_file(finished):
    metrics = json.loads((finished / "metrics.json").read_text())
    files = metrics["files"]
    assert set(files) == {f"{d}/{m}.{x}" for m in ("dummy", "logreg", "tfidf_logreg")
                          for d, x in (("models", "skops"), ("models", "json"), ("scores", "validation.npy"),
                                       ("scores", "test.npy"))}
    verify_run_outputs(finished, metrics)
    assert sorted(p.name for p in (finished / "models").iterdir()) == sorted(
        f"{m}.{x}" for m in ("dummy", "logreg", "tfidf_logreg") for x in ("skops", "json"))


def test_disk_full_while_saving_a_later_model_leaves_the_run_folder_as_it_was(finished, tmp_path, monkeypatch,
                                                                               capsys, caplog):
    import skops.io as sio

    from probekit.run import load_run

    before = _snapshot(finished)
    old = load_run(finished).predict(["test text 3"], model="tfidf_logreg")["probabilities"]
    dump, calls = sio.dump, []

    def dump_then_fill(obj, file):  # the third model's dump writes part of its file, then the disk is full
        calls.append(file)
        if len(calls) == 3:
            Path(file).write_bytes(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")
        return dump(obj, file)

    monkeypatch.setattr(sio, "dump", dump_then_fill)
    assert _classify(tmp_path, "classify.logreg.C=[3.0]") == 2
    err = _one_line(capsys)
    assert "no space left on the device" in err and "metrics.json, models/ and scores/ are as they were" in err
    assert _snapshot(finished) == before  # byte for byte
    assert not [p for p in finished.rglob("*") if ".tmp-" in p.name]
    # The readers trust it, and it is the old logreg they get.
    verify_run_outputs(finished, json.loads((finished / "metrics.json").read_text()))
    again = load_run(finished).predict(["test text 3"], model="tfidf_logreg")["probabilities"]
    np.testing.assert_array_equal(again, old)
    assert json.loads((finished / "models" / "logreg.json").read_text())["params"]["C"] == 0.1

    monkeypatch.undo()
    calls.clear()
    with caplog.at_level("INFO"):
        assert _classify(tmp_path, "classify.logreg.C=[3.0]") == 0  # the rerun fits only the unfinished model
    assert "logreg               kept from an earlier run" in caplog.text
    assert "tfidf_logreg         kept" not in caplog.text
    metrics = json.loads((finished / "metrics.json").read_text())
    assert metrics["models"]["logreg"]["params"]["C"] == 3.0
    verify_run_outputs(finished, metrics)


def test_a_short_write_without_errno_is_one_line_and_leaves_no_temporary_file(finished, tmp_path, monkeypatch,
                                                                               capsys):
    from probekit.core import runfolder

    before = _snapshot(finished)

    def short(file, arr, allow_pickle=False):
        file.write(b"\x93NUMPY")
        raise OSError("4608 requested and 3040 written")  # numpy's message on a full disk: no errno

    monkeypatch.setattr(runfolder.np, "save", short)
    assert _classify(tmp_path, "classify.logreg.C=[2.0]") == 2
    err = _one_line(capsys)
    assert "no space left on the device" in err and ".npy" in err
    assert _snapshot(finished) == before
    assert not [p for p in finished.rglob("*") if ".tmp-" in p.name]


def test_a_mixed_run_folder_is_refused_by_every_reader(finished, tmp_path, capsys):
    other = tmp_path / "other"
    write_fake_cache(other / "demo")
    assert main(["classify", "--artifacts", str(other), *sum((["--set", s] for s in
                                                            (MODELS, *FAST, "classify.logreg.C=[5.0]")), [])]) == 0
    for name in ("logreg.skops", "logreg.json"):  # another run's model, a consistent pair on its own
        (finished / "models" / name).write_bytes((other / "demo" / "models" / name).read_bytes())
    metrics = json.loads((finished / "metrics.json").read_text())
    with pytest.raises(ProbekitError, match="logreg.skops: not the file metrics.json was written with"):
        verify_run_outputs(finished, metrics)
    assert main(["predict", "--run", str(finished), "--text", "hi", "--model", "logreg"]) == 2
    assert "mixes two classify runs or was edited. Run 'make classify' again." in _one_line(capsys)
    assert main(["predict", "--run", str(finished), "--text", "hi", "--model", "tfidf_logreg"]) == 0
    (finished / "scores" / "dummy.test.npy").unlink()
    with pytest.raises(ProbekitError, match="dummy.test.npy: missing, but metrics.json records it"):
        verify_run_outputs(finished, metrics)


def test_stale_temporary_files_of_killed_runs_are_removed(finished, tmp_path):
    stale = [finished / "models" / ".logreg.skops.tmp-999999999",
             finished / "classify.progress" / "models" / ".dummy.skops.tmp-999999998",
             finished / "scores" / ".dummy.test.npy.tmp-999999997"]
    for p in stale:
        p.write_bytes(b"half")
    assert _classify(tmp_path, "classify.logreg.C=[0.1]") == 0
    assert not any(p.exists() for p in stale)


def test_a_read_only_run_folder_runs_without_the_lock_and_a_write_is_one_line(finished, tmp_path, monkeypatch,
                                                                               capsys, caplog):
    from probekit.core import runfolder, runlock

    real_open = runlock.os.open

    def read_only(path, flags, mode=0o777):
        if str(path).endswith(runlock.LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(runlock.os, "open", read_only)
    with caplog.at_level("WARNING"), runlock.run_lock(finished, "report") as lock:
        assert lock is None
    assert "is not writable" in caplog.text

    def no_write(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(finished / "classify.progress" / "x"))

    monkeypatch.setattr(runfolder, "open", no_write, raising=False)
    assert _classify(tmp_path, "classify.logreg.C=[0.7]") == 2
    err = _one_line(capsys)
    assert "the file system is read-only" in err and "--artifacts DIR" in err

    def forbidden(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(finished / "classify.progress" / "x"))

    monkeypatch.setattr(runfolder, "open", forbidden, raising=False)
    assert _classify(tmp_path, "classify.logreg.C=[0.7]") == 2
    assert "permission denied" in _one_line(capsys)


# --- a run folder is data ----------------------------------------------------------------------

def _edit_manifest(run_dir: Path, edit, fix_checksum: bool = False) -> None:
    from probekit.core.cache_reader import MANIFEST_SHA_KEY, manifest_digest

    path = run_dir / "features" / "manifest.json"
    m = json.loads(path.read_text())
    m = edit(m)
    if fix_checksum and isinstance(m, dict):
        m[MANIFEST_SHA_KEY] = manifest_digest(m)
    path.write_text(json.dumps(m))


def test_an_edited_manifest_is_refused_and_nothing_it_names_is_imported(finished, tmp_path, capsys):
    sys.modules.pop("this", None)

    def edit(m):
        m["config"] = {"encoder": {"model": "package:this"}}
        return m

    _edit_manifest(finished, edit)
    assert _classify(tmp_path) == 2
    assert "the manifest was edited after extract wrote it" in _one_line(capsys)
    assert main(["predict", "--run", str(finished), "--text", "hi", "--model", "logreg"]) == 2
    assert "the manifest was edited after extract wrote it" in _one_line(capsys)
    assert "this" not in sys.modules


def _fake_distribution(site: Path, name: str, weights: bool) -> Path:
    """An installed-looking distribution whose __init__ leaves a marker file when it runs."""
    pkg = site / name
    pkg.mkdir(parents=True)
    marker = site / f"{name}.imported"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "top_level.txt").write_text(name + "\n")
    if weights:
        (pkg / "model").mkdir()
        (pkg / "model" / "model.safetensors").write_bytes(b"weights")
        (pkg / "model" / "config.json").write_text("{}")
    return marker


@pytest.mark.parametrize("model, message", [
    ("package:this", "no installed distribution provides the package 'this'"),
    ("package:os.path", "is not the name of a top-level package"),
    ("package:probekit_noweights", "ships no model/ folder with safetensors weights"),
])
def test_package_models_resolve_only_to_shipped_weights_and_are_never_imported(model, message, tmp_path,
                                                                                 monkeypatch):
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import resolve_model

    marker = _fake_distribution(tmp_path / "site", "probekit_noweights", weights=False)
    good = _fake_distribution(tmp_path / "site", "probekit_weights", weights=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("this", None)
    with pytest.raises(ProbekitError, match=message):
        resolve_model(EncoderSection(model=model))
    path, local = resolve_model(EncoderSection(model="package:probekit_weights"))
    assert local and Path(path) == tmp_path / "site" / "probekit_weights" / "model"
    assert not marker.exists() and not good.exists() and "this" not in sys.modules
    assert "probekit_weights" not in sys.modules and "probekit_noweights" not in sys.modules


def test_a_missing_local_model_folder_is_named_as_a_missing_path(tmp_path):
    from probekit.core.config import EncoderSection
    from probekit.stages.extract.engine.loading import resolve_model

    with pytest.raises(ProbekitError, match="no such folder") as e:
        resolve_model(EncoderSection(model=str(tmp_path / "models" / "my-bert")))
    assert "Hub" not in str(e.value).split(";")[0]


# --- huge texts and bf16 --------------------------------------------------------------------------

def test_a_multi_megabyte_text_is_tokenized_by_its_head_only(_tiny_encoder_dir):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from probekit.stages.extract.engine.batching import tokenize

    tok = AutoTokenizer.from_pretrained(_tiny_encoder_dir)
    seen = []

    def recording(texts, **kw):
        seen.append(max(len(t) for t in texts))
        return tok(texts, **kw)

    huge = "happy sad angry glad " * 200_000  # 4.2 MB on one line
    out = tokenize(recording, [huge, "so happy"], max_length=16)
    assert max(seen) <= 4096  # never the whole text
    assert out.n_truncated == 1 and out.n_rows == 2 and out.lengths.tolist() == [16, 4]
    direct = tok(huge[:10_000], truncation=True, max_length=16)["input_ids"]
    assert out.ids[:16].tolist() == direct
    spaces = " " * 50_000 + "happy glad"  # a head without enough tokens grows until it has them, or is whole
    out = tokenize(tok, [spaces], max_length=16)
    assert out.n_truncated == 0 and out.ids.tolist() == tok(spaces)["input_ids"]


def test_half_precision_features_are_keyed_by_their_batching():
    from types import SimpleNamespace

    from probekit.core.cache import feature_identity
    from probekit.core.config import EncoderSection
    from probekit.core.runfolder import cache_key

    data = SimpleNamespace(fingerprints={"train": "x"}, label_names=["a"], problem_type="multi_label")

    def key(dtype, shard_rows):
        return cache_key(feature_identity(EncoderSection(shard_rows=shard_rows), "m", "r", dtype, data))

    assert key("bfloat16", 100) != key("bfloat16", 4096)
    assert key("float32", 100) == key("float32", 4096)
