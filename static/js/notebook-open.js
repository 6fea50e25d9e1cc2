/* Open's answer (templates/renter/notebook_open.html): hands the one-time grant to the
   notebook origin at once, in the POST body of the page's form. */
(function () {
  window.opener = null; // the notebook's pages get no handle on the portal's tab
  document.getElementById('enter-notebook').submit();
})();
