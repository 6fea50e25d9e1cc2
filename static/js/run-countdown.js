/* The maximum run time's countdown (templates/renter/_run_limit.html): every second, each
   [data-seconds-left] element shows the time left in whole minutes, rounded up, in the
   page's own words (its data-pattern). A poll that swaps the element in again brings the
   server's value, and the count starts from it. */
(function () {
  if (window.runCountdown) { return; }
  window.runCountdown = true;
  function tick() {
    var now = Date.now();
    document.querySelectorAll('[data-seconds-left]').forEach(function (element) {
      if (!element.dataset.until) {
        element.dataset.until = String(now + 1000 * Number(element.dataset.secondsLeft));
      }
      var minutes = Math.max(0, Math.ceil((Number(element.dataset.until) - now) / 60000));
      var shown = element.dataset.pattern
        .replace('%(hours)d', String(Math.floor(minutes / 60)))
        .replace('%(minutes)d', String(minutes % 60));
      var left = element.querySelector('.run-countdown-left');
      if (left && left.textContent !== shown) { left.textContent = shown; }
    });
  }
  tick();
  setInterval(tick, 1000);
})();
