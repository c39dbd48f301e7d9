// The call analysis page's charts (Chart.js 4, vendored): data from the page's JSON
// script tag #analysis-data; each canvas names its chart in data-chart.
(function () {
  "use strict";
  function draw() {
    var tag = document.getElementById("analysis-data");
    if (!tag || typeof Chart === "undefined") return;
    var d = JSON.parse(tag.textContent);
    var t = d.text;
    var green = "#2e7d32", red = "#c62828", blue = "#1565c0", amber = "#ef8f00";
    var base = { responsive: true, maintainAspectRatio: false, animation: false };
    var stacked = Object.assign({}, base, { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } });
    var make = {
      province: function () {
        return { type: "bar", data: { labels: d.province.labels, datasets: [{ label: t.calls, data: d.province.calls, backgroundColor: blue }] },
                 options: Object.assign({}, base, { indexAxis: "y", plugins: { legend: { display: false } } }) };
      },
      hour: function () {
        return { type: "bar", data: { labels: d.hour.labels, datasets: [
                   { label: t.answered, data: d.hour.answered, backgroundColor: green },
                   { label: t.missed, data: d.hour.missed, backgroundColor: red }] }, options: stacked };
      },
      weekday: function () {
        return { type: "bar", data: { labels: d.weekday.labels, datasets: [
                   { label: t.answered, data: d.weekday.answered, backgroundColor: green },
                   { label: t.missed, data: d.weekday.missed, backgroundColor: red }] }, options: stacked };
      },
      outcome: function () {
        return { type: "doughnut", data: { labels: d.outcome.labels, datasets: [{ data: d.outcome.calls, backgroundColor: [green, red] }] }, options: base };
      },
      callers: function () {
        return { type: "doughnut", data: { labels: d.callers.labels, datasets: [{ data: d.callers.calls, backgroundColor: [amber, blue] }] }, options: base };
      }
    };
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var old = Chart.getChart(canvas);
      if (old) old.destroy();
      new Chart(canvas, make[canvas.dataset.chart]());
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
