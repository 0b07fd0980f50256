"""classify and analysis run on a laptop without torch, transformers or datasets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, write_fake_cache

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    HEAVY = {"torch", "transformers", "datasets"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"{name} is not installed on this laptop")

    sys.meta_path.insert(0, Block())
""")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_blocker_blocks():
    r = run_blocked("import torch")
    assert r.returncode != 0 and "not installed on this laptop" in r.stderr


@pytest.mark.slow
def test_classify_and_report_run_without_torch(tmp_path):
    write_fake_cache(tmp_path / "laptop")
    r = run_blocked(f"""
        import sys
        from probekit.cli import main
        args = ["--artifacts", {str(tmp_path)!r}, "--set", "run.name='laptop'", "--set", "classify.n_jobs=1",
                "--set", "classify.random_forest.n_estimators=10", "--set", "report.umap_max_points=40"]
        assert main(["classify", *args]) == 0
        assert main(["report", *args]) == 0
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
        assert not loaded, loaded
        print("OK")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]
    assert (tmp_path / "laptop" / "metrics.json").is_file()
    assert (tmp_path / "laptop" / "report" / "index.html").is_file()


def test_extract_without_torch_names_the_extra(tmp_path):
    r = run_blocked(f"""
        from probekit.cli import main
        raise SystemExit(main(["extract", "--artifacts", {str(tmp_path)!r}]))
    """)
    assert r.returncode == 2 and "pip install -e '.[extract]'" in r.stderr and "Traceback" not in r.stderr
