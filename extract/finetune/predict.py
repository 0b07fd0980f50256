"""New texts through a run's fine-tuned model, loaded once and kept for later calls.

probekit.run.Run holds one :class:`FinetunedModel`, so a notebook that predicts many
times loads the checkpoint once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probekit.core.errors import ProbekitError
from probekit.core.runfolder import FINETUNED_DIRNAME, finetuned_dir
from probekit.stages.extract.engine.loading import native_bf16, pick_device
from probekit.stages.extract.finetune.stage import read_result
from probekit.stages.extract.finetune.steps import predict_rows


class FinetunedModel:
    """The checkpoint in ``<run>/finetuned/`` (or ``folder``: ``<run>/finetuned-<name>/``) with its
    tokenizer, on one device."""

    def __init__(self, run_dir: str | Path, device: str = "auto", folder: str | Path | None = None):
        import torch  # noqa: F401
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

        folder = Path(folder) if folder is not None else finetuned_dir(run_dir)
        result = read_result(folder.parent, folder.name[len(FINETUNED_DIRNAME) + 1:])
        if result is None:
            raise ProbekitError(f"{folder}: no finished fine-tuned model; run 'make finetune' for this run first.")
        self.result = result
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).to(self.device)
        self.collate = DataCollatorWithPadding(self.tokenizer)
        self.multi = self.model.config.problem_type == "multi_label_classification"
        params = result["params"]
        self.max_length = params["max_length"]
        # the precision its validation/test scores were computed in, so predict reproduces them; float32 on
        # another kind of device than it was trained on, or on a CPU without native bf16
        amp = params.get("amp_dtype", "float32")
        same_kind = self.device.split(":")[0] == str(result.get("device") or "cpu").split(":")[0]
        cpu_ok = not self.device.startswith("cpu") or amp == "float32" or native_bf16(self.device)
        self.amp = amp if same_kind and cpu_ok else "float32"
        self.batch_size = result.get("config", {}).get("eval_batch_size", 64)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """float32 (n, n_labels) probabilities, columns in the run's label order."""
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        rows = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        return predict_rows(self.model, rows, self.collate, self.batch_size, self.device, self.amp, self.multi)


def predict_texts(run_dir: str | Path, texts: list[str], device: str = "auto") -> tuple[np.ndarray, dict]:
    """Probabilities of new texts under the run's fine-tuned model, and its result.json (loads it each call)."""
    model = FinetunedModel(run_dir, device)
    return model.predict_proba(texts), model.result
