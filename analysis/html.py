"""HTML building blocks for the report page: escaping, tables, bars, heatmaps, the page shell.

Every value that comes from data (texts, label and model names, config values) goes
through :func:`esc`; helpers take already-escaped HTML only where their argument is named
``*_html``. The page carries a Content-Security-Policy that allows no network at all and
only the page's own script (by its hash): a page that opens from disk and stays offline.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path

import numpy as np

CSS = """
:root{--fg:#1d2330;--muted:#6b7280;--line:#e3e6eb;--bg2:#f6f7f9;--acc:#2563eb;--good:#15803d;--bad:#b91c1c}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
color:var(--fg);margin:0;background:#fff}header{padding:18px 28px 8px;border-bottom:1px solid var(--line)}
h1{font-size:22px;margin:0 0 4px}nav{position:sticky;top:0;z-index:5;background:#fffd;backdrop-filter:blur(4px);
border-bottom:1px solid var(--line);padding:6px 28px}
nav a{margin-right:16px;color:var(--acc);text-decoration:none;font-weight:600}
main{padding:0 22px 40px;max-width:1500px}section{margin-top:26px;scroll-margin-top:44px}
h2{font-size:18px;margin:0 0 6px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:14px 0 4px}.muted{color:var(--muted);font-size:12.5px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(185px,1fr));gap:12px;margin-top:14px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--bg2)}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:650}.card .s{font-size:12.5px}.verdict{font-weight:600;margin:10px 0 0}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:right;vertical-align:top}
th{background:var(--bg2);font-weight:600;white-space:nowrap}td.l,th.l{text-align:left}
table.sortable tr.cols th{cursor:pointer}tr.group th{text-align:center;background:#eef2f7}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}tr.best td{background:#ecfdf3}
tr.baseline td{color:var(--muted)}.ci{color:var(--muted);font-size:11px;white-space:nowrap}
.badge{background:var(--good);color:#fff;border-radius:3px;padding:0 4px;font-size:10.5px;margin-left:4px}
td.bar{position:relative;min-width:64px}
td.bar span.b{position:absolute;left:0;bottom:0;height:3px;background:var(--acc);opacity:.55}
td.text{text-align:left;max-width:560px;min-width:240px;white-space:pre-wrap;overflow-wrap:anywhere}
td.params{text-align:left;min-width:150px;max-width:230px;font-size:11.5px;color:#374151}
table.heat td{padding:1px 2px;min-width:26px;font-size:10.5px;text-align:center}
table.heat th{font-size:10.5px;padding:1px 3px}
table.heat th.col{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;vertical-align:bottom}
.flex{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.flex>div{min-width:0}#umap{position:relative;
width:min(760px,94vw);height:min(760px,94vw);border:1px solid var(--line);border-radius:6px}
#umap svg{width:100%;height:100%}#umap circle{stroke:none;opacity:.75}#umap circle.dim{opacity:.07}
#umap circle.hl{opacity:1;stroke:#111;stroke-width:.8}#umap circle:hover{stroke:#000;stroke-width:2}
.tip{position:absolute;z-index:3;width:320px;background:#fff;border:1px solid #999;border-radius:6px;
padding:6px 8px;box-shadow:0 2px 8px #0003;font-size:12px;pointer-events:none;overflow-wrap:anywhere}
.tip .tip-text{margin-bottom:4px}.tip .flag{color:var(--bad);font-weight:600}.controls{margin:6px 0}
.controls select{margin-right:12px}#umap-legend button{border:1px solid var(--line);background:#fff;
border-radius:10px;padding:1px 7px;margin:2px;font-size:11.5px;cursor:pointer}
#umap-legend i{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:4px}
img{max-width:100%;border:1px solid var(--line);border-radius:6px}details{margin:6px 0}
summary{cursor:pointer;font-weight:600}pre{background:var(--bg2);border:1px solid var(--line);padding:8px;
font-size:11.5px;overflow:auto;max-height:480px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}dt{font-weight:600}dd{margin:0}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else esc(value)


def cell(content_html: str, sort_value=None, cls: str = "", title: str = "") -> dict:
    """A table cell: escaped HTML content, an optional numeric sort key, class and tooltip."""
    return {"html": content_html, "v": sort_value, "cls": cls, "title": title}


def value_cell(value, digits: int = 3, ci=None, bar: bool = False) -> dict:
    """A number (n/a when None) with its interval under it and a bar for values in [0, 1]."""
    content = num(value, digits)
    if ci and ci[0] is not None and ci[1] is not None:
        content += f'<br><span class="ci">[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]</span>'
    if bar and isinstance(value, (int, float)) and 0 <= value <= 1:
        content += f'<span class="b" style="width:{100 * value:.0f}%"></span>'
    return cell(content, "" if value is None else value, "bar" if bar else "")


def table(head: list, rows: list[tuple[list, str]], sortable: bool = True, table_id: str = "",
          cls: str = "", left=1, groups: list[tuple[str, int]] | None = None) -> str:
    """An HTML table. `head`: header texts (escaped here). `rows`: (cells, row class); a cell
    is a :func:`cell` dict or an escaped HTML string. `left`: the number of leading columns,
    or the set of column indices, aligned left (text); the others align right (numbers).
    `groups`: an extra header row above, (title, colspan) pairs."""
    lefts = set(range(left)) if isinstance(left, int) else set(left)
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    th = "".join(f'<th class="l">{esc(h)}</th>' if i in lefts else f"<th>{esc(h)}</th>" for i, h in enumerate(head))
    top = ""
    if groups:
        top = "<tr class=\"group\">" + "".join(f'<th colspan="{n}">{esc(t)}</th>' for t, n in groups) + "</tr>"
    body = []
    for cells, row_cls in rows:
        tds = []
        for i, c in enumerate(cells):
            c = c if isinstance(c, dict) else cell(c)
            klass = " ".join(x for x in ("l" if i in lefts else "", c["cls"]) if x)
            attrs = [f'class="{esc(klass)}"'] if klass else []
            if c["v"] is not None:
                attrs.append(f'data-v="{esc(c["v"])}"')
            if c["title"]:
                attrs.append(f'title="{esc(c["title"])}"')
            tds.append(f"<td{' ' if attrs else ''}{' '.join(attrs)}>{c['html']}</td>")
        tr = f'<tr class="{esc(row_cls)}">' if row_cls else "<tr>"
        body.append(tr + "".join(tds) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table{ident} class="{classes}"><thead>{top}<tr class="cols">{th}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def heatmap(M: np.ndarray, row_names: list[str], col_names: list[str], counts: np.ndarray | None = None,
            row_title: str = "true", col_title: str = "predicted") -> str:
    """A [0, 1] matrix as a coloured table; NaN cells blank; hover shows the pair and count."""
    head = f'<th class="l">{esc(row_title)} \\ {esc(col_title)}</th>' + "".join(
        f'<th class="col">{esc(c)}</th>' for c in col_names)
    body = []
    for i, name in enumerate(row_names):
        tds = []
        for j, col in enumerate(col_names):
            v = M[i, j]
            if not np.isfinite(v):
                tds.append("<td></td>")
                continue
            n = f", {int(counts[i, j])} rows" if counts is not None else ""
            color = f"rgba(37,99,235,{min(1.0, float(v)):.2f})"
            fg = "#fff" if v > 0.55 else "#111"
            ring = ";outline:1px solid #555" if i == j else ""
            tds.append(f'<td style="background:{color};color:{fg}{ring}" title="{esc(name)} → {esc(col)}: '
                       f'{v:.2f}{n}">{"" if v < 0.005 else f"{v:.2f}"[1:] if v < 1 else "1"}</td>')
        body.append(f'<tr><th class="l">{esc(name)}</th>{"".join(tds)}</tr>')
    return (f'<div class="scroll"><table class="heat"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def pre_json(obj) -> str:
    return f"<pre>{esc(json.dumps(obj, indent=2, ensure_ascii=False, default=str))}</pre>"


def details(summary: str, body_html: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body_html}</details>"


def names(items) -> str:
    return esc(", ".join(items) if items else "(none)")


def page(title: str, header_html: str, nav: list[tuple[str, str]], sections_html: str, script: str,
         data_json: str = "") -> str:
    """The whole document. `script` is the page's only script, allowed by its SHA-256 in the CSP."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    links = "".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in nav)
    data = f'<script type="application/json" id="umap-data">{data_json}</script>' if data_json else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header>{header_html}</header><nav>{links}</nav><main>{sections_html}</main>"
            f"{data}<script>{script}</script></body></html>\n")
