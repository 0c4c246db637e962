// simpang desk: the dashboard's live feed (server-sent events) and its counters.
// Builds nodes with textContent only: nothing from the server is parsed as HTML.
(function () {
  "use strict";
  var feed = document.getElementById("feed");
  var live = document.getElementById("live-status");
  if (!feed || !live || !window.EventSource) return;

  function setState(state, text) {
    live.setAttribute("data-state", state);
    var t = live.querySelector(".live-text");
    if (t) t.textContent = text;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  var COLOUR = { red: "red", yellow: "yellow", green: "green", grey: "grey" };

  function item(ev) {
    var a = el("a", "feed-item fresh");
    a.href = "/reports/" + encodeURIComponent(ev.ticket);
    a.setAttribute("data-ticket", ev.ticket);
    if (ev.snapshot) {
      var img = el("img", "feed-thumb");
      img.src = "/attachments/" + ev.snapshot;
      img.alt = "Cuplikan " + ev.ticket;
      a.appendChild(img);
    } else {
      a.appendChild(el("div", "feed-thumb feed-thumb-empty", "Tanpa cuplikan"));
    }
    var body = el("div", "feed-body");
    body.appendChild(el("div", "feed-title", ev.title));
    var m1 = el("div", "feed-meta");
    m1.appendChild(el("span", "", ev.site_name || ""));
    if (ev.level) {
      var hi = ["macet", "tinggi", "offline"].indexOf(ev.level) >= 0;
      var mid = ["padat", "sedang"].indexOf(ev.level) >= 0;
      m1.appendChild(el("span", "lvl" + (hi ? " lvl-high" : mid ? " lvl-mid" : ""), ev.level));
    }
    if (ev.event === "incident_end") m1.appendChild(el("span", "cleared", "sudah normal"));
    body.appendChild(m1);
    var m2 = el("div", "feed-meta");
    var badge = el("span", "badge badge-" + (COLOUR[ev.colour] || "grey"));
    badge.appendChild(el("span", "dot"));
    badge.appendChild(document.createTextNode(ev.status_label));
    m2.appendChild(badge);
    m2.appendChild(el("span", "muted", ev.at_label));
    body.appendChild(m2);
    a.appendChild(body);
    return a;
  }

  var refreshTimer = null;
  function refreshCounts() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      var period = (document.querySelector(".kpis") || {}).dataset ? document.querySelector(".kpis").dataset.period : "all";
      fetch("/api/dashboard?period=" + encodeURIComponent(period || "all"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) return;
          var v = { total: d.total, open: d.open, done: d.done, overdue: d.overdue, red: d.red, yellow: d.yellow, green: d.green, grey: d.grey,
                    sla: d.sla_compliance === null ? "—" : Math.round(d.sla_compliance) + "%" };
          Object.keys(v).forEach(function (k) {
            document.querySelectorAll('[data-kpi="' + k + '"]').forEach(function (n) { n.textContent = v[k]; });
          });
        })
        .catch(function () {});
    }, 500);
  }

  function onIncident(msg) {
    var ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    var old = feed.querySelector('[data-ticket="' + CSS.escape(ev.ticket) + '"]');
    var node = item(ev);
    if (old) old.remove();
    var empty = feed.querySelector(".feed-empty");
    if (empty) empty.remove();
    feed.insertBefore(node, feed.firstChild);
    while (feed.children.length > 20) feed.removeChild(feed.lastChild);
    refreshCounts();
  }

  var es = new EventSource("/api/events");
  es.onopen = function () { setState("open", "langsung"); };
  es.onerror = function () { setState("error", "terputus, menyambung ulang…"); };
  ["incident_new", "incident_update", "incident_end"].forEach(function (t) { es.addEventListener(t, onIncident); });
  es.addEventListener("status", refreshCounts);
})();
