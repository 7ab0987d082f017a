/*!
 * Compte unique métropolitain – cookie consent widget (Nantes Métropole).
 * Plain JavaScript, no dependency, no build step. Embed on a partner page with:
 *   <script src="https://<issuer>/static/consent/widget.js" data-client-id="…" defer></script>
 * Optional: any element with the attribute data-cum-consent-manage opens the choices dialog
 * (otherwise a "Gérer mes cookies" button is added at the end of the page).
 * The partner listens to the `cum:consent` event on `document`:
 *   document.addEventListener("cum:consent", function (e) { e.detail.choices["personalisation-browsing"] … });
 * Silence is refusal: until the visitor chooses, every purpose that needs consent is false.
 * Attaching the visitor's choices to their account after sign-in: add
 * consent_browser_id=<event.detail.browserId> to the authorization request; the code redirect
 * then carries consent_link_ticket=<ticket>, which this widget redeems on the page it lands on (or pass
 * it to window.CumConsent.link(ticket)) with the browser's secret, kept in this site's storage
 * and never shown to the page. See docs/partners.md.
 * Browsing-based personalisation: a page declares its themes with data-page-themes="culture sport"
 * on this script tag (or calls window.CumConsent.pageView(["culture"])); the view is sent only
 * while the visitor allows "personalisation-browsing", with the browser's id and secret.
 * window.CumConsent.personalisation() resolves to what the portal may use for this browser.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.getAttribute("data-client-id") || window.CumConsent) {
    return;
  }
  var clientId = script.getAttribute("data-client-id");
  var base = new URL(script.src, document.baseURI);
  var api = base.origin + "/consent/api/v1/cookie/";
  var profilesApi = base.origin + "/profiles/api/v1/";
  var BROWSING = "personalisation-browsing";
  var lang = /^en\b/i.test(document.documentElement.getAttribute("lang") || "") ? "en" : "fr";
  var storeKey = "cum-consent:" + clientId;
  var P = "cum-cc-";

  var TEXT = {
    fr: {
      title: "Vos choix sur les cookies",
      intro: "Avec votre accord, {partner} et {controller} (responsable de traitement) utilisent des cookies pour : {purposes}.",
      noEffect: "Refuser n’a aucune conséquence sur l’accès au service. Votre choix est conservé {months} mois et vous pouvez le modifier à tout moment avec « Gérer mes cookies ».",
      policy: "Politique de confidentialité",
      refuseAll: "Tout refuser",
      acceptAll: "Tout accepter",
      customise: "Personnaliser",
      dialogTitle: "Personnaliser mes choix",
      dialogIntro: "Choisissez finalité par finalité. Sans choix de votre part, rien n’est activé.",
      exempt: "Exemptée de consentement : active sauf si vous vous y opposez en la désactivant.",
      kept: "Choix conservé {months} mois.",
      recipients: "Destinataires : {list}.",
      controllers: "Responsable de traitement : {list}.",
      on: "Activé",
      off: "Désactivé",
      save: "Enregistrer mes choix",
      close: "Fermer",
      manage: "Gérer mes cookies",
      saved: "Vos choix ont été enregistrés.",
      failed: "Vos choix n’ont pas pu être enregistrés. Les cookies facultatifs restent désactivés ; réessayez plus tard.",
      unavailable: "Le service de gestion des cookies est indisponible : aucun cookie facultatif n’est activé.",
      and: " et "
    },
    en: {
      title: "Your cookie choices",
      intro: "With your agreement, {partner} and {controller} (the controller) use cookies to: {purposes}.",
      noEffect: "Refusing has no effect on your access to the service. Your choice is kept for {months} months and you can change it at any time with “Manage my cookies”.",
      policy: "Privacy policy",
      refuseAll: "Refuse all",
      acceptAll: "Accept all",
      customise: "Customise",
      dialogTitle: "Customise my choices",
      dialogIntro: "Choose purpose by purpose. Unless you choose, nothing is turned on.",
      exempt: "Exempt from consent: on unless you object by turning it off.",
      kept: "Choice kept for {months} months.",
      recipients: "Recipients: {list}.",
      controllers: "Controller: {list}.",
      on: "On",
      off: "Off",
      save: "Save my choices",
      close: "Close",
      manage: "Manage my cookies",
      saved: "Your choices have been saved.",
      failed: "Your choices could not be saved. Optional cookies stay off; please try again later.",
      unavailable: "The cookie consent service is unavailable: no optional cookie is turned on.",
      and: " and "
    }
  }[lang];

  var state = {
    config: null,
    browserId: null,
    browserSecret: null,
    choices: {},
    decided: false,
    expiresAt: null,
    receiptIds: [],
    busy: false,
    opener: null
  };
  var ui = { banner: null, dialog: null, manage: null, live: null, bannerStatus: null, dialogStatus: null };

  // --- helpers -------------------------------------------------------------------------------

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (match, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ? values[key] : match;
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") {
        node.textContent = attrs.text;
      } else if (attrs[name] !== null && attrs[name] !== undefined && attrs[name] !== false) {
        node.setAttribute(name, attrs[name] === true ? "" : attrs[name]);
      }
    });
    (children || []).forEach(function (child) {
      if (child) {
        node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      }
    });
    return node;
  }

  function purposes() {
    return (state.config && state.config.purposes) || [];
  }

  function consentPurposes() {
    return purposes().filter(function (p) { return p.requires_consent; });
  }

  function months(days) {
    return Math.max(1, Math.round(days / 30.4));
  }

  function keptMonths() {
    var days = consentPurposes().map(function (p) { return p.choice_kept_days; });
    return months(days.length ? Math.min.apply(null, days) : 183);
  }

  function defaults() {
    var choices = {};
    purposes().forEach(function (p) { choices[p.code] = !p.requires_consent; });
    return choices;
  }

  function load() {
    try {
      var raw = window.localStorage.getItem(storeKey);
      return raw ? JSON.parse(raw) : null;
    } catch (error) {
      return null;
    }
  }

  function save() {
    try {
      window.localStorage.setItem(storeKey, JSON.stringify({
        browserId: state.browserId,
        browserSecret: state.browserSecret,
        choices: state.choices,
        decided: state.decided,
        expiresAt: state.expiresAt,
        receiptIds: state.receiptIds
      }));
    } catch (error) {
      // Storage refused (private mode): the visitor will be asked again next time.
    }
  }

  function call(method, path, body) {
    var url = api + path + (path.indexOf("?") < 0 ? "?" : "&") + "client_id=" + encodeURIComponent(clientId);
    var init = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.title || String(response.status));
          error.problem = data;
          throw error;
        }
        return data;
      });
    });
  }

  function announce(message) {
    if (!ui.live) {
      return;
    }
    ui.live.textContent = "";
    window.setTimeout(function () { ui.live.textContent = message; }, 50);
  }

  function apply(source) {
    document.dispatchEvent(new CustomEvent("cum:consent", {
      detail: {
        choices: Object.assign({}, state.choices),
        decided: state.decided,
        browserId: state.browserId,
        expiresAt: state.expiresAt,
        receiptIds: state.receiptIds.slice(),
        source: source
      }
    }));
  }

  function focusables(root) {
    var selector = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";
    return Array.prototype.filter.call(root.querySelectorAll(selector), function (node) {
      return node.offsetWidth > 0 || node.offsetHeight > 0 || node === document.activeElement;
    });
  }

  // --- banner (first layer) ------------------------------------------------------------------

  function buildBanner() {
    var config = state.config;
    var controller = (config.controllers && config.controllers[0] && config.controllers[0].name) || "Nantes Métropole";
    var titles = consentPurposes().map(function (p) { return p.title[lang]; });
    var status = el("p", { "class": P + "status", role: "status" });
    var banner = el("div", {
      "class": P + "banner",
      role: "dialog",
      "aria-modal": "false",
      "aria-labelledby": P + "title",
      "aria-describedby": P + "intro",
      lang: lang
    }, [
      el("div", { "class": P + "inner" }, [
        el("h2", { "class": P + "title", id: P + "title", text: TEXT.title }),
        el("p", { id: P + "intro", text: format(TEXT.intro, {
          partner: config.partner.name,
          controller: controller,
          purposes: titles.join(TEXT.and).toLowerCase()
        }) }),
        el("p", {}, [
          format(TEXT.noEffect, { months: keptMonths() }) + " ",
          el("a", { href: config.policy_url, text: TEXT.policy })
        ]),
        el("div", { "class": P + "actions" }, [
          el("button", { type: "button", "class": P + "button", "data-action": "refuse", text: TEXT.refuseAll }),
          el("button", { type: "button", "class": P + "button", "data-action": "accept", text: TEXT.acceptAll })
        ]),
        el("button", {
          type: "button",
          "class": P + "link",
          "data-action": "customise",
          "aria-haspopup": "dialog",
          text: TEXT.customise
        }),
        status
      ])
    ]);
    banner.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-action]");
      if (!button || state.busy) {
        return;
      }
      var action = button.getAttribute("data-action");
      if (action === "customise") {
        openDialog(button);
      } else {
        var all = {};
        consentPurposes().forEach(function (p) { all[p.code] = action === "accept"; });
        submit(all, "banner", status);
      }
    });
    ui.bannerStatus = status;
    return banner;
  }

  function showBanner() {
    if (!ui.banner) {
      ui.banner = buildBanner();
      document.body.insertBefore(ui.banner, document.body.firstChild);
    }
    ui.banner.hidden = false;
    if (ui.manage) {
      ui.manage.hidden = true;
    }
  }

  function hideBanner() {
    if (ui.banner) {
      ui.banner.hidden = true;
    }
  }

  // --- dialog (second layer) -----------------------------------------------------------------

  function buildDialog() {
    var config = state.config;
    var list = el("ul", { "class": P + "purposes" });
    purposes().forEach(function (p, index) {
      var id = P + "purpose-" + index;
      var stateText = el("span", { "class": P + "state", "aria-hidden": "true" });
      var input = el("input", {
        type: "checkbox",
        role: "switch",
        id: id,
        name: p.code,
        "aria-describedby": id + "-description"
      });
      input.addEventListener("change", function () {
        stateText.textContent = input.checked ? TEXT.on : TEXT.off;
      });
      var notes = [p.description[lang]];
      notes.push(p.requires_consent ? format(TEXT.kept, { months: months(p.choice_kept_days) }) : TEXT.exempt);
      if (p.recipients && p.recipients.length) {
        notes.push(format(TEXT.recipients, { list: p.recipients.join(", ") }));
      }
      list.appendChild(el("li", { "class": P + "purpose" }, [
        el("div", { "class": P + "switch" }, [input, el("label", { "for": id, text: p.title[lang] }), stateText]),
        el("p", { id: id + "-description", "class": P + "description", text: notes.join(" ") })
      ]));
    });
    var controllers = (config.controllers || []).map(function (c) { return c.name + " (" + c.email + ")"; });
    var status = el("p", { "class": P + "status", role: "status" });
    var form = el("form", { "class": P + "form", novalidate: true }, [
      el("div", { "class": P + "dialog-head" }, [
        el("h2", { "class": P + "title", id: P + "dialog-title", text: TEXT.dialogTitle }),
        el("button", { type: "button", "class": P + "close", "data-action": "close", text: TEXT.close })
      ]),
      el("p", { text: TEXT.dialogIntro }),
      list,
      el("p", { "class": P + "description" }, [
        format(TEXT.controllers, { list: controllers.join(", ") }) + " ",
        el("a", { href: config.policy_url, text: TEXT.policy })
      ]),
      el("div", { "class": P + "actions" }, [
        el("button", { type: "submit", "class": P + "button", text: TEXT.save })
      ]),
      status
    ]);
    var dialog = el("dialog", {
      "class": P + "dialog",
      "aria-modal": "true",
      "aria-labelledby": P + "dialog-title",
      lang: lang
    }, [form]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (state.busy) {
        return;
      }
      var choices = {};
      purposes().forEach(function (p) {
        choices[p.code] = form.elements[p.code].checked;
      });
      submit(choices, "dialog", status);
    });
    dialog.addEventListener("click", function (event) {
      if (event.target.closest("button[data-action=close]")) {
        closeDialog();
      }
    });
    dialog.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        closeDialog();
      } else if (event.key === "Tab") {
        trapFocus(event, dialog);
      }
    });
    // Escape handled natively by <dialog> (cancel, then close): focus goes back all the same.
    dialog.addEventListener("close", restoreFocus);
    ui.dialogStatus = status;
    return dialog;
  }

  function trapFocus(event, root) {
    var nodes = focusables(root);
    if (!nodes.length) {
      return;
    }
    var first = nodes[0];
    var last = nodes[nodes.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  }

  function openDialog(opener) {
    if (!state.config) {
      return;
    }
    if (!ui.dialog) {
      ui.dialog = buildDialog();
      document.body.appendChild(ui.dialog);
    }
    var form = ui.dialog.querySelector("form");
    purposes().forEach(function (p) {
      var input = form.elements[p.code];
      input.checked = Boolean(state.choices[p.code]);
      input.dispatchEvent(new Event("change"));
    });
    ui.dialogStatus.textContent = "";
    state.opener = opener || document.activeElement;
    if (typeof ui.dialog.showModal === "function") {
      ui.dialog.showModal();
    } else {
      ui.dialog.setAttribute("open", "");
    }
    var first = form.querySelector("input");
    if (first) {
      first.focus();
    }
  }

  function closeDialog() {
    if (!ui.dialog || !ui.dialog.hasAttribute("open")) {
      return;
    }
    if (typeof ui.dialog.close === "function") {
      ui.dialog.close();
    } else {
      ui.dialog.removeAttribute("open");
      restoreFocus();
    }
  }

  function restoreFocus() {
    var target = state.opener;
    state.opener = null;
    if (!target || !document.contains(target) || (target.offsetWidth === 0 && target.offsetHeight === 0)) {
      target = ui.manage && !ui.manage.hidden ? ui.manage : null;
    }
    if (target && typeof target.focus === "function") {
      target.focus();
    }
  }

  // --- "Gérer mes cookies" -----------------------------------------------------------------

  function setUpManage() {
    var provided = document.querySelectorAll("[data-cum-consent-manage]");
    Array.prototype.forEach.call(provided, function (node) {
      node.addEventListener("click", function (event) {
        event.preventDefault();
        openDialog(node);
      });
    });
    if (!provided.length) {
      ui.manage = el("button", {
        type: "button",
        "class": P + "manage",
        "aria-haspopup": "dialog",
        lang: lang,
        text: TEXT.manage
      });
      ui.manage.hidden = true;
      ui.manage.addEventListener("click", function () { openDialog(ui.manage); });
      document.body.appendChild(ui.manage);
    }
  }

  function showManage() {
    if (ui.manage) {
      ui.manage.hidden = false;
    }
  }

  // --- recording ---------------------------------------------------------------------------

  function submit(choices, source, status) {
    state.busy = true;
    status.textContent = "";
    var wasInBanner = source === "banner";
    return postChoices(choices).then(function (data) {
      state.browserId = data.browser_id;
      if (data.browser_secret) {
        state.browserSecret = data.browser_secret;
      }
      state.choices = Object.assign({}, state.choices, choices);
      state.decided = true;
      state.expiresAt = data.expires_at;
      state.receiptIds = data.receipt_ids || [];
      save();
      hideBanner();
      showManage();
      closeDialog();
      if (wasInBanner && ui.manage) {
        ui.manage.focus();
      }
      announce(TEXT.saved);
      apply(source);
    }).catch(function () {
      // Nothing recorded: keep (or fall back to) refusal for every purpose that needs consent.
      Object.keys(choices).forEach(function (code) {
        if (choices[code] === false) {
          state.choices[code] = false;
        }
      });
      status.textContent = TEXT.failed;
      apply(source);
    }).then(function () {
      state.busy = false;
    });
  }

  function postChoices(choices) {
    var body = { client_id: clientId, choices: choices };
    // A browser id without its secret (kept by an older version of this widget) can never
    // be attached to an account: start afresh, the choices are being sent again anyway.
    if (state.browserId && state.browserSecret) {
      body.browser_id = state.browserId;
      body.browser_secret = state.browserSecret;
    }
    return call("POST", "choices", body).catch(function (error) {
      if (body.browser_id && error.problem && error.problem.code === "browser_secret_invalid") {
        state.browserId = null;
        state.browserSecret = null;
        return call("POST", "choices", { client_id: clientId, choices: choices });
      }
      throw error;
    });
  }

  // --- attaching this browser's choices to the resident's account ----------------------------

  function attachBrowser(ticket) {
    // The ticket (consent_link_ticket) comes from the end of the resident's own authorization; the id and
    // secret from this site's storage: together they prove this browser made the choices.
    var attempt = ticket && state.browserId && state.browserSecret ? call("POST", "attach", {
      client_id: clientId,
      browser_id: state.browserId,
      browser_secret: state.browserSecret,
      link_ticket: ticket
    }) : Promise.reject(new Error("nothing to attach"));
    return attempt.then(function () { return true; }, function () { return false; }).then(function (linked) {
      document.dispatchEvent(new CustomEvent("cum:linked", { detail: { linked: linked } }));
      return linked;
    });
  }

  function takeTicketFromAddress() {
    // Remove it from the address bar and history: it is used once, and must not leak further.
    var url = new URL(window.location.href);
    var ticket = url.searchParams.get("consent_link_ticket");
    if (ticket) {
      url.searchParams.delete("consent_link_ticket");
      try {
        window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
      } catch (error) {
        // Address bar left as it is: the ticket is spent once redeemed anyway.
      }
    }
    return ticket;
  }

  // --- browsing-based personalisation ------------------------------------------------------

  function browsingAllowed() {
    return Boolean(state.choices && state.choices[BROWSING] && state.browserId && state.browserSecret);
  }

  function postProfiles(path, body) {
    var payload = Object.assign({
      client_id: clientId,
      browser_id: state.browserId,
      browser_secret: state.browserSecret
    }, body || {});
    // client_id in the address too, so that the CORS preflight (JSON body) can be answered.
    return fetch(profilesApi + path + "?client_id=" + encodeURIComponent(clientId), {
      method: "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      credentials: "omit",
      cache: "no-store",
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.title || String(response.status));
          error.problem = data;
          throw error;
        }
        return data;
      });
    });
  }

  // One page view (its themes), only while the visitor allows browsing personalisation:
  // otherwise nothing at all is sent. Resolves to the server's answer, or null when not sent.
  function pageView(themes) {
    if (!browsingAllowed() || !themes || !themes.length) {
      return Promise.resolve(null);
    }
    return postProfiles("page-views", { site: window.location.hostname, themes: themes });
  }

  function personalisation() {
    if (!browsingAllowed()) {
      return Promise.resolve(null);
    }
    return postProfiles("personalisation");
  }

  function declaredThemes() {
    return (script.getAttribute("data-page-themes") || "").split(/\s+/).filter(Boolean);
  }

  function sendDeclaredPageView() {
    pageView(declaredThemes()).then(function (data) {
      if (data) {
        document.dispatchEvent(new CustomEvent("cum:page-view", { detail: { counted: data.counted || [] } }));
      }
    }).catch(function () {
      // Not counted (purpose refused on the server, network): nothing to do on the page.
    });
  }

  // --- start ---------------------------------------------------------------------------------

  function start() {
    ui.live = el("div", { "class": P + "visually-hidden", role: "status", "aria-live": "polite", lang: lang });
    document.body.appendChild(ui.live);
    var link = el("link", { rel: "stylesheet", href: new URL("widget.css", base).href });
    document.head.appendChild(link);
    setUpManage();

    var stored = load();
    state.browserId = (stored && stored.browserId) || null;
    state.browserSecret = (stored && stored.browserSecret) || null;
    var ticket = takeTicketFromAddress();
    // A page view waits for the attachment: once attached, the browser's views are the account's.
    var attached = ticket ? attachBrowser(ticket) : Promise.resolve(false);
    var pending = [call("GET", "config")];
    if (state.browserId) {
      pending.push(call("GET", "choices?browser_id=" + encodeURIComponent(state.browserId)).catch(function () {
        return null;
      }));
    }
    Promise.all(pending).then(function (results) {
      state.config = results[0];
      var server = results[1];
      state.choices = defaults();
      if (server && server.decided) {
        Object.assign(state.choices, server.choices);
        state.decided = true;
        state.expiresAt = server.expires_at;
        state.receiptIds = Object.keys(server.decisions || {}).map(function (code) {
          return server.decisions[code] && server.decisions[code].receipt_id;
        }).filter(Boolean);
        save();
        showManage();
      } else {
        state.decided = false;
        showBanner();
      }
      apply("init");
      attached.then(sendDeclaredPageView);
    }).catch(function () {
      state.choices = {};
      state.decided = false;
      announce(TEXT.unavailable);
      apply("init");
    });
  }

  window.CumConsent = {
    open: function () { openDialog(document.activeElement); },
    link: attachBrowser,
    choices: function () { return Object.assign({}, state.choices); },
    decided: function () { return state.decided; },
    pageView: pageView,
    personalisation: personalisation
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
