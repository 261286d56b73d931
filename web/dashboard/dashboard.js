// SPDX-License-Identifier: Apache-2.0
// ws-relay's live dashboard (SPEC "ws-relay's dashboard — GET /").
//
// One WebSocket to the relay. Messages update a model at once (cheap, O(1)
// per event, bounded in size); the DOM and the canvases are drawn from the
// model at most once per animation frame, so 5,000 events per second cost
// one batch of DOM work per frame and never one reflow per event. Event data
// only ever reaches the page as textContent (never as HTML).
//
// Parts: connection (backoff with jitter, ?since= resume, app-level pong),
// machines table, timeline and events/s canvases, capped event log,
// approval cards (HITL decisions). window.smwsDashboard exposes read-only
// counters for tests and for curious people at the console.
'use strict';

(() => {
  // --- limits and timings (each with its reason) -----------------------------
  const LOG_CAP = 1000;              // rows in the log (SPEC); the model keeps up to 2x
  const TIMELINE_WINDOW_S = 300;     // "the last minutes": five of them
  const TIMELINE_MAX_LANES = 40;     // more lanes would be too thin to read
  const SEGMENTS_PER_MACHINE = 300;  // bounds memory of a machine that flaps
  const CLOCK_SLACK_S = 2;           // a producer's clock may run this far ahead
  const RATE_WINDOW_S = 60;          // events/s chart: the last minute
  const BACKOFF_BASE_S = 0.5;        // first retry after 0.25-0.5 s
  const BACKOFF_MAX_S = 30;          // SPEC: up to 30 s
  const STABLE_CONNECTION_S = 5;     // a connection that lived this long resets the backoff
  const HIGHLIGHT_MS = 1500;         // a changed row stays highlighted this long
  const WITHDRAWN_KEEP_S = 20;       // a decided card stays this long, with its note
  const URGENT_S = 30;               // countdown turns red below this
  const MAX_TYPES = 300;             // options in the type filter
  const SUMMARY_CHARS = 240;         // JSON shown in a collapsed log row
  const NARROW_MAX = 20;             // a machine filter matching 1..this many ids subscribes to them
  const SUBSCRIBE_DEBOUNCE_MS = 300; // typing in the filter sends one subscribe, not one per key
  const LEGEND_MAX = 32;             // legend items; the rest are counted in one "+N more"
  const STATE_COLOURS_MAX = 256;     // colours remembered; past it, states no longer shown are forgotten

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const nowS = () => Date.now() / 1000;
  const compact = (value) => {
    try { return JSON.stringify(value); } catch (_) { return String(value); }
  };

  const wsPath = (document.querySelector('meta[name="smws-ws-path"]') || {}).content || '/ws/events';
  const pageParams = new URLSearchParams(location.search);
  // A ?token= moves into this closure at once and leaves the address bar and
  // the history (so bookmarks, the tab's history and a shared screenshot do
  // not carry it). The WebSocket offers it as the subprotocol
  // smws.bearer.TOKEN beside smws.v1: no URL a proxy logs holds it. (A
  // reload then lacks it: the relay asks for it again with 401.)
  const pageToken = pageParams.get('token') || '';
  if (pageParams.has('token')) {
    pageParams.delete('token');
    const rest = pageParams.toString();
    history.replaceState(history.state, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  }
  // A subprotocol is an HTTP token (RFC 6455 §4.1, RFC 7230 §3.2.6); a token
  // with other characters can only travel in the URL, as before.
  const tokenAsSubprotocol = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(pageToken);

  // --- counters (read by tests through window.smwsDashboard) ---------------
  const counters = {
    messages: 0,      // WebSocket messages received
    events: 0,        // of which events (not ping/initial/gap/...)
    frames: 0,        // animation frames that rendered something
    connects: 0,      // WebSocket connections opened
    lastSeq: 0,       // highest seq seen (sent back as ?since=)
    decisionsSent: 0,
    subscribes: 0,    // subscribe messages sent
    replayed: 0,      // held events replayed after a subscribe (shown in the log, marked)
  };

  // --- the server-side view (subscribe) -------------------------------------
  // The page's URL filters (?type=, ?machine=) are the widest view; the
  // machine filter narrows it to a few exact ids, a row's history button to
  // one. Owned by the page's only thread, like everything here.
  const splitParam = (key) => pageParams.getAll(key).flatMap((v) => v.split(',')).filter((v) => v !== '');
  const view = {
    urlTypes: splitParam('type'),
    urlMachines: splitParam('machine'),
    machines: [],        // exact ids subscribed to; [] = the URL's view
    history: '',         // the machine whose history is open, or ''
    awaiting: 0,         // subscribes sent whose `initial` has not come yet
    replayUpTo: 0,       // events after the answer with seq <= this are held history
    seqAtSend: 0,
    reevaluate: false,   // widened to re-read the filter against every machine
    timer: 0,
  };

  // --- scheduling --------------------------------------------------------------
  let frameQueued = false;
  function requestRender() {
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(render);
  }

  // ===========================================================================
  // Connection
  // ===========================================================================
  const conn = {
    socket: null,
    attempt: 0,          // failures in a row, for the backoff
    retryAt: 0,          // ms (performance.now()) of the next attempt, 0: none
    retryTimer: 0,
    openedAt: 0,
    lastClose: '',       // "1006" or "1001 going away"
  };

  function socketUrl() {
    const params = new URLSearchParams();
    if (pageToken && !tokenAsSubprotocol) params.set('token', pageToken);
    // The relay's own filters pass through: /?machine=worker-* shows those only.
    for (const key of ['type', 'machine', 'hitl']) {
      for (const value of pageParams.getAll(key)) params.append(key, value);
    }
    if (counters.lastSeq > 0) params.set('since', String(counters.lastSeq));
    const query = params.toString();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + location.host + wsPath + (query ? '?' + query : '');
  }

  function setConnState(state, text) {
    const box = $('conn');
    box.dataset.state = state;
    $('conn-text').textContent = text;
    $('reconnect').hidden = state !== 'reconnecting';
  }

  function connect() {
    clearTimeout(conn.retryTimer);
    conn.retryAt = 0;
    setConnState('connecting', conn.lastClose ? 'reconnecting… (last close ' + conn.lastClose + ')' : 'connecting…');
    let socket;
    try {
      socket = new WebSocket(socketUrl(), tokenAsSubprotocol && pageToken
        ? ['smws.v1', 'smws.bearer.' + pageToken] : ['smws.v1']);
    } catch (err) {
      scheduleRetry('could not open: ' + err.message);
      return;
    }
    conn.socket = socket;
    socket.onopen = () => {
      if (conn.socket !== socket) return;
      conn.openedAt = performance.now();
      counters.connects++;
      setConnState('live', 'live');
      if (counters.connects > 1) {
        view.awaiting = 0;
        view.replayUpTo = 0;
        // A new connection starts with the URL's view: ask again for ours.
        if (view.machines.length) subscribeTo(view.machines);
        addNote(counters.lastSeq > 0 ? 'reconnected; asked for the events after seq ' + counters.lastSeq
                                     : 'reconnected');
      }
    };
    socket.onmessage = (ev) => {
      if (conn.socket === socket) onText(ev.data);
    };
    socket.onclose = (ev) => {
      if (conn.socket !== socket) return;
      conn.socket = null;
      const code = ev.code + (ev.reason ? ' ' + ev.reason : '');
      const wasOpen = conn.openedAt > 0;
      if (wasOpen && performance.now() - conn.openedAt >= STABLE_CONNECTION_S * 1000) conn.attempt = 0;
      conn.openedAt = 0;
      conn.lastClose = code;
      addNote(wasOpen ? 'connection closed: ' + code
                      : 'could not connect (' + code + '): the relay is down, or refused the token or the origin');
      scheduleRetry(code);
    };
  }

  // Exponential backoff with "equal jitter": the n-th retry in a row waits
  // between half and all of min(30 s, 0.5 s * 2^n), so a relay restart does
  // not see every dashboard come back in the same instant.
  function scheduleRetry(why) {
    const ceiling = Math.min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** conn.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    conn.attempt++;
    conn.retryAt = performance.now() + delay * 1000;
    conn.retryTimer = setTimeout(connect, delay * 1000);
    updateRetryText();
  }

  function updateRetryText() {
    if (!conn.retryAt) return;
    const left = Math.max(0, Math.ceil((conn.retryAt - performance.now()) / 1000));
    setConnState('reconnecting', 'reconnecting in ' + left + ' s — closed ' + conn.lastClose);
  }

  function send(message) {
    if (!conn.socket || conn.socket.readyState !== WebSocket.OPEN) return false;
    conn.socket.send(JSON.stringify(message));
    return true;
  }

  function subscribeTo(ids) {
    view.machines = ids;
    view.seqAtSend = counters.lastSeq;
    renderServerFilter();
    const machinesList = ids.length ? ids : view.urlMachines;
    if (!send({ type: 'subscribe', types: view.urlTypes, machines: machinesList })) return;
    counters.subscribes++;
    view.awaiting++;
  }

  function renderServerFilter() {
    const text = view.history ? 'history of ' + view.history + ' (server-side: ' + view.history + ')'
      : view.machines.length ? 'server-side: ' + view.machines.join(', ')
      : view.urlMachines.length ? 'server-side: ' + view.urlMachines.join(', ')
      : 'server-side: all machines';
    $('server-filter').textContent = text;
    $('view-back').hidden = !view.history;
  }

  // The machine filter, read again (debounced): 1..NARROW_MAX matching ids
  // subscribe to those, anything else to the URL's view. Narrowed, the page
  // knows only those machines, so a changed filter first widens and then
  // decides on the answer.
  function evaluateFilter() {
    if (view.history) return;
    if (view.reevaluate && view.awaiting > 0) return;  // widening: its answer decides
    if (view.machines.length && !view.reevaluate) {
      view.reevaluate = true;
      subscribeTo([]);
      return;
    }
    view.reevaluate = false;
    const ids = machineFilter ? Array.from(machines.values()).filter(machineMatches).map((m) => m.id).sort() : [];
    const wanted = ids.length >= 1 && ids.length <= NARROW_MAX ? ids : [];
    if (wanted.join('\n') !== view.machines.join('\n')) subscribeTo(wanted);
  }

  function filterChanged() {
    clearTimeout(view.timer);
    view.timer = setTimeout(() => {
      view.timer = 0;
      if (view.history) {
        view.history = '';
        view.reevaluate = false;
      }
      evaluateFilter();
    }, SUBSCRIBE_DEBOUNCE_MS);
  }

  function openHistory(id) {
    clearTimeout(view.timer);
    view.history = id;
    view.reevaluate = false;
    addNote('history of ' + id + ': the relay replays the events it holds for it (marked)');
    subscribeTo([id]);
  }

  function closeHistory() {
    view.history = '';
    view.reevaluate = true;
    subscribeTo([]);
  }

  function onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (_) {
      return;  // the relay only sends JSON; nothing to show for noise
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return;
    counters.messages++;
    if (typeof msg.seq === 'number' && msg.seq > counters.lastSeq) counters.lastSeq = msg.seq;
    const type = typeof msg.type === 'string' ? msg.type : '';
    switch (type) {
      case 'ping':
        send({ type: 'pong' });
        return;
      case 'initial':
        if (view.awaiting > 0) {
          // The answer to a subscribe: the new view replaces the table; the
          // approvals stay (HITL is not filtered by machine).
          view.awaiting--;
          view.replayUpTo = view.machines.length ? view.seqAtSend : 0;
          applySnapshot(msg, true);
          addLog(msg, text, 'note', 'view changed (' + $('server-filter').textContent + '): ' +
                 (Array.isArray(msg.machines) ? msg.machines.length : 0) + ' machines');
          if (view.reevaluate && view.awaiting === 0) evaluateFilter();
          return;
        }
        applySnapshot(msg, false);
        addLog(msg, text, 'note', 'snapshot: ' + (Array.isArray(msg.machines) ? msg.machines.length : 0) +
               ' machines, ' + (Array.isArray(msg.pending) ? msg.pending.length : 0) + ' pending approvals');
        return;
      case 'gap':
        addLog(msg, text, 'gap', 'missed events ' + msg.from + '–' + msg.to +
               ': the relay no longer holds them (the snapshot that follows is current)');
        return;
      case 'dropped':
        addLog(msg, text, 'loss', 'the relay dropped ' + msg.count + ' events for this page (it fell behind)');
        return;
      default: break;
    }
    if (view.replayUpTo > 0 && typeof msg.seq === 'number' && msg.seq <= view.replayUpTo && msg.type !== 'error') {
      // Held history, replayed after a subscribe: shown, not applied (the
      // snapshot before it is already current).
      counters.replayed++;
      addLog(msg, text, '', null, 'history');
      return;
    }
    switch (type) {
      case 'state_change': applyStateChange(msg); break;
      case 'interrupt': addCard(msg, typeof msg.timeout === 'number' ? msg.timeout : null); break;
      case 'decision': withdrawCard(msg); break;
      case 'error':
        if (typeof msg.error === 'string' && msg.error.startsWith('subscribe:')) view.awaiting = Math.max(0, view.awaiting - 1);
        else showError(msg);
        break;
      default: break;
    }
    counters.events++;
    countRate();
    addLog(msg, text, '', null);
  }

  // ===========================================================================
  // Machines (table + timeline model)
  // ===========================================================================
  // id → {id, state, prev, last (s), data, dataText (null: not made yet), version, flash, flashUntil,
  //       segs: [[t, state]]}
  const machines = new Map();
  const dirtyMachines = new Set();
  let machinesOrderDirty = false;
  let machinesStructureDirty = false;  // rows to remove
  let machineFilter = '';
  let machineFilterDirty = false;
  let sortedMachines = [];             // last sort, most recent first
  let timelineDirty = true;

  const asText = (v) => (v === undefined || v === null ? '' : typeof v === 'string' ? v : compact(v));

  function upsertMachine(id, state, prev, last, data, live) {
    let m = machines.get(id);
    if (!m) {
      m = { id, state: '', prev: '', last: 0, data: undefined, dataText: null, version: 0,
            flash: false, flashUntil: 0, segs: [] };
      machines.set(id, m);
    }
    m.state = state;
    m.prev = prev;
    m.last = last;
    m.data = data;
    m.dataText = null;  // serialised when a row shows it or a filter reads it, not per event
    m.flash = live;
    // A segment starts at the event's timestamp when it is plausible on the
    // page's clock (within the window, not ahead by more than CLOCK_SLACK_S);
    // otherwise, from a producer whose clock disagrees, at its arrival.
    const now = nowS();
    let t = last > now - TIMELINE_WINDOW_S && last <= now + CLOCK_SLACK_S ? Math.min(last, now)
                                                                          : live ? now : Math.min(last || now, now);
    const tail = m.segs[m.segs.length - 1];
    if (tail && t < tail[0]) t = tail[0];  // lanes only move forward
    if (!tail || tail[1] !== state) {
      m.segs.push([t, state]);
      if (m.segs.length > SEGMENTS_PER_MACHINE) m.segs.splice(0, m.segs.length - SEGMENTS_PER_MACHINE);
      colourOf(state);
    }
    dirtyMachines.add(m);
    machinesOrderDirty = true;
    timelineDirty = true;
    requestRender();
  }

  function applyStateChange(ev) {
    const id = ev.machine_id;
    if (typeof id !== 'string' || id === '') return;
    const former = machines.get(id);
    const state = asText(ev.state);
    const prev = ev.previous_state !== undefined ? asText(ev.previous_state) : former ? former.state : '';
    const last = typeof ev.timestamp === 'number' ? ev.timestamp : nowS();
    upsertMachine(id, state, prev, last, ev.data, true);
  }

  function applySnapshot(snap, keepCards) {
    const seen = new Set();
    for (const m of Array.isArray(snap.machines) ? snap.machines : []) {
      if (!m || typeof m.id !== 'string') continue;
      seen.add(m.id);
      const last = typeof m.last_activity === 'number' ? m.last_activity : 0;
      upsertMachine(m.id, asText(m.current_state), asText(m.previous_state), last, m.data, false);
    }
    for (const [id, m] of machines) {
      if (!seen.has(id)) {
        machines.delete(id);
        dirtyMachines.delete(m);
      }
    }
    machinesStructureDirty = true;
    reconcileCards(Array.isArray(snap.pending) ? snap.pending : [], keepCards);
    requestRender();
  }

  function dataTextOf(m) {
    if (m.dataText === null) m.dataText = m.data === undefined ? '' : compact(m.data);
    return m.dataText;
  }

  function machineMatches(m) {
    if (!machineFilter) return true;
    return m.id.toLowerCase().includes(machineFilter) || m.state.toLowerCase().includes(machineFilter) ||
      m.prev.toLowerCase().includes(machineFilter) || dataTextOf(m).toLowerCase().includes(machineFilter);
  }

  function ago(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return Math.floor(s / 86400) + ' d ago';
  }

  // The table is a window onto `shownMachines` (sorted by last activity,
  // filtered), like the log: the DOM holds only the rows in sight, a pool
  // reused and positioned by transform, so 1,000 machines changing several
  // times a second cost a few dozen rows of DOM work per frame.
  const MACHINE_ROW_PX = 25;         // CSS: #machines-body .row
  const table = {
    pool: [],
    scrollTop: 0,
    viewport: 420,
    shownDirty: true,
  };
  let shownMachines = [];

  function newMachineRow() {
    const row = el('div', 'row');
    row.setAttribute('role', 'row');
    const cell = (cls) => {
      const c = el('span', cls);
      c.setAttribute('role', 'cell');
      return c;
    };
    const id = cell('id');
    const state = cell('state');
    const swatch = el('span', 'swatch');
    swatch.setAttribute('aria-hidden', 'true');
    const stateText = el('span');
    state.append(swatch, stateText);
    const prev = cell('prev');
    const agoCell = cell('ago');
    const data = cell('data');
    const hist = cell('hist');
    const histButton = el('button', 'hist-button', 'history');
    histButton.type = 'button';
    hist.append(histButton);
    row.append(id, state, prev, agoCell, data, hist);
    const r = { row, id, swatch, stateText, prev, ago: agoCell, data, histButton, m: null, version: -1, index: -1,
                agoText: '', changed: false };
    // The full data and the exact time, on hover: written when asked for,
    // not on every change.
    row.addEventListener('mouseenter', () => {
      if (!r.m) return;
      data.title = dataTextOf(r.m).slice(0, 2000);
      agoCell.title = r.m.last ? new Date(r.m.last * 1000).toLocaleString() : '';
    });
    return r;
  }

  function renderMachines(now, everyRow) {
    const nowMs = performance.now();
    for (const m of dirtyMachines) {
      m.version++;
      if (m.flash) {
        m.flash = false;
        m.flashUntil = nowMs + HIGHLIGHT_MS;
      }
    }
    dirtyMachines.clear();
    if (machinesOrderDirty || machinesStructureDirty) {
      sortedMachines = Array.from(machines.values());
      sortedMachines.sort((a, b) => b.last - a.last || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      machinesOrderDirty = false;
      machinesStructureDirty = false;
      table.shownDirty = true;
      $('machines-count').textContent = String(machines.size);
      $('machines-empty').hidden = machines.size > 0;
    }
    if (machineFilterDirty) {
      machineFilterDirty = false;
      table.shownDirty = true;
      timelineDirty = true;
    }
    if (table.shownDirty) {
      shownMachines = machineFilter ? sortedMachines.filter(machineMatches) : sortedMachines;
      table.shownDirty = false;
    }
    const body = $('machines-body');
    const height = shownMachines.length * MACHINE_ROW_PX + 'px';
    if (body.style.height !== height) body.style.height = height;
    const first = Math.max(0, Math.floor(table.scrollTop / MACHINE_ROW_PX) - LOG_OVERSCAN);
    const last = Math.min(shownMachines.length,
                          Math.ceil((table.scrollTop + table.viewport) / MACHINE_ROW_PX) + LOG_OVERSCAN);
    const needed = Math.max(0, last - first);
    while (table.pool.length < needed) {
      const r = newMachineRow();
      table.pool.push(r);
      body.append(r.row);
    }
    let highlighted = false;
    for (let k = 0; k < table.pool.length; k++) {
      const r = table.pool[k];
      const index = first + k;
      const m = k < needed ? shownMachines[index] : null;
      if (!m) {
        if (!r.row.hidden) r.row.hidden = true;
        r.m = null;
        continue;
      }
      if (r.row.hidden) r.row.hidden = false;
      if (r.index !== index) {
        r.index = index;
        r.row.style.transform = 'translateY(' + index * MACHINE_ROW_PX + 'px)';
        r.row.setAttribute('aria-rowindex', String(index + 2));
      }
      if (r.m !== m || r.version !== m.version) {
        if (r.m !== m) {
          r.m = m;
          r.row.dataset.machine = m.id;
          r.id.textContent = m.id;
          r.id.title = m.id;
          r.histButton.setAttribute('aria-label', 'Show the recent events of ' + m.id);
        }
        r.version = m.version;
        r.stateText.textContent = m.state || '—';
        r.swatch.style.background = colourOf(m.state);
        r.prev.textContent = m.prev || '—';
        const dataText = dataTextOf(m);
        r.data.textContent = dataText.length > 300 ? dataText.slice(0, 300) + '…' : dataText;
        r.agoText = '';
      }
      // A changed row stays highlighted for HIGHLIGHT_MS (a class, not a CSS
      // animation: one per row restyled every row on every frame).
      const changed = m.flashUntil > nowMs;
      highlighted = highlighted || changed;
      if (r.changed !== changed) {
        r.changed = changed;
        r.row.classList.toggle('changed', changed);
      }
      const text = m.last ? ago(now - m.last) : '—';
      if (r.agoText !== text) {
        r.agoText = text;
        r.ago.textContent = text;
      }
    }
    if (highlighted && !table.flashTimer) {
      table.flashTimer = setTimeout(() => {
        table.flashTimer = 0;
        requestRender();
      }, 250);
    }
    $('machines').setAttribute('aria-rowcount', String(shownMachines.length + 1));
  }

  // --- colours per state -------------------------------------------------------
  // The first states seen get the most distinct colours; the legend names
  // each one, and the table shows the state as text besides the swatch.
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#edc948', '#76b7b2',
                   '#ff9da7', '#9c755f', '#bab0ac', '#2f4b7c', '#a05195'];
  // The legend names the states the timeline shows now (legendStates, set
  // by drawTimeline), at most LEGEND_MAX of them: 10,000 distinct states
  // seen over a day must not make 10,000 items, nor keep 10,000 colours.
  const stateColours = new Map();
  let coloursGiven = 0;
  let legendStates = [];
  let legendDirty = false;
  function colourOf(state) {
    let c = stateColours.get(state);
    if (!c) {
      c = PALETTE[coloursGiven++ % PALETTE.length];
      stateColours.set(state, c);
    }
    return c;
  }
  // Forgets the colours of states no machine is in and the timeline does not
  // show; called when there are too many (each state's colour stays the same
  // while it is in view).
  function pruneColours() {
    if (stateColours.size <= STATE_COLOURS_MAX) return;
    const keep = new Set(legendStates);
    for (const m of machines.values()) keep.add(m.state);
    for (const state of [...stateColours.keys()]) {
      if (!keep.has(state)) stateColours.delete(state);
    }
  }
  function textColourOn(hex) {
    const n = parseInt(hex.slice(1), 16);
    const lum = 0.2126 * ((n >> 16) & 255) + 0.7152 * ((n >> 8) & 255) + 0.0722 * (n & 255);
    return lum > 150 ? '#111' : '#fff';
  }

  function renderLegend() {
    const list = $('legend');
    list.textContent = '';
    const frag = document.createDocumentFragment();
    for (const state of legendStates.slice(0, LEGEND_MAX)) {
      const item = el('li');
      const sw = el('span', 'swatch');
      sw.style.background = colourOf(state);
      sw.setAttribute('aria-hidden', 'true');
      item.append(sw, document.createTextNode(state || '(no state)'));
      frag.append(item);
    }
    if (legendStates.length > LEGEND_MAX) {
      frag.append(el('li', 'more', '+' + (legendStates.length - LEGEND_MAX) + ' more states'));
    }
    list.append(frag);
    legendDirty = false;
  }

  // --- canvases ---------------------------------------------------------------
  // Canvas colours come from the stylesheet's variables, read again when the
  // colour scheme flips (cached per scheme: a style read per draw is waste).
  let themeColours = null;
  let themeDark = null;
  const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
  function theme() {
    if (!themeColours || themeDark !== darkQuery.matches) {
      themeDark = darkQuery.matches;
      const css = getComputedStyle(document.documentElement);
      const v = (name) => css.getPropertyValue(name).trim();
      themeColours = { fg: v('--fg'), muted: v('--muted'), line: v('--line'), accent: v('--accent'),
                       panel: v('--panel'), font: '11px ' + getComputedStyle(document.body).fontFamily };
    }
    return themeColours;
  }
  darkQuery.addEventListener('change', () => {
    themeColours = null;
    timelineDirty = true;
    rateDirty = true;
    requestRender();
  });

  // Sizes a canvas's backing store to its CSS box (device pixels); returns
  // the 2D context scaled so drawing is in CSS pixels.
  // Widths come from a ResizeObserver, so drawing never reads layout (a
  // read after the frame's DOM writes would force a synchronous reflow).
  const canvasWidths = new Map();
  const resizeObserver = new ResizeObserver((entries) => {
    for (const entry of entries) canvasWidths.set(entry.target, entry.contentRect.width);
    timelineDirty = true;
    rateDirty = true;
    requestRender();
  });
  resizeObserver.observe($('timeline'));
  resizeObserver.observe($('rate-chart'));

  function prepare(canvas, cssHeight) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(50, canvasWidths.get(canvas) || 300);
    if (canvas.style.height !== cssHeight + 'px') canvas.style.height = cssHeight + 'px';
    const w = Math.round(width * dpr);
    const h = Math.round(cssHeight * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, cssHeight);
    return { ctx, width, height: cssHeight };
  }

  let lastTimelineDraw = 0;
  function drawTimeline(now) {
    const lanes = [];
    for (const m of sortedMachines) {
      if (lanes.length >= TIMELINE_MAX_LANES) break;
      if (machineMatches(m)) lanes.push(m);
    }
    const shown = machineFilter ? sortedMachines.filter(machineMatches).length : sortedMachines.length;
    $('timeline-note').textContent = shown > lanes.length
      ? lanes.length + ' most recently active of ' + shown + ' machines' : '';
    const LANE = 18, AXIS = 18, LABEL = 110;
    const height = Math.max(1, lanes.length) * LANE + AXIS;
    const { ctx, width } = prepare($('timeline'), height);
    const t = theme();
    const plotW = width - LABEL - 4;
    const start = now - TIMELINE_WINDOW_S;
    const x = (time) => LABEL + ((Math.max(time, start) - start) / TIMELINE_WINDOW_S) * plotW;
    ctx.font = t.font;
    ctx.textBaseline = 'middle';
    if (lanes.length === 0) {
      ctx.fillStyle = t.muted;
      ctx.fillText('No machine yet.', LABEL, LANE / 2);
    }
    // Time axis: a tick per minute.
    const axisY = lanes.length * LANE + AXIS / 2 + 1;
    ctx.fillStyle = t.muted;
    ctx.strokeStyle = t.line;
    ctx.beginPath();
    for (let k = 0; k <= TIMELINE_WINDOW_S / 60; k++) {
      const xx = LABEL + (k * 60 / TIMELINE_WINDOW_S) * plotW;
      ctx.moveTo(xx + 0.5, 0);
      ctx.lineTo(xx + 0.5, lanes.length * LANE);
      const minutes = TIMELINE_WINDOW_S / 60 - k;
      const label = minutes === 0 ? 'now' : '−' + minutes + ' min';
      const w = ctx.measureText(label).width;
      ctx.fillText(label, Math.min(width - w - 2, Math.max(LABEL, xx - w / 2)), axisY);
    }
    ctx.stroke();
    const shownStates = new Map();  // state -> when it was last in force, in the window
    lanes.forEach((m, i) => {
      const y = i * LANE;
      ctx.fillStyle = t.fg;
      let label = m.id;
      while (label.length > 3 && ctx.measureText(label).width > LABEL - 8) label = label.slice(0, -2);
      if (label !== m.id) label += '…';
      ctx.fillText(label, 2, y + LANE / 2);
      // Drop segments that ended before the window (keep the one in force).
      while (m.segs.length > 1 && m.segs[1][0] <= start) m.segs.shift();
      // A machine that changes state several times a second has many
      // segments narrower than a pixel: each pixel column is painted once,
      // in the colour of the state that starts there, and names are
      // measured only where a segment could hold one.
      let painted = -1;
      for (let s = 0; s < m.segs.length; s++) {
        const [from, state] = m.segs[s];
        const to = s + 1 < m.segs.length ? m.segs[s + 1][0] : now;
        if (to < start) continue;
        // In the window, even where narrower than a pixel.
        shownStates.set(state, Math.max(shownStates.get(state) || 0, to));
        const x0 = Math.max(x(from), painted), x1 = Math.max(x0 + 1, x(to));
        if (x1 <= painted + 0.5) continue;
        const colour = colourOf(state);
        ctx.fillStyle = colour;
        ctx.fillRect(x0, y + 2, x1 - x0, LANE - 4);
        painted = x1;
        const name = state || '—';
        if (x1 - x0 > 24 && x1 - x0 > ctx.measureText(name).width + 8) {
          ctx.fillStyle = textColourOn(colour);
          ctx.fillText(name, x0 + 4, y + LANE / 2);
        }
      }
    });
    // The legend follows what is drawn, the states in force most recently
    // first (the lanes' current states lead).
    const states = [...shownStates.entries()].sort((a, b) => b[1] - a[1]).map((e) => e[0]);
    if (states.length !== legendStates.length || states.some((state, k) => state !== legendStates[k])) {
      legendStates = states;
      legendDirty = true;
    }
    pruneColours();
    $('timeline').setAttribute('aria-label', 'States of ' + lanes.length +
      ' machines over the last five minutes; the table lists each one\'s state as text');
    lastTimelineDraw = performance.now();
    timelineDirty = false;
  }

  // --- events per second ------------------------------------------------------
  const rateBuckets = new Array(RATE_WINDOW_S + 1).fill(0);  // [i] = second (now - RATE_WINDOW_S + i)
  let rateSecond = Math.floor(nowS());
  let rateDirty = true;
  function advanceRate() {
    const sec = Math.floor(nowS());
    if (sec === rateSecond) return;
    const shift = Math.min(rateBuckets.length, sec - rateSecond);
    rateBuckets.splice(0, shift);
    for (let i = 0; i < shift; i++) rateBuckets.push(0);
    rateSecond = sec;
    rateDirty = true;
  }
  function countRate() {
    advanceRate();
    rateBuckets[rateBuckets.length - 1]++;
  }
  function drawRate() {
    const { ctx, width, height } = prepare($('rate-chart'), 70);
    const t = theme();
    const full = rateBuckets.slice(0, -1);  // complete seconds
    const max = Math.max(10, ...full);
    const bw = width / full.length;
    ctx.fillStyle = t.accent;
    full.forEach((n, i) => {
      const h = (n / max) * (height - 14);
      ctx.fillRect(i * bw + 1, height - h, Math.max(1, bw - 2), h);
    });
    ctx.fillStyle = t.muted;
    ctx.font = t.font;
    ctx.textBaseline = 'top';
    ctx.fillText('max ' + max + '/s · last 60 s', 2, 0);
    $('rate').textContent = String(full[full.length - 1]);
    rateDirty = false;
  }

  // ===========================================================================
  // Event log
  // ===========================================================================
  // The log is a window onto a list: `view` holds the rows the log shows
  // (newest first, filtered, at most LOG_CAP), and the DOM holds only the
  // few rows in sight (a pool of row elements, positioned by transform), so
  // 5,000 new rows a second cost a few dozen text writes per frame, not
  // thousands of nodes created and removed.
  const LOG_ROW_PX = 25;             // every row one line of this height (CSS: #log-body .row)
  const LOG_OVERSCAN = 6;            // rows drawn beyond each edge, for smooth scrolling
  const log = {
    entries: [],         // {id, t, type, machine, raw, msg, kind, note, lower}; oldest first
    view: [],            // the rows shown, newest first: entries that match, <= LOG_CAP
    nextId: 1,
    viewedId: 0,         // newest entry id considered for `view`
    paused: false,
    held: 0,             // entries that arrived while paused
    rebuild: true,
    typeFilter: '',
    textFilter: '',
    types: new Set(),
    newTypes: [],
    pool: [],            // row elements in the DOM, reused
    scrollTop: 0,        // from scroll events (reading it in a frame could force layout)
    viewport: 460,       // the scroll box's height, from a ResizeObserver
    selected: null,      // the entry whose JSON is shown below the log
  };

  function addLog(msg, raw, kind, note, mark) {
    const type = typeof msg.type === 'string' ? msg.type : '';
    log.entries.push({ id: log.nextId++, t: nowS(), type, machine: typeof msg.machine_id === 'string' ? msg.machine_id : '',
                       raw, msg, kind, note, mark: mark || '', lower: null });
    if (log.entries.length > 2 * LOG_CAP) log.entries.splice(0, log.entries.length - LOG_CAP);
    if (log.paused) log.held++;
    if (type && !log.types.has(type) && log.types.size < MAX_TYPES) {
      log.types.add(type);
      log.newTypes.push(type);
    }
    requestRender();
  }

  function addNote(text) {
    addLog({ type: 'connection' }, '', 'note', text);
  }

  function logMatches(e) {
    if (e.kind) return true;  // gaps, losses and notes are always shown: loss is never silent
    if (log.typeFilter && e.type !== log.typeFilter) return false;
    if (log.textFilter) {
      if (e.lower === null) e.lower = e.raw.toLowerCase();
      if (!e.lower.includes(log.textFilter)) return false;
    }
    return true;
  }

  function two(n) { return n < 10 ? '0' + n : String(n); }
  function clock(t) {
    const d = new Date(t * 1000);
    const ms = String(d.getMilliseconds()).padStart(3, '0');
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds()) + '.' + ms;
  }

  function newPoolRow() {
    const row = el('div', 'row');
    row.setAttribute('role', 'row');
    const cells = {};
    for (const cls of ['time', 'type', 'id', 'ev']) {
      const c = el('span', cls);
      c.setAttribute('role', 'cell');
      row.append(c);
      cells[cls] = c;
    }
    // The event cell is a button: Enter or a click shows the JSON below.
    const button = el('button', 'ev-button');
    button.type = 'button';
    cells.ev.append(button);
    return { row, cells, button, entry: null, index: -1 };
  }

  // Brings `view` up to date with the entries (incrementally when only new
  // ones came); returns how many rows were added at the top.
  function updateView() {
    const entries = log.entries;
    const newest = entries.length ? entries[entries.length - 1].id : 0;
    if (log.rebuild) {
      log.view = [];
      for (let i = entries.length - 1; i >= 0 && log.view.length < LOG_CAP; i--) {
        if (logMatches(entries[i])) log.view.push(entries[i]);
      }
      log.rebuild = false;
      log.viewedId = newest;
      return 0;
    }
    if (newest <= log.viewedId) return 0;
    const fresh = [];
    for (let i = entries.length - 1; i >= 0 && entries[i].id > log.viewedId && fresh.length < LOG_CAP; i--) {
      if (logMatches(entries[i])) fresh.push(entries[i]);
    }
    log.viewedId = newest;
    if (fresh.length === 0) return 0;
    log.view = fresh.length >= LOG_CAP ? fresh : fresh.concat(log.view.slice(0, LOG_CAP - fresh.length));
    return fresh.length;
  }

  function renderLog() {
    if (log.newTypes.length) {
      const select = $('log-type');
      for (const type of log.newTypes.sort()) select.append(new Option(type, type));
      log.newTypes = [];
    }
    const held = $('log-held');
    if (log.paused) {
      held.textContent = log.held ? log.held + ' new while paused' : 'paused';
      return;
    }
    held.textContent = '';
    const added = updateView();
    const view = log.view;
    const body = $('log-body');
    const wrap = $('log-wrap');
    // Someone reading further down keeps their rows in sight as new ones
    // arrive on top; at the top, the newest stay in sight.
    if (added && log.scrollTop > 0) {
      log.scrollTop = Math.min(log.scrollTop + added * LOG_ROW_PX, view.length * LOG_ROW_PX);
      wrap.scrollTop = log.scrollTop;
    }
    const height = view.length * LOG_ROW_PX + 'px';
    if (body.style.height !== height) body.style.height = height;
    const first = Math.max(0, Math.floor(log.scrollTop / LOG_ROW_PX) - LOG_OVERSCAN);
    const last = Math.min(view.length, Math.ceil((log.scrollTop + log.viewport) / LOG_ROW_PX) + LOG_OVERSCAN);
    const needed = Math.max(0, last - first);
    while (log.pool.length < needed) {
      const r = newPoolRow();
      log.pool.push(r);
      body.append(r.row);
    }
    for (let k = 0; k < log.pool.length; k++) {
      const r = log.pool[k];
      const index = first + k;
      const e = k < needed ? view[index] : null;
      if (!e) {
        if (!r.row.hidden) r.row.hidden = true;
        r.entry = null;
        continue;
      }
      if (r.row.hidden) r.row.hidden = false;
      if (r.index !== index) {
        r.index = index;
        r.row.style.transform = 'translateY(' + index * LOG_ROW_PX + 'px)';
        r.row.setAttribute('aria-rowindex', String(index + 2));
      }
      if (r.entry === e) continue;
      r.entry = e;
      r.row.className = 'row' + (e.kind ? ' ' + e.kind : '') + (e.mark ? ' ' + e.mark : '');
      r.row.dataset.entry = String(e.id);
      r.cells.time.textContent = clock(e.t);
      r.cells.type.textContent = e.type;
      r.cells.id.textContent = e.machine;
      const text = e.note ? e.note : e.raw.length > SUMMARY_CHARS ? e.raw.slice(0, SUMMARY_CHARS) + '…' : e.raw;
      r.button.textContent = text;
      r.button.disabled = !e.raw;
      r.button.setAttribute('aria-label', (e.note ? e.note + '. ' : '') + (e.mark ? 'Held history. ' : '') + 'Show this ' + (e.type || 'event') + ' as JSON');
    }
    $('log').setAttribute('aria-rowcount', String(view.length + 1));
    $('log-count').textContent = view.length + ' rows (newest first, at most ' + LOG_CAP + ')';
  }

  function showLogEntry(e) {
    log.selected = e;
    $('log-detail').hidden = false;
    $('log-detail-title').textContent = (e.type || 'event') + (e.machine ? ' · ' + e.machine : '') + ' · ' + clock(e.t);
    $('log-detail-json').textContent = JSON.stringify(e.msg, null, 2);
  }

  function setPaused(paused) {
    log.paused = paused;
    const button = $('log-pause');
    button.setAttribute('aria-pressed', String(paused));
    button.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
      if (log.held >= LOG_CAP) log.rebuild = true;
      log.held = 0;
    }
    requestRender();
  }

  // ===========================================================================
  // Approvals (HITL)
  // ===========================================================================
  // interrupt_id → {msg, el, deadline (ms, performance.now()), countdown,
  //                 choices[], actions[], error, note, withdrawnAt, sending}
  const cards = new Map();
  let lastSentCard = null;
  let approvalsDirty = true;

  function deciderName() {
    return $('decider').value.trim();
  }

  function allowedFor(msg, name) {
    const configs = Array.isArray(msg.review_configs) ? msg.review_configs : [];
    const config = configs.find((c) => c && c.action_name === name);
    if (config && Array.isArray(config.allowed_decisions)) return config.allowed_decisions;
    return ['approve', 'edit', 'reject'];
  }

  function addCard(msg, expiresIn) {
    const id = msg.interrupt_id;
    if (typeof id !== 'string' || id === '') return;
    const existing = cards.get(id);
    const deadline = typeof expiresIn === 'number' ? performance.now() + expiresIn * 1000 : null;
    if (existing) {
      if (!existing.withdrawnAt && deadline !== null) existing.deadline = deadline;
      return;
    }
    const card = { id, msg, deadline, choices: [], actions: [], withdrawnAt: 0, sending: false };
    buildCard(card);
    cards.set(id, card);
    $('approvals').append(card.el);
    approvalsDirty = true;
    requestRender();
  }

  function buildCard(card) {
    const msg = card.msg;
    const actions = Array.isArray(msg.action_requests) ? msg.action_requests : [];
    const root = el('article', 'card');
    root.dataset.interrupt = card.id;
    const head = el('header');
    const title = el('h3', '', actions.map((a) => (a && a.name) || '?').join(', ') || 'approval');
    title.id = 'card-' + card.id.replace(/[^A-Za-z0-9_-]/g, '_') + '-' + Math.random().toString(36).slice(2, 8);
    root.setAttribute('aria-labelledby', title.id);
    head.append(title);
    head.append(el('span', 'thread', 'thread ' + (msg.thread_id !== undefined ? asText(msg.thread_id) : '—') +
                                     ' · ' + card.id));
    card.countdown = el('span', 'countdown');
    head.append(card.countdown);
    root.append(head);
    actions.forEach((action, index) => {
      const name = action && typeof action.name === 'string' ? action.name : '';
      const allowed = allowedFor(msg, name);
      const box = el('div', 'action');
      box.append(el('h4', '', name || '(unnamed action)'));
      if (action && action.description) box.append(el('p', 'desc', asText(action.description)));
      box.append(el('pre', 'args', JSON.stringify(action ? action.args : undefined, null, 2) || '{}'));
      box.append(el('p', 'allowed', 'Allowed: ' + allowed.join(', ')));
      const buttons = el('div', 'buttons');
      const label = (what) => what + ' ' + (name || 'action') + ' (' + card.id + ')';
      const approve = el('button', 'primary', 'Approve');
      approve.type = 'button';
      approve.dataset.act = 'approve';
      approve.setAttribute('aria-label', label('Approve'));
      const edit = el('button', '', 'Edit…');
      edit.type = 'button';
      edit.dataset.act = 'edit';
      edit.setAttribute('aria-label', label('Edit'));
      const reject = el('button', 'danger', 'Reject…');
      reject.type = 'button';
      reject.dataset.act = 'reject';
      reject.setAttribute('aria-label', label('Reject'));
      approve.disabled = !allowed.includes('approve');
      edit.disabled = !allowed.includes('edit');
      reject.disabled = !allowed.includes('reject');
      buttons.append(approve, edit, reject);
      box.append(buttons);

      const editor = el('div', 'editor');
      editor.hidden = true;
      const editLabel = el('label', '', 'Action JSON (name and args), sent as edited_action');
      const textarea = el('textarea');
      textarea.spellcheck = false;
      textarea.value = JSON.stringify({ name, args: action ? action.args : {} }, null, 2);
      editLabel.append(textarea);
      const editRow = el('div', 'buttons');
      const editSend = el('button', 'primary', 'Send edit');
      editSend.type = 'button';
      editSend.dataset.act = 'edit-send';
      const editCancel = el('button', '', 'Cancel');
      editCancel.type = 'button';
      editCancel.dataset.act = 'cancel';
      editRow.append(editSend, editCancel);
      editor.append(editLabel, editRow);
      box.append(editor);

      const rejector = el('div', 'rejector');
      rejector.hidden = true;
      const rejectLabel = el('label', '', 'Message to the agent');
      const message = el('input');
      message.type = 'text';
      message.placeholder = 'why not';
      rejectLabel.append(message);
      const rejectRow = el('div', 'buttons');
      const rejectSend = el('button', 'danger', 'Send reject');
      rejectSend.type = 'button';
      rejectSend.dataset.act = 'reject-send';
      const rejectCancel = el('button', '', 'Cancel');
      rejectCancel.type = 'button';
      rejectCancel.dataset.act = 'cancel';
      rejectRow.append(rejectSend, rejectCancel);
      rejector.append(rejectLabel, rejectRow);
      box.append(rejector);

      const chosen = el('p', 'chosen');
      chosen.hidden = actions.length < 2;
      box.append(chosen);
      box.dataset.index = String(index);
      root.append(box);
      card.actions.push({ name, box, editor, textarea, rejector, message, chosen, buttons });
    });
    card.error = el('p', 'error');
    card.error.setAttribute('role', 'alert');
    card.error.hidden = true;
    card.note = el('p', 'note');
    card.note.setAttribute('role', 'status');
    card.note.hidden = true;
    root.append(card.error, card.note);
    root.addEventListener('click', (ev) => onCardClick(card, ev));
    root.addEventListener('keydown', (ev) => onCardKey(card, ev));
    card.el = root;
  }

  function showCardError(card, text) {
    card.error.textContent = text;
    card.error.hidden = false;
  }

  function onCardKey(card, ev) {
    const box = ev.target.closest('.action');
    if (!box) return;
    const action = card.actions[Number(box.dataset.index)];
    if (ev.key === 'Escape' && (!action.editor.hidden || !action.rejector.hidden)) {
      ev.preventDefault();
      action.editor.hidden = true;
      action.rejector.hidden = true;
      action.buttons.querySelector('[data-act]').focus();
    } else if (ev.key === 'Enter' && ev.target === action.message) {
      ev.preventDefault();
      choose(card, action, { type: 'reject', message: action.message.value.trim() || 'rejected' });
    } else if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey) && ev.target === action.textarea) {
      ev.preventDefault();
      chooseEdit(card, action);
    }
  }

  function onCardClick(card, ev) {
    const button = ev.target.closest('button[data-act]');
    if (!button || button.disabled || card.withdrawnAt) return;
    const box = button.closest('.action');
    const action = box ? card.actions[Number(box.dataset.index)] : null;
    if (!action) return;
    card.error.hidden = true;
    switch (button.dataset.act) {
      case 'approve':
        action.editor.hidden = true;
        action.rejector.hidden = true;
        choose(card, action, { type: 'approve' });
        break;
      case 'edit':
        action.rejector.hidden = true;
        action.editor.hidden = false;
        action.textarea.focus();
        break;
      case 'reject':
        action.editor.hidden = true;
        action.rejector.hidden = false;
        action.message.focus();
        break;
      case 'edit-send':
        chooseEdit(card, action);
        break;
      case 'reject-send':
        choose(card, action, { type: 'reject', message: action.message.value.trim() || 'rejected' });
        break;
      case 'cancel':
        action.editor.hidden = true;
        action.rejector.hidden = true;
        action.buttons.querySelector('[data-act="approve"]').focus();
        break;
      default: break;
    }
  }

  function chooseEdit(card, action) {
    let edited;
    try {
      edited = JSON.parse(action.textarea.value);
    } catch (err) {
      showCardError(card, 'The edited action is not JSON: ' + err.message);
      action.textarea.focus();
      return;
    }
    if (!edited || typeof edited !== 'object' || Array.isArray(edited) || typeof edited.name !== 'string') {
      showCardError(card, 'The edited action must be a JSON object with a string "name" (and its "args").');
      action.textarea.focus();
      return;
    }
    choose(card, action, { type: 'edit', edited_action: edited });
  }

  // Records one action's decision; when every action has one, sends them.
  function choose(card, action, decision) {
    const name = deciderName();
    if (!name) {
      showCardError(card, 'Type your name in "Deciding as" at the top first: it is sent as decided_by.');
      $('decider').focus();
      return;
    }
    const index = card.actions.indexOf(action);
    card.choices[index] = decision;
    action.editor.hidden = true;
    action.rejector.hidden = true;
    action.chosen.textContent = 'Your choice: ' + decision.type;
    const missing = card.actions.findIndex((_, i) => !card.choices[i]);
    if (missing >= 0) {
      action.chosen.textContent += ' — now decide "' + card.actions[missing].name + '" to send';
      card.actions[missing].buttons.querySelector('button:not(:disabled)')?.focus();
      return;
    }
    const message = { type: 'decision', interrupt_id: card.id, decisions: card.choices.slice(), decided_by: name };
    if (card.msg.thread_id !== undefined) message.thread_id = card.msg.thread_id;
    if (!send(message)) {
      showCardError(card, 'Not connected: the decision was not sent. It can be sent again once live.');
      card.choices = [];
      return;
    }
    counters.decisionsSent++;
    card.sending = true;
    lastSentCard = card;
    for (const a of card.actions) for (const b of a.buttons.querySelectorAll('button')) b.disabled = true;
    card.note.textContent = 'Sent ' + card.choices.map((d) => d.type).join(', ') + '; waiting for the relay…';
    card.note.hidden = false;
  }

  function enableButtons(card) {
    card.actions.forEach((a) => {
      const allowed = allowedFor(card.msg, a.name);
      for (const b of a.buttons.querySelectorAll('button')) b.disabled = !allowed.includes(b.dataset.act);
    });
  }

  function describeDecision(msg) {
    if (msg.timed_out) return 'Timed out: rejected automatically';
    const parts = (Array.isArray(msg.decisions) ? msg.decisions : []).map((d) => {
      if (!d || typeof d !== 'object') return '?';
      if (d.type === 'approve') return 'approved';
      if (d.type === 'edit') return 'edited (' + compact(d.edited_action) + ')';
      if (d.type === 'reject') return 'rejected' + (d.message ? ' ("' + asText(d.message) + '")' : '');
      return asText(d.type);
    });
    const who = typeof msg.decided_by === 'string' && msg.decided_by ? msg.decided_by : 'someone';
    return (parts.join(', ') || 'decided') + ' by ' + who;
  }

  function withdraw(card, note) {
    if (card.withdrawnAt) return;
    const hadFocus = card.el.contains(document.activeElement);
    card.withdrawnAt = performance.now();
    card.sending = false;
    card.el.classList.add('withdrawn');
    card.countdown.textContent = 'decided';
    card.note.textContent = note;
    card.note.hidden = false;
    card.error.hidden = true;
    if (lastSentCard === card) lastSentCard = null;
    if (hadFocus) $('approvals-h').focus();
    approvalsDirty = true;
    requestRender();
  }

  function withdrawCard(msg) {
    const card = cards.get(msg.interrupt_id);
    if (!card) return;
    const mine = card.sending && msg.decided_by === deciderName();
    withdraw(card, describeDecision(msg) + (mine ? ' (from this page)' : ''));
  }

  function reconcileCards(pending, keepCards) {
    const ids = new Set();
    for (const p of pending) {
      if (!p || typeof p.interrupt_id !== 'string') continue;
      ids.add(p.interrupt_id);
      addCard(p, typeof p.expires_in === 'number' ? p.expires_in : null);
    }
    if (keepCards) return;
    for (const card of cards.values()) {
      if (!ids.has(card.id) && !card.withdrawnAt) withdraw(card, 'No longer pending (decided while this page was away)');
    }
  }

  function showError(msg) {
    const card = (typeof msg.interrupt_id === 'string' && cards.get(msg.interrupt_id)) || lastSentCard;
    if (!card) return;  // shown in the log anyway
    card.sending = false;
    card.choices = [];
    for (const a of card.actions) a.chosen.textContent = '';
    card.note.hidden = true;
    showCardError(card, 'The relay refused the decision: ' + asText(msg.error) + (msg.reason ? ' (' + asText(msg.reason) + ')' : ''));
    if (!card.withdrawnAt) enableButtons(card);
    if (lastSentCard === card) lastSentCard = null;
  }

  function renderApprovals() {
    const now = performance.now();
    let open = 0;
    for (const card of cards.values()) {
      if (card.withdrawnAt) {
        if (now - card.withdrawnAt > WITHDRAWN_KEEP_S * 1000) {
          card.el.remove();
          cards.delete(card.id);
        }
        continue;
      }
      open++;
      if (card.deadline === null) {
        card.countdown.textContent = 'no timeout known';
        continue;
      }
      const left = Math.max(0, Math.round((card.deadline - now) / 1000));
      const text = left > 0 ? Math.floor(left / 60) + ':' + two(left % 60) + ' left' : 'timing out…';
      if (card.countdown.textContent !== text) card.countdown.textContent = text;
      card.countdown.classList.toggle('urgent', left <= URGENT_S);
    }
    $('approvals-count').textContent = open + ' pending';
    $('approvals-empty').hidden = cards.size > 0;
    approvalsDirty = false;
  }

  // ===========================================================================
  // The frame
  // ===========================================================================
  let secondTick = false;
  // Milliseconds spent in each part of render(), summed (for the bench and
  // for anyone asking "what is slow?" at the console).
  const timings = { machines: 0, log: 0, timeline: 0, rate: 0, other: 0 };
  let timelineTimer = 0;
  function timed(part, fn) {
    const t0 = performance.now();
    fn();
    timings[part] += performance.now() - t0;
  }

  function render() {
    frameQueued = false;
    counters.frames++;
    const now = nowS();
    const tick = secondTick;
    secondTick = false;
    advanceRate();
    // Canvases first: at the start of a frame style and layout are clean, so
    // the canvas text (which needs the canvas's computed font) forces no
    // recalculation; drawn after this frame's DOM writes, it would.
    if ((timelineDirty || tick) && performance.now() - lastTimelineDraw >= 250) {
      // The timeline moves with time: redrawn at most 4 times a second.
      timed('timeline', () => drawTimeline(now));
    } else if (timelineDirty && !timelineTimer) {
      timelineTimer = setTimeout(() => {
        timelineTimer = 0;
        requestRender();
      }, 260);
    }
    if (rateDirty) timed('rate', drawRate);
    timed('machines', () => renderMachines(now, tick));
    timed('log', renderLog);
    timed('other', () => {
      if (legendDirty) renderLegend();
      if (approvalsDirty || tick) renderApprovals();
      if (tick) updateRetryText();
      $('totals').textContent = machines.size + ' machines · ' + counters.events + ' events' +
        (counters.lastSeq ? ' · seq ' + counters.lastSeq : '');
    });
  }

  // Once a second: "N s ago", countdowns, the retry countdown, the charts.
  setInterval(() => {
    secondTick = true;
    requestRender();
  }, 1000);

  // ===========================================================================
  // Controls
  // ===========================================================================
  function storedName() {
    try { return localStorage.getItem('smws.decided_by') || ''; } catch (_) { return ''; }
  }
  $('decider').value = storedName();
  $('decider').addEventListener('input', () => {
    try { localStorage.setItem('smws.decided_by', deciderName()); } catch (_) { /* private mode */ }
  });
  $('machine-filter').addEventListener('input', (ev) => {
    machineFilter = ev.target.value.trim().toLowerCase();
    machineFilterDirty = true;
    requestRender();
    filterChanged();
  });
  $('machines-body').addEventListener('click', (ev) => {
    const button = ev.target.closest('button.hist-button');
    if (!button) return;
    const r = table.pool.find((p) => p.histButton === button);
    if (r && r.m) openHistory(r.m.id);
  });
  $('view-back').addEventListener('click', closeHistory);
  $('log-type').addEventListener('change', (ev) => {
    log.typeFilter = ev.target.value;
    log.rebuild = true;
    requestRender();
  });
  $('log-text').addEventListener('input', (ev) => {
    log.textFilter = ev.target.value.trim().toLowerCase();
    log.rebuild = true;
    requestRender();
  });
  $('log-pause').addEventListener('click', () => setPaused(!log.paused));
  $('reconnect').addEventListener('click', () => {
    conn.attempt = 0;
    connect();
  });
  // A row's button shows that event's JSON, indented, below the log.
  $('log-body').addEventListener('click', (ev) => {
    const button = ev.target.closest('button.ev-button');
    if (!button) return;
    const r = log.pool.find((p) => p.button === button);
    if (r && r.entry) showLogEntry(r.entry);
  });
  $('log-detail-close').addEventListener('click', () => {
    $('log-detail').hidden = true;
    log.selected = null;
  });
  $('machines-wrap').addEventListener('scroll', (ev) => {
    table.scrollTop = ev.target.scrollTop;
    requestRender();
  }, { passive: true });
  new ResizeObserver((entries) => {
    for (const entry of entries) table.viewport = entry.contentRect.height;
    requestRender();
  }).observe($('machines-wrap'));
  $('log-wrap').addEventListener('scroll', (ev) => {
    log.scrollTop = ev.target.scrollTop;
    requestRender();
  }, { passive: true });
  new ResizeObserver((entries) => {
    for (const entry of entries) log.viewport = entry.contentRect.height;
    requestRender();
  }).observe($('log-wrap'));
  document.addEventListener('keydown', (ev) => {
    const target = ev.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement;
    if (ev.key === 'Escape' && typing && !target.closest('.card')) {
      target.blur();
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === '/') {
      ev.preventDefault();
      $('machine-filter').focus();
    } else if (ev.key === 'p') {
      setPaused(!log.paused);
    }
  });

  window.smwsDashboard = Object.freeze({
    counters: () => Object.assign({}, counters, { logRows: log.view.length, logDomRows: $('log-body').childElementCount,
                                                  machines: machines.size, cards: cards.size,
                                                  stateColours: stateColours.size, legendStates: legendStates.length }),
    timings: () => Object.assign({}, timings),
    // The log's rows as their JSON text, newest first (only some are in the DOM).
    logRows: () => log.view.map((e) => ({ type: e.type, kind: e.kind, raw: e.raw, note: e.note, mark: e.mark })),
    serverFilter: () => ({ machines: view.machines.slice(), history: view.history, awaiting: view.awaiting }),
    url: socketUrl,
  });

  renderServerFilter();
  connect();
  requestRender();
})();
