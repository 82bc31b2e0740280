// autoagent view: fills the page from the JSON API and refreshes it when the server says the
// workspace's files changed. Text from the workspace is always set as text, never as HTML; the
// one exception is the progress chart, the report's own SVG, whose text the server escapes.
"use strict";

const page = document.body.dataset.page;
const app = document.getElementById("app");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function postJSON(url, value) {
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(value),
  });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const num = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const money = (v) => (v === null || v === undefined ? "?" : "$" + Number(v).toFixed(v > 0 && v < 0.1 ? 3 : 2));
const signed = (v, d = 3) => (v === null || v === undefined ? "" : (v > 0 ? "+" : v < 0 ? "" : "±") + Number(v).toFixed(d));
const expName = (n) => "exp-" + String(n).padStart(4, "0");

function duration(s) {
  s = Math.max(0, Math.round(s || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
}

function section(id, title, ...body) {
  return el("section", { id, class: "card" }, title ? el("h2", { text: title }) : null, ...body);
}

function replace(id, node) {
  const old = document.getElementById(id);
  if (old) old.replaceWith(node);
  else app.append(node);
}

function showError(e) {
  replace("error", el("p", { id: "error", class: "error", text: String(e.message || e) }));
}

function clearError() {
  const e = document.getElementById("error");
  if (e) e.remove();
}

// ---------------------------------------------------------------------------------------------
// Run.

let runBuilt = false;

function buildRun() {
  app.replaceChildren(
    el("h1", {}, "Run ", el("span", { id: "phase", class: "badge" })),
    el("section", { id: "stats", class: "stats" }),
    section("controls", "Controls",
      el("div", { class: "row" },
        el("button", { id: "stop", class: "danger", onclick: stop }, "STOP"),
        el("span", { id: "stop-status", class: "muted" })),
      el("label", { for: "steering-text" }, "Steering note — the next meta-agent session reads it after program.md"),
      el("textarea", { id: "steering-text", rows: 3, placeholder: "e.g. focus on tool errors; do not touch the verify prompt" }),
      el("div", { class: "row" },
        el("button", { id: "steering-save", onclick: saveSteering }, "Save note"),
        el("span", { id: "steering-status", class: "muted" }))),
    section("chart-card", "Progress", el("div", { id: "chart" })),
    section("ledger-card", "Experiments", el("table", { id: "ledger" })),
    section("log-card", "Log (.autoagent/optimize.log)", el("pre", { id: "log", class: "log" })),
  );
  runBuilt = true;
}

async function stop() {
  const b = document.getElementById("stop");
  b.disabled = true;
  try {
    await postJSON("/api/stop", {});
    document.getElementById("stop-status").textContent = "STOP written: the run stops after the current experiment.";
  } catch (e) {
    b.disabled = false;
    document.getElementById("stop-status").textContent = "failed: " + e.message;
  }
}

async function saveSteering() {
  const text = document.getElementById("steering-text").value;
  const status = document.getElementById("steering-status");
  try {
    const r = await postJSON("/api/steering", { text });
    status.textContent = r.steering ? "saved: the next meta-agent session will read it" : "cleared";
    status.dataset.saved = "1";
  } catch (e) {
    status.textContent = "failed: " + e.message;
  }
}

function stat(label, value, extra) {
  return el("div", { class: "stat" }, el("div", { class: "label", text: label }), el("div", { class: "value" }, value), extra || null);
}

async function renderRun() {
  const [run, svg, log] = await Promise.all([
    getJSON("/api/run"),
    fetch("/api/chart.svg", { credentials: "same-origin" }).then((r) => r.text()),
    getJSON("/api/log"),
  ]);
  if (!runBuilt) buildRun();
  const phase = document.getElementById("phase");
  phase.textContent = run.phase.text;
  phase.dataset.phase = run.phase.name;

  const best = run.experiments.find((e) => e.experiment === run.best);
  const lim = run.limits;
  const spendBar = lim.budget_usd
    ? el("div", { class: "bar", title: "spend against the budget" },
        el("div", { class: "fill", style: "width:" + Math.min(100, (100 * run.spent_usd) / lim.budget_usd).toFixed(1) + "%" }))
    : null;
  document.getElementById("stats").replaceChildren(
    stat("experiments", el("span", { id: "count" }, String(run.experiments.length)),
      el("div", { class: "muted" }, `${run.kept} kept · ${run.discarded} discarded · ${run.crashed} crashed`)),
    stat("best", best ? `${num(best.avg_score)} (${best.passed}/${best.trials})` : "–",
      best ? el("div", { class: "muted" }, el("a", { href: "/experiment/" + best.experiment, text: expName(best.experiment) })) : null),
    stat("spend", el("span", { id: "spend" }, money(run.spent_usd) + (lim.budget_usd ? " of " + money(lim.budget_usd) : "")),
      spendBar || el("div", { class: "muted" }, run.cost_unknown ? `${run.cost_unknown} row(s) with unknown prices` : "no budget set")),
    stat("elapsed", el("span", { id: "elapsed" }, duration(run.elapsed_s)),
      el("div", { class: "muted" }, [lim.max_iterations ? `max ${lim.max_iterations} experiments` : null, lim.hours ? `max ${lim.hours} h` : null].filter(Boolean).join(" · ") || "time in experiments")),
  );

  const stopBtn = document.getElementById("stop");
  const stopStatus = document.getElementById("stop-status");
  stopBtn.disabled = run.stop_requested;
  if (run.stop_requested) stopStatus.textContent = "STOP requested: the run stops after the current experiment.";
  const ta = document.getElementById("steering-text");
  if (document.activeElement !== ta && !ta.dataset.touched) ta.value = run.steering || "";
  ta.oninput = () => (ta.dataset.touched = "1");

  const chart = document.getElementById("chart");
  chart.innerHTML = svg;
  for (const p of chart.querySelectorAll(".point")) {
    p.addEventListener("click", () => (location.href = "/experiment/" + p.dataset.experiment));
  }

  const head = el("tr", {}, ["exp", "status", "passed", "score", "Δ", "holdout", "size", "cost", "time", "description"].map((h) => el("th", { text: h })));
  const rows = run.experiments.map((e) =>
    el("tr", { "data-experiment": e.experiment, class: e.status },
      el("td", {}, el("a", { href: "/experiment/" + e.experiment, text: expName(e.experiment) })),
      el("td", {}, el("span", { class: "status " + e.status, text: e.status })),
      el("td", { class: "n", text: `${e.passed}/${e.trials}` }),
      el("td", { class: "n", text: num(e.avg_score) }),
      el("td", { class: "n", text: e.status === "keep" ? (e.delta === null ? "base" : signed(e.delta)) : "" }),
      el("td", { class: "n", text: num(e.holdout_score) }),
      el("td", { class: "n", text: e.harness_size }),
      el("td", { class: "n", text: money(e.cost_usd) }),
      el("td", { class: "n", text: duration(e.duration_s) }),
      el("td", { class: "desc", text: e.description })));
  document.getElementById("ledger").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  const logEl = document.getElementById("log");
  const lines = (log.log || "").trimEnd().split("\n");
  logEl.textContent = lines.slice(-40).join("\n");
}

// ---------------------------------------------------------------------------------------------
// Experiment.

function diffView(text) {
  const pre = el("pre", { id: "diff", class: "diff" });
  for (const line of text.split(/(?<=\n)/)) {
    let cls = "";
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff --git")) cls = "file";
    else if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    pre.append(el("span", { class: cls, text: line }));
  }
  return pre;
}

async function trialList(job) {
  const trials = await getJSON("/api/job/" + encodeURIComponent(job)).catch(() => []);
  return el("div", { class: "job" },
    el("h3", { text: job }),
    el("ul", { class: "trials" }, trials.map((t) =>
      el("li", {},
        el("span", { class: "dot " + trialClass(t) }),
        el("a", { class: "trial-link", href: `/trial/${encodeURIComponent(t.job)}/${encodeURIComponent(t.trial)}`, text: t.trial }),
        " ", el("span", { class: "muted", text: t.running ? "running" : `reward ${num(t.reward, 2)}${t.exception ? " · " + t.exception : ""}${t.suspect ? " · SUSPECT" : ""}` })))));
}

function trialClass(t) {
  if (t.running) return "running";
  if (t.exception && t.reward === null) return "error";
  return t.passed ? "pass" : "fail";
}

async function renderExperiment() {
  const n = location.pathname.split("/").pop();
  const d = await getJSON("/api/experiment/" + n);
  const r = d.row;
  const inc = d.incumbent;
  const tasks = el("table", { id: "per-task" },
    el("thead", {}, el("tr", {}, ["task", expName(r.experiment), inc ? "incumbent " + expName(inc.experiment) : "incumbent", "Δ passed"].map((h) => el("th", { text: h })))),
    el("tbody", {}, d.tasks.map((t) => {
      const delta = t.passed !== null && t.incumbent_passed !== null ? t.passed - t.incumbent_passed : null;
      return el("tr", { "data-task": t.task },
        el("td", { text: t.task }),
        el("td", { class: "n", text: t.passed === null ? "–" : `${t.passed}/${t.trials}` }),
        el("td", { class: "n", text: t.incumbent_passed === null ? "–" : `${t.incumbent_passed}/${t.incumbent_trials}` }),
        el("td", { class: "n " + (delta > 0 ? "up" : delta < 0 ? "down" : ""), text: delta === null ? "" : (delta > 0 ? "+" : "") + delta }));
    })));
  const jobs = await Promise.all(d.jobs.map(trialList));
  app.replaceChildren(
    el("h1", {}, expName(r.experiment) + " ", el("span", { class: "status " + r.status, text: r.status })),
    section("about", null,
      el("p", { id: "description", class: "lead", text: r.description }),
      d.rationale ? el("p", { id: "rationale" }, el("b", { text: "Why it is general: " }), d.rationale) : null,
      el("p", { class: "muted" },
        `score ${num(r.avg_score)} (${r.passed}/${r.trials})`,
        inc ? ` against ${num(inc.avg_score)} (${inc.passed}/${inc.trials}) of ${expName(inc.experiment)}` : " (the baseline)",
        r.holdout_score !== null ? ` · holdout ${num(r.holdout_score)}` : "",
        ` · size ${r.harness_size} · cost ${money(r.cost_usd)} (meta ${money(r.meta_cost_usd)}) · ${duration(r.duration_s)}`),
      el("p", { class: "muted" },
        "commit ", el("code", { id: "commit", text: d.commit || "none" }),
        d.discarded_ref ? el("span", {}, " · kept readable as ", el("code", { text: d.discarded_ref })) : null,
        d.meta_trajectory ? el("span", {}, " · ", el("a", { id: "meta-link", href: "/meta/" + r.experiment, text: "the meta-agent session" })) : null)),
    section("tasks-card", "Per task, against the incumbent", tasks),
    section("diff-card", "Harness diff", typeof d.diff.Ok === "string" ? diffView(d.diff.Ok) : el("p", { class: "error", text: d.diff.Err })),
    section("jobs-card", "Trials", jobs.length ? jobs : el("p", { class: "muted", text: "no job folder" })),
  );
}

// ---------------------------------------------------------------------------------------------
// Tasks.

async function renderTasks() {
  const m = await getJSON("/api/tasks");
  const head = el("tr", {}, el("th", { text: "task" }), m.columns.map((c) =>
    el("th", { class: c.status || "", title: c.status || c.job },
      c.experiment !== null ? el("a", { href: "/experiment/" + c.experiment, text: c.name }) : c.name)));
  const body = m.tasks.map((task) =>
    el("tr", { "data-task": task },
      el("th", { class: "task" }, task, m.flaky.includes(task) ? el("span", { class: "badge flaky", title: "passed on some attempts and failed on others", text: "flaky" }) : null),
      m.cells[task].map((cell, i) => {
        if (!cell) return el("td", { class: "empty", text: "·" });
        const cls = cell.passed === cell.attempts ? "all" : cell.passed === 0 ? "none" : "some";
        return el("td", { class: "cell " + cls + (cell.flaky ? " flaky" : ""), "data-column": m.columns[i].name, "data-passed": cell.passed, "data-attempts": cell.attempts },
          el("div", { class: "frac", text: `${cell.passed}/${cell.attempts}` }),
          el("div", { class: "dots" }, cell.trials.map((t) =>
            el("a", { class: "trial-link dot " + trialClass(t), href: `/trial/${encodeURIComponent(t.job)}/${encodeURIComponent(t.trial)}`, title: `${t.trial}: reward ${num(t.reward, 2)}${t.exception ? " · " + t.exception : ""}${t.suspect ? " · SUSPECT: " + t.suspect.join("; ") : ""}` }))));
      })));
  app.replaceChildren(
    el("h1", { text: "Tasks" }),
    section("matrix-card", m.columns.length ? "Passes per task and experiment (attempts per cell)" : "No jobs yet",
      el("div", { class: "scroll" }, el("table", { id: "matrix" }, el("thead", {}, head), el("tbody", {}, body)))),
  );
}

// ---------------------------------------------------------------------------------------------
// Trial and meta session: an ATIF trajectory, step by step.

const SPILL = /\[\.\.\. (\d+) characters omitted; the full output \((\d+) characters\) is in ([^:\]]+)/;

function contentText(c) {
  if (c === null || c === undefined) return "";
  if (typeof c === "string") return c;
  if (Array.isArray(c)) return c.map((p) => (p.type === "text" ? p.text : `[${p.type}: ${(p.source && p.source.path) || ""}]`)).join("\n");
  return JSON.stringify(c);
}

function metricsLine(m) {
  if (!m) return null;
  const parts = [];
  if (m.prompt_tokens !== undefined) parts.push(`prompt ${m.prompt_tokens}`);
  if (m.completion_tokens !== undefined) parts.push(`completion ${m.completion_tokens}`);
  if (m.cached_tokens) parts.push(`cached ${m.cached_tokens}`);
  if (m.cost_usd !== undefined && m.cost_usd !== null) parts.push("$" + Number(m.cost_usd).toFixed(4));
  return parts.length ? el("span", { class: "metrics", text: parts.join(" · ") }) : null;
}

function renderTrajectory(traj, depth) {
  const subs = new Map((traj.subagent_trajectories || []).map((s) => [s.trajectory_id, s]));
  const used = new Set();
  const agent = traj.agent || {};
  const fm = traj.final_metrics || {};
  const box = el("div", { class: "trajectory depth-" + depth });
  box.append(el("div", { class: "traj-head muted" },
    `${agent.name || "agent"} ${agent.version || ""}${agent.model_name ? " · " + agent.model_name : ""} · ${traj.steps.length} steps`,
    fm.total_prompt_tokens !== undefined ? ` · prompt ${fm.total_prompt_tokens} · completion ${fm.total_completion_tokens || 0}` : "",
    fm.total_cost_usd !== undefined ? ` · $${Number(fm.total_cost_usd).toFixed(4)}` : ""));
  const steps = el("div", { class: "steps" });
  let verifying = false;
  for (const s of traj.steps) {
    const extra = s.extra || {};
    if (extra.phase === "verification") {
      verifying = true;
      steps.append(el("div", { class: "phase-divider", text: `Verification phase${extra.bonus_turns ? ` (${extra.bonus_turns} bonus turns)` : ""}` }));
    }
    const step = el("div", { class: `step ${s.source}${verifying ? " verifying" : ""}`, "data-step-id": s.step_id });
    step.append(el("div", { class: "step-head" },
      el("span", { class: "step-id", text: "#" + s.step_id }),
      el("span", { class: "source " + s.source, text: s.source }),
      s.model_name ? el("span", { class: "muted", text: s.model_name }) : null,
      s.timestamp ? el("span", { class: "muted", text: s.timestamp }) : null,
      verifying ? el("span", { class: "badge verify", text: "verification" }) : null,
      extra.context_management ? el("span", { class: "badge", text: "context compacted" }) : null,
      s.is_copied_context ? el("span", { class: "badge", text: "copied context" }) : null,
      metricsLine(s.metrics)));
    const msg = contentText(s.message);
    if (msg) step.append(el("div", { class: "message", text: msg }));
    if (s.reasoning_content) step.append(el("details", { class: "reasoning" }, el("summary", { text: "reasoning" }), el("div", { class: "message", text: s.reasoning_content })));
    const results = (s.observation && s.observation.results) || [];
    for (const call of s.tool_calls || []) {
      const tc = el("div", { class: "tool-call", "data-call": call.tool_call_id },
        el("div", { class: "call-head" }, el("b", { text: call.function_name }), el("span", { class: "muted", text: " " + call.tool_call_id })),
        el("pre", { class: "args", text: JSON.stringify(call.arguments, null, 2) }));
      for (const r of results.filter((r) => r.source_call_id === call.tool_call_id)) tc.append(observation(r, subs, used, depth));
      step.append(tc);
    }
    for (const r of results.filter((r) => !r.source_call_id || !(s.tool_calls || []).some((c) => c.tool_call_id === r.source_call_id))) {
      step.append(observation(r, subs, used, depth));
    }
    steps.append(step);
  }
  box.append(steps);
  for (const [id, sub] of subs) {
    if (!used.has(id)) box.append(subagent(sub, depth));
  }
  return box;
}

function subagent(sub, depth) {
  return el("details", { class: "subagent", open: true, "data-trajectory-id": sub.trajectory_id },
    el("summary", { text: `sub-agent ${sub.agent ? sub.agent.name : ""} (${sub.trajectory_id})` }),
    renderTrajectory(sub, depth + 1));
}

function observation(r, subs, used, depth) {
  const text = contentText(r.content);
  const isError = r.extra && r.extra.is_error;
  const o = el("div", { class: "observation" + (isError ? " error" : "") });
  const spill = SPILL.exec(text);
  if (spill) o.append(el("div", { class: "notice spilled", text: `Output spilled: ${spill[1]} of ${spill[2]} characters omitted here; the full output is in ${spill[3]}` }));
  o.append(el("pre", { class: "content", text }));
  for (const ref of r.subagent_trajectory_ref || []) {
    const sub = subs.get(ref.trajectory_id);
    if (sub) {
      used.add(ref.trajectory_id);
      o.append(subagent(sub, depth));
    } else {
      o.append(el("div", { class: "notice", text: `sub-agent trajectory ${ref.trajectory_id || ref.trajectory_path} (not embedded)` }));
    }
  }
  return o;
}

async function renderTrial() {
  const [, , job, trial] = location.pathname.split("/").map(decodeURIComponent);
  const d = await getJSON(`/api/trial/${encodeURIComponent(job)}/${encodeURIComponent(trial)}`);
  const t = d.summary || {};
  const res = d.result || {};
  const rewards = res.verifier_result && res.verifier_result.rewards;
  app.replaceChildren(
    el("h1", {}, trial + " ", el("span", { class: "dot big " + trialClass(t) })),
    section("summary", null,
      el("p", {}, "task ", el("b", { id: "task", text: t.task || "?" }), " · job ", el("code", { text: job }),
        ` · reward `, el("b", { id: "reward", text: t.running ? "running" : num(t.reward, 3) }),
        rewards && Object.keys(rewards).length > 1 ? ` (${Object.entries(rewards).map(([k, v]) => k + "=" + v).join(", ")})` : "",
        t.cost_usd !== null && t.cost_usd !== undefined ? ` · ${money(t.cost_usd)}` : "",
        t.input_tokens ? ` · ${t.input_tokens} in / ${t.output_tokens || 0} out tokens` : ""),
      res.integrity === "suspect" ? el("div", { id: "integrity", class: "error" },
        el("b", { text: "Integrity: suspect (counted as a failure by the loop). " }),
        el("ul", {}, ...(res.integrity_evidence || []).map(e => el("li", { text: e })))) : null,
      res.exception_info ? el("div", { id: "exception", class: "error" },
        el("b", { text: res.exception_info.exception_type + ": " }), res.exception_info.exception_message,
        el("pre", { text: d.exception || res.exception_info.exception_traceback || "" })) : null),
    section("trajectory", "Trajectory",
      d.trajectory ? renderTrajectory(d.trajectory, 0) : el("p", { class: "muted", text: "no trajectory (yet)" }),
      d.continuations.map((c, i) => el("div", {}, el("h3", { text: `continuation ${i + 1}` }), renderTrajectory(c, 0)))),
    section("verifier", "Verifier output", el("pre", { id: "verifier-output", class: "log", text: d.verifier_output || "(none)" })),
  );
}

async function renderMeta() {
  const n = location.pathname.split("/").pop();
  const d = await getJSON("/api/meta/" + n);
  app.replaceChildren(
    el("h1", {}, expName(d.experiment) + ": the meta-agent session"),
    el("p", {}, el("a", { href: "/experiment/" + d.experiment, text: "back to the experiment" })),
    section("trajectory", "Trajectory", renderTrajectory(d.trajectory, 0)),
  );
}

// ---------------------------------------------------------------------------------------------
// Live updates.

const renderers = { run: renderRun, experiment: renderExperiment, tasks: renderTasks, trial: renderTrial, meta: renderMeta };
let rendering = false, again = false;

async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  try {
    await renderers[page]();
    clearError();
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  } catch (e) {
    showError(e);
  } finally {
    rendering = false;
    if (again) { again = false; render(); }
  }
}

for (const a of document.querySelectorAll("nav a")) {
  if (a.dataset.nav === page) a.classList.add("here");
}
const live = document.getElementById("live");
const events = new EventSource("/api/events");
events.addEventListener("hello", () => { live.textContent = "live"; live.className = "live on"; });
events.addEventListener("change", () => render());
events.onerror = () => { live.textContent = "reconnecting…"; live.className = "live"; };
render();
