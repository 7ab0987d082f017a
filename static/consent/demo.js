/* Demo partner page: shows what the cookie widget's `cum:consent` event allows. */
(function () {
  "use strict";
  var en = /^en\b/i.test(document.documentElement.getAttribute("lang") || "");
  var words = en ? { on: "allowed", off: "not allowed", pending: " (no choice yet: refused)" }
    : { on: "autorisé", off: "non autorisé", pending: " (pas encore de choix : refusé)" };
  window.cumConsentEvents = [];
  document.addEventListener("cum:consent", function (event) {
    var detail = event.detail;
    window.cumConsentEvents.push(detail);
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
