"""The interactive parts of the report page: the UMAP map, sortable tables, model pickers.

No library and no network: the page carries one small script (:data:`SCRIPT`) and the map's
points as JSON in a ``<script type="application/json">`` block. Every text reaches the DOM
through ``textContent``, never ``innerHTML``, and :func:`script_json` escapes ``<``, ``>``
and ``&`` so no text can close the block (``</script>``) or open a comment (``<!--``).
"""

from __future__ import annotations

import json

import numpy as np

GRID = 1000  # map coordinates are stored as integers 0..GRID: 3 digits are plenty on screen


def script_json(obj) -> str:
    """JSON safe to place inside ``<script type="application/json">``."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def clip_text(text: str, n_chars: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n_chars else text[: n_chars - 1] + "…"


def _label_sets(Y: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in np.asarray(Y)]


def umap_payload(emb: np.ndarray, rows: np.ndarray, Y: np.ndarray, Yhat: np.ndarray | None, texts: list[str],
                 labels: list[str], colors: list[str], split: str, n_split: int, predicted_by: str,
                 flagged: np.ndarray | None = None, n_chars: int = 240) -> dict:
    """The map's data: integer coordinates, clipped texts, true and predicted label ids.

    Args:
        emb: (n_points, 2) UMAP coordinates of the sampled rows `rows` of the split.
        Y, Yhat: (n_points, n_labels) 0/1 true and predicted labels of those rows (Yhat may be None).
        texts: the texts of those rows.
        flagged: (n_points,) bool, likely label errors among them (or None).
    """
    emb = np.asarray(emb, dtype=np.float64)
    lo, span = emb.min(axis=0), np.ptp(emb, axis=0)
    span[span == 0] = 1.0
    xy = np.rint((emb - lo) / span * GRID).astype(int)
    return {
        "split": split, "n_split": int(n_split), "labels": list(labels), "colors": list(colors),
        "x": xy[:, 0].tolist(), "y": (GRID - xy[:, 1]).tolist(),  # SVG's y axis points down
        "row": np.asarray(rows).tolist(), "text": [clip_text(t, n_chars) for t in texts],
        "true": _label_sets(Y), "pred": None if Yhat is None else _label_sets(Yhat), "predicted_by": predicted_by,
        "flagged": [] if flagged is None else np.flatnonzero(flagged).tolist(),
    }


SCRIPT = r"""
(function () {
  "use strict";
  // Sortable tables: click a header; numbers sort by data-v, text by content.
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead tr.cols th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("aria-sort") === "descending" ? 1 : -1;
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        function key(row) {
          var cell = row.cells[col]; if (!cell) return "";
          var v = cell.getAttribute("data-v");
          if (v !== null) return v === "" ? -Infinity : parseFloat(v);
          return cell.textContent.trim().toLowerCase();
        }
        rows.sort(function (a, b) {
          var ka = key(a), kb = key(b);
          return (ka < kb ? -1 : ka > kb ? 1 : 0) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // Pickers: <select data-panes="g"> shows the .pane[data-group=g] whose data-key is the value.
  document.querySelectorAll("select[data-panes]").forEach(function (sel) {
    function show() {
      document.querySelectorAll('.pane[data-group="' + sel.getAttribute("data-panes") + '"]').forEach(function (p) {
        p.hidden = p.getAttribute("data-key") !== sel.value;
      });
    }
    sel.addEventListener("change", show); show();
  });

  var holder = document.getElementById("umap-data");
  var box = document.getElementById("umap");
  if (!holder || !box) return;
  var D = JSON.parse(holder.textContent), n = D.x.length, NS = "http://www.w3.org/2000/svg";
  var svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "-12 -12 1024 1024");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "UMAP of " + n + " " + D.split + " texts");
  var r = Math.max(2, Math.min(7, 220 / Math.sqrt(n)));
  var flagged = {}; D.flagged.forEach(function (i) { flagged[i] = true; });
  var dots = [];
  for (var i = 0; i < n; i++) {
    var c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", D.x[i]); c.setAttribute("cy", D.y[i]); c.setAttribute("r", r);
    c.setAttribute("data-i", i);
    svg.appendChild(c); dots.push(c);
  }
  box.appendChild(svg);
  var tip = document.createElement("div"); tip.className = "tip"; tip.hidden = true; box.appendChild(tip);
  var colorBy = document.getElementById("umap-color"), filter = document.getElementById("umap-filter");
  var note = document.getElementById("umap-note");
  function names(ids) { return ids.length ? ids.map(function (j) { return D.labels[j]; }).join(", ") : "(none)"; }
  function sameSet(a, b) { return a.length === b.length && a.every(function (v, k) { return v === b[k]; }); }
  function paint() {
    var by = colorBy ? colorBy.value : "true", f = filter ? filter.value : "all", hits = 0;
    dots.forEach(function (c, i) {
      var set = by === "pred" && D.pred ? D.pred[i] : D.true[i];
      c.setAttribute("fill", set.length ? D.colors[set[0]] : "#bbb");
      var on = f === "all" ? null
        : f === "wrong" ? (D.pred && !sameSet(D.pred[i], D.true[i]))
        : f === "flagged" ? !!flagged[i]
        : (D.true[i].indexOf(+f) >= 0 || (by === "pred" && D.pred && D.pred[i].indexOf(+f) >= 0));
      c.setAttribute("class", on === null ? "" : on ? "hl" : "dim");
      if (on) { hits++; svg.appendChild(c); }
    });
    if (note) note.textContent = f === "all" ? n + " points" : hits + " of " + n + " points highlighted";
  }
  if (colorBy) colorBy.addEventListener("change", paint);
  if (filter) filter.addEventListener("change", paint);
  document.querySelectorAll("#umap-legend button").forEach(function (b) {
    b.addEventListener("click", function () { filter.value = b.getAttribute("data-label"); paint(); });
  });
  function line(cls, label, value) {
    var d = document.createElement("div"); d.className = cls;
    if (label) { var b = document.createElement("b"); b.textContent = label; d.appendChild(b); }
    d.appendChild(document.createTextNode(value)); return d;
  }
  svg.addEventListener("mouseover", function (ev) {
    var i = ev.target.getAttribute && ev.target.getAttribute("data-i");
    if (i === null || i === undefined) return;
    i = +i;
    tip.replaceChildren(line("tip-text", "", D.text[i]), line("", "true: ", names(D.true[i])));
    if (D.pred) tip.appendChild(line("", "predicted: ", names(D.pred[i])));
    if (flagged[i]) tip.appendChild(line("flag", "", "likely label error (out-of-fold probe disagrees)"));
    tip.setAttribute("data-i", i);
    var rb = box.getBoundingClientRect(), x = ev.clientX - rb.left, y = ev.clientY - rb.top;
    tip.style.left = Math.min(x + 14, rb.width - 330) + "px"; tip.style.top = (y + 14) + "px";
    tip.hidden = false;
  });
  svg.addEventListener("mouseleave", function () { tip.hidden = true; });
  paint();
})();
"""
