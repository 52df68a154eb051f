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
  interrupted: 'Interrupted',
};
const RECENT_LIMIT = 12;
const KEY_STORAGE = 'orchestrator.apiKey';

const $ = (id) => document.getElementById(id);
const api = (id, tail = '') => `/api/sessions/${encodeURIComponent(id)}${tail}`;

// The API key for a service that needs one: asked for on the first 401, kept for this tab only.
let apiKey = readKey();
// The open key dialog's answer, shared by every request that met a 401 while it is open.
let keyRequest = null;

// The session on screen: its id, its EventSource, the last event id applied, and one view per step.
let run = null;
// Object URLs made for the lesson on screen (its images, fetched with the API key), freed when it goes.
let lessonBlobs = [];

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
    const textBox = li.querySelector('.step-text');
    const text = document.createTextNode('');
    textBox.append(text);
    const view = {
      li,
      details: li.querySelector('details'),
      state: li.querySelector('.step-state'),
      bar: li.querySelector('.step-bar'),
      fill: li.querySelector('.step-bar-fill'),
      note: li.querySelector('.step-note'),
      textBox,
      text,
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
  const box = view.textBox;
  const following = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  view.text.appendData(delta);
  if (following) box.scrollTop = box.scrollHeight;
}

// -- one session on screen -----------------------------------------------------------------------

function openSession(id, { push = true, topic = '', streamUrl = '' } = {}) {
  closeRun();
  if (push) history.pushState({ session: id }, '', `/?session=${encodeURIComponent(id)}`);
  run = { id, source: null, lastId: 0, done: false, steps: buildSteps(), stepNames: {}, streamUrl };
  $('intro').hidden = true;
  $('run').hidden = false;
  delete $('run').dataset.outcome;
  $('result').hidden = true;
  clearLesson();
  $('banner').hidden = true;
  $('cancel').hidden = false;
  $('cancel').disabled = false;
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
    describe(r).then((found) => { if (found && r === run && !r.source) connect(r); });
  }
}

function closeRun() {
  if (run && run.source) run.source.close();
  run = null;
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

function showConnection(text) {
  $('connection').textContent = text;
  $('connection').hidden = !text;
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
  if (!response.ok) {
    finish(r, 'failed');
    showBanner(response.status === 404 ? 'There is no session with this id (it may have been deleted).'
      : `Could not load this session: ${await errorText(response)}`);
    return false;
  }
  const session = await response.json();
  if (r !== run) return false;
  setTopic(session.topic);
  if (session.stream_url) r.streamUrl = session.stream_url;
  return true;
}

function connect(r) {
  // A reconnect of our own (after the browser gave up) resumes where we are, like Last-Event-ID.
  const source = new EventSource(streamUrl(r));
  r.source = source;
  source.onopen = () => { if (r === run) showConnection(''); };
  source.onmessage = (message) => { if (r === run) receive(r, message); };
  source.onerror = () => {
    if (r !== run || r.done) return;
    if (source.readyState === EventSource.CONNECTING) {
      showConnection('Connection lost. Reconnecting…');
    } else {
      streamClosed(r);
    }
  };
}

async function streamClosed(r) {
  showConnection('');
  const response = await apiFetch(api(r.id)).catch(() => null);
  if (r !== run || r.done) return;
  if (response && response.status === 404) {
    finish(r, 'failed');
    showBanner('This session no longer exists.');
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
  showBanner('The live stream stopped before the lesson was finished.', {
    label: 'Reconnect', run: () => { $('banner').hidden = true; connect(r); },
  });
}

function receive(r, message) {
  const event = JSON.parse(message.data);
  if (event.type === 'connected') return;
  // Ids rise by one per event; one at or below the last applied was seen before a reconnect.
  const id = Number(message.lastEventId);
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
      view.text.data = '';
      setProgress(view, 0);
      setStep(view, 'running');
      setNote(view, `Started again: ${data.reason || 'the service restarted'}`, 'info');
      break;
    case 'step-complete':
      if (!view) return;
      view.duration = data.duration;
      setProgress(view, 100);
      setStep(view, 'completed');
      view.details.open = false;
      break;
    case 'step-error':
      if (!view) return;
      setStep(view, 'failed');
      setNote(view, data.error || 'This step failed.', 'error');
      view.details.open = true;
      break;
    case 'final':
      finish(r, 'completed');
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
  $('summary').textContent = result.summary;
  $('partial').hidden = !result.partial;
  // `download` with no name: the service's Content-Disposition names the Markdown, the URL the images.
  const links = [downloadLink(api(r.id, '/lesson.md'), 'Markdown', 'the lesson as a Markdown file')];
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
  // The service renders the Markdown with every tag in it escaped and only its own image URLs kept.
  // Parsed in a template first: nothing in it loads until its images have their source.
  const template = document.createElement('template');
  template.innerHTML = await response.text();
  const blobs = await authorizeImages(template.content);
  if (r !== run) {
    blobs.forEach((url) => URL.revokeObjectURL(url));
    return;
  }
  clearLesson();
  lessonBlobs = blobs;
  $('lesson').replaceChildren(template.content);
  captionFigures($('lesson'));
  $('result').hidden = false;
}

function clearLesson() {
  lessonBlobs.forEach((url) => URL.revokeObjectURL(url));
  lessonBlobs = [];
  $('lesson').replaceChildren();
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
  // An image alone in its paragraph is a diagram: show it as a figure with its alt text as caption.
  for (const image of root.querySelectorAll('p > img:only-child')) {
    const paragraph = image.parentElement;
    if (paragraph.textContent.trim()) continue;
    const figure = document.createElement('figure');
    const caption = document.createElement('figcaption');
    caption.textContent = image.alt;
    figure.append(image, caption);
    paragraph.replaceWith(figure);
  }
}

// -- recent sessions -----------------------------------------------------------------------------

async function refreshRecent() {
  let sessions = [];
  try {
    const response = await apiFetch(`/api/sessions?limit=${RECENT_LIMIT}`);
    if (response.ok) sessions = (await response.json()).sessions;
  } catch {
    return; // the list is a convenience: keep what is shown
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
  if (!topic) return;
  $('generate').disabled = true;
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
    $('generate').disabled = false;
  }
}

async function cancelRun() {
  if (!run || run.done) return;
  const r = run;
  $('cancel').disabled = true;
  const response = await apiFetch(api(r.id, '/cancel'), { method: 'POST' }).catch(() => null);
  // 409: it ended meanwhile; either way the stream brings the last word.
  if (r === run && (!response || (!response.ok && response.status !== 409))) {
    $('cancel').disabled = false;
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
window.addEventListener('popstate', showFromAddress);
showFromAddress();
refreshRecent();
