/// The web UI's script (served by `StaticAssets`; the pages' Content-Security-Policy runs no other).
/// It only enhances: every page works without it, but for live rows. Text it receives is set with
/// `textContent`, never parsed as markup.
enum WebScript {
    static let js = #"""
"use strict";
(function () {
  // The links MLflow's client prints for a run (`/#/experiments/ID/runs/RUN`) open the run's page.
  var mlflowRun = window.location.pathname === "/" && /^#\/experiments\/[^\/]+\/runs\/([0-9a-f]{32})/.exec(window.location.hash);
  if (mlflowRun) { window.location.replace("/runs/" + mlflowRun[1]); return; }
  // "Select all" boxes tick or clear the run checkboxes of their form.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      all.form.querySelectorAll("input[name=id]").forEach(function (box) { box.checked = all.checked; });
    });
  });

  // Live rows: while a table shows queued or running runs, their cells are fetched again every two
  // seconds from the table's data-live URL, as JSON: {"runs": [{"id", "status", "cells": [text…]}]}.
  var table = document.querySelector("table[data-live]");
  if (!table) { return; }
  var keys = Array.prototype.map.call(table.querySelectorAll("thead th[data-key]"), function (th) { return th.dataset.key; });
  function unfinished() {
    return Array.prototype.filter.call(table.querySelectorAll("tbody tr[data-run]"), function (tr) {
      return tr.dataset.status === "running" || tr.dataset.status === "queued";
    });
  }
  function apply(data) {
    data.runs.forEach(function (run) {
      var tr = table.querySelector("tbody tr[data-run='" + run.id.replace(/[^0-9a-f]/g, "") + "']");
      if (!tr) { return; }
      tr.dataset.status = run.status;
      var cells = tr.querySelectorAll("td[data-col]");
      run.cells.forEach(function (text, index) {
        var td = cells[index];
        if (!td) { return; }
        var target = td.querySelector("a") || td;
        if (target.textContent !== text) { target.textContent = text; }
        if (td.classList.contains("status")) { td.className = "status status-" + run.status; }
      });
    });
  }
  function poll() {
    var rows = unfinished();
    if (rows.length === 0) { return; }
    var query = new URLSearchParams();
    rows.forEach(function (tr) { query.append("id", tr.dataset.run); });
    keys.forEach(function (key) { query.append("column", key); });
    fetch(table.dataset.live + "?" + query.toString(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { apply(data); } })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
})();
"""#
}
