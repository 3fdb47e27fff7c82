// Draws every <canvas data-chart="{...Chart.js config...}"> with the vendored Chart.js.
// The server renders the numbers as tables too, so the pages read fine without JavaScript.
(function () {
  "use strict";
  if (typeof Chart === "undefined") { return; }
  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  Chart.defaults.font.size = 11;
  Chart.defaults.color = "#37474f";
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    try {
      var chart = new Chart(canvas, JSON.parse(canvas.getAttribute("data-chart")));
      canvas.setAttribute("data-rendered", String(chart.data.labels.length));
    } catch (err) {
      canvas.setAttribute("data-error", String(err));
    }
  });
})();
