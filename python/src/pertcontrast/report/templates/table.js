// Sortable and searchable tables without any library: click (or Enter on) a header to sort,
// type in the box to keep only rows containing the text. Only reorders and hides existing
// rows; never builds markup from data.
(function () {
  "use strict";

  function sortKey(cell, numeric) {
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent; }
    if (!numeric) { return raw.toLowerCase(); }
    var number = parseFloat(raw);
    return isNaN(number) ? null : number;
  }

  function makeSortable(table) {
    var headers = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    function sortBy(index) {
      var header = headers[index];
      var numeric = header.getAttribute("data-type") === "number";
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      var rows = Array.prototype.slice.call(body.rows);
      var keyed = rows.map(function (row, position) {
        return { row: row, key: sortKey(row.cells[index], numeric), position: position };
      });
      keyed.sort(function (a, b) {
        if (a.key === null || b.key === null) {  // missing values last in both directions
          return (a.key === null) - (b.key === null) || a.position - b.position;
        }
        var order = a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
        return (ascending ? order : -order) || a.position - b.position;
      });
      var fragment = document.createDocumentFragment();
      keyed.forEach(function (item) { fragment.appendChild(item.row); });
      body.appendChild(fragment);
      Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    }
    Array.prototype.forEach.call(headers, function (header, index) {
      header.addEventListener("click", function () { sortBy(index); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(index); }
      });
    });
  }

  function makeSearchable(input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    var counter = document.getElementById(input.getAttribute("data-counter"));
    if (!table) { return; }
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
    function update() {
      var query = input.value.trim().toLowerCase();
      var shown = 0;
      rows.forEach(function (row, i) {
        var match = query === "" || texts[i].indexOf(query) !== -1;
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      if (counter) { counter.textContent = shown + " of " + rows.length + " rows"; }
    }
    input.addEventListener("input", update);
    update();
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  document.querySelectorAll("input[data-filter]").forEach(makeSearchable);
})();
