"""Faults: a disk that fills up mid-run, and two runs writing one run folder at once.

A full disk is injected at the write itself (the modules' ``open``: part of the bytes land,
then OSError(ENOSPC)), during the shards and during the cache's assembly. The run stops with
one line, nothing half-written is kept, the previous cache stays valid, and a rerun resumes
and ends equal to an uninterrupted run. The run-folder lock is held by a real second process.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, make_config, toy_overrides

from probekit.cli import main
from probekit.core.runlock import LOCK_NAME, TIMEOUT_ENV, RunLockedError, run_lock

SHARDED = ("encoder.shard_rows=8", "encoder.dtype='float32'", "report.wandb=False")  # toy data: 10 shards


class FullDisk:
    """A disk with `budget` bytes left for files matching `which`: the write that crosses it
    lands in part, then raises OSError(ENOSPC), as a real full disk does."""

    def __init__(self, budget: int, which=lambda path: True):
        self.left, self.which, self.failed = budget, which, []

    def open(self, file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        return _Filling(f, self, str(file)) if ("w" in mode and self.which(str(file))) else f


class _Filling:
    def __init__(self, f, disk: FullDisk, name: str):
        self.f, self.disk, self.name = f, disk, name

    def write(self, data):
        raw = data.encode() if isinstance(data, str) else memoryview(data).cast("B")
        if len(raw) > self.disk.left:
            self.f.write(raw[:self.disk.left] if not isinstance(data, str) else data[:self.disk.left])
            self.disk.left = 0
            self.disk.failed.append(self.name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.disk.left -= len(raw)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _cli_args(cfg_overrides, artifacts) -> list[str]:
    return ["extract", "--artifacts", str(artifacts), *[a for s in cfg_overrides for a in ("--set", s)]]


def _leftovers(run_dir) -> list[str]:
    """Temporary files or folders anywhere under the run folder."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if ".tmp-" in p.name)


@pytest.fixture
def runs(tmp_path, toy_data, tiny_encoder):
    """(overrides of run A, overrides of run B: another max_length, so another cache key)."""
    pytest.importorskip("torch")
    base = [*toy_overrides(toy_data, tiny_encoder), *SHARDED]
    return base, [*base, "encoder.max_length=12"]


def _reference(tmp_path, overrides):
    from probekit.core.cache_reader import read_cache
    from probekit.stages.extract.encode import run_extract

    c = read_cache(run_extract(make_config(tmp_path / "reference", *overrides)))
    return {(s, p): np.array(c.X(s, p)) for s in c.splits for p in c.poolings}


@pytest.mark.slow
def test_disk_full_during_shards_stops_with_one_line_and_the_rerun_resumes(tmp_path, runs, monkeypatch, capsys,
                                                                          caplog):
    from probekit.core import cache
    from probekit.core.cache_reader import read_cache
    from probekit.stages.extract.engine import shards
    from probekit.stages.extract.engine.extractor import Extractor

    a, b = runs
    artifacts = tmp_path / "artifacts"
    assert main(_cli_args(a, artifacts)) == 0
    features = artifacts / "demo" / "features"
    key_a = read_cache(features).manifest["cache_key"]

    disk = FullDisk(budget=8_000)  # about three shards: the fourth fills the disk part-way
    for module in (shards, cache):
        monkeypatch.setattr(module, "open", disk.open, raising=False)
    assert main(_cli_args(b, artifacts)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("probekit extract: error: no space left on the device writing under ")
    assert "finished shards are kept in" in err and "a rerun resumes from them" in err
    assert disk.failed and ".npy.tmp-" in disk.failed[0]

    run_dir = artifacts / "demo"
    assert _leftovers(run_dir) == []  # the part-written file is gone
    assert read_cache(features).manifest["cache_key"] == key_a  # the previous cache is untouched and valid
    (partial,) = run_dir.glob("features.partial-*")
    done = sorted(p.name for p in partial.glob("*.json"))
    assert 1 <= len(done) < 10

    monkeypatch.undo()
    calls = []
    encode = Extractor.encode_tokenized
    monkeypatch.setattr(Extractor, "encode_tokenized", lambda self, tok, bar=None: calls.append(1) or
                        encode(self, tok, bar=bar))
    with caplog.at_level(logging.INFO):
        assert main(_cli_args(b, artifacts)) == 0
    assert f"{len(done)} of 10 shards already done" in caplog.text
    assert len(calls) == 10 - len(done)
    cache = read_cache(features)
    ref = _reference(tmp_path, b)
    assert cache.manifest["cache_key"] != key_a
    for (split, pooling), X in ref.items():
        np.testing.assert_array_equal(cache.X(split, pooling), X)


@pytest.mark.slow
def test_disk_full_while_assembling_keeps_the_old_cache_and_every_shard(tmp_path, runs, monkeypatch, capsys):
    from probekit.core import cache
    from probekit.core.cache_reader import read_cache
    from probekit.stages.extract.engine.extractor import Extractor

    a, b = runs
    artifacts = tmp_path / "artifacts"
    assert main(_cli_args(a, artifacts)) == 0
    features = artifacts / "demo" / "features"
    before = read_cache(features).manifest

    disk = FullDisk(budget=2_000, which=lambda p: ".X." in p)  # the assembled feature files only
    monkeypatch.setattr(cache, "open", disk.open, raising=False)
    assert main(_cli_args(b, artifacts)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left on the device" in err, err
    assert ".tmp-" in disk.failed[0]  # it failed in the staged cache, not the real one
    run_dir = artifacts / "demo"
    assert _leftovers(run_dir) == []  # the staged cache was removed
    assert read_cache(features).manifest == before

    monkeypatch.undo()
    calls = []
    encode = Extractor.encode_tokenized
    monkeypatch.setattr(Extractor, "encode_tokenized", lambda self, tok, bar=None: calls.append(1) or
                        encode(self, tok, bar=bar))
    assert main(_cli_args(b, artifacts)) == 0
    assert calls == []  # every shard was kept and checked out: nothing recomputed
    cache = read_cache(features)
    for (split, pooling), X in _reference(tmp_path, b).items():
        np.testing.assert_array_equal(cache.X(split, pooling), X)
    assert not list(run_dir.glob("features.partial-*"))


def test_other_write_errors_are_not_reported_as_disk_full(tmp_path):
    from probekit.core.errors import disk_full

    assert disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path, "x") is None
    err = disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "features", "kept")
    assert "no space left on the device writing under" in str(err) and "MiB free" in str(err)


# --- one writer per run folder ----------------------------------------------------------------

HOLD = """
import sys, time
from probekit.core.runlock import run_lock
with run_lock(sys.argv[1], "extract", timeout=0):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(run_dir, seconds: float) -> subprocess.Popen:
    """Another process that takes the run folder's lock and keeps it for `seconds`."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_refuses_after_its_timeout_naming_the_holder(tmp_path):
    holder = _holder(tmp_path / "run", 60)
    try:
        t0 = time.monotonic()
        with pytest.raises(RunLockedError) as err, run_lock(tmp_path / "run", "classify", timeout=0.5):
            pass
        assert 0.5 <= time.monotonic() - t0 < 5
        msg = str(err.value)
        assert "\n" not in msg
        assert f"is in use by pid {holder.pid}" in msg and "'probekit extract'" in msg and "waited 0.5s" in msg
    finally:
        holder.kill()
        holder.wait()


def test_a_second_writer_waits_and_then_runs(tmp_path, caplog):
    holder = _holder(tmp_path / "run", 1.5)
    try:
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING), run_lock(tmp_path / "run", "classify", timeout=30) as path:
            waited = time.monotonic() - t0
            # the holder released the lock and exits normally (its interpreter may still be shutting
            # down: the lock is free as soon as its `with` block ends)
            assert holder.wait(timeout=30) == 0
            assert '"command": "classify"' in path.read_text()
        assert waited >= 0.5 and not path.exists()
        assert f"is in use by pid {holder.pid}" in caplog.text and "waiting up to 30s" in caplog.text
    finally:
        holder.kill()
        holder.wait()


def test_kill_9_frees_the_lock(tmp_path):
    holder = _holder(tmp_path / "run", 60)
    holder.kill()  # SIGKILL: no cleanup code runs; the kernel drops the flock
    holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # the dead holder's record is still there
    with run_lock(tmp_path / "run", "extract", timeout=0) as path:
        assert path == tmp_path / "run" / LOCK_NAME
    assert list((tmp_path / "run").iterdir()) == []  # released: the run folder keeps only outputs


def test_the_cli_refuses_a_busy_run_folder_with_one_line(tmp_path, monkeypatch, capsys):
    from conftest import write_fake_cache

    write_fake_cache(tmp_path / "demo")
    holder = _holder(tmp_path / "demo", 60)
    monkeypatch.setenv(TIMEOUT_ENV, "0.2")
    try:
        assert main(["classify", "--artifacts", str(tmp_path)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"probekit classify: error: {tmp_path / 'demo'} is in use by pid {holder.pid}")
    assert not (tmp_path / "demo" / "metrics.json").exists()


def test_a_bad_timeout_setting_is_one_line(tmp_path, monkeypatch):
    from probekit.core.errors import ProbekitError

    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(ProbekitError, match="PROBEKIT_LOCK_TIMEOUT='soon' must be a number"), \
            run_lock(tmp_path, "extract"):
        pass


@pytest.mark.slow
def test_two_extracts_at_once_on_one_run_folder(tmp_path, runs):
    """A second real `probekit extract` started while the first is writing shards: it waits for
    the lock, then reuses the finished cache; the cache is whole and equal to a single run's."""
    from probekit.core.cache_reader import read_cache

    a, _ = runs
    artifacts, run_dir = tmp_path / "artifacts", tmp_path / "artifacts" / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT), TIMEOUT_ENV: "300", "PROBEKIT_SHARD_PAUSE_S": "0.6"}
    cmd = [sys.executable, "-m", "probekit", *_cli_args(a, artifacts)]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and not list(run_dir.glob("features.partial-*/*.json")):
        time.sleep(0.05)  # until the first run, holding the lock, has written a shard
    assert first.poll() is None, first.communicate()[1][-2000:]
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out_first = first.communicate(timeout=300)[1]
    assert (first.returncode, second.returncode) == (0, 0), (out_first[-2000:], second.stderr[-2000:])
    assert f"{run_dir} is in use by pid {first.pid}" in second.stderr and "'probekit extract'" in second.stderr
    assert "reusing" in second.stderr and "in use" not in out_first
    cache = read_cache(artifacts / "demo" / "features")
    for (split, pooling), X in _reference(tmp_path, a).items():
        np.testing.assert_array_equal(cache.X(split, pooling), X)
    assert sorted(p.name for p in run_dir.iterdir()) == ["features"]  # no lock file, no partial or staged folder
