/* The built-in charts (templates/components/charts.html): each section[data-charts-url]
   fetches its JSON ({range, start, end, running, source, note, charts: [{key, title, unit,
   source, note, x, series: [{label, values}]}]}, see portal/series.py) for the chosen range
   and draws every chart with uPlot, with the same figures in a table, the latest values as
   the chart's accessible name, and why it is not Prometheus's (its note) where it says.
   The range buttons choose the window; while the JSON says "running" the section fetches
   again every 15 s, else every 60 s (a stopped notebook started again: its new run).
   Sections swapped in by htmx start when they arrive. */
(function () {
  if (window.hourglassCharts) { window.hourglassCharts.scan(); return; }

  var REFRESH_MS = 15000;
  var IDLE_REFRESH_MS = 60000;
  var COLOURS = ['#1e88e5', '#e53935', '#43a047', '#fb8c00', '#8e24aa', '#00897b', '#6d4c41',
                 '#3949ab'];
  var sections = [];

  function bytes(value) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return (i ? value.toFixed(1) : String(Math.round(value))) + ' ' + units[i];
  }

  function format(unit, value) {
    if (value === null || value === undefined) return '—';
    if (unit === 'ratio') return (100 * value).toFixed(1) + ' %';
    if (unit === 'bytes') return bytes(value);
    if (unit === 'cores') return value.toFixed(2);
    if (unit === 'celsius') return value.toFixed(1) + ' °C';
    if (unit === 'count') return String(Math.round(value * 10) / 10);
    return String(value);
  }

  function utc(seconds) {
    return new Date(seconds * 1000).toISOString().slice(0, 19).replace('T', ' ');
  }

  function latest(values) {
    for (var i = values.length - 1; i >= 0; i--) { if (values[i] !== null) return values[i]; }
    return null;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function table(section, chart) {
    var details = element('details', 'chart-table');
    details.appendChild(element('summary', '', section.dataset.textTable));
    var box = element('div', 'overflow-auto');
    var grid = element('table', 'striped');
    var head = grid.createTHead().insertRow();
    head.appendChild(element('th', '', section.dataset.textTime));
    chart.series.forEach(function (s) { head.appendChild(element('th', '', s.label)); });
    var body = grid.createTBody();
    chart.x.forEach(function (t, i) {
      var row = body.insertRow();
      row.appendChild(element('td', '', utc(t)));
      chart.series.forEach(function (s) {
        row.appendChild(element('td', '', format(chart.unit, s.values[i])));
      });
    });
    box.appendChild(grid);
    details.appendChild(box);
    return details;
  }

  function summary(section, chart) {
    return chart.title + ', ' + section.dataset.textLatest + ': ' + chart.series.map(function (s) {
      return s.label + ' ' + format(chart.unit, latest(s.values));
    }).join('; ');
  }

  function options(chart, answer, width) {
    var unit = chart.unit;
    // the least top of the axis: a chart of zeros still reads as whole chips, cores, MiB
    var least = { count: 1, cores: 0.1, bytes: 1048576, celsius: 10 }[unit] || 1e-9;
    var y = unit === 'ratio'
      ? { range: function () { return [0, 1]; } }
      : { range: function (u, min, max) { return [0, Math.max(max || 0, least) * 1.1]; } };
    return {
      width: width,
      height: 200,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'); },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: function () { return [answer.start, answer.end]; } },
        y: y
      },
      axes: [{}, {
        size: 80,
        incrs: unit === 'count' ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] : undefined,
        values: function (u, ticks) {
          return ticks.map(function (v) { return format(unit, v); });
        }
      }],
      series: [{ value: function (u, t) { return t === null ? '—' : utc(t) + ' UTC'; } }]
        .concat(chart.series.map(function (s, i) {
          return {
            label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true,
            points: { show: chart.x.length < 2 },
            value: function (u, v) { return format(unit, v); }
          };
        }))
    };
  }

  function draw(section, answer) {
    var list = section.querySelector('.chart-list');
    section.plots.forEach(function (plot) { plot.destroy(); });
    section.plots = [];
    list.textContent = '';
    answer.charts.forEach(function (chart) {
      var figure = element('figure', 'chart');
      figure.dataset.key = chart.key;
      figure.dataset.points = String(chart.x.length);
      figure.appendChild(element('figcaption', '', chart.title));
      if (chart.note && chart.note !== answer.note) {
        figure.appendChild(element('p', 'muted chart-note', chart.note));
      }
      list.appendChild(figure);
      if (!chart.x.length) {
        figure.appendChild(element('p', 'muted chart-empty', section.dataset.textEmpty));
        return;
      }
      var plot = element('div', 'chart-plot');
      plot.setAttribute('role', 'img');
      plot.setAttribute('aria-label', summary(section, chart));
      figure.appendChild(plot);
      var data = [chart.x].concat(chart.series.map(function (s) { return s.values; }));
      section.plots.push(new uPlot(options(chart, answer, Math.max(300, list.clientWidth || 600)),
                                   data, plot));
      figure.appendChild(table(section, chart));
    });
  }

  function load(section) {
    var status = section.querySelector('.charts-status');
    var url = section.dataset.chartsUrl + '?range=' + encodeURIComponent(section.dataset.range);
    var asked = section.asked = (section.asked || 0) + 1;
    section.askedAt = Date.now();
    fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(function (answer) {
        if (asked !== section.asked) return;  // a newer range was chosen meanwhile
        section.dataset.running = answer.running ? '1' : '';
        draw(section, answer);
        var said = section.dataset.textUpdated.replace('%(time)s', utc(Date.now() / 1000));
        if (answer.running) said += ' · ' + section.dataset.textLive;
        if (answer.note) said += ' · ' + answer.note;
        status.textContent = said;
        status.classList.remove('error-text');
        section.dataset.loaded = String(Number(section.dataset.loaded || 0) + 1);
      })
      .catch(function () {
        if (asked !== section.asked) return;
        status.textContent = section.dataset.textFailed;
        status.classList.add('error-text');
      });
  }

  function start(section) {
    section.dataset.started = '1';
    section.plots = [];
    section.querySelectorAll('.chart-ranges button').forEach(function (button) {
      button.addEventListener('click', function () {
        section.dataset.range = button.dataset.range;
        section.querySelectorAll('.chart-ranges button').forEach(function (other) {
          other.setAttribute('aria-pressed', other === button ? 'true' : 'false');
        });
        load(section);
      });
    });
    sections.push(section);
    load(section);
  }

  function scan() {
    if (typeof uPlot === 'undefined') return;
    document.querySelectorAll('section[data-charts-url]').forEach(function (section) {
      if (!section.dataset.started) start(section);
    });
  }

  function refresh() {
    sections = sections.filter(function (section) { return document.contains(section); });
    sections.forEach(function (section) {
      var idle = Date.now() - section.askedAt >= IDLE_REFRESH_MS - REFRESH_MS / 2;
      if ((section.dataset.running || idle) && !document.hidden) load(section);
    });
  }

  window.hourglassCharts = { scan: scan };
  document.addEventListener('htmx:load', scan);
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', scan);
  else scan();
  setInterval(refresh, REFRESH_MS);
})();
