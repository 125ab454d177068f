// moat's passkey buttons. A button with data-passkey="create" (add a
// passkey) or data-passkey="get" (sign in, or prove a second factor) runs
// one WebAuthn ceremony through moat's JSON endpoints:
//
//   POST data-begin  -> {options, state}  (options for navigator.credentials)
//   POST data-finish <- {state, credential, name} -> {redirect}
//
// Both carry the page's CSRF token (data-csrf) in X-CSRF-Token, and the
// page's return_to (data-return-to) in the query, as moat's forms do.
// Buttons stay hidden where the browser has no WebAuthn. On the login page
// (data-conditional names the email field) the browser may also offer
// passkeys in the field's autofill. Loaded as a file: moat's pages allow no
// inline script.
(function () {
  "use strict";

  function toB64url(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromB64url(str) {
    var s = str.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return Object.assign({}, d, { id: fromB64url(d.id) });
    });
  }

  // The JSON options as navigator.credentials takes them: the browser's own
  // parser where it has one, else by hand.
  function creationOptions(o) {
    if (window.PublicKeyCredential.parseCreationOptionsFromJSON) {
      return window.PublicKeyCredential.parseCreationOptionsFromJSON(o);
    }
    var user = Object.assign({}, o.user, { id: fromB64url(o.user.id) });
    return Object.assign({}, o, { challenge: fromB64url(o.challenge), user: user, excludeCredentials: descriptors(o.excludeCredentials) });
  }

  function requestOptions(o) {
    if (window.PublicKeyCredential.parseRequestOptionsFromJSON) {
      return window.PublicKeyCredential.parseRequestOptionsFromJSON(o);
    }
    return Object.assign({}, o, { challenge: fromB64url(o.challenge), allowCredentials: descriptors(o.allowCredentials) });
  }

  // The credential as JSON: the browser's toJSON where it has one.
  function credentialJSON(c) {
    if (typeof c.toJSON === "function") return c.toJSON();
    var r = c.response, out = { id: c.id, rawId: toB64url(c.rawId), type: c.type, authenticatorAttachment: c.authenticatorAttachment, clientExtensionResults: c.getClientExtensionResults(), response: { clientDataJSON: toB64url(r.clientDataJSON) } };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      if (r.userHandle) out.response.userHandle = toB64url(r.userHandle);
    }
    return out;
  }

  // A refusal carries moat's own sentence (in the page's language).
  function post(btn, url, body) {
    var rt = btn.dataset.returnTo;
    if (rt) url += "?return_to=" + encodeURIComponent(rt);
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": btn.dataset.csrf },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var e = new Error(data.message || btn.dataset.msgFailed);
          e.moat = true;
          throw e;
        }
        return data;
      });
    });
  }

  function showError(btn, err) {
    var box = document.getElementById(btn.dataset.error);
    if (!box) return;
    var msg = err && err.moat ? err.message : btn.dataset.msgFailed;
    if (err && (err.name === "NotAllowedError" || err.name === "AbortError")) msg = btn.dataset.msgCancelled;
    if (err && err.name === "InvalidStateError") msg = btn.dataset.msgExists || msg;
    box.textContent = msg;
    box.hidden = false;
  }

  function extra(btn) {
    var body = {};
    if (btn.dataset.nameInput) {
      var input = document.getElementById(btn.dataset.nameInput);
      if (input) body.name = input.value;
    }
    return body;
  }

  // The autofill request on the login page, if any, and its end: a button
  // press cancels it and waits for it to end before asking again, as a
  // browser runs one request at a time.
  var conditional = null, conditionalEnded = Promise.resolve();

  // ceremony runs btn's ceremony; an autofill request passes its mediation
  // and the signal that cancels it.
  function ceremony(btn, mediation, signal) {
    return post(btn, btn.dataset.begin, {}).then(function (begun) {
      var o = begun.options.publicKey;
      if (btn.dataset.passkey === "create") {
        return navigator.credentials.create({ publicKey: creationOptions(o) }).then(function (c) { return [begun, c]; });
      }
      var req = { publicKey: requestOptions(o) };
      if (mediation) {
        if (signal.aborted) throw new DOMException("cancelled", "AbortError");
        req.mediation = mediation;
        req.signal = signal;
      }
      return navigator.credentials.get(req).then(function (c) { return [begun, c]; });
    }).then(function (pair) {
      if (!pair[1]) throw new DOMException("no credential", "NotAllowedError");
      var body = extra(btn);
      body.state = pair[0].state;
      body.credential = credentialJSON(pair[1]);
      return post(btn, btn.dataset.finish, body);
    }).then(function (done) {
      window.location.assign(done.redirect);
    });
  }

  function wire(btn) {
    btn.hidden = false;
    btn.addEventListener("click", function () {
      if (conditional) {
        conditional.abort();
        conditional = null;
      }
      var box = document.getElementById(btn.dataset.error);
      if (box) box.hidden = true;
      btn.disabled = true;
      conditionalEnded.then(function () { return ceremony(btn); }).catch(function (err) {
        btn.disabled = false;
        showError(btn, err);
      });
    });
  }

  function autofill(btn) {
    var pkc = window.PublicKeyCredential;
    if (!btn.dataset.conditional || !pkc.isConditionalMediationAvailable) return;
    pkc.isConditionalMediationAvailable().then(function (ok) {
      if (!ok) return;
      conditional = new AbortController();
      conditionalEnded = ceremony(btn, "conditional", conditional.signal).catch(function (err) {
        if (err && err.name !== "AbortError") showError(btn, err);
      });
    });
  }

  // A page with several buttons loads this file once per button: wire once.
  if (window.moatPasskeys) return;
  window.moatPasskeys = true;

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    var buttons = document.querySelectorAll("[data-passkey]");
    for (var i = 0; i < buttons.length; i++) {
      wire(buttons[i]);
      autofill(buttons[i]);
    }
  });
})();
