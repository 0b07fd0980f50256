"""The bench's peers in a worker process (extract/bench/peer_worker.py, peer_client.py) and their [bench] keys.

The worker runs in this venv's own python here (sentence-transformers is installed in it), with
st_torch only, on the tiny random BERT (tests/conftest.py), offline.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT

from probekit.core.config import load_config
from probekit.core.errors import ConfigError, ProbekitError
from probekit.stages.extract.bench import peer_client

TEXTS = ["happy day", "the movie was very sad", "my friend is so angry today", "a", "scared of the news"]
DEMO = ROOT / "configs/demo.toml"


def _cosine(A, B):
    return (A * B).sum(1) / (np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1))


def test_the_worker_builds_times_and_saves_a_peer_like_the_same_peer_in_process(tiny_encoder, tmp_path):
    pytest.importorskip("sentence_transformers")
    from probekit.stages.extract.bench.peers import build_peer

    lengths = [len(t.split()) + 2 for t in TEXTS]
    worker = peer_client.open_peers(["st_torch"], sys.executable, tmp_path / "worker.log")
    try:
        built = worker.build(names=["st_torch"], path=str(tiny_encoder), cache_dir=str(tmp_path / "cache"),
                             texts=TEXTS, lengths=lengths, max_length=16, pooling="cls", threads=1)
        assert built["detail"]["st_torch"]["backend"] == "torch" and "sentence-transformers" in built["versions"]
        warm = worker.encode("st_torch", 2)  # a prefix, as the bench's warm-up
        assert warm["seconds"] > 0 and warm["padded_tokens"] == 2 * max(lengths[:2])
        r = worker.encode("st_torch", len(TEXTS), str(tmp_path / "st_torch.npy"))
        assert r["seconds"] > 0 and len(TEXTS) / r["seconds"] > 0
        with pytest.raises(ProbekitError, match=r"in .*python.*: KeyError: 'st_onnx' \(log: "):
            worker.encode("st_onnx", 2)  # the worker answers, and stays up
        assert worker.encode("st_torch", 1)["padded_tokens"] == lengths[0]
    finally:
        worker.close()
    assert worker.proc.returncode == 0
    here = build_peer("st_torch", tiny_encoder, tmp_path / "cache", max_length=16, pooling="cls")(TEXTS)
    assert _cosine(np.load(tmp_path / "st_torch.npy"), here).min() == pytest.approx(1.0, abs=1e-6)
    same = peer_client.open_peers(["st_torch"], "", tmp_path / "unused.log")  # peers_python = "": in this process
    same.build(names=["st_torch"], path=str(tiny_encoder), cache_dir=str(tmp_path / "cache"), texts=TEXTS,
               lengths=lengths, max_length=16, pooling="cls")
    assert same.encode("st_torch", 5, str(tmp_path / "here.npy"))["padded_tokens"] == 5 * max(lengths)
    np.testing.assert_allclose(np.load(tmp_path / "here.npy"), np.load(tmp_path / "st_torch.npy"), atol=1e-6)
    same.close()


def test_a_missing_package_or_a_bad_name_in_the_worker_is_one_line(tiny_encoder, tmp_path):
    from probekit.stages.extract.bench.peers import missing_packages

    worker = peer_client.Worker(sys.executable, tmp_path / "worker.log")
    req = dict(path=str(tiny_encoder), cache_dir=str(tmp_path / "cache"), texts=TEXTS, lengths=[3] * 5,
               max_length=16, pooling="cls")
    try:
        with pytest.raises(ProbekitError, match=r"^bench peers, in .*python.*: bench peers: 'st_tensorrt' is not a "
                                                r"peer; choose from st_torch, "):
            worker.build(names=["st_tensorrt"], **req)
        if missing_packages(["st_onnx"]):  # this venv lacks the peers extra: the worker says what to install
            with pytest.raises(ProbekitError, match=r"^bench peers, in .*: bench peers st_onnx need onnxruntime"):
                worker.build(names=["st_onnx"], **req)
    finally:
        worker.close()
    assert not (tmp_path / "cache").exists()  # nothing exported before the check


def test_a_worker_that_dies_is_one_line_with_its_log(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named probekit' >&2\nexit 1\n")
    fake.chmod(0o755)
    worker = peer_client.Worker(str(fake), tmp_path / "worker.log")
    with pytest.raises(ProbekitError, match=r"the worker \(.*python\) exited with code 1 during 'build': "
                                            r"ModuleNotFoundError: No module named probekit \(log: .*worker.log\); "
                                            r"run make bench-extract"):
        worker.build(names=["st_torch"])
    worker.close()


def test_an_unusable_peers_python_or_missing_packages_here_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(ProbekitError, match=r"^\[bench\] peers_python='/no/python' is not an executable file; run "
                                            r"make bench-extract"):
        peer_client.open_peers(["st_onnx"], "/no/python", tmp_path / "log")
    from probekit.stages.extract.bench import peers

    monkeypatch.setattr(peers, "_present", lambda module: module == "sentence_transformers")
    with pytest.raises(ProbekitError, match=r"^bench peers st_torch, st_onnx need onnxruntime, optimum-onnx, not "
                                            r"installed in this environment; run make bench-extract .* or set "
                                            r"bench.peers=\[\]\.$"):
        peer_client.open_peers(["st_torch", "st_onnx"], "", tmp_path / "log")
    assert isinstance(peer_client.open_peers(["st_torch"], "", tmp_path / "log"), peer_client.InProcess)


def test_bench_peers_keys_are_checked_in_the_config():
    b = load_config(DEMO).bench
    assert b.peers == ("st_torch", "st_onnx", "st_openvino", "st_onnx_int8", "st_openvino_int8")
    assert b.peers_python == "" and b.baselines == ("book",)
    assert load_config(DEMO, ["bench.peers=[]"]).bench.peers == ()
    with pytest.raises(ConfigError, match=r"\[bench\] peers='st_onx' is not one of 'st_torch', 'st_onnx', "):
        load_config(DEMO, ["bench.peers=['st_torch', 'st_onx']"])
    with pytest.raises(ConfigError, match=r"'sentence_transformers' is now the peer 'st_torch' in \[bench\] peers"):
        load_config(DEMO, ["bench.baselines=['book', 'sentence_transformers']"])
