"""Finished models are kept across classify runs: after a kill, and after a finished run.

After each model is selected, fitted, saved (``models/<name>.skops``) and scored
(``scores/<name>.<split>.npy``), its metrics.json entry is written to
``<run>/classify.progress/<name>.json`` together with the run key (the classify settings,
the feature cache's key and the seed) and the sha256 of its model and score files. A
rerun with the same key takes a model from there instead of fitting it again, but only if
every file still has the recorded checksum; anything else is fitted anew.

The records stay after metrics.json is written, so an interrupted run resumes (Ctrl-C,
``kill -9``) and ``make finetune classify`` on a finished run only scores the fine-tuned
model. Every model is seeded, so a resumed run writes the same metrics.json (but for
timings) and the same scores as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from probekit.core.runfolder import cache_key, scores_path, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

DIRNAME = "classify.progress"


class Progress:
    """The finished models of classify runs with one key (settings, feature cache, seed)."""

    def __init__(self, run_dir: str | Path, key_fields: dict):
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / DIRNAME
        self.key = cache_key(key_fields)

    def _files(self, name: str, model_file: Path) -> list[Path]:
        return [model_file, *(scores_path(self.run_dir, name, s) for s in ("validation", "test"))]

    def done(self, name: str) -> dict | None:
        """The entry of a model an earlier run finished with this key, else None."""
        path = self.dir / f"{name}.json"
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None
        if record.get("key") != self.key:
            return None
        for f, digest in record["files"].items():
            p = self.run_dir / f
            if not p.is_file() or sha256_file(p) != digest:
                logger.info("classify: %s changed since the earlier run; fitting %s again", p, name)
                return None
        logger.info("classify: %-20s kept from an earlier run with the same settings (%s)", name, path)
        return record["entry"]

    def record(self, name: str, entry: dict, model_file: Path) -> None:
        """Mark `name` finished; call after its model and score files are in place."""
        self.dir.mkdir(parents=True, exist_ok=True)
        files = {str(p.relative_to(self.run_dir)): sha256_file(p) for p in self._files(name, model_file)}
        write_json_atomic(self.dir / f"{name}.json", {"key": self.key, "files": files, "entry": entry})

    def clear(self) -> None:
        """Forget every finished model: the next run fits them all."""
        shutil.rmtree(self.dir, ignore_errors=True)
