"""Issue 16, item 2: does a stacked hybrid (per-label weights learned out of fold) beat one global emb_weight?

Reads a classify run folder's saved probabilities (tfidf_logreg and logreg: validation from the
train-only fits, test from the refitted ones) and compares, on the same 5 seeded validation folds
that classify's cross-fitted selection uses:

* the global fusion ``logit p = logit p_words + w x logit p_features`` for each w of the preset's grid;
* per-label stacking: a logistic regression per label on (logit p_words, logit p_features), fitted
  on 4 validation folds and applied to the fifth (out of fold), then on all of validation for test;
* a per-label choice of w from a wider grid, chosen out of fold.

Every decision uses per-label thresholds tuned on rows the scored fold never saw. Run from the
repository root after ``make extract classify CONFIG=configs/goemotions-local.toml DATA=...``:

    .venv/bin/python docs/experiments/stacked_hybrid.py artifacts/goemotions-local

The output of 2026-12-05 is in docs/results.md ("Stacked hybrid, measured").
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from probekit.core.cache_reader import read_cache
from probekit.core.thresholds import tune_thresholds


def macro_f1(Y: np.ndarray, Yhat: np.ndarray) -> float:
    tp = (Y * Yhat).sum(0)
    denom = 2 * tp + (Yhat.sum(0) - tp) + (Y.sum(0) - tp)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)))


def main(run: str) -> None:
    cache = read_cache(f"{run}/features", verify=False)
    Yv, Yt = cache.Y("validation"), cache.Y("test")

    def logits(model: str) -> dict:
        return {s: logit(np.clip(np.load(f"{run}/scores/{model}.{s}.npy").astype(np.float64), 1e-6, 1 - 1e-6))
                for s in ("validation", "test")}

    W, F = logits("tfidf_logreg"), logits("logreg")
    folds = list(KFold(5, shuffle=True, random_state=0).split(Yv))

    def report(name: str, P_oof: np.ndarray, P_val: np.ndarray, P_test: np.ndarray) -> None:
        Yhat = np.zeros_like(Yv, dtype=bool)
        for tr, te in folds:
            Yhat[te] = P_oof[te] >= tune_thresholds(Yv[tr], P_oof[tr])
        test = macro_f1(Yt, P_test >= tune_thresholds(Yv, P_val))
        print(f"{name:30s} out-of-fold validation macro-F1 {macro_f1(Yv, Yhat):.4f}   test {test:.4f}")

    report("words alone", expit(W["validation"]), expit(W["validation"]), expit(W["test"]))
    for w in (0.25, 0.5, 0.75, 1.0):
        p = expit(W["validation"] + w * F["validation"])
        report(f"global emb_weight {w}", p, p, expit(W["test"] + w * F["test"]))

    def stack(rows, C):
        return [LogisticRegression(C=C).fit(np.c_[W["validation"][rows, j], F["validation"][rows, j]], Yv[rows, j])
                for j in range(Yv.shape[1])]

    def apply(models, Ws, Fs):
        return np.column_stack([m.predict_proba(np.c_[Ws[:, j], Fs[:, j]])[:, 1] for j, m in enumerate(models)])

    for C in (0.1, 1.0, 10.0):
        oof = np.zeros(Yv.shape)
        for tr, te in folds:
            oof[te] = apply(stack(tr, C), W["validation"][te], F["validation"][te])
        report(f"stacked per label, C={C}", oof, oof, apply(stack(np.arange(len(Yv)), C), W["test"], F["test"]))

    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.5])

    def choose(rows):
        out = []
        for j in range(Yv.shape[1]):
            y = Yv[rows, j:j + 1]
            scores = []
            for w in grid:
                p = expit(W["validation"][rows, j] + w * F["validation"][rows, j])[:, None]
                scores.append(macro_f1(y, p >= tune_thresholds(y, p)))
            out.append(grid[int(np.argmax(scores))])
        return np.array(out)

    oof = np.zeros(Yv.shape)
    for tr, te in folds:
        oof[te] = expit(W["validation"][te] + choose(tr) * F["validation"][te])
    w = choose(np.arange(len(Yv)))
    report("per-label emb_weight", oof, oof, expit(W["test"] + w * F["test"]))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "artifacts/goemotions-local")
