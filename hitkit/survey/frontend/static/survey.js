// hitkit participant page: consent, instructions, practice with feedback, trials, submit.
// Plain ES module, no build step, the same file on every platform. Served by the survey
// app, it talks to the JSON API. Embedded in an MTurk HTMLQuestion there is no server:
// the HIT's trials are in the page (#hit-data) and the responses are posted to MTurk's
// form. Neither way carries the answer of a real trial; only the served practice trial
// carries one, for feedback.

const app = document.getElementById("app");
const params = new URLSearchParams(location.search);
const screens = ["loading", "blocked", "preview", "consent", "instructions", "trial",
                 "submitting", "done", "error"];
const $ = (id) => document.getElementById(id);
const embedded = $("hit-data") ? JSON.parse($("hit-data").textContent) : null;
const MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE";
const MOBILE_UA = /Mobi|Android|iPhone|iPad/i;   // the served app's rule (hitkit.survey.web.app)

function kbd(text) {
  const key = document.createElement("kbd");
  key.textContent = text;
  return key;
}

// ------------------------------------------------------------------ task types

// A task type is one entry here and one TaskType in hitkit/survey/design.py; the rest
// of the page serves any of them: each top image in turn gets one of the options below.
const TASKS = {
  "2afc": {
    keys: { ArrowLeft: 0, ArrowRight: 1 },
    keyHelp: (i) => (i === 0 ? "← or 1" : "→ or 2"),
    label: (i) => (i === 0 ? "Left image" : "Right image"),
    prompt: "Which image below does the top image look more like?",
    help: () => ["Click an image below, or press ", kbd("←"), " or ", kbd("1"),
                 " for the left one and ", kbd("→"), " or ", kbd("2"), " for the right one."],
    same: "the top image is identical to one of the images below",
    wire: (choice) => choice[0],   // one option index (TaskType.single_choice)
  },
  matching: {
    keys: {},
    keyHelp: (i) => String(i + 1),
    label: (i) => `Image ${i + 1}`,
    prompt: "Which image below does the highlighted top image look most like?",
    help: (k) => [`The top row shows ${k} images. For the highlighted one, choose the image ` +
                  "below that it looks most like: click it or press its number (", kbd("1"), "…",
                  kbd(String(k)), "). Each image below is used once."],
    same: "each top image is identical to one of the images below",
    wire: (choice) => choice,
  },
};
const TASK = TASKS[app.dataset.task];
$("task-help").replaceChildren(...TASK.help(Number(app.dataset.k)));

function show(name) {
  for (const s of screens) $(`screen-${s}`).hidden = s !== name;
  const focusable = $(`screen-${name}`).querySelector("button:not([disabled]), input");
  if (focusable) focusable.focus();
}

function fail(message) {
  $("error-message").textContent = message;
  show("error");
}

// the page must still work where the browser refuses storage (a third-party frame)
const store = {
  get(key) { try { return localStorage.getItem(key); } catch { return null; } },
  set(key, value) { try { localStorage.setItem(key, value); } catch { /* not kept */ } },
  remove(key) { try { localStorage.removeItem(key); } catch { /* nothing kept */ } },
};

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
    button.setAttribute("aria-label", `${TASK.label(i)} (key ${TASK.keyHelp(i)})`);
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = TASK.keyHelp(i);
    key.setAttribute("aria-hidden", "true");
    button.append(picture(url, TASK.label(i)), key);
    button.addEventListener("click", () => choose(i));
    options.append(button);
  });
  $("prompt").textContent = TASK.prompt;
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
  const several = active.trial.query.length > 1;
  active.assigned[active.current] = index;
  if (several) {   // the options used up so far; one top image needs no such marks
    button.disabled = true;
    button.classList.add("chosen");
  }
  const open = active.trial.query.findIndex((_, i) => active.assigned[i] === undefined);
  if (open < 0) { finish(active.assigned.slice()); return; }
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
  if (Object.hasOwn(TASK.keys, event.key)) index = TASK.keys[event.key];
  else if (/^[1-9]$/.test(event.key)) index = Number(event.key) - 1;
  if (index < 0 || index >= active.trial.options.length) return;
  event.preventDefault();
  choose(index);
});

// ------------------------------------------------------------------ served: the API

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
  const saved = store.get(`hitkit:participant:${token}`);
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

function postToMTurk(submitTo, fields) {
  const form = $("mturk-form");
  form.action = `${submitTo.replace(/\/$/, "")}/mturk/externalSubmit`;
  for (const [name, value] of Object.entries(fields)) {
    const input = document.createElement("input");
    input.type = "hidden"; input.name = name; input.value = value;
    form.append(input);
  }
  form.submit();
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
    postToMTurk(submitTo, { assignmentId: params.get("assignmentId"), completion_code: code });
  } else {
    $("done-note").textContent = "Copy this code into the platform you came from, then close this page.";
  }
  show("done");
}

// The assignment from the API: {storeKey, trials, practice, submit}, or null when a
// screen (an error, the completion code) has already been shown instead.
async function startServed() {
  const started = await api("/api/assignments", identity());
  if (!started.ok) { fail(started.data.error?.message || "This link cannot be used."); return null; }
  const a = started.data;
  if (a.participant && params.get("token")) {
    store.set(`hitkit:participant:${params.get("token")}`, a.participant);
  }
  if (a.completion_code) { completed(a.completion_code, a.completion_url); return null; }
  const hit = (await api(`/api/assignments/${a.assignment_id}`)).data;
  const storeKey = `hitkit:responses:${a.assignment_id}`;
  async function submit(payload) {
    const reply = await submitWithRetry(a.assignment_id, payload);
    const code = reply.data.completion_code;
    if (code) { store.remove(storeKey); completed(code, reply.data.completion_url); return; }
    fail(`Your answers could not be saved (${reply.data.error?.message || "unknown error"}). ` +
         "Please keep this page open and try reloading it.");
  }
  return { storeKey, trials: hit.trials, practice: hit.practice, submit };
}

// ------------------------------------------------------------------ embedded: MTurk's form

function startEmbedded() {
  const assignmentId = params.get("assignmentId");
  function submit(payload) {
    // the responses stay stored: should MTurk refuse the post, a reload submits them again
    postToMTurk(params.get("turkSubmitTo") || "https://www.mturk.com",
                { assignmentId, results: JSON.stringify(payload) });
  }
  return {
    storeKey: `hitkit:responses:mturk:${assignmentId}`,
    trials: embedded.trials,
    practice: app.dataset.practice === "1" ? embedded.practice : null,
    submit,
  };
}

// ------------------------------------------------------------------ flow

function waitFor(id) {
  return new Promise((resolve) => $(id).addEventListener("click", resolve, { once: true }));
}

function isPreview() {
  if (!embedded) return app.dataset.preview === "1";
  const assignmentId = params.get("assignmentId");
  return !assignmentId || assignmentId === MTURK_PREVIEW;
}

function isBlocked() {
  if (app.dataset.mobile === "1") return true;
  if (app.dataset.desktopOnly !== "1") return false;
  return MOBILE_UA.test(navigator.userAgent) ||
    (matchMedia("(pointer: coarse)").matches && !matchMedia("(pointer: fine)").matches) ||
    Math.min(screen.width, innerWidth) < 700;
}

async function runPreview() {
  let example = embedded && embedded.practice;
  if (!embedded) {
    const reply = await api("/api/preview");
    example = reply.ok ? reply.data : null;
  }
  show("preview");
  if (!example) return;
  const trialScreen = $("screen-trial");
  $("screen-preview").append(...[...trialScreen.children].filter((c) => c.id !== "practice-next"));
  render(example, { disabled: true });
  $("trial-label").textContent = "Example trial";
}

async function runPractice(practice) {
  // an embedded page carries no answer at all: the practice's correct option shows the
  // top image itself, so it has the same URL
  const answer = practice.answer ?? practice.query.map((url) => practice.options.indexOf(url));
  $("trial-label").textContent = "Practice";
  $("progress").value = 0;
  let correct = false;
  while (!correct) {
    await preload(practice);
    const { choice } = await runTrial(practice);
    correct = choice.every((c, i) => c === answer[i]);
    $("feedback").className = `feedback ${correct ? "ok" : "bad"}`;
    $("feedback").textContent = correct
      ? `Correct! In this practice trial ${TASK.same}.`
      : `Not quite: ${TASK.same}. Try again.`;
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
  if (isBlocked()) { show("blocked"); return; }
  if (isPreview()) { await runPreview(); return; }
  const hit = embedded ? startEmbedded() : await startServed();
  if (!hit) return;
  const responses = JSON.parse(store.get(hit.storeKey) || "[]");

  if (responses.length === 0) {
    show("consent");
    $("consent-check").addEventListener("change", () => {
      $("consent-go").disabled = !$("consent-check").checked;
    });
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
    responses.push({ trial_id: trials[i].trial_id, choice: TASK.wire(choice), rt_ms });
    store.set(hit.storeKey, JSON.stringify(responses));
  }
  $("progress").value = trials.length;
  show("submitting");
  const client = { width: innerWidth, height: innerHeight, screen_width: screen.width,
                   screen_height: screen.height, pixel_ratio: devicePixelRatio };
  await hit.submit({ responses, client });
}

main().catch((e) => fail(`Something went wrong: ${e.message}`));
