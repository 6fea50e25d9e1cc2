/* Follows a running replica's log: Server-Sent Events from the URL in #log's data-stream,
   each a JSON list of new lines, added as text (never as HTML). See portal/renter/replicas.py. */
(function () {
  var KEEP = 5000; // text nodes kept in the page; older ones are dropped
  function start() {
    var log = document.getElementById('log');
    if (!log || !log.dataset.stream || log.dataset.following) return;
    log.dataset.following = '1';
    var status = document.getElementById('log-status');
    var url = new URL(log.dataset.stream, location.href);
    url.searchParams.set('from', log.dataset.from);
    var source = new EventSource(url);
    log.scrollTop = log.scrollHeight;
    source.onmessage = function (event) {
      var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.appendChild(document.createTextNode(JSON.parse(event.data).join('\n') + '\n'));
      while (log.childNodes.length > KEEP) log.removeChild(log.firstChild);
      if (atEnd) log.scrollTop = log.scrollHeight;
    };
    source.addEventListener('end', function () {
      source.close();
      status.textContent = status.dataset.endedText;
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) status.textContent = status.dataset.lostText;
    };
    // Leaving through an htmx-boosted link swaps the page without unloading it.
    log.addEventListener('htmx:beforeCleanupElement', function () { source.close(); });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
