// hitkit participant page: consent, instructions, practice with feedback, trials, submit.
// Plain ES module, no build step. The server never sends the answer of a real trial;
// only the practice trial carries one, for feedback.

const app = document.getElementById("app");
const TASK = app.dataset.task;
const K = TASK === "2afc" ? 2 : Number(app.dataset.k);
const params = new URLSearchParams(location.search);
const screens = ["loading", "blocked", "preview", "consent", "instructions", "trial",
                 "submitting", "done", "error"];
const $ = (id) => document.getElementById(id);

function show(name) {
  for (const s of screens) $(`screen-${s}`).hidden = s !== name;
  const focusable = $(`screen-${name}`).querySelector("button:not([disabled]), input");
  if (focusable) focusable.focus();
}

function fail(message) {
  $("error-message").textContent = message;
  show("error");
}

// ------------------------------------------------------------------ images

const cache = new Map();
function load(url) {
  if (!cache.has(url)) {
    const img = new Image();
    img.src = url;
    cache.set(url, img.decode().then(() => img, () => {
      cache.delete(url);
      throw new Error("an image could not be loaded");
    }));
  }
  return cache.get(url);
}
const preload = (trial) => Promise.all([...trial.query, ...trial.options].map(load));

function picture(url, alt) {
  const img = document.createElement("img");
  img.src = url;
  img.alt = alt;   // positions only: an alt text must never give the answer away
  img.draggable = false;
  return img;
}

// ------------------------------------------------------------------ a trial

let active = null;   // {trial, resolve, assigned, current, started}
let shownCount = 0;  // trials (practice included) put on screen so far

function keyHelp(i) {
  if (TASK === "2afc") return i === 0 ? "← or 1" : "→ or 2";
  return String(i + 1);
}

function optionLabel(i) {
  if (TASK === "2afc") return i === 0 ? "Left image" : "Right image";
  return `Image ${i + 1}`;
}

function render(trial, { disabled = false } = {}) {
  const query = $("query"), options = $("options");
  query.replaceChildren();
  options.replaceChildren();
  trial.query.forEach((url, i) => {
    const fig = document.createElement("figure");
    const alt = trial.query.length === 1 ? "Image to compare" : `Top image ${i + 1}`;
    fig.append(picture(url, alt));
    query.append(fig);
  });
  trial.options.forEach((url, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.index = String(i);
    button.disabled = disabled;
    button.setAttribute("aria-label", `${optionLabel(i)} (key ${keyHelp(i)})`);
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = keyHelp(i);
    key.setAttribute("aria-hidden", "true");
    button.append(picture(url, optionLabel(i)), key);
    button.addEventListener("click", () => choose(i));
    options.append(button);
  });
  $("prompt").textContent = TASK === "2afc"
    ? "Which image below does the top image look more like?"
    : "Which image below does the highlighted top image look most like?";
}

function markCurrent() {
  const figures = $("query").children;
  for (let i = 0; i < figures.length; i++) {
    // the highlight tells which top image is being matched; one image needs none
    figures[i].classList.toggle("current", figures.length > 1 && i === active.current);
    figures[i].classList.toggle("assigned", active.assigned[i] !== undefined);
  }
}

function runTrial(trial) {
  return new Promise((resolve) => {
    render(trial);
    active = { trial, resolve, assigned: [], current: 0, started: 0 };
    markCurrent();
    // the clock starts when the decoded images are on screen
    requestAnimationFrame(() => requestAnimationFrame(() => {
      active.started = performance.now();
      app.dataset.shown = String(++shownCount);   // ready for an answer (browser tests wait on it)
      const first = $("options").querySelector("button");
      if (first) first.focus();
    }));
  });
}

function choose(index) {
  if (!active || !active.started) return;
  const button = $("options").children[index];
  if (!button || button.disabled) return;
  if (TASK === "2afc") {
    finish([index]);
    return;
  }
  active.assigned[active.current] = index;
  button.disabled = true;
  button.classList.add("chosen");
  const open = [...Array(active.trial.query.length).keys()].find((i) => active.assigned[i] === undefined);
  if (open === undefined) { finish(active.assigned.slice()); return; }
  active.current = open;
  markCurrent();
  const free = $("options").querySelector("button:not([disabled])");
  if (free) free.focus();
}

function finish(choice) {
  const rt = performance.now() - active.started;
  const { resolve } = active;
  active = null;
  for (const b of $("options").children) b.disabled = true;
  resolve({ choice, rt_ms: Math.max(0, Math.round(rt * 10) / 10) });
}

document.addEventListener("keydown", (event) => {
  if (!active || event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
  let index = -1;
  if (TASK === "2afc" && event.key === "ArrowLeft") index = 0;
  else if (TASK === "2afc" && event.key === "ArrowRight") index = 1;
  else if (/^[1-9]$/.test(event.key)) index = Number(event.key) - 1;
  if (index < 0 || index >= K) return;
  event.preventDefault();
  choose(index);
});

// ------------------------------------------------------------------ API

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  let data = {};
  try { data = await response.json(); } catch { /* not JSON */ }
  return { status: response.status, ok: response.ok, data };
}

function identity() {
  if (params.has("PROLIFIC_PID")) {
    return { PROLIFIC_PID: params.get("PROLIFIC_PID"), STUDY_ID: params.get("STUDY_ID"),
             SESSION_ID: params.get("SESSION_ID") };
  }
  if (params.has("workerId")) {
    return { workerId: params.get("workerId"), assignmentId: params.get("assignmentId"),
             hitId: params.get("hitId") };
  }
  const token = params.get("token");
  const saved = localStorage.getItem(`hitkit:participant:${token}`);
  return saved ? { token, participant: saved } : { token };
}

async function submitWithRetry(assignmentId, payload) {
  for (let attempt = 0; attempt < 6; attempt++) {
    try {
      const reply = await api(`/api/assignments/${assignmentId}/submit`, payload);
      if (reply.ok || reply.status < 500) return reply;
    } catch { /* network: the same payload is safe to send again */ }
    await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
  }
  return { ok: false, status: 0, data: { error: { message: "the server cannot be reached" } } };
}

function completed(code, url) {
  $("completion-code").value = code;
  $("completion-code").textContent = code;
  const submitTo = params.get("turkSubmitTo");
  if (url && /^https:\/\//.test(url)) {
    // the platform's return page (e.g. Prolific's completion URL): a link, then a redirect
    const link = document.createElement("a");
    link.href = url;
    link.textContent = "Return to the study platform";
    $("done-note").replaceChildren("Taking you back in a few seconds… ", link);
    setTimeout(() => { location.href = url; }, 3000);
  } else if (submitTo && params.get("assignmentId")) {
    $("done-note").textContent = "Returning you to Mechanical Turk…";
    const form = document.createElement("form");
    form.method = "POST";
    form.action = `${submitTo.replace(/\/$/, "")}/mturk/externalSubmit`;
    for (const [name, value] of [["assignmentId", params.get("assignmentId")], ["completion_code", code]]) {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = value;
      form.append(input);
    }
    document.body.append(form);
    form.submit();
  } else {
    $("done-note").textContent = "Copy this code into the platform you came from, then close this page.";
  }
  show("done");
}

// ------------------------------------------------------------------ flow

function waitFor(id) {
  return new Promise((resolve) => $(id).addEventListener("click", resolve, { once: true }));
}

async function runPreview() {
  const reply = await api("/api/preview");
  show("preview");
  if (!reply.ok) return;
  const trialScreen = $("screen-trial");
  $("screen-preview").append(...[...trialScreen.children].filter((c) => c.id !== "practice-next"));
  render(reply.data, { disabled: true });
  $("trial-label").textContent = "Example trial";
}

async function runPractice(practice) {
  $("trial-label").textContent = "Practice";
  $("progress").value = 0;
  let correct = false;
  while (!correct) {
    await preload(practice);
    const { choice } = await runTrial(practice);
    correct = choice.every((c, i) => c === practice.answer[i]);
    $("feedback").className = `feedback ${correct ? "ok" : "bad"}`;
    const same = TASK === "2afc" ? "the top image is identical to one of the images below"
                                 : "each top image is identical to one of the images below";
    $("feedback").textContent = correct
      ? `Correct! In this practice trial ${same}.`
      : `Not quite: ${same}. Try again.`;
    if (!correct) await new Promise((r) => setTimeout(r, 1200));
  }
  $("practice-next").hidden = false;
  $("practice-next").focus();
  await waitFor("practice-next");
  $("practice-next").hidden = true;
  $("feedback").textContent = "";
  $("feedback").className = "feedback";
}

async function main() {
  if (app.dataset.mobile === "1" || (app.dataset.desktopOnly === "1" &&
      (matchMedia("(pointer: coarse)").matches && !matchMedia("(pointer: fine)").matches ||
       Math.min(screen.width, innerWidth) < 700))) {
    show("blocked");
    return;
  }
  if (app.dataset.preview === "1") { await runPreview(); return; }

  const started = await api("/api/assignments", identity());
  if (!started.ok) { fail(started.data.error?.message || "This link cannot be used."); return; }
  const a = started.data;
  if (a.participant && params.get("token")) {
    localStorage.setItem(`hitkit:participant:${params.get("token")}`, a.participant);
  }
  if (a.completion_code) { completed(a.completion_code, a.completion_url); return; }
  const hit = (await api(`/api/assignments/${a.assignment_id}`)).data;
  const storeKey = `hitkit:responses:${a.assignment_id}`;
  const responses = JSON.parse(localStorage.getItem(storeKey) || "[]");

  if (responses.length === 0) {
    show("consent");
    $("consent-check").addEventListener("change", (e) => { $("consent-go").disabled = !e.target.checked; });
    await waitFor("consent-go");
    show("instructions");
    await waitFor("instructions-go");
  }
  show("trial");
  if (hit.practice && responses.length === 0) await runPractice(hit.practice);

  const trials = hit.trials;
  $("progress").max = trials.length;
  for (let i = responses.length; i < trials.length; i++) {
    $("trial-label").textContent = `Trial ${i + 1} of ${trials.length}`;
    $("progress").value = i;
    try {
      await preload(trials[i]);
    } catch (e) { fail(`${e.message}; please reload the page.`); return; }
    if (i + 1 < trials.length) preload(trials[i + 1]).catch(() => {});
    if (i + 2 < trials.length) preload(trials[i + 2]).catch(() => {});
    const { choice, rt_ms } = await runTrial(trials[i]);
    responses.push({ trial_id: trials[i].trial_id, choice: TASK === "2afc" ? choice[0] : choice, rt_ms });
    localStorage.setItem(storeKey, JSON.stringify(responses));
  }
  $("progress").value = trials.length;
  show("submitting");
  const client = { width: innerWidth, height: innerHeight, screen_width: screen.width,
                   screen_height: screen.height, pixel_ratio: devicePixelRatio };
  const reply = await submitWithRetry(a.assignment_id, { responses, client });
  const code = reply.data.completion_code;
  if (code) { localStorage.removeItem(storeKey); completed(code, reply.data.completion_url); return; }
  fail(`Your answers could not be saved (${reply.data.error?.message || "unknown error"}). ` +
       "Please keep this page open and try reloading it.");
}

main().catch((e) => fail(`Something went wrong: ${e.message}`));
