"""``probekit table``: the README's results table, printed from metrics.json alone."""

from __future__ import annotations

import json

from probekit.cli import main
from probekit.stages.analysis.table import results_table


def _entry(macro_f1, *, params=None, input_="features", feature_set="mean", ci=None, fixed=0.1, sel=2.0):
    tuned = {"macro_f1": macro_f1, "micro_f1": macro_f1 + 0.1, "macro_auc": 0.9, "micro_auc": 0.95}
    test = {"macro_f1": fixed, "tuned": tuned, **({"ci": {"macro_f1": ci}} if ci else {})}
    return {"test": test, "params": params or {}, "input": input_, "feature_set": feature_set,
            "fit_seconds": 3.4, "selection": {"seconds": sel}}


METRICS = {
    "problem_type": "multi_label",
    "models": {
        "dummy": _entry(0.075, feature_set="cls"),
        "tfidf_logreg": _entry(0.456, params={"C": 1.0, "class_weight": "balanced"}, input_="texts",
                               feature_set=None, ci=[0.432, 0.474]),
        "hybrid_logreg": _entry(0.468, params={"C": 1.0, "class_weight": "none", "emb_C": 0.03,
                                               "emb_class_weight": "none", "emb_weight": 0.5}, input_="both"),
    },
    "comparisons": {"best": "hybrid_logreg"},
}


def test_one_row_per_model_with_its_numbers_and_the_best_in_bold():
    lines = results_table(METRICS).splitlines()
    assert lines[0].startswith("| model | features | test macro-F1 [CI] |") and "macro-F1 at 0.5" in lines[0]
    assert len(lines) == 2 + 3
    assert lines[2] == "| dummy | - | 0.075 | 0.175 | 0.900 | 0.950 | 0.100 | 3 s | 2 s |"
    assert lines[3].startswith("| tfidf_logreg (C=1, balanced) | words | 0.456 [0.432, 0.474] | 0.556 |")
    assert lines[4].startswith("| **hybrid_logreg (C=1, features C=0.03, weight 0.5)** | words + mean | **0.468** |")


def test_single_label_tables_have_no_fixed_threshold_column():
    single = {**METRICS, "problem_type": "single_label"}
    assert "macro-F1 at 0.5" not in results_table(single).splitlines()[0]


def test_the_command_prints_it_and_a_missing_run_is_one_line(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    assert main(["table", "--run", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == results_table(METRICS)
    assert main(["table", "--run", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make classify" in err


def test_a_fine_tuned_row_names_how_many_layers_were_trained():
    def finetuned(k):
        return {**_entry(0.404, input_="texts", feature_set=None), "history": [{"epoch": 1}], "train_layers": k}

    old = finetuned(0)
    del old["train_layers"]  # a fine-tuned folder from before train_layers
    metrics = {**METRICS, "models": {"finetuned": finetuned(0), "finetuned-top2": finetuned(2), "finetuned-old": old}}
    rows = results_table(metrics).splitlines()[2:]
    assert rows[0].startswith("| finetuned | fine-tuned, all layers | 0.404 |")
    assert rows[1].startswith("| finetuned-top2 | fine-tuned, top 2 layers | 0.404 |")
    assert rows[2].startswith("| finetuned-old | fine-tuned | 0.404 |")


def test_the_features_column_names_the_tfidf_analyzer():
    def words(analyzer, input_="texts", feature_set=None):
        return _entry(0.47, params={"C": 1.0, "analyzer": analyzer}, input_=input_, feature_set=feature_set)

    metrics = {**METRICS, "models": {"tfidf_logreg": words("word+char_wb"), "chars": words("char_wb"),
                                     "hybrid_logreg": words("word+char_wb", "both", "mean_last4_avg"),
                                     "plain": words("word")}}
    cells = {line.split(" | ")[0].strip("|* ").split(" (")[0]: line.split(" | ")[1]
             for line in results_table(metrics).splitlines()[2:]}
    assert cells == {"tfidf_logreg": "words + chars", "chars": "chars", "plain": "words",
                     "hybrid_logreg": "words + chars + mean_last4_avg"}
