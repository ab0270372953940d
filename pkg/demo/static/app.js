// The demo page: one PresenceClient for the page, a face pile and a list
// of the room's members. URL parameters: name, room (prefill; with both the
// page joins at once), grace (ms a hidden page waits before it leaves;
// default 10000), token (a JWT, when the node has auth on), max (avatars
// before "+N"; default 8).
import { PresenceClient, lastSeen } from './presence.js';

const params = new URLSearchParams(location.search);
const grace = Number(params.get('grace') ?? 10000) || 10000;
const max = Number(params.get('max') ?? 8) || 8;
const token = params.get('token');
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const client = new PresenceClient({
  hiddenGrace: grace,
  getToken: token ? () => token : undefined,
  onError: (e) => showError(e),
});
window.presenceClient = client; // for the browser test and for poking around

$('grace').textContent = String(grace / 1000);
/** @type {{ leave(): void } | null} */
let handle = null;
/** @type {(() => void) | null} */
let unsubscribe = null;
/** @type {readonly any[]} */
let members = [];
let self = '';

const nameInput = /** @type {HTMLInputElement} */ ($('name'));
const roomInput = /** @type {HTMLInputElement} */ ($('room'));
nameInput.value = params.get('name') ?? localStorage.getItem('presence-demo-name') ?? '';
roomInput.value = params.get('room') ?? roomInput.value;

client.onStatus((s) => {
  $('conn').textContent = s;
  document.body.dataset.status = s;
});

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  join(nameInput.value.trim(), roomInput.value.trim());
});
$('leave').addEventListener('click', () => leave());
// "Appear offline": the client's member is invisible in its rooms (the
// others see it offline; it still sees the room). URL parameter invisible=1.
const invisibleBox = /** @type {HTMLInputElement} */ ($('invisible'));
invisibleBox.checked = params.get('invisible') === '1';
if (invisibleBox.checked) client.setPrivacy({ invisible: true });
invisibleBox.addEventListener('change', () => client.setPrivacy({ invisible: invisibleBox.checked }));

/** @param {string} name @param {string} room */
function join(name, room) {
  if (!name || !room) return;
  leave();
  self = name;
  localStorage.setItem('presence-demo-name', name);
  const q = new URLSearchParams(location.search);
  q.set('name', name);
  q.set('room', room);
  history.replaceState(null, '', `?${q}`);
  $('me').textContent = name;
  $('room-name').textContent = room;
  $('room-view').hidden = false;
  $('error').hidden = true;
  // Auth off: the name is the user. With a token the server takes the user
  // from the JWT (and the name from its claims).
  handle = client.join(room, token ? {} : { userId: name, name });
  unsubscribe = client.subscribe(room, (m) => {
    members = m ?? [];
    render();
  });
  members = client.getMembers(room) ?? [];
  render();
}

function leave() {
  handle?.leave();
  unsubscribe?.();
  handle = null;
  unsubscribe = null;
  members = [];
  $('room-view').hidden = true;
}

const palette = ['#e57373', '#f06292', '#ba68c8', '#7986cb', '#4fc3f7', '#4db6ac', '#81c784', '#ffb74d', '#a1887f', '#90a4ae'];
/** @param {string} s */
function colorOf(s) {
  let x = 0;
  for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) >>> 0;
  return palette[x % palette.length];
}
/** @param {any} m */
function initials(m) {
  const n = String(m.name || m.userId).trim();
  const parts = n.split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : n.slice(0, 2)).toUpperCase();
}

function render() {
  const now = Date.now();
  // Own user first, then the server's order.
  const list = [...members].sort((a, b) => (a.userId === self ? -1 : b.userId === self ? 1 : 0));
  const pile = $('pile');
  pile.replaceChildren(
    ...list.slice(0, max).map((m) => {
      const el = document.createElement('span');
      el.className = 'avatar';
      el.setAttribute('role', 'listitem');
      el.dataset.userId = m.userId;
      el.dataset.online = String(m.online);
      el.title = `${m.name || m.userId} — ${lastSeen(m, now)}`;
      el.style.background = colorOf(m.userId);
      if (m.image) {
        const img = document.createElement('img');
        img.src = m.image;
        img.alt = '';
        el.append(img);
      } else {
        el.append(initials(m));
      }
      const dot = document.createElement('span');
      dot.className = 'dot';
      el.append(dot);
      return el;
    }),
  );
  if (list.length > max) {
    const more = document.createElement('span');
    more.className = 'more';
    more.textContent = `+${list.length - max}`;
    more.title = list.slice(max).map((m) => `${m.name || m.userId} — ${lastSeen(m, now)}`).join('\n');
    pile.append(more);
  }
  $('members').replaceChildren(
    ...list.map((m) => {
      const li = document.createElement('li');
      li.dataset.userId = m.userId;
      li.dataset.online = String(m.online);
      const who = document.createElement('span');
      who.textContent = (m.name || m.userId) + (m.userId === self ? ' (you)' : '') + (m.sessions > 1 ? ` · ${m.sessions} tabs` : '');
      const seen = document.createElement('span');
      seen.className = 'seen';
      seen.textContent = lastSeen(m, now);
      li.append(who, seen);
      return li;
    }),
  );
  $('count').textContent = `${list.filter((m) => m.online).length} online`;
}

/** @param {any} e */
function showError(e) {
  const el = $('error');
  el.textContent = e && e.code === 'ended' ? 'Your session was ended by the server.' : String(e && e.message ? e.message : e);
  el.hidden = false;
}

// "last seen" moves on by itself.
setInterval(() => members.length && render(), 30_000);

if (nameInput.value && params.get('room')) join(nameInput.value, roomInput.value);
