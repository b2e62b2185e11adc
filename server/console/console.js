// Outpost technician console: the little script a page needs to update itself.
// Everything works without it; it only refreshes panels, tails the log and keeps a
// submitted form from being sent twice.
"use strict";

// A panel with data-refresh="SECONDS" reloads its own content from the same URL.
function refreshPanels() {
  document.querySelectorAll("[data-refresh]").forEach(function (panel) {
    var every = Math.max(2, parseInt(panel.getAttribute("data-refresh"), 10) || 10);
    setInterval(function () {
      if (document.hidden) return;
      fetch(location.href, { headers: { "X-Console-Partial": panel.id }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) return;
          panel.innerHTML = html;
          panel.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () {});
    }, every * 1000);
  });
}

// A form with data-once disables its buttons once submitted: a double click sends
// one request (the server's idempotency key covers a resubmission anyway).
function onceForms() {
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (form.getAttribute("data-sent")) { e.preventDefault(); return; }
      form.setAttribute("data-sent", "1");
      setTimeout(function () {
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  });
}

// A JSON log line as "time LEVEL target: message key=value ..."; as is when not JSON.
function readable(line) {
  var v;
  try { v = JSON.parse(line); } catch (e) { return line; }
  if (!v || typeof v !== "object") return line;
  var out = [(v.timestamp || "").replace("T", " ").slice(0, 23), v.level || "", (v.target || "") + ":", v.message || ""];
  Object.keys(v).forEach(function (k) {
    if (["timestamp", "level", "target", "message"].indexOf(k) < 0) out.push(k + "=" + JSON.stringify(v[k]));
  });
  return out.join(" ");
}

// The log page: server-sent events into a list, newest last, at most 500 lines.
function logTail() {
  var out = document.getElementById("log-lines");
  var form = document.getElementById("log-filter");
  if (!out || !form || !window.EventSource) return;
  var source = null;
  function start() {
    if (source) source.close();
    var q = new URLSearchParams(new FormData(form)).toString();
    source = new EventSource("/console/logs/stream?" + q);
    source.onmessage = function (e) {
      var li = document.createElement("li");
      li.textContent = readable(e.data);
      li.setAttribute("translate", "no");
      out.appendChild(li);
      while (out.children.length > 500) out.removeChild(out.firstChild);
      out.setAttribute("data-lines", String(out.children.length));
    };
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    out.textContent = "";
    start();
  });
  start();
}

document.addEventListener("DOMContentLoaded", function () {
  refreshPanels();
  onceForms();
  logTail();
});
