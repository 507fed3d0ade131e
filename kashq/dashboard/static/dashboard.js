// kashq dashboard: live refresh of the open screen, confirmations, and selections.
// No library; the page works without this script (forms post, links link).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.getElementById("main");
  var every = live && live.dataset.refresh ? parseFloat(live.dataset.refresh) * 1000 : 0;
  var failures = 0;

  function refresh() {
    if (document.visibilityState !== "visible" || busy()) {
      return schedule();
    }
    fetch(window.location.href, { headers: { "X-Kashq-Live": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          window.location.reload();  // signed out: the page itself asks to sign in again
          throw new Error("signed out");
        }
        if (!response.ok && response.status !== 503) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        main.innerHTML = html;
        failures = 0;
        live.classList.remove("stale");
        live.textContent = "live · " + new Date().toLocaleTimeString();
        wire(main);
      })
      .catch(function () {
        failures += 1;
        live.classList.add("stale");
        live.textContent = "reconnecting";
      })
      .then(schedule);
  }

  function schedule() {
    // Back off while the server does not answer: at most one request every 30 s.
    window.setTimeout(refresh, Math.min(every * Math.pow(2, failures), 30000));
  }

  function busy() {
    // Never replace a screen while someone is typing in it or has ticked boxes.
    var active = document.activeElement;
    if (active && main.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) {
      return true;
    }
    return main.querySelector("input[type=checkbox]:checked") !== null;
  }

  function wire(root) {
    root.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
      });
    });
    root.querySelectorAll("[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        var name = box.dataset.selectAll;
        box.form.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (each) {
          each.checked = box.checked;
        });
      });
    });
    root.querySelectorAll("[data-needs-selection]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        var name = button.dataset.needsSelection;
        if (!button.form.querySelector("input[type=checkbox][name='" + name + "']:checked")) {
          event.preventDefault();
          window.alert("Select some jobs first.");
        }
      });
    });
  }

  wire(document);
  if (every > 0) { schedule(); }
})();
