"""The report page: one self-contained HTML file (Plotly inlined once, no network request), a header with the
run's identity, a navigation sidebar, one section per study (takeaways, figures, tables), the point explorer and a
glossary.  Colours: one colour-blind-safe colour per trace ``legendgroup`` key across the whole page."""

from __future__ import annotations

import html
import json
import re

import numpy as np

from ..studies.figures import Figure, Term
from ..studies.glossary import lookup

__all__ = ["PALETTE", "assign_colours", "render_page", "anchor"]

# Okabe & Ito (2008), yellow last (weak on white), then Paul Tol's "muted": both colour-blind safe
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000", "#332288", "#117733",
           "#882255", "#44AA99", "#999933", "#AA4499", "#88CCEE", "#CC6677", "#DDCC77", "#F0E442"]
TABLE_ROWS = 2000  # rows shown (and downloadable) per table: the page stays small for big per-point tables


def anchor(prefix: str, name: str) -> str:
    """A stable HTML id for ``name``.

    Examples
    --------
    >>> anchor("g", "nnk_degree"), anchor("g", "a b/c")
    ('g-nnk_degree', 'g-a_b_c')
    """
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(name))


def assign_colours(figures) -> dict[str, str]:
    """Give every trace with a ``legendgroup`` and no colour of its own the page-wide colour of its key, in
    order of first appearance; returns key -> colour.

    Examples
    --------
    >>> import plotly.graph_objects as go
    >>> a = go.Figure([go.Scatter(y=[1, 2], legendgroup="epoch 1"), go.Scatter(y=[2, 1], legendgroup="epoch 2")])
    >>> b = go.Figure([go.Scatter(y=[3, 4], legendgroup="epoch 2")])
    >>> assign_colours([a, b]) == {"epoch 1": PALETTE[0], "epoch 2": PALETTE[1]}, b.data[0].line.color == PALETTE[1]
    (True, True)
    """
    colours: dict[str, str] = {}
    for fig in figures:
        for trace in fig.data:
            key = getattr(trace, "legendgroup", None)
            if not key:
                continue
            colour = colours.setdefault(key, PALETTE[len(colours) % len(PALETTE)])
            marker = getattr(trace, "marker", None)
            if marker is not None and marker.color is None:
                marker.color = colour
            line = getattr(trace, "line", None)
            if line is not None and getattr(line, "color", "x") is None:
                line.color = colour
            err = getattr(trace, "error_y", None)
            if err is not None and err.array is not None and err.color is None:
                err.color = colour
    return colours


def _json(obj) -> str:
    """JSON safe inside a <script> element."""
    return obj.replace("</", "<\\/") if isinstance(obj, str) else json.dumps(obj, separators=(",", ":")).replace(
        "</", "<\\/")


def _esc(text) -> str:
    return html.escape(str(text))


def _term_link(col: str, glossary: dict) -> str:
    t = lookup(col, glossary)
    tip = f"{t.definition} ({t.range}; {t.direction})" if t else "not in the glossary"
    return f"<a class='term' href='#{anchor('g', col)}' title='{_esc(tip)}'>{_esc(col)}</a>"


def _figure(fig: Figure, fid: str, glossary: dict, used: set) -> str:
    import plotly.io as pio

    out = [f"<figure id='{fid}'><figcaption class='ftitle'>{_esc(fig.title)}</figcaption>"]
    if isinstance(fig.plot, str):
        out.append(f"<img alt='{_esc(fig.title)}' src='data:image/png;base64,{fig.plot}'>")
    else:
        spec = pio.to_json(fig.plot, validate=False)
        out.append(f"<div class='plot' data-spec='{fid}-spec'></div>"
                   f"<script type='application/json' id='{fid}-spec'>{_json(spec)}</script>")
    if fig.caption:
        out.append(f"<p class='caption'>{_esc(fig.caption)}</p>")
    if fig.terms:
        used.update(fig.terms)
        out.append("<p class='terms'>Terms: " + " · ".join(_term_link(t, glossary) for t in fig.terms) + "</p>")
    out.append("</figure>")
    return "".join(out)


def _cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{v:.4g}"
    return _esc(v)


def _table(df, tid: str, glossary: dict, used: set) -> str:
    cols = [str(c) for c in df.columns]
    used.update(cols)
    head = "".join(f"<th title='{_esc(lookup(c, glossary).definition if lookup(c, glossary) else '')}'>"
                   f"{_esc(c)}<a class='q' href='#{anchor('g', c)}'>?</a></th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>"
                   for r in df.head(TABLE_ROWS).itertuples(index=False))
    more = (f"<p class='note'>first {TABLE_ROWS} of {len(df)} rows (the run folder holds all; "
            "<code>nnkscope query</code> reads them)</p>" if len(df) > TABLE_ROWS else "")
    return (f"<div class='tbar'><button class='csv' data-table='{tid}'>download CSV</button> "
            f"<span class='note'>click a column to sort</span></div><div class='twrap'>"
            f"<table id='{tid}' class='sortable'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
            f"{more}")


def _section(i: int, sec: dict, used: set, glossary: dict) -> str:
    sid = anchor("sec", i)
    out = [f"<section id='{sid}'><h2>{_esc(sec['title'])}</h2>"]
    if sec.get("unavailable"):
        out.append(f"<p class='unavailable'><b>Unavailable.</b> {_esc(sec['unavailable'])}</p></section>")
        return "".join(out)
    if sec.get("takeaways"):
        out.append("<ul class='takeaways'>" + "".join(f"<li>{_esc(t)}</li>" for t in sec["takeaways"]) + "</ul>")
    for j, fig in enumerate(sec.get("figures", [])):
        out.append(_figure(fig, f"{sid}-f{j}", glossary, used))
    table = sec.get("table")
    if isinstance(table, str):  # a legacy section's ready-made HTML table
        out.append(f"<details open><summary>table</summary><div class='tbar'><button class='csv' "
                   f"data-table='{sid}-t0'>download CSV</button></div><div class='twrap' id='{sid}-t0'>"
                   f"{table}</div></details>")
    elif table is not None:
        tables = table if isinstance(table, dict) else {"table": table}
        for j, (name, df) in enumerate(tables.items()):
            out.append(f"<details open><summary>table <code>{_esc(name)}</code> ({len(df)} rows)</summary>"
                       f"{_table(df, f'{sid}-t{j}', glossary, used)}</details>")
    out.append("</section>")
    return "".join(out)


def _header(identity: list[dict]) -> str:
    out = []
    for ident in identity:
        rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in ident["rows"])
        out.append(f"<div class='ident'><h3>{_esc(ident['name'])}</h3><table class='kv'>{rows}</table>"
                   f"<details><summary>all parameters</summary><pre>{_esc(ident['params'])}</pre></details></div>")
    return "<div class='idents'>" + "".join(out) + "</div>"


def _explorer(i: int, runs: list[tuple[str, dict]]) -> str:
    sid = anchor("sec", i)
    out = [f"<section id='{sid}'><h2>Points: explore each layer</h2>",
           "<p class='caption'>Each layer's NNK graph drawn in 2-D (its spectral embedding). Move the sliders "
           "through epochs and layers, colour by label or by a per-point metric, hover or click a point to see the "
           f"sample and its NNK neighbours (heaviest first). Terms: {_term_link('view_x', {})} · "
           f"{_term_link('instability', {})}</p>"]
    for j, (name, data) in enumerate(runs):
        eid = f"{sid}-e{j}"
        out.append(f"<div class='explorer' id='{eid}' data-spec='{eid}-spec'>"
                   f"{'<h3>' + _esc(name) + '</h3>' if len(runs) > 1 else ''}"
                   "<div class='ctl'></div><div class='exrow'><div class='explot plot-ex'></div>"
                   "<div class='panel'>hover or click a point</div></div>"
                   f"<script type='application/json' id='{eid}-spec'>{_json(data)}</script></div>")
        out.append(_worst_html(data, eid))
    out.append("</section>")
    return "".join(out)


def _sample_html(data: dict, model: str, node: int) -> str:
    samples = (data.get("samples") or {}).get(model)
    if not samples or node >= len(samples) or samples[node] is None:
        return ""
    s = samples[node]
    if data["sample_kind"] == "thumbnail":
        return f"<img class='thumb' alt='sample {node}' src='data:image/png;base64,{s}'>"
    return f"<span class='stext'>{_esc(s)}</span>"


def _worst_html(data: dict, eid: str) -> str:
    if not data.get("worst"):
        return ""
    out = ["<div class='worst'><h3>Worst points (last epoch, deepest layer)</h3>"]
    for w in data["worst"]:
        v = data["views"][w["view"]]
        items = []
        for node, val in zip(w["nodes"], w["values"], strict=False):
            lab = data["labels"][data["lab"][w["view"]][node]]
            items.append(f"<button class='wpt' data-ex='{eid}' data-view='{w['view']}' data-node='{node}' "
                         f"title='node {node}, label {_esc(lab)}'>{_sample_html(data, v['model'], node)}"
                         f"<span>#{node} · {_esc(lab)} · {val}</span></button>")
        none = "" if items else "<p class='note'>none: every point's value is 0</p>"
        out.append(f"<div class='wrow'><b>{_esc(v['model'])}, {_esc(v['layer'])}, epoch {v['epoch']}: highest "
                   f"{_term_link(w['metric'], {})}</b><div class='witems'>{''.join(items)}</div>{none}</div>")
    out.append("</div>")
    return "".join(out)


def _glossary(used: set, glossary: dict) -> str:
    rows = []
    for col in sorted(used):
        t = lookup(col, glossary)
        t = t or Term("not defined yet (a column of this run's tables)")
        rows.append(f"<tr id='{anchor('g', col)}'><th>{_esc(col)}</th><td>{_esc(t.definition)}</td>"
                    f"<td>{_esc(t.range)}</td><td>{_esc(t.direction)}</td><td>{_esc(t.source)}</td></tr>")
    return ("<section id='glossary'><h2>Glossary</h2><table class='gloss'><thead><tr><th>term</th><th>definition"
            "</th><th>range</th><th>direction</th><th>source</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></section>")


def render_page(title: str, identity: list[dict], sections: list[dict], explorers: list[tuple[str, dict]],
                plotly_js: str, version: str) -> str:
    """The whole page as text."""
    glossary: dict = {}
    for sec in sections:
        glossary.update(sec.get("glossary") or {})
    used: set = set()
    body, nav = [], []
    for i, sec in enumerate(sections):
        body.append(_section(i, sec, used, glossary))
        mark = " (unavailable)" if sec.get("unavailable") else ""
        figs = "" if sec.get("unavailable") else "".join(
            f"<li><a href='#{anchor('sec', i)}-f{j}'>{_esc(f.title)}</a></li>" for j, f in enumerate(sec["figures"]))
        nav.append(f"<li><a href='#{anchor('sec', i)}'>{_esc(sec['title'])}{mark}</a>"
                   f"{'<ul class=sub>' + figs + '</ul>' if figs else ''}</li>")
    if explorers:
        i = len(sections)
        body.append(_explorer(i, explorers))
        nav.append(f"<li><a href='#{anchor('sec', i)}'>Points: explore each layer</a></li>")
        used.update(["view_x", "view_y", "instability"])
        used.update(m for _, d in explorers for m in d["metrics"])
    body.append(_glossary(used, glossary))
    nav.append("<li><a href='#glossary'>Glossary</a></li>")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_esc(title)}</title>
<style>{CSS}</style></head><body>
<nav id="toc"><b>nnkscope report</b><ul><li><a href="#run">Run</a></li>{''.join(nav)}</ul></nav>
<main><header id="run"><h1>{_esc(title)}</h1>{_header(identity)}</header>{''.join(body)}
<footer>nnkscope {_esc(version)}: one self-contained file, no network access; figures by Plotly.</footer></main>
<script type="text/plain" id="plotly-src">{plotly_js}</script>
<script>const LABEL_COLOURS = {json.dumps(PALETTE)};{JS}</script></body></html>"""


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;font-size:14px;line-height:1.45}
#toc{position:fixed;top:0;left:0;bottom:0;width:210px;overflow:auto;padding:14px;background:#f5f6f8;
 border-right:1px solid #ddd;box-sizing:border-box}
#toc ul{list-style:none;padding:0;margin:8px 0}#toc li{margin:4px 0}
#toc ul.sub{margin:2px 0 6px 10px;font-size:12.5px}#toc a{color:#0b57d0;text-decoration:none}
main{margin-left:210px;padding:8px 24px 40px;max-width:1180px}
h1{font-size:22px;margin:10px 0}h2{font-size:19px;border-bottom:2px solid #0072B2;padding-bottom:3px;margin-top:34px}
h3{font-size:15px;margin:10px 0 4px}
.idents{display:flex;flex-wrap:wrap;gap:16px}.ident{flex:1 1 420px}
table.kv th{text-align:left;padding-right:10px;vertical-align:top;font-weight:600;white-space:nowrap}
table.kv td{word-break:break-all}
pre{font-size:11px;max-height:300px;overflow:auto;background:#f7f7f7;padding:6px}
.takeaways{background:#eef5fb;border-left:4px solid #0072B2;padding:8px 8px 8px 28px;margin:10px 0}
figure{margin:16px 0}.ftitle{font-weight:600;font-size:15px}.plot{min-height:200px}
.plot:empty::before,.explot:empty::before{content:'drawing the figure…';color:#999;font-size:12px}
img{max-width:100%}.caption,.terms,.note{color:#555;font-size:12.5px;margin:3px 0}
a.term{color:#0b57d0}a.q{font-size:10px;margin-left:3px;color:#888;text-decoration:none}
.twrap{max-height:420px;overflow:auto;border:1px solid #e3e3e3}
table{border-collapse:collapse;font-size:12px}td,th{padding:2px 6px;border-bottom:1px solid #e5e5e5}
table.sortable th{cursor:pointer;position:sticky;top:0;background:#fafafa;white-space:nowrap}
.tbar{margin:4px 0}button{font-size:12px}
.unavailable{background:#fff3e0;border-left:4px solid #D55E00;padding:8px}
table.gloss td,table.gloss th{vertical-align:top;text-align:left}table.gloss tr:target{background:#fff6c8}
.exrow{display:flex;gap:12px;flex-wrap:wrap}.explot{flex:1 1 560px;height:480px}
.panel{flex:0 1 320px;font-size:12.5px;border:1px solid #e3e3e3;padding:8px;max-height:480px;overflow:auto}
.ctl label{margin-right:14px;font-size:13px}.ctl input[type=range]{vertical-align:middle;width:140px}
img.thumb{width:48px;height:48px;image-rendering:pixelated;border:1px solid #ccc;background:#000}
.panel img.thumb.big{width:96px;height:96px}.nb{display:inline-block;margin:3px;text-align:center;font-size:11px}
.stext{font-size:12px}.witems{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0 10px}
button.wpt{display:flex;flex-direction:column;align-items:center;border:1px solid #ccc;background:#fff;
 padding:3px;max-width:190px;cursor:pointer}
footer{margin-top:40px;color:#777;font-size:12px}
@media print{#toc,.ctl,.tbar,.panel{display:none}main{margin:0;max-width:none}.twrap{max-height:none}
 details{display:block}section{break-inside:avoid-page}}
@media (max-width:900px){#toc{position:static;width:auto}main{margin-left:0}}
"""

JS = r"""
window.nnkscopeStart = performance.now();
const CFG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ['sendDataToCloud']};
function spec(id) { return JSON.parse(document.getElementById(id).textContent); }
// Plotly (4.8 MB, 2-4 s to evaluate on a laptop core) starts only after the page has loaded, from the inline
// copy as a blob script, so text, takeaways, tables and navigation are usable at once; then figures near the
// viewport are drawn, the rest one by one while the browser is idle (and all before printing)
const PENDING = new Set();
function drawFigure(div) { const s = spec(div.dataset.spec); Plotly.newPlot(div, s.data, s.layout, CFG); }
function draw(el) {
  if (!window.Plotly || !PENDING.delete(el)) return;
  (el.classList.contains('explorer') ? Explorer : drawFigure)(el);
}
function drawRest() {
  const el = PENDING.values().next().value;
  if (el === undefined) { window.nnkscopeAllDrawn = performance.now(); return; }
  draw(el); setTimeout(drawRest, 30);
}
// sortable tables and CSV download, on the DOM (also for legacy ready-made tables)
function tableOf(el) { return el.tagName === 'TABLE' ? el : el.querySelector('table'); }
document.querySelectorAll('table.sortable, .twrap table').forEach(t => {
  t.querySelectorAll('thead th').forEach((th, i) => th.addEventListener('click', ev => {
    if (ev.target.tagName === 'A') return;
    const body = t.tBodies[0], rows = [...body.rows], asc = th.dataset.dir !== 'asc';
    const val = r => { const s = r.cells[i] ? r.cells[i].textContent : ''; const v = parseFloat(s);
      return isNaN(v) || !/^[-+.\de]/i.test(s.trim()) ? s : v; };
    rows.sort((a, b) => { const x = val(a), y = val(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c; });
    th.dataset.dir = asc ? 'asc' : 'desc'; rows.forEach(r => body.appendChild(r));
  }));
});
document.querySelectorAll('button.csv').forEach(b => b.addEventListener('click', () => {
  const t = tableOf(document.getElementById(b.dataset.table));
  const q = s => /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  const lines = [...t.rows].map(r => [...r.cells].map(c => q(c.firstChild && c.tagName === 'TH' ?
      c.firstChild.textContent : c.textContent)).join(','));
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([lines.join('\n')], {type: 'text/csv'}));
  a.download = b.dataset.table + '.csv'; a.click();
}));
// the point explorer
const EXPLORERS = {};
function sampleHtml(D, model, node, big) {
  const s = D.samples && D.samples[model] ? D.samples[model][node] : null;
  if (s == null) return '';
  if (D.sample_kind === 'thumbnail')
    return '<img class="thumb' + (big ? ' big' : '') + '" alt="sample ' + node +
      '" src="data:image/png;base64,' + s + '">';
  const d = document.createElement('span'); d.className = 'stext'; d.textContent = s; return d.outerHTML;
}
function esc(s) { const d = document.createElement('span'); d.textContent = String(s); return d.innerHTML; }
function Explorer(root) {
  const D = spec(root.dataset.spec), ctl = root.querySelector('.ctl'), plot = root.querySelector('.explot');
  const panel = root.querySelector('.panel'), models = [...new Set(D.views.map(v => v.model))];
  const st = {model: models[0], epoch: 0, layer: 0, colour: 'label', node: null};
  const epochs = m => [...new Set(D.views.filter(v => v.model === m).map(v => v.epoch))];
  const layers = m => [...new Set(D.views.filter(v => v.model === m).map(v => v.layer))];
  const metricNames = Object.keys(D.metrics);
  ctl.innerHTML = (models.length > 1 ? '<label>model <select class="m">' + models.map(m => '<option>' + esc(m) +
      '</option>').join('') + '</select></label>' : '') +
    '<label>epoch <input type="range" class="e" min="0" step="1"> <b class="ev"></b></label>' +
    '<label>layer <input type="range" class="l" min="0" step="1"> <b class="lv"></b></label>' +
    '<label>colour <select class="c"><option value="label">label</option>' +
    metricNames.map(m => '<option>' + m + '</option>').join('') + '</select></label>';
  const q = s => ctl.querySelector(s);
  function view() {
    const e = epochs(st.model)[st.epoch], l = layers(st.model)[st.layer];
    return D.views.findIndex(v => v.model === st.model && v.epoch === e && v.layer === l);
  }
  function sync() {
    const es = epochs(st.model), ls = layers(st.model);
    st.epoch = Math.min(st.epoch, es.length - 1); st.layer = Math.min(st.layer, ls.length - 1);
    q('.e').max = es.length - 1; q('.e').value = st.epoch; q('.ev').textContent = es[st.epoch];
    q('.l').max = ls.length - 1; q('.l').value = st.layer; q('.lv').textContent = ls[st.layer];
  }
  function draw() {
    sync(); const i = view(); if (i < 0) return;
    const x = D.x[i], y = D.y[i], lab = D.lab[i], n = x.length, traces = [];
    const hover = 'node %{customdata}<br>x %{x:.3g}, y %{y:.3g}<extra>%{fullData.name}</extra>';
    if (st.colour === 'label') {
      D.labels.forEach((name, c) => {
        const idx = [...Array(n).keys()].filter(j => lab[j] === c);
        if (!idx.length) return;
        traces.push({type: 'scattergl', mode: 'markers', name: 'label ' + name, x: idx.map(j => x[j]),
          y: idx.map(j => y[j]), customdata: idx, hovertemplate: hover,
          marker: {size: 6, color: LABEL_COLOURS[c % LABEL_COLOURS.length], opacity: 0.8}});
      });
    } else {
      const vals = D.metrics[st.colour][i];
      traces.push({type: 'scattergl', mode: 'markers', name: st.colour, x: x, y: y, customdata: [...Array(n).keys()],
        text: vals.map(v => v == null ? 'n/a' : String(v)),
        hovertemplate: 'node %{customdata}<br>' + st.colour + ' = %{text}<extra></extra>',
        marker: {size: 6, color: vals.map(v => v == null ? NaN : v), colorscale: 'Viridis', showscale: true,
          colorbar: {title: {text: st.colour}, thickness: 12}}});
    }
    if (st.node != null && st.node < n) {
      const nb = (D.nbr[i] || [])[st.node] || [];
      traces.push({type: 'scattergl', mode: 'markers', name: 'NNK neighbours', x: nb.map(j => x[j]),
        y: nb.map(j => y[j]), customdata: nb, hovertemplate: hover,
        marker: {size: 11, color: 'rgba(0,0,0,0)', line: {color: '#000', width: 1.5}}});
      traces.push({type: 'scattergl', mode: 'markers', name: 'selected', x: [x[st.node]], y: [y[st.node]],
        customdata: [st.node], hovertemplate: hover, marker: {size: 14, symbol: 'x', color: '#000'}});
    }
    const v = D.views[i];
    Plotly.react(plot, traces, {title: {text: v.model + ': ' + v.layer + ', epoch ' + v.epoch, font: {size: 14}},
      margin: {l: 30, r: 10, t: 40, b: 30}, xaxis: {showticklabels: false, zeroline: false},
      yaxis: {showticklabels: false, zeroline: false}, legend: {font: {size: 11}}, hovermode: 'closest'}, CFG);
    if (st.node != null) show(st.node);
  }
  function show(node) {
    const i = view(), v = D.views[i], nb = (D.nbr[i] || [])[node] || [], nw = (D.nbw[i] || [])[node] || [];
    let h = '<b>node ' + node + '</b> · label ' + esc(D.labels[D.lab[i][node]]);
    if (D.pred[i] && D.pred[i].length) h += ' · NNK vote ' + esc(D.pred[i][node]);
    h += '<br>' + sampleHtml(D, v.model, node, true) + '<br>';
    h += metricNames.map(m => m + ' = ' + (D.metrics[m][i][node] == null ? 'n/a' : D.metrics[m][i][node])).join('<br>');
    h += '<br><b>NNK neighbours</b> (weight): ' + (nb.length ? '' : 'not stored in this run') + '<br>';
    h += nb.map((j, r) => '<span class="nb">' + sampleHtml(D, v.model, j, false) + '<br>#' + j + ' ' +
      esc(D.labels[D.lab[i][j]]) + ' (' + nw[r] + ')</span>').join('');
    panel.innerHTML = h;
  }
  if (q('.m')) q('.m').addEventListener('change', ev => { st.model = ev.target.value; st.node = null; draw(); });
  q('.e').addEventListener('input', ev => { st.epoch = +ev.target.value; draw(); });
  q('.l').addEventListener('input', ev => { st.layer = +ev.target.value; draw(); });
  q('.c').addEventListener('change', ev => { st.colour = ev.target.value; draw(); });
  st.epoch = epochs(st.model).length - 1; st.layer = layers(st.model).length - 1;
  draw();
  plot.on('plotly_hover', ev => show(ev.points[0].customdata));
  plot.on('plotly_click', ev => { st.node = ev.points[0].customdata; draw(); });
  EXPLORERS[root.id] = {select(i, node) { const v = D.views[i]; st.model = v.model;
    st.epoch = epochs(v.model).indexOf(v.epoch); st.layer = layers(v.model).indexOf(v.layer); st.node = node;
    if (q('.m')) q('.m').value = v.model; draw(); root.scrollIntoView(); }};
}
document.querySelectorAll('button.wpt').forEach(b => b.addEventListener('click', () => {
  if (!window.Plotly) return;  // still loading: the explorer is drawn in a moment
  draw(document.getElementById(b.dataset.ex)); EXPLORERS[b.dataset.ex].select(+b.dataset.view, +b.dataset.node); }));
document.querySelectorAll('figure .plot, .explorer').forEach(el => PENDING.add(el));
function startFigures() {
  window.nnkscopePlotly = performance.now();
  const near = new IntersectionObserver(es => es.forEach(e => { if (e.isIntersecting) draw(e.target); }),
                                        {rootMargin: '400px'});
  PENDING.forEach(el => { if (el.getBoundingClientRect().top < innerHeight + 400) draw(el); else near.observe(el); });
  window.addEventListener('beforeprint', () => [...PENDING].forEach(draw));
  window.nnkscopeReady = performance.now();
  setTimeout(drawRest, 100);
}
function loadPlotly() {
  const s = document.createElement('script');
  s.src = URL.createObjectURL(new Blob([document.getElementById('plotly-src').textContent],
                                       {type: 'text/javascript'}));
  s.onload = startFigures;
  s.onerror = () => document.querySelectorAll('.plot, .explot').forEach(d => {
    d.textContent = 'This browser could not run the embedded Plotly script, so the figures cannot be drawn.'; });
  document.head.appendChild(s);
}
window.nnkscopeOpen = performance.now();  // the page's own scripts have run: text, tables and links work
if (document.readyState === 'complete') loadPlotly(); else window.addEventListener('load', loadPlotly);
"""
