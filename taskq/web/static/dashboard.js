// taskq dashboard: live refresh of the [data-live] sections and confirmation
// of destructive actions. Every page reads without this script.
(function () {
  "use strict";

  // Confirmation: a form with data-confirm asks first; without this script
  // the server shows a confirmation page instead.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var field = form.querySelector("input[name=confirmed]");
    if (field) field.value = "1";
  });

  var every = parseFloat(document.body.getAttribute("data-refresh") || "0");
  var status = document.getElementById("live-status");
  var toggle = document.getElementById("live-toggle");
  if (!(every > 0) || !document.querySelector("[data-live]")) return;

  var paused = false;
  var timer = null;

  function stamp(text) {
    if (status) status.textContent = text;
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(refresh, every * 1000);
  }

  // Fetch this page again and swap in its live sections. DOMParser runs no
  // script of the fetched page; the server escaped every value in it.
  function refresh() {
    fetch(window.location.href, { headers: { "X-Taskq-Refresh": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (section) {
          var fresh = doc.getElementById(section.id);
          if (fresh) section.replaceWith(document.importNode(fresh, true));
        });
        stamp("updated " + new Date().toLocaleTimeString());
      })
      .catch(function (err) {
        stamp("update failed (" + err.message + "), retrying");
      })
      .then(schedule);
  }

  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.textContent = paused ? "Resume updates" : "Pause updates";
      stamp(paused ? "updates paused" : "");
      schedule();
    });
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !paused) refresh();
  });
  schedule();
})();
