"""The page's building blocks: the document with its inline style and script, tables, and images as data URIs."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

from PIL import Image

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 1.5em 2em;color:#222;background:#fafafa}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}
h3{font-size:1em;margin:.8em 0 .3em}
nav{position:sticky;top:0;background:#fafafa;padding:.4em 0;border-bottom:1px solid #ddd;z-index:2}
nav a{margin-right:1em}
table{border-collapse:collapse;font-size:13px;margin:.4em 0}
th,td{border:1px solid #ccc;padding:2px 8px;text-align:right;vertical-align:top}
th{background:#eee}td:first-child,th:first-child,td.text{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots figure{margin:0;background:#fff;border:1px solid #ddd}
.plots svg{width:340px;height:auto;display:block}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:250px;background:#fff;border:1px solid #ddd;padding:4px;font-size:12px;margin:0}
.card img{width:250px;height:auto;cursor:zoom-in;display:block;image-rendering:auto}
.card .id{font-family:monospace;font-size:11px;color:#666;word-break:break-all}
.chip{display:inline-block;padding:0 4px;margin:1px;border-radius:3px;color:#000}
.swatch{display:inline-block;width:12px;height:12px;vertical-align:middle;margin:0 3px 0 10px}
.filters{background:#fff;border:1px solid #ddd;padding:6px;margin:.4em 0;font-size:13px}
.filters label{margin-right:1em}.filters input[type=number]{width:5em}
#lightbox{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);z-index:9;cursor:zoom-out;
 align-items:center;justify-content:center;flex-direction:column;color:#fff}
#lightbox.open{display:flex}#lightbox img{max-width:95vw;max-height:85vh;image-rendering:pixelated}
#lightbox div{margin-top:.5em;max-width:90vw}
.empty{color:#777;font-style:italic}
"""

SCRIPT = """
function applyFilters(){
  const kinds=new Set([...document.querySelectorAll('input.kind:checked')].map(e=>e.value));
  const lo=parseFloat(document.getElementById('iou-min').value);
  const hi=parseFloat(document.getElementById('iou-max').value);
  let shown=0;
  document.querySelectorAll('.pair').forEach(p=>{
    const iou=parseFloat(p.dataset.iou);
    const ok=kinds.has(p.dataset.kind)&&!(iou<lo)&&!(iou>hi);
    p.hidden=!ok; if(ok) shown++;
  });
  document.getElementById('pairs-shown').textContent=shown;
  const reason=document.getElementById('reason').value;
  let rows=0;
  document.querySelectorAll('#failures tbody tr').forEach(r=>{
    const ok=reason===''||r.dataset.reason===reason; r.hidden=!ok; if(ok) rows++;
  });
  document.getElementById('failures-shown').textContent=rows;
}
function enlarge(img){
  const box=document.getElementById('lightbox');
  box.querySelector('img').src=img.src;
  box.querySelector('div').textContent=img.dataset.caption||img.alt;
  box.classList.add('open');
}
document.addEventListener('DOMContentLoaded',()=>{
  document.querySelectorAll('.filters input, .filters select').forEach(e=>e.addEventListener('change',applyFilters));
  document.querySelectorAll('img.zoom').forEach(e=>e.addEventListener('click',()=>enlarge(e)));
  const box=document.getElementById('lightbox');
  box.addEventListener('click',()=>box.classList.remove('open'));
  document.addEventListener('keydown',e=>{if(e.key==='Escape') box.classList.remove('open');});
  if(document.getElementById('pairs-shown')) applyFilters();
});
"""

esc = html.escape


def document(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole page: ``sections`` as (anchor, heading, body HTML), a navigation bar to them, and the lightbox
    that shows an enlarged image."""
    nav = "".join(f"<a href='#{anchor}'>{esc(heading)}</a>" for anchor, heading, _ in sections)
    body = "".join(f"<section id='{anchor}-section'><h2 id='{anchor}'>{esc(heading)}</h2>{content}</section>"
                   for anchor, heading, content in sections)  # fmt: skip
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<meta name='viewport' content='width=device-width'><style>{STYLE}</style><script>{SCRIPT}</script>"
        f"</head><body><h1>{esc(title)}</h1><nav>{nav}</nav>{body}"
        "<div id='lightbox' role='dialog'><img alt='enlarged'><div></div></div></body></html>"
    )


def table(table_id: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], row_attrs: Sequence[str] = ()) -> str:
    """A table; cells are escaped text (numbers as they are), ``row_attrs`` (one per row, e.g. ``data-reason='x'``)
    are written into each ``<tr>`` as they are."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if i < len(row_attrs) else ""
        cells = "".join(f"<td{'' if isinstance(c, int | float) else ' class=text'}>{esc(str(c))}</td>" for c in row)
        body.append(f"<tr{attrs}>{cells}</tr>")
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def number(value: float | None, digits: int = 3) -> str:
    """A float for a table: ``digits`` decimals, "-" for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def data_uri(image: Image.Image) -> str:
    """``image`` as an inline JPEG (quality 90: a tenth of a PNG's size on photographs, labels still sharp)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def attr(value: Any) -> str:
    """A value escaped for an attribute in single quotes."""
    return esc(str(value), quote=True)
