// The node's API, as the browser uses it: the HttpOnly cookie set by
// opening /?token=… authenticates; every request says `X-Segchat: 1`,
// which the node requires of cookie-authenticated requests (CSRF).

export class ApiError extends Error {
  constructor(status, error, reason) {
    super(reason || error || `HTTP ${status}`);
    this.status = status;
    this.error = error;
    this.reason = reason || error || `HTTP ${status}`;
  }
}

export async function api(method, path, body) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { 'X-Segchat': '1', Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, 'NODE_UNREACHABLE', 'your node is not running. Start it again (`segchat up` or `segchat node`); this tab reconnects by itself and your text stays here.');
  }
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (!resp.ok) {
    throw new ApiError(resp.status, data && data.error, data && data.reason);
  }
  return data;
}

export const enc = encodeURIComponent;

// The event WebSocket. Reconnects by itself (with backoff) and reports
// open/close so the UI can resync after a gap. Events are pushed; nothing
// here polls.
export function connectEvents({ onEvent, onOpen, onClose }) {
  let ws = null;
  let delay = 250;
  let stopped = false;
  let timer = null;

  function open() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(`${proto}//${location.host}/api/v1/events`);
    ws.onopen = () => { delay = 250; onOpen && onOpen(); };
    ws.onmessage = (e) => {
      let ev;
      try { ev = JSON.parse(e.data); } catch { return; }
      onEvent(ev);
    };
    ws.onclose = () => {
      ws = null;
      if (stopped) return;
      onClose && onClose();
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 5000);
    };
    ws.onerror = () => { try { ws && ws.close(); } catch { /* closing */ } };
  }
  open();
  return {
    stop() { stopped = true; clearTimeout(timer); if (ws) ws.close(); },
    get connected() { return !!ws && ws.readyState === WebSocket.OPEN; },
  };
}
