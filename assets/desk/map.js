// Location map for the citizen form (pick a point) and the report page (show it).
// The map only appears once a tile has loaded; with no tile server reachable (an offline
// desk) it stays hidden and the plain latitude/longitude fields are the way in.
(function () {
  "use strict";
  if (!window.L) return;
  document.querySelectorAll(".js-map").forEach(function (box) {
    var d = box.dataset;
    var lat = parseFloat(d.lat), lon = parseFloat(d.lon), zoom = parseInt(d.zoom || "13", 10);
    if (!isFinite(lat) || !isFinite(lon)) return;
    var scope = box.closest("fieldset, section") || document;
    var offline = scope.querySelector(".map-offline-note");
    var hint = scope.querySelector(".map-hint");
    var latIn = document.getElementById("lat"), lonIn = document.getElementById("lon");
    var pick = d.pick === "1";
    var settled = false;

    // Built on a detached-looking box: shown only when tiles arrive.
    box.classList.add("map-ready");
    box.style.visibility = "hidden";
    var map = L.map(box, { scrollWheelZoom: false }).setView([lat, lon], zoom);
    var layer = L.tileLayer(d.tiles, { maxZoom: 19, attribution: d.attribution });
    var marker = null;

    function giveUp() {
      if (settled) return;
      settled = true;
      map.remove();
      box.classList.remove("map-ready");
      box.style.visibility = "";
      if (offline) offline.hidden = false;
    }
    layer.on("tileload", function () {
      if (settled) return;
      settled = true;
      box.style.visibility = "";
      if (hint && pick) hint.hidden = false;
      map.invalidateSize();
    });
    layer.on("tileerror", giveUp);
    setTimeout(giveUp, 8000);
    layer.addTo(map);

    function place(ll) {
      if (marker) marker.setLatLng(ll); else marker = L.marker(ll).addTo(map);
    }
    if (!pick) {
      place([lat, lon]);
      return;
    }
    function fromInputs() {
      var a = parseFloat((latIn.value || "").replace(",", ".")), b = parseFloat((lonIn.value || "").replace(",", "."));
      if (isFinite(a) && isFinite(b)) place([a, b]);
    }
    fromInputs();
    map.on("click", function (e) {
      place(e.latlng);
      latIn.value = e.latlng.lat.toFixed(6);
      lonIn.value = e.latlng.lng.toFixed(6);
    });
    latIn.addEventListener("change", fromInputs);
    lonIn.addEventListener("change", fromInputs);
  });
})();
