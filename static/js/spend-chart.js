/* Draws the overview's spend per day (#spend-chart, data-series: [[day, ...], [micro-units,
   ...]]) as a uPlot bar chart; the same figures are in the table next to it. */
(function () {
  function start() {
    var box = document.getElementById('spend-chart');
    if (!box || box.dataset.drawn || typeof uPlot === 'undefined') return;
    box.dataset.drawn = '1';
    var series = JSON.parse(box.dataset.series);
    var days = series[0].map(function (day) { return Date.parse(day + 'T00:00:00Z') / 1000; });
    var amounts = series[1].map(function (micro) { return micro / 1e6; });
    var currency = box.dataset.currency;
    var options = {
      width: Math.max(300, box.clientWidth || 600),
      height: 220,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); },
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        // half a day either side, so the first and the last bar are whole
        x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } },
        y: { range: function (u, min, max) { return [0, Math.max(max, 0.01) * 1.05]; } }
      },
      axes: [{}, { label: currency, size: 70 }],
      series: [{}, {
        label: currency, stroke: '#1e88e5', fill: 'rgba(30, 136, 229, 0.35)',
        paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false }
      }]
    };
    new uPlot(options, [days, amounts], box);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
