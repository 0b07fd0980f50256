"""Fine-tune the run's encoder end to end; classify scores it exactly like the frozen-feature models.

    probekit finetune --config configs/demo.toml        (or: make finetune classify report)

``AutoModelForSequenceClassification`` on ``[finetune] model`` (default: the run's
``[encoder] model``), trained on the same data, labels and splits as the feature cache
(``extract.data.load`` with the run's ``[data]``): BCE with logits for multi-label data,
cross entropy for single-label, optionally per-label ``pos_weight`` / balanced class
weights or a focal loss (loss.py); AdamW with linear warmup and decay; optionally the head
alone first with the encoder frozen (``head_epochs``), then everything at ``lr``
(trainer.py). Validation is scored after every epoch; the best epoch's weights are kept and
training stops after ``patience`` epochs without a better one.

The stage writes only ``<run>/finetuned/`` (stage.py): the checkpoint, result.json and the
validation/test probabilities. The next ``probekit classify`` gathers that folder: it tunes
the thresholds on validation, scores test, adds bootstrap intervals and the paired
comparison, and writes the model's metrics.json entry. predict.py runs new texts through it.
"""

from probekit.stages.extract.finetune.loss import label_matrix, make_loss
from probekit.stages.extract.finetune.predict import FinetunedModel, predict_texts
from probekit.stages.extract.finetune.stage import read_result, run_finetune, run_key

__all__ = ["FinetunedModel", "label_matrix", "make_loss", "predict_texts", "read_result", "run_finetune", "run_key"]
