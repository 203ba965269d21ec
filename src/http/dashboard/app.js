// tidecast dashboard: a stream list, a stream view (actuals vs forecasts per
// horizon, resets and dead letters marked) and a model view. Data from /api/.
const view = document.getElementById('view');
const statusEl = document.getElementById('status');
let timer = null;
let chart = null;

const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const day = (ms) => (ms === null || ms === undefined ? '–' : new Date(ms).toISOString().replace('T', ' ').replace(':00.000Z', '').replace(' 00:00', ''));
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
async function api(path) {
  const res = await fetch(path, { cache: 'no-store' });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function every(ms, fn) {
  clearInterval(timer);
  fn();
  timer = setInterval(fn, ms);
}

let search = '';

async function streamList() {
  const streams = await api(`/api/streams${search ? `?search=${encodeURIComponent(search)}` : ''}`);
  statusEl.textContent = `${streams.length} streams${search ? ` matching "${search}"` : ''}, most recently active first · updated ${new Date().toLocaleTimeString()}`;
  const rows = streams.map((s) => {
    const m = s.models[0];
    const first = m?.forecast.find((f) => f.horizon === Math.min(...m.forecast.map((x) => x.horizon)));
    const target = first?.target;
    const mae = m?.mae.find((x) => x.target === target);
    return `<tr class="stream" data-stream="${esc(s.id)}">
      <td><a href="#/stream/${encodeURIComponent(s.id)}">${esc(s.id)}</a></td>
      <td class="num">${target && s.lastValues ? fmt(s.lastValues[target]) : '–'}</td>
      <td class="num">${first ? (first.label != null ? `${esc(first.label)} <span class="muted">${fmt(first.value, 2)}</span>` : fmt(first.value)) : '–'}</td>
      <td>${target ? esc(target) : ''} ${first ? `<span class="muted">for ${day(first.targetTime)}</span>` : ''}</td>
      <td class="num">${mae ? fmt(mae.mae) : '–'}</td>
      <td class="states">${(s.on ?? []).map((x) => `<span class="badge" title="${esc(`${x.model}: ${x.detail}`)}">${esc(x.name)}</span>`).join(' ')}</td>
      <td>${m ? `<a href="#/model/${encodeURIComponent(m.model)}">${esc(m.model)}</a>` : '–'}${s.models.length > 1 ? ` <span class="muted">+${s.models.length - 1}</span>` : ''}</td>
      <td>${esc(m?.provider ?? '–')}</td>
      <td>${day(s.lastStepAt)}</td>
      <td>${day(s.firstSeen)}</td></tr>`;
  });
  // The page and its search box are made once; each poll redraws the rows only (the box keeps its focus).
  if (!view.querySelector('#streams')) {
    view.innerHTML = `<h1>Streams</h1>
      <p><input id="search" type="search" placeholder="search stream ids" autocomplete="off" value="${esc(search)}"></p>
      <table id="streams"><thead><tr><th>stream</th><th>last value</th><th>last forecast</th><th>target</th><th>online MAE</th><th>alerts · drift</th><th>model</th><th>provider</th><th>last update</th><th>since</th></tr></thead>
      <tbody></tbody></table>`;
    let typing = null;
    view.querySelector('#search').addEventListener('input', (e) => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        search = e.target.value.trim();
        streamList().catch((err) => { statusEl.textContent = `error: ${err.message}`; });
      }, 250);
    });
  }
  view.querySelector('#streams tbody').innerHTML = rows.join('') || `<tr><td colspan="10" class="muted">${search ? 'no stream matches' : 'no streams yet: waiting for messages'}</td></tr>`;
  view.querySelectorAll('tr.stream').forEach((tr) => tr.addEventListener('click', () => (location.hash = `#/stream/${encodeURIComponent(tr.dataset.stream)}`)));
}

/**
 * Actuals and each horizon's forecasts aligned on one time axis (seconds), for
 * uPlot, with the first horizon's prediction intervals (`bands`, per level:
 * lower and upper). A classification target (`label` given) charts the
 * probability of that label, with no actual line and no intervals.
 */
function alignSeries(series, model, target, label) {
  const byH = series.forecasts[model] ?? {};
  const horizons = Object.keys(byH).map(Number).sort((a, b) => a - b);
  const xs = new Set(series.actuals.map((a) => a.ts));
  for (const h of horizons) for (const f of byH[h]) if (f.targetTime <= series.to) xs.add(f.targetTime);
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const actual = new Array(x.length).fill(null);
  if (!label) for (const a of series.actuals) actual[index.get(a.ts)] = a.values[target] ?? null;
  const read = label ? (f) => f.probabilities?.[target]?.[label] ?? null : (f) => f.values[target] ?? null;
  const lines = horizons.map((h) => {
    const ys = new Array(x.length).fill(null);
    for (const f of byH[h]) if (index.has(f.targetTime)) ys[index.get(f.targetTime)] = read(f);
    return { h, ys };
  });
  const levels = label ? [] : series.levels?.[model] ?? [];
  const bands = horizons.length === 0 ? [] : levels.map((level, l) => {
    const lo = new Array(x.length).fill(null);
    const hi = new Array(x.length).fill(null);
    for (const f of byH[horizons[0]]) {
      const b = f.bounds?.[target];
      if (!b || !index.has(f.targetTime) || b[2 * l] == null) continue;
      lo[index.get(f.targetTime)] = b[2 * l];
      hi[index.get(f.targetTime)] = b[2 * l + 1];
    }
    return { level, h: horizons[0], lo, hi };
  }).filter((b) => b.hi.some((v) => v !== null));
  return { x: x.map((t) => t / 1000), actual, lines, bands };
}

/** The detail of a model_drift event: the targets that changed. */
function driftChanges(e) {
  try {
    return JSON.parse(e.detail);
  } catch {
    return [];
  }
}

const COLORS = ['#1f6feb', '#e8590c', '#2f9e44', '#9c36b5', '#0b7285'];

function drawChart(el, aligned, target, events, label) {
  // Red: state resets; orange: this target's drift turned on, grey: off.
  const marks = events.filter((e) => e.kind === 'state_reset' || e.kind === 'gap_reset').map((e) => ({ t: e.at / 1000, color: '#c62828' }));
  for (const e of events.filter((x) => x.kind === 'model_drift')) {
    for (const d of driftChanges(e)) if (d.target === target) marks.push({ t: e.at / 1000, color: d.state === 'on' ? '#e8590c' : '#868e96' });
  }
  // Widest level first, so the narrower band is drawn over it.
  const bands = [...aligned.bands].sort((a, b) => b.level - a.level);
  const first = 2 + aligned.lines.length;
  const opts = {
    width: Math.min(1150, el.clientWidth || 1000),
    height: 360,
    series: [
      {},
      { label: label ? 'actual' : `actual ${target}`, stroke: '#1d2330', width: 2, spanGaps: false },
      ...aligned.lines.map((l, i) => ({ label: `${label ? `P(${label})` : 'forecast'} +${l.h}`, stroke: COLORS[i % COLORS.length], width: 1.5, dash: i === 0 ? [] : [6, 4] })),
      ...bands.flatMap((b) => [
        { label: `${Math.round(b.level * 100)}% upper +${b.h}`, stroke: 'rgba(31,111,235,0.35)', width: 1, points: { show: false } },
        { label: `${Math.round(b.level * 100)}% lower +${b.h}`, stroke: 'rgba(31,111,235,0.35)', width: 1, points: { show: false } },
      ]),
    ],
    bands: bands.map((b, i) => ({ series: [first + 2 * i, first + 2 * i + 1], fill: `rgba(31,111,235,${i === bands.length - 1 ? 0.16 : 0.08})` })),
    axes: [{}, { label: label ? `${target}: P(${label})` : target }],
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.lineWidth = 1;
        for (const m of marks) {
          const px = u.valToPos(m.t, 'x', true);
          if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
          ctx.strokeStyle = m.color;
          ctx.beginPath();
          ctx.moveTo(px, u.bbox.top);
          ctx.lineTo(px, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
  if (chart) chart.destroy();
  el.innerHTML = '';
  chart = new uPlot(opts, [aligned.x, aligned.actual, ...aligned.lines.map((l) => l.ys), ...bands.flatMap((b) => [b.hi, b.lo])], el);
  // Visible counts of what was drawn: for people and for the browser test.
  el.dataset.actualPoints = String(aligned.actual.filter((v) => v !== null).length);
  el.dataset.forecastPoints = String(aligned.lines.reduce((n, l) => n + l.ys.filter((v) => v !== null).length, 0));
  el.dataset.bandPoints = String(bands.reduce((n, b) => n + b.hi.filter((v) => v !== null).length, 0));
}

async function streamView(id) {
  const [series, models] = await Promise.all([api(`/api/streams/${encodeURIComponent(id)}/series?limit=2000`), api('/api/models')]);
  const modelNames = Object.keys(series.forecasts);
  const state = streamView.state?.id === id ? streamView.state : { id, model: modelNames[0], target: null };
  streamView.state = state;
  if (!modelNames.includes(state.model)) state.model = modelNames[0];
  const card = models.find((m) => m.name === state.model)?.card;
  const targets = card?.targets.map((t) => t.name) ?? [];
  state.target = targets.includes(state.target) ? state.target : targets[0];
  const acc = await api(`/api/accuracy?stream=${encodeURIComponent(id)}&window=100`);
  statusEl.textContent = `updated ${new Date().toLocaleTimeString()}`;
  if (!view.querySelector(`#chart[data-stream="${CSS.escape(id)}"]`)) {
    view.innerHTML = `<h1>Stream <span id="stream-id">${esc(id)}</span></h1>
      <div class="controls">
        <label>model <select id="model"></select></label>
        <label>target <select id="target"></select></label>
        <span class="muted">shaded: prediction intervals of the first horizon · red lines: state resets · orange: drift on, grey: off</span>
      </div>
      <div id="chart" data-stream="${esc(id)}"></div>
      <h2>Alerts and drift</h2><div id="states"></div>
      <h2>Online accuracy (latest 100 scored forecasts)</h2><div id="accuracy"></div>
      <h2>Events</h2><div id="events"></div>
      <h2>Dead letters</h2><div id="dead"></div>`;
    view.querySelector('#model').addEventListener('change', (e) => { state.model = e.target.value; streamView(id); });
    view.querySelector('#target').addEventListener('change', (e) => { state.target = e.target.value; streamView(id); });
  }
  view.querySelector('#model').innerHTML = modelNames.map((m) => `<option ${m === state.model ? 'selected' : ''}>${esc(m)}</option>`).join('');
  view.querySelector('#target').innerHTML = targets.map((t) => `<option ${t === state.target ? 'selected' : ''}>${esc(t)}</option>`).join('');
  // A classification target charts the probability of its last label (e.g. "anomaly", "wet").
  const labels = card?.targets.find((t) => t.name === state.target)?.labels;
  const label = labels ? labels[labels.length - 1] : undefined;
  if (state.model && state.target) drawChart(view.querySelector('#chart'), alignSeries(series, state.model, state.target, label), state.target, series.events, label);
  else view.querySelector('#chart').innerHTML = '<p class="muted">no forecasts yet</p>';
  view.querySelector('#states').innerHTML = series.states.length
    ? `<table><thead><tr><th></th><th>model</th><th>target</th><th>state</th><th>since</th><th></th></tr></thead><tbody>${series.states.map((s) => `<tr class="state"><td>${esc(s.name)}</td><td>${esc(s.model)}</td><td>${esc(s.target)}</td><td class="${s.on ? 'bad' : ''}">${s.on ? 'on' : 'off'}</td><td>${day(s.since)}</td><td class="muted">${esc(s.detail)}</td></tr>`).join('')}</tbody></table>`
    : '<p class="muted">no alert or drift has turned on</p>';
  // Empirical coverage of each interval level: the fraction of actuals inside (nominal: the level).
  const covLevels = [...new Set(acc.flatMap((a) => Object.keys(a.coverage ?? {})))].sort((a, b) => Number(a) - Number(b));
  view.querySelector('#accuracy').innerHTML = `<table><thead><tr><th>model</th><th>horizon</th><th>target</th><th>n</th><th>MAE</th><th>RMSE</th><th>bias</th><th>persistence MAE</th><th>skill</th>${covLevels.map((l) => `<th>coverage ${Math.round(Number(l) * 100)}%</th>`).join('')}</tr></thead><tbody>${
    acc.map((a) => `<tr><td>${esc(a.model)}</td><td class="num">${a.horizon}</td><td>${esc(a.target)}</td><td class="num">${a.n}</td><td class="num">${fmt(a.mae)}</td><td class="num">${fmt(a.rmse)}</td><td class="num">${fmt(a.bias)}</td><td class="num">${fmt(a.persistenceMae)}</td><td class="num ${a.skill < 0 ? 'bad' : ''}">${fmt(a.skill, 3)}</td>${covLevels.map((l) => `<td class="num">${fmt(a.coverage?.[l], 3)}</td>`).join('')}</tr>`).join('')
  }</tbody></table>`;
  view.querySelector('#events').innerHTML = series.events.length
    ? `<table><tbody>${series.events.map((e) => `<tr><td>${day(e.at)}</td><td>${esc(e.kind)}</td><td>${esc(e.model ?? '')}</td><td class="muted">${esc(e.detail ?? '')}</td></tr>`).join('')}</tbody></table>`
    : '<p class="muted">none in this range</p>';
  view.querySelector('#dead').innerHTML = series.deadLetters.length
    ? `<table><tbody>${series.deadLetters.map((d) => `<tr><td>${new Date(d.receivedAt).toLocaleString()}</td><td class="bad">${esc(d.reason)}</td><td>${esc(d.topic)}</td><td class="muted">${esc(d.detail)}</td></tr>`).join('')}</tbody></table>`
    : '<p class="muted">none</p>';
}

async function modelsView(name) {
  const models = await api('/api/models');
  const list = name ? models.filter((m) => m.name === name) : models;
  view.innerHTML = `<h1>${name ? `Model ${esc(name)}` : 'Models'}</h1>` + list.map((m) => {
    const test = m.card?.metrics?.test;
    // Forecasters report MAE and RMSE; classifiers accuracy and Brier score.
    const classifier = test && Object.values(test.model).some((v) => v.accuracy !== undefined);
    const [a, b, names, d] = classifier ? ['accuracy', 'brier', ['accuracy', 'Brier'], 3] : ['mae', 'rmse', ['MAE', 'RMSE'], 2];
    const rows = test ? Object.entries(test.model).map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">${fmt(v[a], d)}</td><td class="num">${fmt(test.persistence[k]?.[a], d)}</td><td class="num">${fmt(v[b], d)}</td><td class="num">${fmt(test.persistence[k]?.[b], d)}</td></tr>`).join('') : '';
    return `<h2>${esc(m.name)} <span class="muted">${esc(m.mode)} · ${esc(m.provider)}</span></h2>
      <p class="muted">${esc(m.card?.description ?? m.path)}</p>
      ${rows ? `<table><thead><tr><th>target@horizon</th><th>test ${names[0]}</th><th>persistence ${names[0]}</th><th>test ${names[1]}</th><th>persistence ${names[1]}</th></tr></thead><tbody>${rows}</tbody></table>` : ''}
      <h2>Card</h2><pre>${esc(JSON.stringify(m.card, null, 2))}</pre>`;
  }).join('');
}

async function route() {
  const [, page, arg] = location.hash.split('/');
  const show = (p) => p.catch((err) => { statusEl.textContent = `error: ${err.message}`; });
  if (page === 'stream' && arg) every(3000, () => show(streamView(decodeURIComponent(arg))));
  else if (page === 'model' && arg) every(60000, () => show(modelsView(decodeURIComponent(arg))));
  else if (page === 'models') every(60000, () => show(modelsView(null)));
  else { if (chart) { chart.destroy(); chart = null; } every(2000, () => show(streamList())); }
}
window.addEventListener('hashchange', route);
route();
