"""Peak memory of ``probekit extract`` on all the data vs a quarter of it, and a warm rerun.

Each measurement is a fresh ``probekit extract`` process (the run's [run], [data] and
[encoder] settings, outputs in a temporary folder) whose own peak RSS (``VmHWM``;
Linux only) and time after its imports are read back. The quarter is the first
quarter of every split file, copied to a temporary folder (local tsv/csv/jsonl data).
The warm rerun repeats the full run on its finished cache: it only loads the data,
checks the cache and returns (timed as configured, and once more with ``report.wandb``
off, since the extract stage's W&B run alone takes seconds).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from probekit.core.config import PROJECT_ROOT, Config, DataSection, json_ready
from probekit.core.runfolder import MANIFEST_NAME, SPLITS, features_dir

logger = logging.getLogger(__name__)

_MARK = "PROBEKIT_RSS "
_CHILD = f"""
import json, sys, time
import datasets, torch, transformers  # imported before the clock starts: the time is work after imports
from probekit.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
seconds = time.perf_counter() - t
# VmHWM, the peak of this process image: ru_maxrss would start from the (large) parent's
# RSS at fork, as Linux carries it across exec.
with open("/proc/self/status") as f:
    rss = next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024
print({_MARK!r} + json.dumps({{"rc": rc, "seconds": seconds, "max_rss_mb": rss}}), flush=True)
"""


def quarter_copy(data: DataSection, dest: Path) -> bool:
    """Write the first quarter of every split file of `data` to `dest`; False when the format is not line-based."""
    if data.source != "local" or data.format not in ("tsv", "csv", "jsonl"):
        return False
    root = Path(data.path)
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        src = root / f"{data.splits[split]}.{data.format}"
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        head = lines[:1] if data.format != "jsonl" and data.header else []
        body = lines[len(head):]
        (dest / src.name).write_text("".join(head + body[:max(1, math.ceil(len(body) / 4))]), encoding="utf-8")
    if data.label_names_file and not Path(data.label_names_file).is_absolute():
        shutil.copy(root / data.label_names_file, dest / data.label_names_file)
    return True


def _child(cfg: Config, data: DataSection, artifacts: Path, *more: str) -> dict:
    """One ``probekit extract`` in a fresh process with these settings; its peak RSS, time and rows.

    Args:
        more: further ``--set`` overrides.
    """
    data = dataclasses.replace(data, path=str(Path(data.path).resolve()) if data.source == "local" else data.path)
    run = dataclasses.replace(cfg.run, artifacts=str(artifacts))
    args = ["-q", "extract", "--config", cfg.source or str(PROJECT_ROOT / "configs/demo.toml")]
    for section, obj in (("run", run), ("data", data), ("encoder", cfg.encoder)):
        for f in dataclasses.fields(obj):
            args += ["--set", f"{section}.{f.name}={json_ready(getattr(obj, f.name))!r}"]
    for item in more:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith(_MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"bench: the extract subprocess failed (exit {done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(line[len(_MARK):])
    manifest = json.loads((features_dir(Path(artifacts) / run.name) / MANIFEST_NAME).read_text(encoding="utf-8"))
    out["n_texts"] = sum(manifest["splits"].values())
    out["max_rss_mb"], out["seconds"] = round(out["max_rss_mb"], 1), round(out["seconds"], 2)
    return out


def rss_report(cfg: Config, data: DataSection) -> dict:
    """Peak RSS on all of `data` and on a quarter of it, and the warm rerun's time after imports."""
    with tempfile.TemporaryDirectory(prefix="probekit-bench-") as tmp:
        tmp = Path(tmp)
        if not quarter_copy(data, tmp / "quarter-data"):
            return {"skipped": f"needs local tsv/csv/jsonl data ([data] source={data.source}, format={data.format})"}
        logger.info("bench: probekit extract on all the data, in a fresh process")
        full = _child(cfg, data, tmp / "full")
        logger.info("bench: the same again, on its finished cache (warm rerun), with and without W&B")
        warm = _child(cfg, data, tmp / "full")
        bare = _child(cfg, data, tmp / "full", "report.wandb=False")
        logger.info("bench: probekit extract on a quarter of the data")
        quarter = _child(cfg, dataclasses.replace(data, path=str(tmp / "quarter-data")), tmp / "quarter")
    return {"full": full, "quarter": quarter, "ratio": round(full["max_rss_mb"] / quarter["max_rss_mb"], 3),
            "warm_rerun_s": warm["seconds"], "warm_rerun_s_without_wandb": bare["seconds"],
            "warm_rerun_rss_mb": warm["max_rss_mb"],
            "full_texts_per_s": round(full["n_texts"] / full["seconds"], 1)}
