// keygate's key page: lists the signed-in caller's organization keys, adds
// and revokes them through the management API (/v1) with the caller's own
// session cookie. No framework and no build step; all text reaches the page
// through textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);

// APIError is a refused call: status 0 when keygate did not answer.
class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// api calls the management API as the signed-in caller. Mutating calls carry
// X-Requested-With (keygate refuses a cookie-authenticated change without
// it: a cross-site form cannot set it) and a JSON content type.
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['X-Requested-With'] = 'keygate';
    headers['Content-Type'] = 'application/json';
  }
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new APIError(0, 'unreachable', 'keygate did not answer (' + err.message + ').');
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  if (!res.ok) {
    const message = data && typeof data.message === 'string' && data.message
      ? data.message : 'keygate answered ' + res.status + ' ' + res.statusText + '.';
    throw new APIError(res.status, (data && data.error) || 'http_' + res.status, message);
  }
  return data;
}

const orgPath = (org) => '/v1/orgs/' + encodeURIComponent(org) + '/keys';

// ---------------------------------------------------------------------------
// Views.

const state = {
  me: null,      // GET /v1/me
  org: '',       // the organization shown
  list: null,    // GET /v1/orgs/{org}/keys
  revoking: null // the key the revoke dialog asks about
};

const views = ['loading', 'page-error', 'signin', 'choose-org', 'keys'];

function show(view) {
  for (const v of views) $(v).hidden = v !== view;
  $('account').hidden = !state.me || view === 'signin';
}

function say(text) {
  // Replacing the text of the live region makes screen readers announce it.
  $('status').textContent = '';
  window.setTimeout(() => { $('status').textContent = text; }, 50);
}

function setError(id, message) {
  const el = $(id);
  el.textContent = message || '';
  el.hidden = !message;
}

function fail(err) {
  if (err instanceof APIError && err.status === 401) {
    signedOut('Your session has ended. Sign in again.');
    return;
  }
  closeDialogs();
  setError('page-error-message', err.message);
  show('page-error');
  $('page-retry').focus();
}

// ---------------------------------------------------------------------------
// Signing in and out.

async function start() {
  show('loading');
  try {
    state.me = await api('GET', '/v1/me');
  } catch (err) {
    if (err instanceof APIError && err.status === 401) {
      signedOut('');
      return;
    }
    fail(err);
    return;
  }
  await signedIn();
}

function signedOut(message) {
  state.me = null;
  state.list = null;
  state.org = '';
  closeDialogs();
  $('signin-form').reset();
  setError('signin-error', message);
  show('signin');
  $('signin-token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $('signin-token');
  const token = input.value.trim();
  if (!token) {
    setError('signin-error', 'Paste a session token.');
    input.focus();
    return;
  }
  const submit = $('signin-submit');
  submit.disabled = true;
  try {
    await api('POST', '/v1/signin', { session: token });
  } catch (err) {
    setError('signin-error', err.message);
    input.focus();
    return;
  } finally {
    submit.disabled = false;
    input.value = '';
  }
  setError('signin-error', '');
  await start();
}

async function signOut() {
  try {
    await api('POST', '/v1/signout');
  } catch (err) {
    if (!(err instanceof APIError && err.status === 401)) {
      fail(err);
      return;
    }
  }
  signedOut('');
  say('Signed out.');
}

async function signedIn() {
  const me = state.me;
  $('account-user').textContent = me.user + (me.org ? ' (' + me.org + ')' : ' (tenant ' + me.tenant + ')');
  state.org = me.org || orgFromHash();
  if (me.key_admin && !state.org) {
    $('choose-org-tenant').textContent = me.tenant;
    $('choose-org-form').reset();
    show('choose-org');
    $('choose-org-name').focus();
    return;
  }
  await loadKeys(true);
}

// A tenant-level caller picks the organization; it is kept in the URL's
// fragment (#org=NAME) so that a reload shows the same one.
function orgFromHash() {
  const m = /^#org=(.+)$/.exec(window.location.hash);
  return m ? decodeURIComponent(m[1]) : '';
}

async function chooseOrg(event) {
  event.preventDefault();
  const org = $('choose-org-name').value.trim();
  if (!org) {
    $('choose-org-name').focus();
    return;
  }
  window.location.hash = 'org=' + encodeURIComponent(org);
  state.org = org;
  await loadKeys(true);
}

function changeOrg(event) {
  event.preventDefault();
  history.replaceState(null, '', window.location.pathname);
  state.org = '';
  signedIn();
}

// ---------------------------------------------------------------------------
// The key list.

async function loadKeys(focusHeading) {
  const me = state.me;
  $('org-name').textContent = state.org;
  $('org-line').hidden = !state.org;
  $('org-switch').hidden = Boolean(me.org);
  $('key-caption').textContent = 'API keys of organization ' + state.org;
  if (!me.key_admin) {
    $('not-admin').hidden = false;
    $('toolbar').hidden = true;
    $('key-list').hidden = true;
    show('keys');
    if (focusHeading) $('main').focus();
    return;
  }
  $('not-admin').hidden = true;
  try {
    state.list = await api('GET', orgPath(state.org));
    setError('list-error', '');
  } catch (err) {
    if (err instanceof APIError && err.status === 401) {
      fail(err);
      return;
    }
    state.list = null;
    setError('list-error', err.message);
  }
  render();
  show('keys');
  if (focusHeading) $('main').focus();
}

function render() {
  const list = state.list;
  const rows = $('key-rows');
  rows.textContent = '';
  $('toolbar').hidden = !list;
  $('key-list').hidden = false;
  $('usage').hidden = !list;
  $('empty').hidden = !list || list.keys.length > 0;
  if (!list) {
    $('limit-message').hidden = true;
    return;
  }
  $('usage').textContent = '';
  const n = document.createElement('strong');
  n.textContent = list.active + ' of ' + list.limit;
  $('usage').append(n, ' organization keys');

  const full = list.active >= list.limit;
  $('add-key').disabled = full;
  setError('limit-message', full
    ? 'This organization has ' + list.active + ' of ' + list.limit + ' active keys. Revoke one to add another.'
    : '');

  // Newest first, as key pages show them; keys with no creation time last.
  // Within one second (the times' resolution) the API's order, reversed.
  const created = (k) => (k.created_at ? Date.parse(k.created_at) || 0 : 0);
  const keys = [...list.keys].reverse().sort((a, b) => created(b) - created(a));
  for (const key of keys) rows.append(keyRow(key));
}

function keyRow(key) {
  const tr = document.createElement('tr');
  tr.dataset.id = key.id;
  if (key.state !== 'active') tr.className = 'inactive';
  tr.append(
    cell(key.name || '(unnamed)', 'name'),
    cell(code(key.id)),
    cell(key.environment || '—'),
    cell(time(key.created_at, '—')),
    cell(time(key.expires_at, 'Never')),
    cell(badge(key.state)),
  );
  const actions = cell('', 'actions-cell');
  if (key.state === 'active') actions.append(revokeButton(key));
  tr.append(actions);
  return tr;
}

function cell(content, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.append(content);
  return td;
}

function code(text) {
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

// time shows an RFC 3339 instant as a date, with the instant itself in the
// title (and the datetime attribute) for whoever needs the exact time.
function time(rfc3339, none) {
  if (!rfc3339) return none;
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  const t = document.createElement('time');
  t.dateTime = rfc3339;
  t.title = rfc3339;
  t.textContent = dateFormat.format(d);
  return t;
}

function badge(keyState) {
  const s = document.createElement('span');
  s.className = 'state state-' + keyState;
  s.textContent = keyState.charAt(0).toUpperCase() + keyState.slice(1);
  return s;
}

const svgNS = 'http://www.w3.org/2000/svg';

function revokeButton(key) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'icon revoke';
  b.title = 'Revoke';
  b.setAttribute('aria-label', 'Revoke key ' + (key.name || key.id) + ' (' + key.id + ')');
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '16');
  svg.setAttribute('height', '16');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  // A trash can: lid, handle, body and two slats.
  const path = document.createElementNS(svgNS, 'path');
  path.setAttribute('d', 'M2.5 4h11M6 4V2.5h4V4M4 4l.7 9.5h6.6L12 4M6.7 6.5v4.5M9.3 6.5v4.5');
  svg.append(path);
  b.append(svg);
  b.addEventListener('click', () => openRevoke(key, b));
  return b;
}

// ---------------------------------------------------------------------------
// Dialogs. Focus returns to the control that opened one when it closes.

const openers = new WeakMap(); // dialog -> the element focused before it opened

function open(dialog, from) {
  openers.set(dialog, from || document.activeElement);
  dialog.showModal();
}

// onClosed calls fn when dialog closes. The close event is dispatched after
// close() returns, and Chromium can handle a click before it: a dialog
// cancelled and at once opened again would get the first close's event
// while open, and lose the key it asks about, or the secret it shows. Such
// an event is ignored.
function onClosed(dialog, fn) {
  dialog.addEventListener('close', () => {
    if (!dialog.open) fn();
  });
}

// handOver forgets who opened dialog, for a close that moves focus itself,
// and returns that element.
function handOver(dialog) {
  const from = openers.get(dialog);
  openers.delete(dialog);
  return from;
}

function restoreFocus(dialog) {
  const from = handOver(dialog);
  if (!from) return;
  (from.isConnected && !from.disabled ? from : $('main')).focus();
}

function closeDialogs() {
  clearSecret();
  for (const d of document.querySelectorAll('dialog')) {
    handOver(d);
    if (d.open) d.close();
  }
}

function openAdd() {
  $('add-form').reset();
  setError('add-error', '');
  open($('add-dialog'), $('add-key'));
  $('add-name').focus();
}

async function addKey(event) {
  event.preventDefault();
  const name = $('add-name').value.trim();
  if (!name) {
    setError('add-error', 'Give the key a name.');
    $('add-name').focus();
    return;
  }
  const body = { name };
  const environment = $('add-environment').value.trim();
  if (environment) body.environment = environment;
  const expiresIn = $('add-expiry').value;
  if (expiresIn) body.expires_in = expiresIn;

  const submit = $('add-submit');
  submit.disabled = true;
  let created;
  try {
    created = await api('POST', orgPath(state.org), body);
  } catch (err) {
    if (err instanceof APIError && err.status === 401) {
      fail(err);
      return;
    }
    setError('add-error', err.message);
    if (err.code === 'limit_reached') loadKeys(false);
    return;
  } finally {
    submit.disabled = false;
  }
  const from = handOver($('add-dialog'));
  $('add-dialog').close();
  showSecret(created, from);
  loadKeys(false);
  say('Key ' + created.name + ' added.');
}

// showSecret shows a new key's secret once. The response's copy is dropped
// here and the input is emptied when the dialog closes, so the page holds
// the secret only while the dialog is open.
function showSecret(created, from) {
  $('secret-name').textContent = created.name + ' (' + created.id + ')';
  $('secret-value').value = created.key;
  delete created.key;
  $('secret-copied').textContent = '';
  open($('secret-dialog'), from);
  $('secret-copy').focus();
}

// clearSecret empties the one-time dialog. It runs as the dialog is
// dismissed (Done, Escape), not only on its close event, which comes a task
// later.
function clearSecret() {
  $('secret-value').value = '';
  $('secret-copied').textContent = '';
}

function secretClosed() {
  clearSecret();
  restoreFocus($('secret-dialog'));
}

async function copySecret() {
  const input = $('secret-value');
  const done = (text) => { $('secret-copied').textContent = text; };
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(input.value);
      done('Copied to the clipboard.');
      return;
    } catch (_) {
      // Denied or unavailable: fall back to selecting the text.
    }
  }
  input.focus();
  input.select();
  let copied = false;
  try { copied = document.execCommand('copy'); } catch (_) { copied = false; }
  done(copied ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C (⌘C on a Mac) to copy it.');
}

function openRevoke(key, from) {
  state.revoking = key;
  $('revoke-name').textContent = key.name || key.id;
  $('revoke-id').textContent = key.id;
  setError('revoke-error', '');
  $('revoke-confirm').disabled = false;
  open($('revoke-dialog'), from);
}

async function revokeKey() {
  const key = state.revoking;
  if (!key) return;
  const confirm = $('revoke-confirm');
  confirm.disabled = true;
  try {
    await api('DELETE', orgPath(state.org) + '/' + encodeURIComponent(key.id));
  } catch (err) {
    confirm.disabled = false;
    if (err instanceof APIError && err.status === 401) {
      fail(err);
      return;
    }
    setError('revoke-error', err.message);
    return;
  }
  // The trash button goes with the refresh: focus moves to Add, or the page.
  handOver($('revoke-dialog'));
  $('revoke-dialog').close();
  await loadKeys(false);
  say('Key ' + (key.name || key.id) + ' revoked.');
  (!$('add-key').disabled ? $('add-key') : $('main')).focus();
}

// ---------------------------------------------------------------------------

function wire() {
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  $('page-retry').addEventListener('click', start);
  $('choose-org-form').addEventListener('submit', chooseOrg);
  $('org-switch-link').addEventListener('click', changeOrg);
  $('add-key').addEventListener('click', openAdd);
  $('add-form').addEventListener('submit', addKey);
  $('secret-copy').addEventListener('click', copySecret);
  $('revoke-confirm').addEventListener('click', revokeKey);
  for (const b of document.querySelectorAll('[data-close]')) {
    b.addEventListener('click', () => {
      const dialog = b.closest('dialog');
      if (dialog.id === 'secret-dialog') clearSecret();
      dialog.close();
    });
  }
  $('secret-dialog').addEventListener('cancel', clearSecret);
  onClosed($('add-dialog'), () => restoreFocus($('add-dialog')));
  onClosed($('revoke-dialog'), () => {
    state.revoking = null;
    restoreFocus($('revoke-dialog'));
  });
  onClosed($('secret-dialog'), secretClosed);
  start();
}

wire();
