/* Demo partner page: shows what the cookie widget's `cum:consent` event allows. */
(function () {
  "use strict";
  var en = /^en\b/i.test(document.documentElement.getAttribute("lang") || "");
  var words = en ? { on: "allowed", off: "not allowed", pending: " (no choice yet: refused)",
    nothing: "Nothing: browsing personalisation is not allowed in this browser.",
    none: "Nothing inferred yet.", because: "allowed by", counted: "Page view counted for: " }
    : { on: "autorisé", off: "non autorisé", pending: " (pas encore de choix : refusé)",
      nothing: "Rien : la personnalisation à partir de la navigation n'est pas autorisée dans ce navigateur.",
      none: "Rien de déduit pour l'instant.", because: "autorisé par", counted: "Visite comptée pour : " };
  function showPersonalisation(data) {
    var box = document.getElementById("personalisation-result");
    box.textContent = "";
    if (!data) {
      box.textContent = words.nothing;
      return;
    }
    var items = data.items || [];
    if (!items.length) {
      box.textContent = words.none;
      return;
    }
    var list = document.createElement("ul");
    items.forEach(function (item) {
      var line = document.createElement("li");
      var value = item.value && item.value.label ? item.value.label : JSON.stringify(item.value);
      line.textContent = value + " (" + words.because + " " + item.reason.purpose + ")";
      list.appendChild(line);
    });
    box.appendChild(list);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("personalisation-show");
    if (button) {
      button.addEventListener("click", function () {
        if (!window.CumConsent) {
          return;
        }
        window.CumConsent.personalisation().then(showPersonalisation).catch(function () {
          showPersonalisation(null);
        });
      });
    }
  });
  document.addEventListener("cum:page-view", function (event) {
    document.documentElement.setAttribute("data-cum-page-view", event.detail.counted.join(" "));
  });
  // Loaded before widget.js so that no cum:consent event is missed. The count of events
  // received (and whether the browser was attached) is also written into the page, for
  // readers (and tests) that wait on the page rather than on time.
  window.cumConsentEvents = [];
  document.addEventListener("cum:linked", function (event) {
    document.documentElement.setAttribute("data-cum-linked", event.detail.linked ? "yes" : "no");
  });
  document.addEventListener("cum:consent", function (event) {
    var detail = event.detail;
    window.cumConsentEvents.push(detail);
    document.documentElement.setAttribute("data-cum-events", String(window.cumConsentEvents.length));
    var list = document.getElementById("consent-state");
    var log = document.getElementById("consent-log");
    if (!list) {
      return;
    }
    list.textContent = "";
    Object.keys(detail.choices).forEach(function (code) {
      var item = document.createElement("li");
      item.textContent = code + " : " + (detail.choices[code] ? words.on : words.off) + (detail.decided ? "" : words.pending);
      list.appendChild(item);
    });
    log.textContent = JSON.stringify(detail, null, 2);
  });
})();
