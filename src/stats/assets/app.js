// app.js - refreshes the figures of the mta dashboard from /api/stats every 5 s and
// runs the admin buttons (POST with the X-MTA-Request header). The pages are
// complete without it; it never inserts markup built from data (textContent only).
(function () {
  'use strict';
  var live = document.getElementById('live');

  function fmtBytes(v) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], u = 0;
    if (v < 1024) return v + ' B';
    while (v >= 1024 && u < 4) { v /= 1024; u++; }
    return v.toFixed(1) + ' ' + units[u];
  }
  function fmtDur(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), x = s % 60;
    if (d) return d + 'd ' + h + 'h ' + m + 'm';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + x + 's';
    return x + 's';
  }
  function fmt(f, v) {
    if (v === null || v === undefined) return 'unknown';
    switch (f) {
      case 'int': return String(v);
      case 'bytes': return fmtBytes(v);
      case 'dur': return fmtDur(v);
      case 'pct': return v.toFixed(1) + '%';
      case 'sec': return v.toFixed(2) + ' s';
      default: return String(v);
    }
  }
  function setMessages(list) {
    var box = document.getElementById('messages');
    if (!box) return;
    while (box.firstChild) box.removeChild(box.firstChild);
    if (!list.length) list = [null];
    list.forEach(function (m) {
      var div = document.createElement('div');
      div.className = 'alert ' + (m === null ? 'ok' : (m.indexOf('below 5%') >= 0 ? 'warn' : 'crit'));
      div.textContent = m === null ? 'All systems normal.' : m;
      box.appendChild(div);
    });
  }
  function apply(s) {
    var els = document.querySelectorAll('[data-k]');
    for (var i = 0; i < els.length; i++) {
      var k = els[i].getAttribute('data-k');
      if (k in s) els[i].textContent = fmt(els[i].getAttribute('data-f'), s[k]);
    }
    var bar = document.getElementById('freebar');
    if (bar && typeof s.data_volume_free_percent === 'number') {
      bar.value = s.data_volume_free_percent;
      bar.className = s.data_volume_free_percent < 1 ? 'crit' : (s.data_volume_free_percent < 5 ? 'low' : '');
    }
    setMessages(s.dashboard_messages || []);
  }
  function refresh() {
    fetch('/api/stats', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) { if (live) live.className = 'live on'; apply(s); })
      .catch(function () { if (live) live.className = 'live off'; });
  }
  if (document.body.getAttribute('data-page') === 'dashboard') {
    var bar = document.getElementById('freebar');
    if (bar) bar.className = bar.value < 1 ? 'crit' : (bar.value < 5 ? 'low' : '');
    refresh();
    setInterval(refresh, 5000);
  }

  function admin(action, id) {
    var url = '/api/' + action + (id ? '?id=' + encodeURIComponent(id) : '');
    return fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'X-MTA-Request': '1' } })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); });
  }
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest ? ev.target.closest('[data-action]') : null;
    if (!b) return;
    var action = b.getAttribute('data-action'), id = b.getAttribute('data-id');
    if (action === 'delete' && !window.confirm('Delete message ' + id + ' from the queue?')) return;
    b.disabled = true;
    admin(action, id).then(function (res) {
      if (!res.ok) { window.alert(res.body.error || 'Failed.'); b.disabled = false; return; }
      if (action === 'delete') window.location.href = '/queue';
      else window.location.reload();
    }, function () { window.alert('Request failed.'); b.disabled = false; });
  });
})();
