"""``report.md`` and ``report.html`` of an evaluation folder.

Order (what a reader needs first): what was registered (setup), the summary table, the
plots (TRE box plot, runtime on a log scale, folding), failures, the per-pair table and
the QC strips. ``report.html`` is one self-contained file: CSS inline, every figure
embedded as ``<img src="data:image/png;base64,...">``. ``report.md`` links the same
figures as files under ``DIR/figures/`` and ``DIR/pairs/``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from medreg.io.atomic import write_bytes_atomic, write_text_atomic
from medreg.report.plots import folding_bars, runtime_bars, tre_boxplot
from medreg.report.tables import pair_table, setup_table, summary_table

FIGURES = (("tre_boxplot.png", "Landmark error per pair", tre_boxplot),
           ("runtime.png", "Runtime per pair (log scale)", runtime_bars),
           ("folding.png", "Folding", folding_bars))
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:0.88em} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f4f7} td:first-child,th:first-child{text-align:left;white-space:nowrap}
table.setup td{text-align:left} table.setup td:first-child{font-weight:600;color:#444}
tr.best td{background:#eef8ee} .figs{display:flex;flex-wrap:wrap;gap:12px} .figs img{max-width:100%;height:auto;border:1px solid #eee}
img.qc{max-width:100%;height:auto;display:block;margin:4px 0} .note{color:#666;font-size:0.9em} code{background:#f4f4f4;padding:1px 4px}
details summary{cursor:pointer;font-weight:600;margin:6px 0}
"""


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]], *, best_row: int | None = None, cls: str = "") -> str:
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        attr = ' class="best"' if i == best_row else ""
        out.append(f"<tr{attr}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(data: bytes, alt: str, cls: str = "") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _best_method_row(summary: dict[str, Any], methods: list[str], offset: int) -> int | None:
    best, best_v = None, None
    for i, m in enumerate(m for m in methods if m in summary["methods"]):
        v = summary["methods"][m]["metrics"]["tre_mean"]["mean"]
        if v is not None and (best_v is None or v < best_v):
            best, best_v = i + offset, v
    return best


def write_report(out: Path, info: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any], *,
                 max_qc_pairs: int = 20) -> tuple[Path, Path]:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into ``out`` (replacing earlier ones)."""
    out = Path(out)
    methods = [m["name"] for m in info.get("methods", [])]
    methods += sorted({r["method"] for r in rows} - set(methods))
    title = f"medreg evaluation: {info.get('dataset', '?')} ({info.get('split', '?')} split)"
    setup = setup_table(info, rows)
    s_header, s_rows = summary_table(summary, methods)
    offset = 1 if s_rows and s_rows[0][0] == "no registration" else 0
    best = _best_method_row(summary, methods, offset)
    figures = []
    for name, caption, plot in FIGURES:
        data = plot(rows, methods)
        write_bytes_atomic(out / "figures" / name, data, overwrite=True)
        figures.append((name, caption, data))
    failures = [r for r in rows if r.get("status") != "ok"]
    p_header, p_rows = pair_table(rows, methods)
    pairs = sorted({r["pair"] for r in rows})
    qc_pairs = pairs[:max_qc_pairs]
    qc = {(r["pair"], r["method"]): r.get("qc") for r in rows if r.get("status") == "ok" and r.get("qc")}
    ref = summary.get("reference")
    note = (f"Means over pairs (± standard deviation over pairs). TRE: phi evaluated at the fixed landmarks vs the moving "
            f"landmarks. Robustness: share of landmarks whose error went down vs no registration. Folding: % of voxels with "
            f"det J <= 0. SDlogJ: std of log det J (2-voxel border cropped). Time: the method's own registration time per pair. "
            f"Speedup: mean time of {ref} / mean time of the method; TRE ratio: mean TRE of the method / that of {ref} "
            f"(same pairs).")

    # ---- markdown
    md = [f"# {title}", "", _md_table(["", ""], [[k, v] for k, v in setup]), "", "## Summary", "",
          _md_table(s_header, s_rows), "", note, "", "## Plots", ""]
    md += [f"![{c}](figures/{n})" for n, c, _ in figures]
    if failures:
        md += ["", "## Failures", ""] + [f"- `{r['pair']}` / `{r['method']}`: {str(r.get('reason', '')).splitlines()[0] if r.get('reason') else ''}" for r in failures]
    md += ["", "## Per pair", "", _md_table(p_header, p_rows), "", "## QC", ""]
    if len(pairs) > len(qc_pairs):
        md.append(f"First {len(qc_pairs)} of {len(pairs)} pairs; every strip is under `pairs/<pair>/<method>/qc.png`.\n")
    for p in qc_pairs:
        md.append(f"### {p}\n")
        md += [f"![{p} {m}]({qc[(p, m)]})" for m in methods if (p, m) in qc]
        md.append("")
    md_path = write_text_atomic(out / "report.md", "\n".join(md) + "\n", overwrite=True)

    # ---- html
    h = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
         f"<h1>{html.escape(title)}</h1>", _html_table(["What", "Value"], [[k, v] for k, v in setup], cls="setup"),
         "<h2>Summary</h2>", _html_table(s_header, s_rows, best_row=best), f"<p class='note'>{html.escape(note)} "
         "The line with the lowest mean TRE is highlighted.</p>", "<h2>Plots</h2><div class='figs'>"]
    h += [_img(data, caption) for _, caption, data in figures]
    h.append("</div>")
    if failures:
        h.append("<h2>Failures</h2><ul>")
        h += [f"<li><code>{html.escape(r['pair'])}</code> / <code>{html.escape(r['method'])}</code>: "
              f"{html.escape(str(r.get('reason', '')).splitlines()[0] if r.get('reason') else '')}</li>" for r in failures]
        h.append("</ul>")
    h += ["<h2>Per pair</h2><details><summary>" + f"{len(pairs)} pairs</summary>", _html_table(p_header, p_rows), "</details>",
          "<h2>QC</h2><p class='note'>Axial slice through the middle of the fixed image: moving, fixed, moving warped "
          "by each method, difference, checkerboard of fixed and warped, and the deformed grid.</p>"]
    if len(pairs) > len(qc_pairs):
        h.append(f"<p class='note'>First {len(qc_pairs)} of {len(pairs)} pairs; every strip is under pairs/&lt;pair&gt;/&lt;method&gt;/qc.png.</p>")
    for p in qc_pairs:
        h.append(f"<h3>{html.escape(p)}</h3>")
        for m in methods:
            rel = qc.get((p, m))
            if rel and (out / rel).is_file():
                h.append(_img((out / rel).read_bytes(), f"QC {p} {m}", "qc"))
    h.append("</body></html>")
    html_path = write_text_atomic(out / "report.html", "\n".join(h) + "\n", overwrite=True)
    return md_path, html_path
