"use strict";
// Each poll asks for `Connection: close` (the X-Testpage-View header): a browser keeps one
// connection open, and a Service balances connections, not requests, so without it the view
// would see one pod until that pod goes away. Every poll is a new connection, as curl makes.
const BASE = new URL("./", location.href);
const VIEW = { "Accept": "application/json", "X-Testpage-View": "1" };
// Okabe-Ito: told apart with the common colour-vision deficiencies.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"];
const MAX_MARKS = 300, MAX_LISTED = 20;
const S = { running: true, total: 0, failed: 0, recent: [], versions: new Map(), pods: new Map(),
            colours: new Map(), present: new Set(), errors: [], events: [] };
const $ = (id) => document.getElementById(id);
$("target").textContent = BASE.href;

// The page's words in English and Chinese. The language is the first of the browser's
// preferred languages that is one of the two (English otherwise); ?lang=zh or ?lang=en wins.
const WORDS = {
  en: {
    "title": "testpage · live rollout view", "pause": "Pause", "resume": "Resume",
    "projector": "Projector view", "normal": "Normal view", "rate": "polls per second",
    "window-before": "split over the last", "window-after": "answers", "split": "Split",
    "marks": "Answers, newest last (a white square: failed)", "pods": "Pods", "th-pod": "pod",
    "th-version": "version", "th-answers": "answers", "th-last": "last seen",
    "events": "Versions appearing and going", "errors": "Failed answers",
    "faults": "Faults (admin routes)", "fault-version": "version", "fault-rate": "error rate",
    "fault-latency": "latency", "fault-apply": "Apply to every pod of this version",
    "fault-reset": "Clear",
    answers: (n) => `${n} answers`, failed: (n) => `${n} failed`,
    status: (s, v) => `status ${s}` + (v ? ` from ${v}` : ""),
    appeared: (v) => `+ ${v} appeared`, gone: (v) => `- ${v} gone`,
    share: (s, n, all) => `${s} % of the last ${n} · ${all} in all`,
    failedShare: (s) => `failed ${s}%`, ago: (s) => `${s} s ago`,
    set: (v, done, of) => `${v}: ${done} of ${of} pods set`,
  },
  zh: {
    "title": "testpage · 发布实况", "pause": "暂停", "resume": "继续",
    "projector": "投影视图", "normal": "普通视图", "rate": "每秒请求",
    "window-before": "按最近", "window-after": "个回答计算比例", "split": "各版本比例",
    "marks": "每个回答一个方块，最新的在最后（白色方块：失败）", "pods": "Pod", "th-pod": "Pod",
    "th-version": "版本", "th-answers": "回答数", "th-last": "最近一次",
    "events": "版本的出现与消失", "errors": "失败的回答",
    "faults": "故障注入（管理路由）", "fault-version": "版本", "fault-rate": "错误率",
    "fault-latency": "延迟", "fault-apply": "应用到该版本的每个 Pod", "fault-reset": "清除",
    answers: (n) => `${n} 个回答`, failed: (n) => `${n} 个失败`,
    status: (s, v) => `状态 ${s}` + (v ? `（来自 ${v}）` : ""),
    appeared: (v) => `+ ${v} 出现`, gone: (v) => `- ${v} 消失`,
    share: (s, n, all) => `最近 ${n} 个中占 ${s} % · 共 ${all} 个`,
    failedShare: (s) => `失败 ${s}%`, ago: (s) => `${s} 秒前`,
    set: (v, done, of) => `${v}：${of} 个 Pod 中已设置 ${done} 个`,
  },
};
const QUERY = new URLSearchParams(location.search);
function language() {
  const asked = QUERY.get("lang");
  if (asked && WORDS[asked]) return asked;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = tag.toLowerCase().split("-")[0];
    if (WORDS[base]) return base;
  }
  return "en";
}
const LANG = language();
const T = WORDS[LANG];
document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
document.title = T.title;
for (const element of document.querySelectorAll("[data-i18n]")) {
  element.textContent = T[element.dataset.i18n];
}

// The projector view: marks, split and counts large enough to read from the back of a room.
function projector(on) {
  document.body.classList.toggle("projector", on);
  $("projector").textContent = on ? T.normal : T.projector;
  const url = new URL(location.href);
  if (on) url.searchParams.set("view", "projector"); else url.searchParams.delete("view");
  history.replaceState(null, "", url);
}
projector(QUERY.get("view") === "projector");
$("projector").onclick = () => projector(!document.body.classList.contains("projector"));

function colour(version) {
  if (!S.colours.has(version)) S.colours.set(version, PALETTE[S.colours.size % PALETTE.length]);
  return S.colours.get(version);
}
function clock(t) { return new Date(t).toLocaleTimeString([], { hour12: false }); }
function windowSize() { return Number($("window").value); }

async function poll() {
  const at = Date.now();
  let answer;
  try {
    const response = await fetch(BASE, { headers: VIEW, cache: "no-store" });
    const version = response.headers.get("X-Version");
    const pod = response.headers.get("X-Pod") || response.headers.get("X-Pod-IP");
    let info = {};
    if (response.ok) { try { info = await response.json(); } catch (e) { /* not testpage */ } }
    else { await response.text(); }
    // Pods are named as their X-Pod header names them, here and in the fault controls.
    answer = { at, ok: response.ok, status: response.status,
               version: info.version || version || "?", pod: pod || info.pod || info.ip || "?" };
  } catch (error) {
    answer = { at, ok: false, status: null, error: String(error.message || error) };
  }
  record(answer);
}

function record(a) {
  S.total += 1;
  S.recent.push(a);
  if (S.recent.length > 1000) S.recent.shift();
  if (a.ok) {
    S.versions.set(a.version, (S.versions.get(a.version) || 0) + 1);
    const p = S.pods.get(a.pod) || { count: 0, version: a.version };
    p.count += 1; p.version = a.version; p.last = a.at;
    S.pods.set(a.pod, p);
  } else {
    S.failed += 1;
    const what = a.status ? T.status(a.status, a.version) : a.error;
    S.errors.unshift(`${clock(a.at)}  ${what}`);
    S.errors.length = Math.min(S.errors.length, MAX_LISTED);
  }
  const seen = new Set(S.recent.slice(-windowSize()).filter((r) => r.ok).map((r) => r.version));
  for (const v of seen) if (!S.present.has(v)) S.events.unshift(`${clock(a.at)}  ${T.appeared(v)}`);
  for (const v of S.present) if (!seen.has(v)) S.events.unshift(`${clock(a.at)}  ${T.gone(v)}`);
  S.present = seen;
  S.events.length = Math.min(S.events.length, MAX_LISTED);
  draw(a);
}

function draw(a) {
  $("total").textContent = T.answers(S.total);
  $("total").dataset.count = S.total;
  $("failed").textContent = T.failed(S.failed);
  $("failed").dataset.count = S.failed;
  const mark = document.createElement("span");
  if (a.ok) mark.style.background = colour(a.version); else mark.className = "failed";
  mark.title = a.ok ? `${a.version} ${a.pod}` : (a.status ? T.status(a.status) : a.error);
  $("marks").append(mark);
  while ($("marks").childElementCount > MAX_MARKS) $("marks").firstElementChild.remove();

  const last = S.recent.slice(-windowSize());
  const counts = new Map();
  for (const r of last) { const k = r.ok ? r.version : null; counts.set(k, (counts.get(k) || 0) + 1); }
  const split = $("split"); split.replaceChildren();
  const list = $("versions"); list.replaceChildren();
  for (const [v, total] of [...S.versions].sort()) {
    const n = counts.get(v) || 0, share = last.length ? (100 * n) / last.length : 0;
    if (n) {
      const part = document.createElement("div");
      part.style.width = `${share}%`; part.style.background = colour(v);
      part.textContent = `${v} ${share.toFixed(0)}%`;
      split.append(part);
    }
    const li = document.createElement("li");
    li.dataset.version = v; li.dataset.count = total; li.dataset.share = share.toFixed(1);
    li.innerHTML = `<span class="swatch"></span><b></b><span></span>`;
    li.children[0].style.background = colour(v);
    li.children[1].textContent = v;
    li.children[2].textContent = T.share(share.toFixed(1), last.length, total);
    list.append(li);
  }
  const bad = counts.get(null) || 0;
  if (bad) {
    const part = document.createElement("div");
    part.style.width = `${(100 * bad) / last.length}%`; part.style.background = "#000";
    part.textContent = T.failedShare(((100 * bad) / last.length).toFixed(0));
    split.append(part);
  }
  const rows = $("pods"); rows.replaceChildren();
  for (const [name, p] of [...S.pods].sort((x, y) => y[1].last - x[1].last)) {
    const tr = document.createElement("tr");
    tr.dataset.pod = name; tr.dataset.count = p.count;
    for (const text of [name, p.version, p.count, T.ago(((Date.now() - p.last) / 1000).toFixed(1))]) {
      const td = document.createElement("td"); td.textContent = text; tr.append(td);
    }
    tr.children[1].style.color = colour(p.version);
    rows.append(tr);
  }
  for (const [id, items] of [["events", S.events], ["errors", S.errors]]) {
    $(id).replaceChildren(...items.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; }));
  }
  const select = $("fault-version");
  for (const v of S.versions.keys()) {
    if (![...select.options].some((o) => o.value === v)) select.add(new Option(v, v));
  }
}

// One poll at a time, at the chosen rate; a slow answer delays the next rather than piling up.
async function loop() {
  for (;;) {
    const started = Date.now();
    if (S.running) await poll();
    const wait = 1000 / Number($("rate").value) - (Date.now() - started);
    await new Promise((done) => setTimeout(done, Math.max(0, wait)));
  }
}
$("pause").onclick = () => { S.running = !S.running; $("pause").textContent = S.running ? T.pause : T.resume; };

// Faults go through the Service like everything else, so they land on any pod: each POST names
// the version, pods of other versions refuse it (409), and the page repeats until every pod of
// that version seen in the split has said yes.
async function setFaults(rate, latency) {
  const version = $("fault-version").value;
  const wanted = new Set([...S.pods].filter(([, p]) => p.version === version).map(([n]) => n));
  const done = new Set();
  const url = new URL("fault", BASE);
  url.search = new URLSearchParams({ error_rate: rate, latency, version });
  for (let i = 0; i < 60 && done.size < wanted.size; i++) {
    try {
      const r = await fetch(url, { method: "POST", headers: { "X-Testpage-View": "1" } });
      if (r.ok) done.add(r.headers.get("X-Pod"));
      else if (r.status !== 409) { $("fault-result").textContent = `${r.status}: ${await r.text()}`; return; }
    } catch (e) { /* a pod going away: try again */ }
  }
  $("fault-result").textContent = T.set(version, done.size, wanted.size);
}
$("fault-apply").onclick = () => setFaults($("fault-rate").value, $("fault-latency").value);
$("fault-reset").onclick = () => setFaults(0, 0);
// The admin routes answer GET /fault when they are on.
fetch(new URL("fault", BASE)).then((r) => { $("faults").hidden = !r.ok; }).catch(() => {});
loop();
