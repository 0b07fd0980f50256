"""The binary report in a real browser: headless Chromium, driven over the DevTools pipe.

A binary run (tests/test_binary.py's fixture: the positive class "angry", three models,
metrics.json as classify writes it) opens from disk with no console error; the Summary leads
with the positive class's F1, precision, recall, average precision and the threshold, with no
strongest/weakest-label cards; the curves image is drawn; the confusion matrix shows counts
that add up to the test rows; sorting the models table by the positive class's F1 works; the
map's legend colours are the density panels' (one colour per label, the same on both). A
screenshot lands in ``$PROBEKIT_TEST_ARTIFACTS`` (CI sets it) or the test's tmp folder.

Needs Chromium (Debian: apt-get install chromium; .ci/run installs it); skipped without it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from matplotlib.colors import to_hex
from test_binary import LABELS, SIZES, build_binary

from probekit.stages.analysis import plots
from tests.browser import needs_chromium, report_page

pytestmark = needs_chromium()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The binary report (positive class "angry", three models), open in Chromium."""
    run_dir, html_path, text = build_binary(tmp_path_factory.mktemp("binary-browser"))
    with report_page(html_path, text) as (b, data):
        yield b, run_dir, data


def test_binary_page_opens_clean_and_leads_with_the_positive_class(page):
    b, run_dir, _ = page
    assert b.errors == [] and b.dialogs == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = metrics["comparisons"]["best"]
    pos = metrics["models"][best]["test"]["positive"]
    cards = b.eval("[...document.querySelectorAll('#summary .card')].map(c => c.innerText)")
    keys = [c.split("\n")[0].lower() for c in cards]
    assert not any("strongest" in k or "weakest" in k for k in keys)
    first = cards[0]
    assert best in first and f"angry F1 {pos['f1']:.3f}" in first
    assert any(f"{pos['precision']:.3f} / {pos['recall']:.3f}" in c for c in cards)
    assert any(f"{pos['average_precision']:.3f}" in c for c in cards)
    assert any(k.startswith("threshold") for k in keys) and any(f"{pos['threshold']:.3f}" in c for c in cards)
    assert any(k.startswith("texts cut at") for k in keys)
    assert b.eval("document.querySelector('#labels img').naturalWidth") > 100  # the ROC and PR curves
    out = Path(os.environ.get("PROBEKIT_TEST_ARTIFACTS") or run_dir / "report") / "report-binary-browser.png"
    assert b.screenshot(out, full_page=True).read_bytes()[:4] == b"\x89PNG"


def test_binary_confusion_counts_add_up_and_models_sort_by_positive_f1(page):
    b, run_dir, _ = page
    counts = b.eval("[...document.querySelectorAll('#binary-confusion tbody td b')].map(e => +e.textContent)")
    assert len(counts) == 4 and sum(counts) == SIZES["test"]
    header = ("[...document.querySelectorAll('#model-table thead tr.cols th')]"
              ".find(h => h.textContent === 'angry F1')")
    column = "[...document.querySelectorAll('#model-table tbody tr td:nth-child(3)')].map(td => +td.dataset.v)"
    b.eval(f"{header}.click()")
    desc = b.eval(column)
    assert desc == sorted(desc, reverse=True) and len(desc) == 3
    assert b.errors == []


def test_map_legend_colours_are_the_density_panels(page):
    b, _, data = page
    legend = b.eval("[...document.querySelectorAll('#umap-legend button i')].map(i => getComputedStyle(i)"
                    ".backgroundColor)")
    want = [to_hex(c) for c in plots.label_colors(len(LABELS))]
    assert data["colors"] == want
    rgb = [tuple(int(x) for x in re.findall(r"\d+", s)[:3]) for s in legend]
    assert [f"#{r:02x}{g:02x}{bl:02x}" for r, g, bl in rgb] == want
    assert [to_hex(plots.label_cmap(c)(1.0)) for c in want] == want  # each panel's ramp ends at it
