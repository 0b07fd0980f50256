"""Issue 19, round two: extract's writes on a full disk that sets no errno (numpy's short write).

numpy reports a short write as ``OSError: 4608 requested and 3040 written`` without an errno;
it must read as a full disk too: one line, no temporary file left, the previous cache kept.
"""

from __future__ import annotations

import pytest
from conftest import toy_overrides

from probekit.cli import main


def _argv(tmp_path, toy_data, tiny_encoder, *sets):
    argv = ["extract", "--artifacts", str(tmp_path / "a")]
    for s in [*toy_overrides(toy_data, tiny_encoder), "report.wandb=False", "encoder.shard_rows=16", *sets]:
        argv += ["--set", s]
    return argv


@pytest.mark.parametrize("where", ["shard", "labels"])
def test_a_short_write_in_extract_is_one_line_and_keeps_the_previous_cache(where, tmp_path, toy_data,
                                                                           tiny_encoder, monkeypatch, capsys):
    pytest.importorskip("torch")
    from probekit.core import cache
    from probekit.core.cache_reader import read_cache
    from probekit.stages.extract.engine import shards

    assert main(_argv(tmp_path, toy_data, tiny_encoder)) == 0
    run_dir = tmp_path / "a" / "demo"
    before = (run_dir / "features" / "manifest.json").read_bytes()
    module = shards if where == "shard" else cache
    real_save, calls = module.np.save, []

    def short(file, arr, allow_pickle=False):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("4608 requested and 3040 written")
        return real_save(file, arr, allow_pickle=allow_pickle)

    monkeypatch.setattr(module.np, "save", short)
    capsys.readouterr()
    assert main(_argv(tmp_path, toy_data, tiny_encoder, "encoder.max_length=12")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "no space left on the device" in err
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
    assert (run_dir / "features" / "manifest.json").read_bytes() == before
    read_cache(run_dir / "features")
