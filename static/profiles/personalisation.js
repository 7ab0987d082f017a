/* Mon compte › Personnalisation: the quartier list only for a commune that has quartiers.
   Progressive enhancement: without this script the list is always shown and the server
   checks that the quartier belongs to the commune. A hidden list is disabled, so it is not
   sent (an empty quartier). */
(function () {
  "use strict";
  var commune = document.getElementById("id_commune");
  var field = document.getElementById("quartier-field");
  var select = document.getElementById("id_quartier");
  if (!commune || !field || !select) {
    return;
  }
  function update() {
    var any = false;
    var groups = select.querySelectorAll("optgroup");
    for (var i = 0; i < groups.length; i += 1) {
      var match = groups[i].getAttribute("data-commune") === commune.value;
      groups[i].hidden = !match;
      groups[i].disabled = !match;
      any = any || match;
    }
    var chosen = select.options[select.selectedIndex];
    if (chosen && chosen.parentNode.tagName === "OPTGROUP" && chosen.parentNode.disabled) {
      select.value = "";
    }
    field.hidden = !any;
    select.disabled = !any;
  }
  commune.addEventListener("change", update);
  update();
})();
