"""Finished models are kept across classify runs: after a kill, a failure, and a finished run.

Each model is selected, fitted, saved and scored into ``<run>/classify.progress/`` (the same
layout as the run folder: ``models/<name>.skops|.json``, ``scores/<name>.<split>.npy``); its
metrics.json entry goes to ``classify.progress/<name>.json`` together with the run key (the
classify settings, the feature cache's key and the seed) and the sha256 of each of those
files. Only when every model is done does classify publish them (:meth:`Progress.publish`):
the new ``models/`` and ``scores/`` are assembled from hard links to these files and swapped
in with metrics.json written last, so a run that fails at any point leaves the previous
metrics.json, models and scores as they were.

A rerun with the same key takes a model from here instead of fitting it again, but only if
every file still has the recorded checksum; anything else is fitted anew. The records stay
after metrics.json is written, so an interrupted run resumes (Ctrl-C, ``kill -9``, a full
disk) and ``make finetune classify`` on a finished run only scores the fine-tuned model.
Every model is seeded, so a resumed run writes the same metrics.json (but for timings) and
the same scores as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from probekit.core.runfolder import (
    MODELS_DIRNAME,
    SCORES_DIRNAME,
    cache_key,
    output_files,
    sha256_file,
    swap_in_dirs,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

DIRNAME = "classify.progress"
LAYOUT = 2  # in the key: records of the layout before (files in models/ and scores/) are not reused


class Progress:
    """The finished models of classify runs with one key (settings, feature cache, seed)."""

    def __init__(self, run_dir: str | Path, key_fields: dict):
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / DIRNAME  # also the "run folder" the models and scores are written to
        self.key = cache_key({**key_fields, "progress_layout": LAYOUT})
        self.files: dict[str, dict[str, str]] = {}  # model -> {file relative to the run folder: sha256}

    def done(self, name: str) -> dict | None:
        """The entry of a model an earlier run finished with this key, else None."""
        path = self.dir / f"{name}.json"
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            files, entry = dict(record["files"]), record["entry"]
            if record.get("key") != self.key or not isinstance(entry, dict):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        for rel, digest in files.items():
            p = self.dir / rel
            if not p.is_file() or sha256_file(p) != digest:
                logger.info("classify: %s changed since the earlier run; fitting %s again", p, name)
                return None
        logger.info("classify: %-20s kept from an earlier run with the same settings (%s)", name, path)
        self.files[name] = files
        return entry

    def record(self, name: str, entry: dict, fitted: bool = True) -> None:
        """Mark `name` finished; call after its model and score files are in :attr:`dir`."""
        files = {rel: sha256_file(self.dir / rel) for rel in output_files(name, fitted)}
        write_json_atomic(self.dir / f"{name}.json", {"key": self.key, "files": files, "entry": entry})
        self.files[name] = files

    def add_files(self, name: str, fitted: bool = False) -> None:
        """Count a model's files in :attr:`dir` for :meth:`publish` without a record (the fine-tuned
        model's scores: it is scored again on every run)."""
        self.files[name] = {rel: sha256_file(self.dir / rel) for rel in output_files(name, fitted)}

    def publish(self, models: list[str], write_metrics) -> dict[str, str]:
        """Swap in new ``models/`` and ``scores/`` holding exactly `models`' files, then call
        ``write_metrics(files)`` (files: relative path -> sha256, for metrics.json); on any
        error the run folder's previous models/, scores/ and metrics.json stay as they were."""
        stage = self.run_dir / f".classify.publish.tmp-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        files = {rel: digest for m in models for rel, digest in self.files[m].items()}
        try:
            for sub in (MODELS_DIRNAME, SCORES_DIRNAME):
                (stage / sub).mkdir(parents=True)
            for rel in files:
                _link_or_copy(self.dir / rel, stage / rel)
            swap_in_dirs(self.run_dir, stage, (MODELS_DIRNAME, SCORES_DIRNAME), lambda: write_metrics(files))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return files

    def clear(self) -> None:
        """Forget every finished model: the next run fits them all."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no space, no time) where the file system allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
