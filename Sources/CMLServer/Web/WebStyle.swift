/// The web UI's stylesheet (served by `StaticAssets`). Plain CSS, system fonts, light and dark.
enum WebStyle {
    static let css = #"""
:root {
  --fg: #1d2125; --muted: #5f6b76; --bg: #ffffff; --panel: #f5f7f9; --line: #d9dee3; --accent: #0b62c4;
  --ok: #1a7f37; --bad: #c62828; --warn: #9a6700; --run: #0b62c4; --mark: #fff3b0;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e9ec; --muted: #9aa5b1; --bg: #14171a; --panel: #1d2227; --line: #333b43; --accent: #6cb2ff;
          --ok: #4cc26b; --bad: #ff6b6b; --warn: #e0b341; --run: #6cb2ff; --mark: #5a4a00; }
}
* { box-sizing: border-box; }
html { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
body { margin: 0; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 1px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.skip { position: absolute; left: -10000px; top: 0; background: var(--bg); padding: 6px 10px; z-index: 10; }
.skip:focus { left: 8px; top: 8px; }
header.top { display: flex; align-items: center; gap: 24px; padding: 8px 20px; border-bottom: 1px solid var(--line); background: var(--panel); }
header.top .brand { font-weight: 700; text-decoration: none; color: var(--fg); font-size: 16px; }
nav.main ul { display: flex; gap: 4px; list-style: none; margin: 0; padding: 0; }
nav.main a { display: block; padding: 6px 12px; border-radius: 6px; text-decoration: none; color: var(--fg); }
nav.main a:hover { background: var(--line); }
nav.main span { display: block; padding: 6px 12px; }
nav.main a[aria-current="page"] { background: var(--accent); color: #fff; }
header.top .who { margin-left: auto; display: flex; gap: 8px; align-items: center; color: var(--muted); }
main { padding: 16px 20px 40px; }
h1 { font-size: 20px; margin: 4px 0 12px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
button, input, select { font: inherit; color: inherit; }
input[type=text], input[type=search], input[type=password], select {
  padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); }
button { padding: 5px 12px; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); cursor: pointer; }
button:hover { border-color: var(--accent); }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--bad); }
form.query { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: end; margin-bottom: 8px; }
form.query label, .field label { display: block; font-size: 12px; color: var(--muted); margin-bottom: 2px; }
form.query .grow { flex: 1 1 320px; }
form.query .grow input { width: 100%; }
.filter-error { border: 1px solid var(--bad); border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.filter-error p { margin: 0 0 4px; color: var(--bad); }
.filter-error p.muted { color: var(--muted); margin: 6px 0 0; }
.filter-error pre { margin: 0; }
.filter-error mark { background: var(--mark); color: inherit; outline: 1px solid var(--bad); }
.notice { border: 1px solid var(--line); background: var(--panel); border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.notice.error { border-color: var(--bad); }
.notice p { margin: 0; }
.notice p + p { margin-top: 4px; }
pre.console { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; max-height: 70vh; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
details.columns { margin: 4px 0 10px; }
details.columns summary { cursor: pointer; color: var(--accent); }
details.columns fieldset { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; padding: 6px 10px; }
details.columns .choices { display: flex; flex-wrap: wrap; gap: 2px 14px; max-height: 180px; overflow: auto; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table.runs, table.kv { border-collapse: collapse; width: 100%; }
table.runs th, table.runs td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; vertical-align: top; }
table.runs thead th { position: sticky; top: 0; background: var(--panel); font-weight: 600; }
table.runs thead th a { color: var(--fg); text-decoration: none; }
table.runs thead th a:hover { text-decoration: underline; }
table.runs th[aria-sort=ascending] a::after { content: " \25B2"; font-size: 10px; }
table.runs th[aria-sort=descending] a::after { content: " \25BC"; font-size: 10px; }
table.runs td.num, table.runs th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.runs tbody tr:hover { background: var(--panel); }
table.runs tr.group th { background: var(--bg); font-size: 13px; padding-top: 12px; color: var(--muted); border-bottom: 2px solid var(--line); }
table.runs tr.group th span { color: var(--fg); font-weight: 700; }
table.runs td.select, table.runs th.select { width: 1%; }
.status { font-weight: 600; }
.status-completed { color: var(--ok); }
.status-failed, .status-lost { color: var(--bad); }
.status-aborted { color: var(--warn); }
.status-running, .status-queued { color: var(--run); }
.status-running::before { content: "\25CF "; }
.pager { display: flex; gap: 12px; align-items: center; margin: 10px 0; color: var(--muted); }
.tag { display: inline-block; padding: 0 6px; margin-right: 4px; border: 1px solid var(--line); border-radius: 10px; font-size: 12px; }
table.kv { width: auto; }
table.kv th, table.kv td { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
table.kv th { color: var(--muted); font-weight: 500; white-space: nowrap; }
.login { max-width: 420px; margin: 40px auto; }
.login input { width: 100%; }
.muted { color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
.chart { margin: 0; }
.chart figcaption { font-weight: 600; margin-bottom: 4px; }
.cml-chart-controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; font-size: 0.85em; }
.cml-chart-tip { background: var(--bg); border: 1px solid #888; padding: 4px 6px; font-size: 0.85em; }
/* The run page's sections (RunPageSections): contents, console search, patch, environment, images. */
nav.toc ul { display: flex; flex-wrap: wrap; gap: 4px 14px; list-style: none; margin: 0 0 8px; padding: 6px 10px; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); }
h2[id] { scroll-margin-top: 8px; }
form.console-search { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 4px 0 8px; }
form.console-search input[type=search] { min-width: 280px; }
table.matches { border-collapse: collapse; width: 100%; }
table.matches th, table.matches td { padding: 1px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
table.matches th.num { text-align: right; color: var(--muted); font-weight: 400; width: 1%; white-space: nowrap; }
table.matches code { white-space: pre-wrap; overflow-wrap: anywhere; }
table.matches mark { background: var(--mark); color: inherit; }
pre.patch { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 0; max-height: 80vh; overflow: auto; }
pre.patch span { display: block; padding: 0 12px; white-space: pre; }
pre.patch .d-file { font-weight: 700; border-top: 1px solid var(--line); margin-top: 6px; padding-top: 4px; }
pre.patch .d-meta, pre.patch .d-note { color: var(--muted); }
pre.patch .d-hunk { color: var(--accent); background: color-mix(in srgb, var(--accent) 10%, transparent); }
pre.patch .d-add { color: var(--ok); background: color-mix(in srgb, var(--ok) 12%, transparent); }
pre.patch .d-del { color: var(--bad); background: color-mix(in srgb, var(--bad) 12%, transparent); }
pre.patch .d-binary { font-style: italic; color: var(--warn); }
details.environment summary { cursor: pointer; color: var(--accent); }
table.env td code { white-space: pre-wrap; overflow-wrap: anywhere; }
.images { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 16px; }
.image-steps h3 { margin: 0 0 4px; font-size: 14px; }
.image-steps figure { margin: 0; }
.image-steps img { max-width: 100%; max-height: 360px; border: 1px solid var(--line); background: #fff; }
.image-slider { display: flex; gap: 8px; align-items: center; }
.image-slider input { flex: 1; }
ol.image-list { display: flex; flex-wrap: wrap; gap: 2px 10px; list-style: none; padding: 0; margin: 4px 0; font-size: 12px; max-height: 6em; overflow: auto; }
ol.image-list a[aria-current] { font-weight: 700; }
/* Datasets and queues pages (DatasetPages.swift, LineageGraph.swift, QueuePages.swift). */
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
form.inline { display: flex; gap: 6px; align-items: center; margin: 0; white-space: nowrap; }
table.entries td, table.ended td, table.agents td, table.agents th { vertical-align: middle; }
table.entries td:nth-child(2), table.ended td:nth-child(2), table.ended td:nth-child(7), table.entries td:nth-child(8),
table.agents th[scope=row], table.versions td:nth-child(8), table.datasets td:nth-child(8) { white-space: normal; overflow-wrap: anywhere; min-width: 10em; }
form.inline select { padding: 2px 6px; }
form.inline button { padding: 2px 10px; }
section.queue h3 { font-size: 14px; margin: 14px 0 6px; }
.agent-state { font-weight: 600; }
.agent-state.alive { color: var(--ok); }
.agent-state.alive::before { content: "\25CF "; }
.agent-state.stale { color: var(--bad); }
td.change-added { color: var(--ok); }
td.change-removed { color: var(--bad); }
td.change-modified, td.change-renamed { color: var(--warn); }
table.summary td, table.summary th { padding-right: 18px; }
.lineage-wrap { overflow: auto; border: 1px solid var(--line); border-radius: 6px; padding: 4px; max-height: 75vh; }
svg.lineage { display: block; font-size: 12px; }
svg.lineage .edge { fill: none; stroke: var(--muted); stroke-width: 1.5; }
svg.lineage .edge-made { stroke: var(--ok); }
svg.lineage .edge-used { stroke: var(--accent); stroke-dasharray: 5 3; }
svg.lineage .arrow { fill: var(--muted); }
svg.lineage .node rect { fill: var(--panel); stroke: var(--line); stroke-width: 1.5; }
svg.lineage .node.current rect { stroke: var(--accent); }
svg.lineage .node.run rect { fill: var(--bg); stroke: var(--ok); }
svg.lineage .node.missing rect { stroke-dasharray: 4 3; }
svg.lineage text { text-anchor: middle; fill: var(--fg); }
svg.lineage text.label { font-weight: 600; }
svg.lineage text.detail { fill: var(--muted); font-size: 11px; }
svg.lineage a:hover rect, svg.lineage a:focus rect { stroke: var(--accent); stroke-width: 2.5; }
svg.lineage a:focus { outline: none; }
svg.lineage a:focus-visible rect { stroke-width: 3.5; }
/* The compare page (ComparePage, CompareScatter). */
nav.compare-sections ul { display: flex; flex-wrap: wrap; gap: 4px 16px; list-style: none; margin: 0 0 8px; padding: 0; }
ul.compare.legend { list-style: none; margin: 0; padding: 0; columns: 3 22em; column-gap: 24px; max-height: 40vh; overflow: auto; }
ul.compare.legend li { break-inside: avoid; padding: 1px 0; overflow-wrap: anywhere; }
ul.compare.legend .label { font-weight: 600; }
ul.compare.legend .status { font-size: 12px; }
svg.swatch { vertical-align: middle; margin-right: 6px; }
.compare-toggle { margin: 4px 0 8px; }
body:has(#hide-same:checked) table.compare-table :is(tr.same, tr.all-only) { display: none; }
body:not(:has(#hide-same:checked)) .no-differences { display: none; }
table.compare-table td { white-space: pre-wrap; overflow-wrap: anywhere; min-width: 6em; max-width: 28em; }
table.compare-table td.differs { background: var(--mark); }
table.compare-table td.missing { background: var(--panel); }
table.compare-table tbody th { white-space: nowrap; font-weight: 500; }
form.compare-pick { display: flex; flex-wrap: wrap; gap: 6px 8px; align-items: center; margin: 4px 0 10px; }
form.compare-pick select { max-width: 36em; }
table.code-fields tr.differs td { background: var(--mark); }
svg.scatter { max-width: 100%; height: auto; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; font-size: 12px; }
svg.scatter line.grid { stroke: var(--line); }
svg.scatter line.axis { stroke: var(--muted); }
svg.scatter text { fill: var(--fg); }
svg.scatter .axis-title { font-size: 13px; }
svg.scatter circle.dot { fill: #0072B2; fill-opacity: 0.7; stroke: #fff; stroke-width: 1; }
svg.scatter a:hover circle.dot { fill: #D55E00; fill-opacity: 1; }
"""#
}
