/// The queues page's script (served by `StaticAssets`, loaded by that page only): every two seconds it
/// fetches `/queues/live` and writes each queue's waiting, running, longest wait and live agents into
/// the page's table, so the numbers stay current while the page is open. Text goes in with
/// `textContent`, never parsed as markup; a queue the page does not show yet is left for a reload.
enum QueueScript {
    static let source = #"""
"use strict";
(function () {
  var table = document.querySelector("table.queues[data-live]");
  if (!table) { return; }
  function apply(data) {
    data.queues.forEach(function (queue) {
      var row = Array.prototype.find.call(table.querySelectorAll("tbody tr[data-queue]"), function (tr) {
        return tr.dataset.queue === queue.queue;
      });
      if (!row) { return; }
      Object.keys(queue.cells).forEach(function (key) {
        var cell = row.querySelector("td[data-col='" + key.replace(/[^a-z_]/g, "") + "']");
        if (cell && cell.textContent !== queue.cells[key]) { cell.textContent = queue.cells[key]; }
      });
    });
  }
  function poll() {
    fetch(table.dataset.live, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { apply(data); } })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
})();
"""#
}
