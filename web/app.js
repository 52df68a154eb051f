// The page: creates a session, follows its event stream step by step, and shows the finished lesson.
'use strict';

const STEPS = [
  { name: 'analyze-topic', title: 'Analyze the topic' },
  { name: 'generate-outline', title: 'Draft the outline' },
  { name: 'create-content', title: 'Write the lesson' },
  { name: 'generate-images', title: 'Draw the diagrams' },
  { name: 'finalize-lesson', title: 'Sum it up' },
];
const STEP_LABELS = {
  pending: 'Waiting', running: 'Writing', completed: 'Done', failed: 'Failed', stopped: 'Stopped', skipped: 'Skipped',
};
const RUN_LABELS = {
  pending: 'Starting', queued: 'Waiting', running: 'Writing', completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled',
  interrupted: 'Interrupted', notfound: 'Not found',
};
// What to tell a reader of a lesson the built-in provider wrote, and how to have a model write one.
const CONNECT_MODEL = 'ORCH_LLM_API_KEY=sk-... make run ARGS="--provider=openai --llm_model=gpt-4o-mini"';
const RECENT_LIMIT = 12;
// While a listed lesson is still being written (by this page or anyone else), the list is read again
// this often, so its statuses do not go stale until Refresh is pressed.
const RECENT_REFRESH_MS = 5000;
const UNFINISHED = new Set(['pending', 'queued', 'running']);
// A lesson with at least this many sections gets a table of contents above it.
const TOC_MIN_SECTIONS = 3;
const KEY_STORAGE = 'orchestrator.apiKey';
// Long polling in place of the event stream, where a proxy buffers or cuts streams. The service writes a
// `connected` event the moment a stream opens, so a stream that shows nothing at all for STREAM_SILENCE_MS,
// or STREAM_FAILURES attempts in a row that each fail before their first event, are not getting through.
// (Its `:` heartbeats, every heartbeat_interval = 15 s, are invisible to EventSource: once a stream has
// shown an event, a quiet one is judged by the browser's own reconnecting, not by a clock.)
const STREAM_SILENCE_MS = 4000;
// What a reconnect may take on top: the browser first waits the service's `retry:` (3 s by default).
const STREAM_RETRY_MS = 5000;
const STREAM_FAILURES = 3;
const POLL_WAIT_S = 25; // how long the service may hold a poll (it cuts this to its poll_max_wait)
const POLLING_NOTE = 'Live updates via polling: the event stream is not getting through.';

const $ = (id) => document.getElementById(id);
const api = (id, tail = '') => `/api/sessions/${encodeURIComponent(id)}${tail}`;

// The API key for a service that needs one: asked for on the first 401, kept for this tab only.
let apiKey = readKey();
// The open key dialog's answer, shared by every request that met a 401 while it is open.
let keyRequest = null;

// The session on screen: its id, its EventSource, the last event id applied, and one view per step.
let run = null;
// True once an event stream did not get through: the sessions opened after it are polled from the start.
let streamsBlocked = false;
// True while the request that makes a new session is under way.
let creating = false;
// Object URLs made for the lesson on screen (its images, fetched with the API key), freed when it goes.
let lessonBlobs = [];
// The next reading of the recent list, while one of its lessons is unfinished.
let recentTimer = 0;

// -- formatting ----------------------------------------------------------------------------------

function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function timeAgo(iso) {
  const seconds = (Date.parse(iso) - Date.now()) / 1000;
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  for (const [unit, size] of [['day', 86400], ['hour', 3600], ['minute', 60]]) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return 'just now';
}

async function errorText(response) {
  if (response.status === 429) {
    const wait = Number.parseInt(response.headers.get('Retry-After') || '', 10);
    return `Too many requests just now. Please try again ${wait > 0 ? `in ${wait} s` : 'in a moment'}.`;
  }
  if (response.status === 401) return 'This service needs an API key.';
  try {
    return (await response.json()).error || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

// -- Markdown, made safe ---------------------------------------------------------------------------
// The rules of the service's own lesson.html (workflow/lesson/html.py), here for text as it streams:
// raw HTML in the Markdown is shown as text, links may only leave for the web, mail someone or point
// within the page, and only the session's own images are kept. DOMPurify then keeps nothing but plain
// formatting, as a second line behind the renderer (and the page's Content Security Policy a third).

const OUTSIDE_LINK = /^(https?:\/\/[^/\\]|mailto:|#)/i;
const SESSION_IMAGE = /^\/api\/sessions\/([A-Za-z0-9._-]+)\/images\/[A-Za-z0-9][A-Za-z0-9_-]*\.[a-z0-9]{2,5}$/;
const PURIFY = {
  ALLOWED_TAGS: [
    'a', 'blockquote', 'br', 'code', 'del', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'img', 'li', 'ol', 'p',
    'pre', 's', 'span', 'strong', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
  ],
  ALLOWED_ATTR: ['alt', 'align', 'class', 'href', 'rel', 'src', 'start', 'title'],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function isSessionImage(url, sessionId) {
  const match = SESSION_IMAGE.exec(url || '');
  return Boolean(match && match[1] === sessionId);
}

// A Markdown renderer for one session's text (its own images are the only ones it keeps).
function markdownFor(sessionId) {
  const md = new marked.Marked({ gfm: true, breaks: true, async: false });
  md.use({
    renderer: {
      html({ text }) {
        return escapeHtml(text); // a tag in the text is shown, never made
      },
      link({ href, title, tokens }) {
        const text = this.parser.parseInline(tokens);
        if (!OUTSIDE_LINK.test(href || '')) return `<span class="link-removed">${text}</span>`;
        const rel = /^https?:/i.test(href) ? ' rel="noopener noreferrer nofollow"' : '';
        const titled = title ? ` title="${escapeHtml(title)}"` : '';
        return `<a href="${escapeHtml(href)}"${titled}${rel}>${text}</a>`;
      },
      image({ href, title, text }) {
        if (!isSessionImage(href, sessionId)) return `<span class="image-removed">${escapeHtml(text)}</span>`;
        const titled = title ? ` title="${escapeHtml(title)}"` : '';
        return `<img src="${escapeHtml(href)}" alt="${escapeHtml(text)}"${titled}>`;
      },
    },
  });
  return md;
}

// HTML (from the renderer above, or the service's lesson.html) as a fragment with nothing in it that
// can run: DOMPurify's allow-list, then the link and image rules once more on what it kept.
function safeFragment(html, sessionId) {
  const fragment = DOMPurify.sanitize(html, PURIFY);
  for (const link of fragment.querySelectorAll('a')) {
    const href = link.getAttribute('href') || '';
    if (!OUTSIDE_LINK.test(href)) {
      const span = document.createElement('span');
      span.className = 'link-removed';
      span.append(...link.childNodes);
      link.replaceWith(span);
    } else if (/^https?:/i.test(href)) {
      link.rel = 'noopener noreferrer nofollow';
    }
  }
  for (const image of fragment.querySelectorAll('img')) {
    if (isSessionImage(image.getAttribute('src'), sessionId)) continue;
    const span = document.createElement('span');
    span.className = 'image-removed';
    span.textContent = image.getAttribute('alt') || '';
    image.replaceWith(span);
  }
  return fragment;
}

// -- the API key ---------------------------------------------------------------------------------

function readKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return ''; // storage switched off: the key lasts as long as the page
  }
}

function storeKey(key) {
  apiKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage switched off: keep the key in memory only
  }
}

function withKey(options = {}) {
  if (!apiKey) return options;
  const headers = new Headers(options.headers || {});
  headers.set('Authorization', `Bearer ${apiKey}`);
  return { ...options, headers };
}

// fetch() for the service's API: sends the key when there is one; a 401 asks for one (once for every
// request waiting on it) and tries again with it. Gives back the 401 if the person does not give one.
async function apiFetch(url, options = {}) {
  for (;;) {
    const sent = apiKey;
    const response = await fetch(url, withKey(options));
    if (response.status !== 401) return response;
    if (apiKey !== sent) continue; // another request's dialog got a key meanwhile: use it
    const key = await askForKey(Boolean(sent));
    if (!key) {
      if (apiKey === sent) storeKey(''); // refused and not replaced: forget it, ask again next time
      return response;
    }
    storeKey(key);
  }
}

function askForKey(rejected) {
  if (keyRequest) return keyRequest;
  const dialog = $('key-dialog');
  const input = $('api-key');
  keyRequest = new Promise((resolve) => {
    $('key-error').textContent = rejected ? 'That key was not accepted. Check it and try again.' : '';
    $('key-error').hidden = !rejected;
    input.value = '';
    dialog.returnValue = '';
    dialog.addEventListener('close', () => {
      keyRequest = null;
      resolve(dialog.returnValue === 'ok' ? input.value.trim() : '');
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
  return keyRequest;
}

function submitKey(event) {
  event.preventDefault();
  if (!$('api-key').value.trim()) {
    $('key-error').textContent = 'Enter the API key, or press Cancel.';
    $('key-error').hidden = false;
    $('api-key').focus();
    return;
  }
  $('key-dialog').close('ok');
}

// Where a session's stream is read: the URL the service gave (it carries a token when keys are on,
// since EventSource cannot send a header), with our own resume point added as ?last_event_id=.
function streamUrl(r) {
  const url = new URL(r.streamUrl || api(r.id, '/run'), window.location.href);
  if (r.lastId) url.searchParams.set('last_event_id', String(r.lastId));
  return url.origin === window.location.origin ? url.pathname + url.search : url.href;
}

// -- the steps -----------------------------------------------------------------------------------

function buildSteps() {
  const list = $('steps');
  const template = $('step-template');
  list.replaceChildren();
  const views = new Map();
  STEPS.forEach((step, index) => {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.step = step.name;
    li.querySelector('.step-index').textContent = String(index + 1);
    li.querySelector('.step-title').textContent = step.title;
    // The step's Markdown as it came (kept whole in a hidden <pre>), and shown rendered beside it.
    const source = document.createTextNode('');
    li.querySelector('.step-source').append(source);
    const view = {
      li,
      details: li.querySelector('details'),
      state: li.querySelector('.step-state'),
      bar: li.querySelector('.step-bar'),
      fill: li.querySelector('.step-bar-fill'),
      note: li.querySelector('.step-note'),
      textBox: li.querySelector('.step-text'),
      source,
      title: step.title,
      index,
      renderPending: false,
      duration: null,
      progress: 0,
    };
    list.append(li);
    views.set(step.name, view);
    setStep(view, 'pending');
  });
  return views;
}

function setStep(view, status) {
  view.li.dataset.status = status;
  let detail = '';
  if (view.duration !== null) detail = ` · ${formatMs(view.duration)}`;
  else if (status === 'running' && view.progress > 0) detail = ` · ${view.progress}%`;
  view.state.textContent = STEP_LABELS[status] + detail;
}

function setProgress(view, percent) {
  view.progress = Math.max(0, Math.min(100, Number(percent) || 0));
  view.fill.style.width = `${view.progress}%`;
  view.bar.setAttribute('aria-valuenow', String(view.progress));
  if (view.li.dataset.status === 'running') setStep(view, 'running');
}

function setNote(view, text, kind) {
  view.note.textContent = text;
  view.note.className = `step-note ${kind || ''}`;
  view.note.hidden = !text;
}

function appendText(view, delta) {
  view.source.appendData(delta);
  scheduleRender(view);
}

function setText(view, text) {
  view.source.data = text;
  renderText(view);
}

// Rendering the whole step again for each piece of text would be wasted work: at most once a frame.
function scheduleRender(view) {
  if (view.renderPending) return;
  view.renderPending = true;
  requestAnimationFrame(() => renderText(view));
}

function renderText(view) {
  view.renderPending = false;
  if (!run || !run.markdown) return;
  const box = view.textBox;
  const following = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  const markdown = view.source.data;
  if (markdown) box.replaceChildren(safeFragment(run.markdown.parse(markdown), run.id));
  else box.replaceChildren();
  if (following) box.scrollTop = box.scrollHeight;
}

function announce(text) {
  $('announcer').textContent = text;
}

// -- one session on screen -----------------------------------------------------------------------

function openSession(id, { push = true, topic = '', streamUrl = '' } = {}) {
  closeRun();
  if (push) history.pushState({ session: id }, '', `/?session=${encodeURIComponent(id)}`);
  run = {
    id, source: null, lastId: 0, done: false, steps: buildSteps(), stepNames: {}, streamUrl,
    markdown: markdownFor(id), connected: false, cancelling: false, stalled: false,
    polling: false, pollLoop: 0, streamFailures: 0,
  };
  $('intro').hidden = true;
  $('run').hidden = false;
  $('steps').hidden = false;
  delete $('run').dataset.outcome;
  $('result').hidden = true;
  clearLesson();
  $('banner').hidden = true;
  $('cancel').hidden = false;
  showProvider('', '');
  announce('');
  updateControls();
  setTopic(topic);
  setRunStatus('pending');
  showConnection('');
  markActiveRecent();
  const r = run;
  if (streamUrl) {
    describe(r);
    connect(r);
  } else {
    // The stream's URL (and its token, when the service has keys) comes with the session.
    describe(r).then((found) => { if (found && r === run && !r.source && !r.polling) connect(r); });
  }
}

function closeRun() {
  if (run && run.source) run.source.close();
  if (run) run.pollLoop += 1; // a poll under way ends with it
  run = null;
  updateControls();
}

// Generate while no run is being followed (a second one would start unseen); Cancel while connected.
function updateControls() {
  const following = Boolean(run && !run.done && !run.stalled);
  $('generate').disabled = creating || following;
  $('generate').title = following ? 'A lesson is being written: wait for it, or cancel it first' : '';
  $('cancel').disabled = !run || run.done || !run.connected || run.cancelling;
  $('cancel').title = run && !run.done && !run.connected ? 'Not connected to the service just now' : '';
}

// Who wrote the lesson: the built-in provider's is a scaffold without facts, and the page says so.
function showProvider(provider, model) {
  const note = $('provider-note');
  note.dataset.provider = provider;
  if (!provider) {
    note.replaceChildren();
    note.hidden = true;
    return;
  }
  if (provider === 'builtin') {
    const head = document.createElement('p');
    const strong = document.createElement('strong');
    strong.textContent = 'Written offline by the built-in provider: a study scaffold, without facts.';
    head.append(strong, ' It gives this topic a structure to study by (objectives, an outline, prompts and a '
      + 'quiz) but knows nothing about the topic itself; check what it says against a real source.');
    const how = document.createElement('p');
    how.append('To have a language model write the lesson, start the service with one, e.g. ');
    const code = document.createElement('code');
    code.textContent = CONNECT_MODEL;
    how.append(code, ' (any OpenAI-compatible server works: see the README, "Pointing it at a model server").');
    note.replaceChildren(head, how);
  } else {
    const line = document.createElement('p');
    const code = (text) => {
      const element = document.createElement('code');
      element.textContent = text;
      return element;
    };
    if (model) line.append('Written by the language model ', code(model), ', through the service\'s ', code(provider));
    else line.append('Written by a language model, through the service\'s ', code(provider));
    line.append(' provider. Models can be wrong: check what matters.');
    note.replaceChildren(line);
  }
  note.hidden = false;
}

function setTopic(topic) {
  $('run-topic').textContent = topic || '…';
  document.title = topic ? `${topic} · Orchestrator` : 'Orchestrator · lessons written live';
}

function setRunStatus(status) {
  setPill($('run-status'), status);
  // The recent list says the same of this session without waiting for its next refresh.
  const listed = run && document.querySelector(`.recent-item[data-session="${CSS.escape(run.id)}"] .pill`);
  if (listed) setPill(listed, status);
}

function setPill(pill, status) {
  pill.dataset.status = status;
  pill.textContent = RUN_LABELS[status] || status;
}

// A word on the connection; with nothing to say, that the run is followed by polling, if it is.
function showConnection(text) {
  const shown = text || (run && run.polling && !run.done ? POLLING_NOTE : '');
  $('connection').textContent = shown;
  $('connection').hidden = !shown;
}

function showBanner(text, action) {
  const banner = $('banner');
  banner.replaceChildren(document.createTextNode(text));
  if (action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'button ghost';
    button.textContent = action.label;
    button.addEventListener('click', action.run);
    banner.append(' ', button);
  }
  banner.hidden = false;
}

async function describe(r) {
  // The topic (the stream does not carry it), the stream's URL, and a clear word if the session does
  // not exist. True when the stream is worth opening.
  const response = await apiFetch(api(r.id)).catch(() => null);
  if (r !== run) return false;
  if (!response) return true; // unreachable: the stream's own reconnecting says so
  if (response.status === 404) {
    notFound(r, 'There is no session with this id (it may have been deleted).');
    return false;
  }
  if (!response.ok) {
    finish(r, 'failed');
    showBanner(`Could not load this session: ${await errorText(response)}`);
    return false;
  }
  const session = await response.json();
  if (r !== run) return false;
  setTopic(session.topic);
  const metadata = session.metadata || {};
  showProvider(metadata.provider || '', metadata.model || '');
  if (session.stream_url) r.streamUrl = session.stream_url;
  return true;
}

// A session the service does not have: said once, without steps that never were.
function notFound(r, text) {
  r.done = true;
  if (r.source) r.source.close();
  $('run').dataset.outcome = 'notfound';
  setRunStatus('notfound');
  showConnection('');
  $('cancel').hidden = true;
  if (r.lastId === 0) {
    $('steps').hidden = true;
    setTopic('');
    $('run-topic').textContent = 'Session not found';
  }
  showBanner(text);
  updateControls();
  refreshRecent();
}

function connect(r) {
  if (r.polling) return;
  if (streamsBlocked) {
    pollInstead(r);
    return;
  }
  // A reconnect of our own (after the browser gave up) resumes where we are, like Last-Event-ID.
  const source = new EventSource(streamUrl(r));
  r.source = source;
  r.stalled = false;
  updateControls();
  // Whether this attempt (the browser's reconnects are attempts too) has shown anything yet.
  let heard = false;
  let silence = 0;
  const listen = (ms) => {
    clearTimeout(silence);
    silence = setTimeout(() => {
      if (r === run && r.source === source && !r.done && !heard) pollInstead(r);
    }, ms);
  };
  listen(STREAM_SILENCE_MS);
  source.onopen = () => {
    if (r !== run) return;
    r.connected = true;
    showConnection('');
    updateControls();
  };
  source.onmessage = (message) => {
    if (r !== run || r.source !== source) return;
    heard = true;
    clearTimeout(silence);
    r.streamFailures = 0;
    receive(r, Number(message.lastEventId), JSON.parse(message.data));
  };
  source.onerror = () => {
    if (r !== run || r.source !== source || r.done) return;
    r.connected = false;
    const gotThrough = heard;
    if (!heard) r.streamFailures += 1;
    heard = false;
    if (r.streamFailures >= STREAM_FAILURES) {
      pollInstead(r);
    } else if (source.readyState === EventSource.CONNECTING) {
      listen(STREAM_SILENCE_MS + STREAM_RETRY_MS);
      showConnection('Connection lost. Reconnecting…');
    } else {
      clearTimeout(silence);
      r.stalled = true; // nothing is being followed now: a new lesson may be started
      streamClosed(r, gotThrough);
    }
    updateControls();
  };
}

// The event stream is not getting through: follow the session by long polling from the last event
// applied, through the same receive() as the stream's events.
function pollInstead(r) {
  if (r.source) r.source.close();
  r.source = null;
  r.polling = true;
  r.stalled = false;
  r.connected = false;
  streamsBlocked = true;
  $('banner').hidden = true;
  showConnection('');
  updateControls();
  poll(r);
}

function pollUrl(r, wait) {
  const url = new URL(api(r.id, '/events'), window.location.href);
  url.searchParams.set('after', String(r.lastId));
  url.searchParams.set('wait', String(wait));
  // The stream's token opens the polls too (with keys on, the key header is sent as well).
  const token = r.streamUrl && new URL(r.streamUrl, window.location.href).searchParams.get('token');
  if (token) url.searchParams.set('token', token);
  return url.pathname + url.search;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function poll(r) {
  r.pollLoop += 1;
  const loop = r.pollLoop;
  const current = () => r === run && r.pollLoop === loop && !r.done;
  let wait = 0; // the first answer comes at once: it says whether the session must be started
  let failures = 0;
  let started = false;
  while (current()) {
    const response = await apiFetch(pollUrl(r, wait), { cache: 'no-store' }).catch(() => null);
    const page = response && response.ok ? await response.json().catch(() => null) : null;
    if (!current()) return;
    if (page) {
      failures = 0;
      if (!r.connected) {
        r.connected = true;
        showConnection('');
        updateControls();
      }
      for (const event of page.events) receive(r, event.id, event);
      if (!current()) return;
      if (page.done) {
        finish(r, page.status); // done without a terminal event to apply: as the service says
        return;
      }
      // Polling never starts a session (the stream's GET would have): POST /start does.
      if (page.status === 'pending' && !started) {
        const start = await startSession(r);
        if (start === false) return;
        started = start;
      }
      wait = page.status === 'pending' && !started ? 0 : POLL_WAIT_S;
      continue;
    }
    if (response && response.status === 404) {
      notFound(r, 'This session no longer exists.');
      return;
    }
    if (response && response.status < 500 && response.status !== 429) {
      stopPolling(r, `Could not follow this session: ${await errorText(response)}`);
      return;
    }
    // Unreachable, 429 or 5xx: ask again after Retry-After, or 1 s doubled each time (at most 30 s).
    failures += 1;
    r.connected = false;
    showConnection('Connection lost. Reconnecting…');
    updateControls();
    const retryAfter = response ? Number.parseInt(response.headers.get('Retry-After') || '', 10) : 0;
    await sleep(retryAfter > 0 ? retryAfter * 1000 : Math.min(30000, 1000 * 2 ** (failures - 1)));
  }
}

// Starts a pending session for its polls: true once started (409: it was already), null if the service
// could not be reached (the next poll asks again), false (with a word on the page) if it refused.
async function startSession(r) {
  const response = await apiFetch(api(r.id, '/start'), { method: 'POST' }).catch(() => null);
  if (r !== run || r.done) return false;
  if (!response) return null;
  if (response.ok || response.status === 409) return true;
  stopPolling(r, `Could not start this lesson: ${await errorText(response)}`);
  return false;
}

function stopPolling(r, text) {
  r.connected = false;
  r.stalled = true;
  showConnection('');
  updateControls();
  showBanner(text, { label: 'Try again', run: () => { $('banner').hidden = true; r.stalled = false; poll(r); } });
}

async function streamClosed(r, gotThrough) {
  showConnection('');
  const response = await apiFetch(api(r.id)).catch(() => null);
  if (r !== run || r.done) return;
  if (response && response.status === 404) {
    notFound(r, 'This session no longer exists.');
    return;
  }
  if (response && response.status === 429) {
    showBanner(await errorText(response), {
      label: 'Reconnect', run: () => { $('banner').hidden = true; connect(r); },
    });
    return;
  }
  // A fresh stream URL: the one we had may carry a token that has since run out.
  const session = response && response.ok ? await response.json().catch(() => null) : null;
  if (r !== run || r.done) return;
  if (session && session.stream_url) r.streamUrl = session.stream_url;
  if (session && !gotThrough) {
    pollInstead(r); // the service answers, but its stream was refused before any event: a proxy's doing
    return;
  }
  showBanner('The live stream stopped before the lesson was finished.', {
    label: 'Reconnect', run: () => { $('banner').hidden = true; connect(r); },
  });
}

// One event, from the stream or a poll, with its id.
function receive(r, id, event) {
  if (event.type === 'connected') return;
  // Ids rise by one per event; one at or below the last applied was seen before a reconnect.
  if (!(id > r.lastId)) return;
  r.lastId = id;
  apply(r, event);
}

function stepView(r, event) {
  const data = event.data || {};
  const name = data.step_name || r.stepNames[event.step_id];
  return r.steps.get(name);
}

function apply(r, event) {
  const data = event.data || {};
  const view = stepView(r, event);
  switch (event.type) {
    case 'queued':
      // The service runs max_running lessons at once; this one waits its turn.
      setRunStatus('queued');
      showConnection(data.position === 1 ? 'Waiting: this lesson is next.'
        : `Waiting: ${data.position - 1} lessons are ahead of this one.`);
      break;
    case 'step-start':
      showConnection('');
      r.stepNames[event.step_id] = data.step_name;
      setRunStatus('running');
      if (!view) return;
      view.duration = null;
      setStep(view, 'running');
      setNote(view, '');
      view.details.open = true;
      break;
    case 'step-delta':
      if (!view) return;
      appendText(view, data.delta || '');
      setProgress(view, data.progress);
      break;
    case 'step-retry':
      if (!view) return;
      setText(view, '');
      setProgress(view, 0);
      setStep(view, 'running');
      setNote(view, `Started again: ${data.reason || 'the service restarted'}`, 'info');
      break;
    case 'step-complete':
      if (!view) return;
      view.duration = data.duration;
      renderText(view);
      setProgress(view, 100);
      setStep(view, 'completed');
      view.details.open = false;
      announce(`Step ${view.index + 1} of ${STEPS.length}, ${view.title}: done in ${formatMs(view.duration)}.`);
      break;
    case 'step-error':
      if (!view) return;
      setStep(view, 'failed');
      setNote(view, data.error || 'This step failed.', 'error');
      view.details.open = true;
      announce(`Step ${view.index + 1} of ${STEPS.length}, ${view.title}: failed.`);
      break;
    case 'final':
      finish(r, 'completed');
      announce('The lesson is ready.');
      showResult(r, data.result);
      break;
    case 'error':
      finish(r, data.status || 'failed');
      showBanner(data.status === 'cancelled' ? 'This lesson was cancelled.'
        : `The lesson could not be written${data.step ? ` (${data.step})` : ''}: ${data.error}`);
      break;
    default:
      break;
  }
}

function finish(r, status) {
  r.done = true;
  if (r.source) r.source.close();
  $('run').dataset.outcome = status;
  setRunStatus(status);
  showConnection('');
  $('cancel').hidden = true;
  updateControls();
  if (status !== 'completed') {
    for (const view of r.steps.values()) {
      if (view.li.dataset.status === 'running') setStep(view, 'stopped');
      if (view.li.dataset.status === 'pending') setStep(view, 'skipped');
    }
  }
  refreshRecent();
}

// -- the finished lesson -------------------------------------------------------------------------

async function showResult(r, result) {
  $('total-time').textContent = formatMs(result.duration / 1e6);
  $('partial').hidden = !result.partial;
  // `download` with no name: the service's Content-Disposition names the files, the URL the images.
  // The zip reads offline (its Markdown and web page link the diagrams beside them); the Markdown
  // file alone links them on this service.
  const links = [
    downloadLink(api(r.id, '/lesson.zip'), 'Lesson (.zip)',
      'the lesson to read offline: Markdown and a web page, with the diagrams beside them'),
    downloadLink(api(r.id, '/lesson.md'), 'Markdown', 'the lesson as a Markdown file (its diagrams stay links to this service)'),
  ];
  for (const [name, url] of Object.entries(result.images || {})) {
    const label = name.replace(/\.[a-z0-9]+$/, '').replace(/-/g, ' ');
    links.push(downloadLink(url, label[0].toUpperCase() + label.slice(1), `the diagram ${name}`));
  }
  $('downloads').replaceChildren(...links);
  const response = await apiFetch(api(r.id, '/lesson.html')).catch(() => null);
  if (r !== run) return;
  if (!response || !response.ok) {
    showBanner(`Could not load the lesson: ${response ? await errorText(response) : 'the service cannot be reached'}`, {
      label: 'Try again', run: () => { $('banner').hidden = true; showResult(r, result); },
    });
    return;
  }
  // The service renders the Markdown with every tag in it escaped and only its own image URLs kept;
  // DOMPurify checks it again. Parsed apart from the page: nothing in it loads until it is shown.
  const fragment = safeFragment(await response.text(), r.id);
  const blobs = await authorizeImages(fragment);
  if (r !== run) {
    blobs.forEach((url) => URL.revokeObjectURL(url));
    return;
  }
  clearLesson();
  lessonBlobs = blobs;
  $('lesson').replaceChildren(fragment);
  captionFigures($('lesson'));
  makeQuiz($('lesson'));
  makeContents($('lesson'));
  $('result').hidden = false;
}

function clearLesson() {
  lessonBlobs.forEach((url) => URL.revokeObjectURL(url));
  lessonBlobs = [];
  $('lesson').replaceChildren();
  $('toc-list').replaceChildren();
  $('toc').hidden = true;
}

// A long lesson gets a table of contents: one entry per section (its <h2>), each taking the reader
// there and moving the focus with it. The address stays as it is: it names the session on screen.
function makeContents(root) {
  const headings = [...root.querySelectorAll('h2')];
  if (headings.length < TOC_MIN_SECTIONS) return;
  const items = headings.map((heading, index) => {
    heading.id = `section-${index + 1}`;
    heading.tabIndex = -1;
    const link = document.createElement('a');
    link.href = `#${heading.id}`;
    link.textContent = heading.textContent;
    link.addEventListener('click', (event) => {
      event.preventDefault();
      heading.scrollIntoView({ block: 'start' });
      heading.focus({ preventScroll: true });
    });
    const li = document.createElement('li');
    li.append(link);
    return li;
  });
  $('toc-list').replaceChildren(...items);
  $('toc').hidden = false;
}

async function authorizeImages(root) {
  // An <img> cannot send a header: with a key, the service's images are fetched with it and shown
  // from memory. Without one they load as they always have.
  if (!apiKey) return [];
  const images = [...root.querySelectorAll('img[src^="/api/"]')];
  const urls = await Promise.all(images.map(async (image) => {
    const response = await apiFetch(image.getAttribute('src')).catch(() => null);
    if (!response || !response.ok) return null;
    const url = URL.createObjectURL(await response.blob());
    image.src = url;
    return url;
  }));
  return urls.filter(Boolean);
}

function downloadLink(href, label, title) {
  const link = document.createElement('a');
  link.className = 'button chip';
  link.href = href;
  link.download = '';
  link.title = `Download ${title}`;
  link.textContent = label;
  link.addEventListener('click', (event) => {
    if (!apiKey) return; // a plain link: the browser downloads it
    event.preventDefault();
    downloadWithKey(href);
  });
  return link;
}

async function downloadWithKey(href) {
  // A link cannot send a header either: fetch the file with the key and save it from memory.
  const response = await apiFetch(href).catch(() => null);
  if (!response || !response.ok) {
    showBanner(`Could not download it: ${response ? await errorText(response) : 'the service cannot be reached'}`);
    return;
  }
  const named = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
  const save = document.createElement('a');
  save.href = URL.createObjectURL(await response.blob());
  save.download = named ? named[1] : href.split('/').pop();
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(save.href), 60000);
}

function captionFigures(root) {
  // An image alone in its paragraph is a diagram: show it as a figure with its alt text as caption,
  // and a tap on it shows it enlarged.
  for (const image of root.querySelectorAll('p > img:only-child')) {
    const paragraph = image.parentElement;
    if (paragraph.textContent.trim()) continue;
    const figure = document.createElement('figure');
    const caption = document.createElement('figcaption');
    caption.textContent = image.alt;
    const zoom = document.createElement('button');
    zoom.type = 'button';
    zoom.className = 'figure-zoom';
    zoom.setAttribute('aria-label', `Enlarge the diagram: ${image.alt}`);
    zoom.addEventListener('click', () => enlargeFigure(image));
    zoom.append(image);
    figure.append(zoom, caption);
    paragraph.replaceWith(figure);
  }
}

function enlargeFigure(image) {
  $('figure-title').textContent = image.alt;
  $('figure-image').src = image.currentSrc || image.src;
  $('figure-image').alt = image.alt;
  $('figure-dialog').showModal();
}

// -- the quiz ------------------------------------------------------------------------------------
// The lesson's "Check your understanding" is a numbered list of questions, each with lettered choices
// on lines of their own, and "Answers" a list of "**B** (the choice): why". On the page each choice is
// a button: the answer shows once the learner picks one (marked right or wrong) or asks to see it.
// The answers list stays in the lesson, hidden on screen, for printing.

function makeQuiz(root) {
  const heading = [...root.querySelectorAll('h2')].find((h) => h.textContent.trim() === 'Check your understanding');
  const questions = heading && nextElement(heading, 'OL');
  const answersHeading = questions && nextElement(questions, 'H3');
  const answers = answersHeading && answersHeading.textContent.trim() === 'Answers' && nextElement(answersHeading, 'OL');
  if (!answers) return; // not the shape this knows: the lesson stays as written, answers and all
  const keys = [...answers.children].map((li) => ({
    letter: (li.querySelector('strong') || {}).textContent || '',
    why: li,
  }));
  const items = [...questions.children];
  const built = items.map((li, number) => quizQuestion(li, number, keys[number]));
  if (built.some((item) => !item)) return;
  const quiz = document.createElement('ol');
  quiz.className = 'quiz';
  quiz.append(...built);
  questions.replaceWith(quiz);
  answersHeading.classList.add('quiz-key');
  answers.classList.add('quiz-key');
}

function nextElement(element, tag) {
  const next = element.nextElementSibling;
  return next && next.tagName === tag ? next : null;
}

// One question as a list item with its choices as buttons; null when it does not read as one.
function quizQuestion(li, number, key) {
  if (!key || !/^[A-H]$/.test(key.letter)) return null;
  // A loose list (questions a blank line apart) has each question in a paragraph of its own.
  const only = li.children.length === 1 && li.firstElementChild.tagName === 'P' ? li.firstElementChild : li;
  const lines = [[]];
  for (const node of [...only.childNodes]) {
    if (node.nodeName === 'BR') lines.push([]);
    else lines[lines.length - 1].push(node);
  }
  const choices = [];
  const prompt = document.createElement('p');
  prompt.className = 'quiz-prompt';
  prompt.id = `quiz-${number + 1}`;
  for (const nodes of lines) {
    const text = nodes.map((n) => n.textContent).join('').trim();
    const match = /^([A-H])\.\s+/.exec(text);
    if (!match) {
      if (choices.length) return null; // text after the choices: not a shape this knows
      if (prompt.childNodes.length) prompt.append(document.createElement('br'));
      prompt.append(...nodes);
      continue;
    }
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'quiz-choice';
    button.dataset.letter = match[1];
    const letter = document.createElement('span');
    letter.className = 'quiz-letter';
    letter.textContent = match[1];
    const label = document.createElement('span');
    label.append(...nodes);
    // The letter and its full stop are in the badge now, not in the text.
    const first = label.firstChild;
    if (first && first.nodeType === Node.TEXT_NODE) first.data = first.data.replace(/^\s*[A-H]\.\s+/, '');
    button.append(letter, ' ', label);
    choices.push(button);
  }
  if (choices.length < 2 || !choices.some((c) => c.dataset.letter === key.letter)) return null;

  const item = document.createElement('li');
  item.className = 'quiz-question';
  const group = document.createElement('div');
  group.className = 'quiz-choices';
  group.setAttribute('role', 'group');
  group.setAttribute('aria-labelledby', prompt.id);
  group.append(...choices);
  const feedback = document.createElement('div');
  feedback.className = 'quiz-feedback';
  feedback.setAttribute('aria-live', 'polite');
  feedback.hidden = true;
  const reveal = document.createElement('button');
  reveal.type = 'button';
  reveal.className = 'button link quiz-reveal';
  reveal.textContent = 'Show the answer';

  const settle = (picked) => {
    for (const choice of choices) {
      choice.disabled = true;
      if (choice.dataset.letter === key.letter) choice.dataset.result = 'right';
      else if (choice === picked) choice.dataset.result = 'wrong';
    }
    const verdict = document.createElement('strong');
    if (!picked) verdict.textContent = 'The answer: ';
    else if (picked.dataset.letter === key.letter) verdict.textContent = 'Right. ';
    else verdict.textContent = `Not quite: the answer is ${key.letter}. `;
    item.dataset.answered = picked ? (picked.dataset.letter === key.letter ? 'right' : 'wrong') : 'shown';
    feedback.replaceChildren(verdict, ...[...key.why.childNodes].map((n) => n.cloneNode(true)));
    feedback.hidden = false;
    reveal.hidden = true;
  };
  for (const choice of choices) {
    choice.addEventListener('click', () => settle(choice));
  }
  reveal.addEventListener('click', () => settle(null));
  item.append(prompt, group, reveal, feedback);
  return item;
}

// -- recent sessions -----------------------------------------------------------------------------

async function refreshRecent() {
  let sessions;
  try {
    const response = await apiFetch(`/api/sessions?limit=${RECENT_LIMIT}`);
    if (response.ok) sessions = (await response.json()).sessions;
  } catch {
    sessions = null;
  }
  if (!sessions) {
    // The list is a convenience: keep what is shown, and try again while it shows unfinished lessons.
    const shown = [...document.querySelectorAll('.recent-item .pill')].map((pill) => ({ status: pill.dataset.status }));
    scheduleRecent(shown);
    return;
  }
  const items = sessions.map((session) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'recent-item';
    button.dataset.session = session.id;
    const topic = document.createElement('span');
    topic.className = 'recent-topic';
    topic.textContent = session.topic;
    const meta = document.createElement('span');
    meta.className = 'recent-meta';
    const pill = document.createElement('span');
    pill.className = 'pill small';
    setPill(pill, session.status);
    meta.append(pill, ` ${timeAgo(session.created_at)}`);
    button.append(topic, meta);
    button.addEventListener('click', () => openSession(session.id, { topic: session.topic }));
    const li = document.createElement('li');
    li.append(button);
    return li;
  });
  $('recent-list').replaceChildren(...items);
  $('recent-empty').hidden = items.length > 0;
  markActiveRecent();
  scheduleRecent(sessions);
}

function scheduleRecent(sessions) {
  clearTimeout(recentTimer);
  if (sessions.some((session) => UNFINISHED.has(session.status))) {
    recentTimer = setTimeout(refreshRecent, RECENT_REFRESH_MS);
  }
}

function markActiveRecent() {
  for (const button of document.querySelectorAll('.recent-item')) {
    button.setAttribute('aria-current', String(Boolean(run) && button.dataset.session === run.id));
  }
}

// -- the controls --------------------------------------------------------------------------------

async function createSession(event) {
  event.preventDefault();
  const topic = $('topic').value.trim();
  const error = $('form-error');
  error.hidden = true;
  if (creating || (run && !run.done && !run.stalled)) return; // one lesson at a time
  if (!topic) {
    error.textContent = 'Type a topic first, for example "photosynthesis".';
    error.hidden = false;
    $('topic').focus();
    return;
  }
  creating = true;
  updateControls();
  try {
    const response = await apiFetch('/api/sessions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ topic }),
    });
    if (!response.ok) {
      error.textContent = await errorText(response);
      error.hidden = false;
      return;
    }
    const { id, stream_url: streamUrl } = await response.json();
    openSession(id, { topic, streamUrl });
    refreshRecent();
  } catch {
    error.textContent = 'The service cannot be reached. Is it running?';
    error.hidden = false;
  } finally {
    creating = false;
    updateControls();
  }
}

async function cancelRun() {
  if (!run || run.done) return;
  const r = run;
  r.cancelling = true;
  updateControls();
  const response = await apiFetch(api(r.id, '/cancel'), { method: 'POST' }).catch(() => null);
  // 409: it ended meanwhile; either way the stream brings the last word.
  if (r === run && (!response || (!response.ok && response.status !== 409))) {
    r.cancelling = false;
    updateControls();
    showBanner(`Could not cancel: ${response ? await errorText(response) : 'the service cannot be reached'}`);
  }
}

function showFromAddress() {
  const id = new URLSearchParams(window.location.search).get('session');
  if (id && (!run || run.id !== id)) {
    openSession(id, { push: false });
  } else if (!id) {
    closeRun();
    $('run').hidden = true;
    $('result').hidden = true;
    $('intro').hidden = false;
    setTopic('');
    markActiveRecent();
  }
}

$('topic-form').addEventListener('submit', createSession);
$('key-form').addEventListener('submit', submitKey);
$('key-cancel').addEventListener('click', () => $('key-dialog').close(''));
$('cancel').addEventListener('click', cancelRun);
$('refresh').addEventListener('click', refreshRecent);
$('figure-close').addEventListener('click', () => $('figure-dialog').close());
$('figure-dialog').addEventListener('click', (event) => {
  if (event.target === event.currentTarget) $('figure-dialog').close(); // a tap outside the picture
});
$('to-recent').addEventListener('click', (event) => {
  event.preventDefault(); // keep the address as it is: it names the session on screen
  $('recent').scrollIntoView({ block: 'start' });
  $('recent').focus({ preventScroll: true });
});
window.addEventListener('popstate', showFromAddress);
showFromAddress();
refreshRecent();
