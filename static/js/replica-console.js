/* A replica's web console: xterm.js over the WebSocket in #console's data-socket.
   Binary messages are terminal bytes both ways; text messages from here are JSON control
   messages ({"resize": [rows, cols]}). See portal/renter/replicas.py. */
(function () {
  function start() {
    var box = document.getElementById('console');
    if (!box || box.dataset.started) return;
    // Scripts swapped in by htmx load in any order: wait for xterm.js and its fit addon.
    if (!window.Terminal || !window.FitAddon) { setTimeout(start, 50); return; }
    box.dataset.started = '1';
    var status = document.getElementById('console-status');
    var term = new Terminal({cursorBlink: true, scrollback: 5000});
    var fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    var url = new URL(box.dataset.socket, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('rows', term.rows);
    url.searchParams.set('cols', term.cols);
    var ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    var encoder = new TextEncoder();
    function send(data) { if (ws.readyState === WebSocket.OPEN) ws.send(data); }
    ws.onopen = function () { status.textContent = box.dataset.openText; term.focus(); };
    ws.onmessage = function (event) {
      term.write(typeof event.data === 'string' ? event.data : new Uint8Array(event.data));
    };
    ws.onclose = function (event) {
      var text = box.dataset.closedText + (event.reason ? ' ' + event.reason : '');
      status.textContent = text;
      term.write('\r\n\x1b[2m[' + text + ']\x1b[0m\r\n');
    };
    term.onData(function (data) { send(encoder.encode(data)); });
    term.onResize(function (size) { send(JSON.stringify({resize: [size.rows, size.cols]})); });
    function refit() { if (box.isConnected) fit.fit(); }
    window.addEventListener('resize', refit);
    // Leaving through an htmx-boosted link swaps the page without unloading it.
    box.addEventListener('htmx:beforeCleanupElement', function () {
      window.removeEventListener('resize', refit);
      ws.close();
      term.dispose();
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
