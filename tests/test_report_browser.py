"""The report page in a real browser: headless Chromium, driven over the DevTools pipe.

Checks that the page opens from disk with no console error, that the model table has one
row per model, that the UMAP has one point per sampled text and hovering one shows its
text, that sorting and the label filter work, and that texts and label names carrying
``<script>`` / ``<img onerror>`` payloads render as text with nothing run. A screenshot
lands in ``$PROBEKIT_TEST_ARTIFACTS`` (CI sets it) or the test's tmp folder.

Needs Chromium (Debian: apt-get install chromium; .ci/run installs it); skipped without it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from test_analysis import LABELS, PAYLOADS, UMAP_POINTS, build

from tests.browser import Browser, needs_chromium, report_page

pytestmark = needs_chromium()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A multi-label report whose texts and one label name are HTML/script payloads, open in Chromium."""
    run_dir, html_path, text = build(tmp_path_factory, "multi_label")
    with report_page(html_path, text) as (b, data):
        yield b, run_dir, data


def _hover_point(b: Browser, index: int) -> int:
    """Hover the point `index`; return the index of the point actually under the mouse (points overlap)."""
    b.hover(f'#umap circle[data-i="{index}"]')
    return int(b.eval(f"""(() => {{ const c = document.querySelector('#umap circle[data-i="{index}"]');
        const r = c.getBoundingClientRect();
        return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2).getAttribute('data-i'); }})()"""))


def _tip(b: Browser) -> dict:
    return b.eval("""(() => { const t = document.querySelector('#umap .tip');
        return {hidden: t.hidden, text: t.querySelector('.tip-text').textContent, all: t.textContent,
                i: t.getAttribute('data-i'), elements: t.querySelectorAll('img,script').length}; })()""")


def test_page_opens_clean_with_one_row_per_model_and_one_point_per_text(page):
    b, run_dir, data = page
    assert b.errors == [] and b.dialogs == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    names = b.eval("[...document.querySelectorAll('#model-table tbody tr .model')].map(e => e.textContent)")
    assert sorted(names) == sorted(metrics["models"])
    n_points = json.loads((run_dir / "report" / "report.json").read_text())["umap"]["n_rows"]
    assert b.eval("document.querySelectorAll('#umap svg circle').length") == n_points == len(data["x"]) == UMAP_POINTS
    assert b.eval("document.querySelectorAll('#label-table tbody tr').length") == len(LABELS)
    out = Path(os.environ.get("PROBEKIT_TEST_ARTIFACTS") or run_dir / "report") / "report-browser.png"
    assert b.screenshot(out, full_page=True).read_bytes()[:4] == b"\x89PNG"


def test_hover_shows_the_text_and_labels(page):
    b, _, data = page
    i = _hover_point(b, 5)
    time.sleep(0.1)
    tip = _tip(b)
    assert not tip["hidden"] and tip["i"] == str(i)
    assert tip["text"] == data["text"][i]
    true = ", ".join(LABELS[j] for j in data["true"][i]) or "(none)"
    assert f"true: {true}" in tip["all"] and "predicted: " in tip["all"]


def test_sorting_and_label_filter(page):
    b, _, data = page
    header = ("[...document.querySelectorAll('#label-table thead tr.cols th')]"
              ".find(h => h.textContent === 'test support')")
    column = "[...document.querySelectorAll('#label-table tbody tr td:nth-child(2)')].map(td => +td.dataset.v)"
    b.eval(f"{header}.click()")  # the first click sorts largest first, the second smallest first
    desc = b.eval(column)
    b.eval(f"{header}.click()")
    asc = b.eval(column)
    assert desc == sorted(desc, reverse=True) and asc == sorted(asc) and asc != desc
    b.eval("(() => { const f = document.getElementById('umap-filter'); f.value = '2';"
           " f.dispatchEvent(new Event('change')); })()")
    assert b.eval("document.querySelectorAll('#umap circle.hl').length") == sum(2 in s for s in data["true"])
    b.eval("(() => { const f = document.getElementById('umap-filter'); f.value = 'all';"
           " f.dispatchEvent(new Event('change')); })()")
    assert b.errors == []


def test_payloads_render_as_text_and_never_run(page):
    b, _, data = page
    assert b.eval("window.__pwned === undefined") is True
    assert b.eval("document.title") == "probekit report: t"
    assert b.dialogs == [] and b.errors == []
    assert b.eval("document.scripts.length") == 2  # the JSON data block and the page's own script
    assert b.eval("document.querySelectorAll('img:not([src^=\"data:image/png\"])').length") == 0
    body = b.eval("document.body.innerText")
    for payload in PAYLOADS[:2]:
        assert payload in body  # visible, literally, in the error tables
    assert LABELS[1] in body  # the label name, as text (legend, tables)
    flagged = [i for i, t in enumerate(data["text"]) if "<script>" in t or "<img" in t]
    assert flagged, "the UMAP sample holds no payload text"
    i = _hover_point(b, flagged[0])
    time.sleep(0.1)
    tip = _tip(b)
    assert tip["text"] == data["text"][i] and tip["elements"] == 0
    assert b.eval("window.__pwned === undefined") is True and b.errors == []
