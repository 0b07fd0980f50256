"""Streaming shards: an interrupted run (exception, Ctrl-C, kill -9) resumes and ends with the
same features as an uninterrupted one; damaged or foreign shards are recomputed; several
processes (torchrun, gloo on CPU) write one cache equal to a 1-process run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, make_config, toy_overrides

pytest.importorskip("torch")

from probekit.core.cache_reader import read_cache
from probekit.core.runfolder import MANIFEST_NAME, features_dir  # noqa: E402
from probekit.stages.extract.encode import run_extract  # noqa: E402
from probekit.stages.extract.engine.extractor import Extractor  # noqa: E402

_ENCODE = Extractor.encode_tokenized
SHARDED = ("encoder.shard_rows=8", "encoder.dtype='float32'")  # toy data: 6 + 2 + 2 = 10 shards


def _overrides(toy_data, tiny_encoder, *more):
    return [*toy_overrides(toy_data, tiny_encoder), *SHARDED, *more]


def _arrays(cache_dir) -> dict:
    c = read_cache(cache_dir)
    return {(s, p): np.array(c.X(s, p)) for s in c.splits for p in c.poolings}


def _partials(run_dir):
    return sorted(run_dir.glob("features.partial-*"))


def _sidecars(partial):
    return sorted(p for p in partial.glob("*.json") if not p.name.startswith("."))


@pytest.fixture
def reference(tmp_path, toy_data, tiny_encoder):
    """Features of an uninterrupted run."""
    cfg = make_config(tmp_path / "ref", *_overrides(toy_data, tiny_encoder))
    return _arrays(run_extract(cfg))


class _Stop(KeyboardInterrupt):
    pass


def _interrupt_after(monkeypatch, n_chunks: int) -> list:
    """Make the extractor raise Ctrl-C on chunk n_chunks + 1; return the call log."""
    calls: list = []

    def encode(self, tok, bar=None):
        calls.append(tok.n_texts)
        if len(calls) > n_chunks:
            raise _Stop()
        return _ENCODE(self, tok, bar=bar)

    monkeypatch.setattr(Extractor, "encode_tokenized", encode)
    return calls


def test_ctrl_c_then_rerun_resumes_and_recomputes_a_damaged_shard(tmp_path, toy_data, tiny_encoder, reference,
                                                                  monkeypatch, caplog):
    cfg = make_config(tmp_path, *_overrides(toy_data, tiny_encoder))
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_extract(cfg)
    assert not features_dir(cfg.run_dir).exists()
    (partial,) = _partials(cfg.run_dir)
    sidecars = _sidecars(partial)
    assert [p.name for p in sidecars] == ["train.00000.json", "train.00001.json", "train.00002.json"]
    damaged = partial / "train.00001.cls.npy"
    damaged.write_bytes(damaged.read_bytes()[:-4] + b"\0\0\0\0")  # same size, other bytes

    calls = _interrupt_after(monkeypatch, 100)
    caplog.set_level(logging.INFO)
    out = run_extract(cfg)
    assert "2 of 10 shards already done" in caplog.text and "train.00001.json fails its checks" in caplog.text
    assert len(calls) == 8  # 7 never written + 1 damaged
    got = _arrays(out)
    assert got.keys() == reference.keys()
    for k in reference:
        np.testing.assert_array_equal(got[k], reference[k], err_msg=str(k))
    assert _partials(cfg.run_dir) == []  # shards are removed once the cache is committed
    m = read_cache(out).manifest
    assert [s["rows"] for s in m["shards"]["train"]] == [[0, 8], [8, 16], [16, 24], [24, 32], [32, 40], [40, 48]]
    assert set(m["shards"]["test"][0]["sha256"]) == {"cls", "mean"}


def test_shards_of_another_cache_key_are_never_used(tmp_path, toy_data, tiny_encoder, monkeypatch, caplog):
    short = make_config(tmp_path, *_overrides(toy_data, tiny_encoder, "encoder.max_length=12"))
    _interrupt_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run_extract(short)
    (old,) = _partials(short.run_dir)

    cfg = make_config(tmp_path, *_overrides(toy_data, tiny_encoder))  # max_length 16: another key
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run_extract(cfg)
    new = next(p for p in _partials(cfg.run_dir) if p != old)
    for f in old.iterdir():  # plant the other key's 4 shards under this key's name (over its 1 own)
        shutil.copy(f, new / f.name)
    calls = _interrupt_after(monkeypatch, 100)
    caplog.set_level(logging.INFO)
    out = run_extract(cfg)
    assert len(calls) == 10 and caplog.text.count("fails its checks") == 4
    assert _partials(cfg.run_dir) == []  # the old key's folder went too
    ref = _arrays(run_extract(make_config(tmp_path / "ref", *_overrides(toy_data, tiny_encoder))))
    got = _arrays(out)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])


def _cli(tmp_path, toy_data, tiny_encoder, *more) -> list[str]:
    args = [sys.executable, "-m", "probekit", "extract", "--artifacts", str(tmp_path / "artifacts")]
    for o in _overrides(toy_data, tiny_encoder, *more):
        args += ["--set", o]
    return args


def _env(**more) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **more}


@pytest.mark.slow
def test_kill_9_half_way_then_the_same_command_again(tmp_path, toy_data, tiny_encoder, reference):
    args = _cli(tmp_path, toy_data, tiny_encoder)
    run_dir = tmp_path / "artifacts" / "demo"
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(PROBEKIT_SHARD_PAUSE_S="0.4"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _partials(run_dir) and len(_sidecars(_partials(run_dir)[0])) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (features_dir(run_dir) / MANIFEST_NAME).exists()
    done = len(_sidecars(_partials(run_dir)[0]))
    assert 3 <= done < 10

    again = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{done} of 10 shards already done" in again.stderr
    got = _arrays(features_dir(run_dir))
    for k in reference:
        np.testing.assert_array_equal(got[k], reference[k], err_msg=str(k))
    assert _partials(run_dir) == [] and sorted(p.name for p in run_dir.iterdir()) == ["features"]


@pytest.mark.slow
def test_two_processes_with_gloo_write_one_cache_equal_to_one_process(tmp_path, toy_data, tiny_encoder, reference):
    args = _cli(tmp_path, toy_data, tiny_encoder)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", *args[2:]]
    done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = features_dir(tmp_path / "artifacts" / "demo")
    m = json.loads((out / MANIFEST_NAME).read_text())
    assert m["world_size"] == 2 and m["splits"] == {"train": 48, "validation": 16, "test": 16}
    got = _arrays(out)
    assert got.keys() == reference.keys()
    for k in reference:
        np.testing.assert_allclose(got[k], reference[k], atol=1e-5, err_msg=str(k))
    assert "rank 1 of 2 joined the gloo process group" in done.stderr
    assert _partials(out.parent) == []


def test_tokenizing_the_next_chunk_ahead_changes_nothing(tmp_path, toy_data, tiny_encoder, reference, monkeypatch):
    """The CUDA schedule (next chunk tokenized in a thread, batches padded in another), on the CPU."""
    from probekit.stages.extract import encode

    real = encode.make_extractor

    def overlapped(*args, **kwargs):
        ex = real(*args, **kwargs)
        ex.overlap = True
        return ex

    monkeypatch.setattr(encode, "make_extractor", overlapped)
    got = _arrays(run_extract(make_config(tmp_path, *_overrides(toy_data, tiny_encoder))))
    for k in reference:
        np.testing.assert_allclose(got[k], reference[k], atol=1e-6)
