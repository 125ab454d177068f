// The demo dashboard's client: switches the display mode over a WebSocket
// instead of reloading the page. Without this script the radio still works
// as a plain form GET (?mode=bar).
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  var form, view, status, sock = null, retry = 500, pending = null;

  function setState(state, text) {
    root.setAttribute("data-ws", state);
    if (status) status.textContent = text;
  }

  function wsURL() {
    // Same origin, same directory as the page, so the demo also works
    // mounted under a path prefix.
    var u = new URL("ws", location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    u.search = "";
    u.hash = "";
    return u.href;
  }

  function connect() {
    setState("connecting", "Connecting…");
    var s = new WebSocket(wsURL());
    sock = s;
    s.onopen = function () {
      retry = 500;
      setState("open", "Live");
      if (pending) {
        send(pending);
      }
    };
    s.onmessage = function (ev) {
      var msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (msg.error) {
        setState("open", msg.error);
        return;
      }
      if (typeof msg.html !== "string" || !msg.mode) return;
      view.innerHTML = msg.html;
      view.setAttribute("data-mode", msg.mode);
      if (pending === msg.mode) pending = null;
      history.replaceState(null, "", "?mode=" + encodeURIComponent(msg.mode));
    };
    s.onclose = function () {
      if (sock !== s) return;
      sock = null;
      setState("closed", "Reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  function send(mode) {
    pending = mode;
    if (sock && sock.readyState === WebSocket.OPEN) {
      sock.send(JSON.stringify({ mode: mode }));
      return true;
    }
    return false;
  }

  function start() {
    form = document.getElementById("mode-form");
    view = document.getElementById("view");
    status = document.getElementById("ws-status");
    if (!form || !view || !("WebSocket" in window)) return;
    form.addEventListener("change", function (ev) {
      var t = ev.target;
      if (!t || t.name !== "mode") return;
      if (!send(t.value) && !sock) {
        // No socket and none coming: fall back to the plain form.
        form.submit();
      }
    });
    form.addEventListener("submit", function (ev) {
      var checked = form.querySelector("input[name=mode]:checked");
      if (checked && send(checked.value)) ev.preventDefault();
    });
    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
