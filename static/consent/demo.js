/* Demo partner page: shows what the cookie widget's `cum:consent` event allows. */
(function () {
  "use strict";
  var en = /^en\b/i.test(document.documentElement.getAttribute("lang") || "");
  var words = en ? { on: "allowed", off: "not allowed", pending: " (no choice yet: refused)" }
    : { on: "autorisé", off: "non autorisé", pending: " (pas encore de choix : refusé)" };
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
