/* Passkeys (WebAuthn) for the Compte unique métropolitain – plain JavaScript, no build step.
 *
 * Every <form data-webauthn="register|authenticate" data-options-url="…" action="…"> is
 * hidden in the HTML and only shown here when the browser supports WebAuthn, so pages
 * degrade to their other methods without JavaScript. On submit: POST to the options URL,
 * call navigator.credentials.create()/get(), POST the result as JSON to the form's action,
 * then follow the returned {"redirect": url}. The CSRF token comes from the form's hidden
 * input (the CSRF cookie is HttpOnly). Messages are announced by a role="status" paragraph.
 */
(function () {
  "use strict";

  function supported() {
    return Boolean(window.PublicKeyCredential && navigator.credentials && window.fetch);
  }

  function toBuffer(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) {
      base64 += "=";
    }
    var binary = window.atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return window.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    options.challenge = toBuffer(options.challenge);
    options.user.id = toBuffer(options.user.id);
    (options.excludeCredentials || []).forEach(function (credential) {
      credential.id = toBuffer(credential.id);
    });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBuffer(options.challenge);
    (options.allowCredentials || []).forEach(function (credential) {
      credential.id = toBuffer(credential.id);
    });
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toBase64url(response.clientDataJSON) }
    };
    if (credential.authenticatorAttachment) {
      json.authenticatorAttachment = credential.authenticatorAttachment;
    }
    if (response.attestationObject) {
      json.response.attestationObject = toBase64url(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    }
    if (response.authenticatorData) {
      json.response.authenticatorData = toBase64url(response.authenticatorData);
      json.response.signature = toBase64url(response.signature);
      json.response.userHandle = response.userHandle ? toBase64url(response.userHandle) : null;
    }
    return json;
  }

  function postJSON(url, body, token, fallbackMessage) {
    return window
      .fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token },
        body: JSON.stringify(body || {})
      })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return {};
          })
          .then(function (data) {
            if (!response.ok) {
              throw new Error(data.detail || fallbackMessage);
            }
            return data;
          });
      });
  }

  function setUp(form) {
    var mode = form.getAttribute("data-webauthn");
    var status = form.querySelector(".webauthn-status");
    var button = form.querySelector("button[type=submit]");
    var tokenInput = form.querySelector("input[name=csrfmiddlewaretoken]");
    var nextInput = form.querySelector("input[name=next]");
    var nameInput = form.querySelector("input[name=name]");

    form.hidden = false;

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var token = tokenInput ? tokenInput.value : "";
      var fallback = form.getAttribute("data-error-message");
      status.textContent = form.getAttribute("data-wait-message");
      button.disabled = true;
      postJSON(form.getAttribute("data-options-url"), {}, token, fallback)
        .then(function (options) {
          if (mode === "register") {
            return navigator.credentials.create({ publicKey: creationOptions(options) });
          }
          return navigator.credentials.get({ publicKey: requestOptions(options) });
        })
        .then(function (credential) {
          var body = { credential: credentialJSON(credential) };
          if (nextInput) {
            body.next = nextInput.value;
          }
          if (nameInput) {
            body.name = nameInput.value;
          }
          return postJSON(form.action, body, token, fallback);
        })
        .then(function (result) {
          window.location.assign(result.redirect);
        })
        .catch(function (error) {
          var cancelled = error && (error.name === "NotAllowedError" || error.name === "AbortError");
          status.textContent = cancelled
            ? form.getAttribute("data-cancelled-message")
            : error && error.name === "Error" && error.message
              ? error.message
              : fallback;
          button.disabled = false;
        });
    });
  }

  function init() {
    if (!supported()) {
      return;
    }
    Array.prototype.forEach.call(document.querySelectorAll("form[data-webauthn]"), setUp);
    Array.prototype.forEach.call(document.querySelectorAll("[data-webauthn-section]"), function (section) {
      section.hidden = false;
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-webauthn-unsupported]"), function (note) {
      note.hidden = true;
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
