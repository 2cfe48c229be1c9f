// Sort a table by a column when its header's button is clicked.
// A header's data-kind says how to compare ("number" or "text"); a cell's data-sort holds the
// value to compare (the raw mean, not the rounded text), and an empty one sorts last either way.
// The first click on a number column puts the best first (largest, or smallest where the
// header has data-lower="true"); the next click reverses. aria-sort tells which is shown.
"use strict";

function compareCells(kind, a, b) {
  if (kind === "number") return parseFloat(a) - parseFloat(b);
  return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
}

function sortTable(table, index, header) {
  const kind = header.dataset.kind || "text";
  const current = header.getAttribute("aria-sort");
  let ascending;
  if (current === "ascending") ascending = false;
  else if (current === "descending") ascending = true;
  else ascending = kind === "text" || header.dataset.lower === "true";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = (row) => {
    const cell = row.cells[index];
    return cell && cell.dataset.sort !== undefined ? cell.dataset.sort : "";
  };
  rows.sort((r1, r2) => {
    const a = key(r1), b = key(r2);
    if (a === "" || b === "") return (a === "") - (b === "");
    const order = compareCells(kind, a, b);
    return ascending ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
  for (const th of header.parentElement.children) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
}

document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = table.tHead ? Array.from(table.tHead.rows[0].cells) : [];
    headers.forEach((header, index) => {
      const button = header.querySelector("button");
      if (button) button.addEventListener("click", () => sortTable(table, index, header));
    });
  }
});
