// SPDX-License-Identifier: MIT
// dashboard_page.hpp: the dashboard's one page: HTML, CSS and script in one document (clusters have
// no internet: nothing is fetched from elsewhere), rendered at once from the snapshot it carries and
// refreshed from status.json every second; charts of tasks/s and the queue drawn in SVG.
#pragma once

#include <string>

namespace wm::detail {

inline std::string dashboard_page(std::string snapshot_json) {
  // Inside <script>, "</" would end the element: JSON lets it be written "<\/".
  for (std::size_t at = snapshot_json.find("</"); at != std::string::npos; at = snapshot_json.find("</", at + 3))
    snapshot_json.replace(at, 2, "<\\/");
  static const char* const head = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wm dashboard</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: .2em; } h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
small { color: #666; font-weight: normal; }
.cards { display: flex; gap: .6em; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .4em .8em; min-width: 6.5em; color: #555; }
.card b { display: block; font-size: 1.4em; color: #222; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; min-width: 60%; }
th, td { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: left; font-variant-numeric: tabular-nums; }
th { color: #555; font-weight: 600; }
.busy { color: #b05a00; } .idle { color: #1d8a55; } .lost { color: #c0262d; } .starting { color: #777; }
.charts { display: flex; gap: 2em; flex-wrap: wrap; }
svg { border: 1px solid #eee; background: #fbfbfb; }
#failures li { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap; margin-bottom: .3em; }
#stale { color: #c0262d; }
</style>
</head>
<body>
<h1>wm <span id="backend"></span> <small>master pid <span id="pid"></span>, up <span id="uptime"></span>
<span id="stale"></span></small></h1>
<div class="cards">
<div class="card">submitted<b id="submitted">0</b></div>
<div class="card">done<b id="done">0</b></div>
<div class="card">completed<b id="completed">0</b></div>
<div class="card">failed<b id="failed">0</b></div>
<div class="card">cancelled<b id="cancelled">0</b></div>
<div class="card">retried<b id="retried">0</b></div>
<div class="card">queued<b id="queued">0</b></div>
<div class="card">in flight<b id="in-flight">0</b></div>
<div class="card">tasks/s<b id="rate">0</b></div>
</div>
<h2>Workers: <span id="workers-count">0</span> <small id="workers-by-state"></small></h2>
<table>
<thead><tr><th>worker</th><th>where</th><th>state</th><th>task</th><th>for</th><th>done</th><th>failed</th>
<th>restarts</th><th>busy</th></tr></thead>
<tbody id="workers"></tbody>
</table>
<p id="workers-note"></p>
<div class="charts">
<div><h2>Tasks/s <small>(last 2 minutes)</small></h2><svg id="rate-chart" width="420" height="90"></svg></div>
<div><h2>Queued <small>(last 2 minutes)</small></h2><svg id="queue-chart" width="420" height="90"></svg></div>
</div>
<h2>Last failures</h2>
<ul id="failures"></ul>
<script type="application/json" id="initial">)HTML";
  static const char* const tail = R"HTML(</script>
<script>
'use strict';
const token = new URLSearchParams(location.search).get('token');
const source = 'status.json' + (token ? '?token=' + encodeURIComponent(token) : '');
const series = { rate: [], queue: [] };
const $ = (id) => document.getElementById(id);
function set(id, v) { $(id).textContent = v; }
function duration(s) {
  if (s < 60) return s.toFixed(1) + ' s';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(Math.floor(s % 60)).padStart(2, '0') + 's';
  return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60 % 60)).padStart(2, '0') + 'm';
}
function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}
function chart(id, values) {
  const svg = $(id), w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  const top = Math.max(1, ...values);
  const points = values.map((v, i) => (i * w / 119).toFixed(1) + ',' + (h - 4 - v / top * (h - 14)).toFixed(1)).join(' ');
  svg.innerHTML = '';
  const ns = 'http://www.w3.org/2000/svg';
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', points);
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', '#2a6fb0');
  line.setAttribute('stroke-width', '1.5');
  svg.appendChild(line);
  const label = document.createElementNS(ns, 'text');
  label.setAttribute('x', 4);
  label.setAttribute('y', 11);
  label.setAttribute('font-size', 10);
  label.textContent = 'max ' + (top < 10 ? top.toFixed(1) : Math.round(top));
  svg.appendChild(label);
}
function render(s) {
  set('backend', s.backend);
  set('pid', s.pid);
  set('uptime', duration(s.uptime_seconds));
  const t = s.tasks;
  set('submitted', t.submitted);
  set('done', t.finished);
  set('completed', t.completed);
  set('failed', t.failed);
  set('cancelled', t.cancelled);
  set('retried', t.retried);
  set('queued', t.queued);
  set('in-flight', t.in_flight);
  set('rate', t.per_second.toFixed(1));
  set('workers-count', s.workers.length);
  set('workers-by-state', Object.entries(s.workers_by_state).filter(([, n]) => n > 0).map(([k, n]) => n + ' ' + k).join(', '));
  set('workers-note', s.workers_note || '');
  const body = $('workers');
  body.textContent = '';
  for (const w of s.workers) {
    const row = document.createElement('tr');
    row.className = 'worker';
    row.dataset.state = w.state;
    cell(row, w.index);
    cell(row, (w.rank >= 0 ? 'rank ' + w.rank + ', ' : '') + (w.pid ? 'pid ' + w.pid : '') + (w.host ? ' on ' + w.host : ''));
    cell(row, w.state, w.state);
    cell(row, w.task ? w.task.name : '');
    cell(row, w.task ? duration(w.task.seconds) : '');
    cell(row, w.tasks_done);
    cell(row, w.tasks_failed);
    cell(row, w.restarts);
    cell(row, Math.round(100 * w.busy_fraction) + '%');
    if (w.task) row.title = 'task ' + w.task.id;
    body.appendChild(row);
  }
  const list = $('failures');
  list.textContent = '';
  for (const f of s.recent_failures.slice().reverse()) {
    const li = document.createElement('li');
    li.textContent = duration(f.seconds_ago) + ' ago, worker ' + f.worker + ': ' + f.task_name + ' (' + f.kind + '): ' + f.message;
    list.appendChild(li);
  }
  if (list.childElementCount === 0) list.innerHTML = '<li>none</li>';
  series.rate.push(t.per_second);
  series.queue.push(t.queued);
  for (const k of ['rate', 'queue']) if (series[k].length > 120) series[k].shift();
  chart('rate-chart', series.rate);
  chart('queue-chart', series.queue);
}
async function refresh() {
  try {
    const r = await fetch(source, { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
    set('stale', '');
  } catch (e) {
    set('stale', '(not updated: ' + e.message + ')');
  }
}
render(JSON.parse($('initial').textContent));
setInterval(refresh, 1000);
</script>
</body>
</html>
)HTML";
  return std::string(head) + snapshot_json + tail;
}

}  // namespace wm::detail
