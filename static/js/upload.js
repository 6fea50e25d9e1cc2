/* Restartable uploads for any form with data-upload-api (the URL of POST /api/v1/uploads)
   holding <input type="file" data-upload="NAME" [multiple]>, a <progress> and a
   [role=status] text. On submit each chosen file goes in pieces of CHUNK bytes
   (PUT .../uploads/KEY?offset=N), the progress bar and "x of y" advancing as bytes leave;
   after an error it asks the server how much arrived (GET .../uploads/KEY) and goes on
   from there, RETRIES times with a growing pause, then shows the error and a Retry button
   ([data-upload-retry]). When every file is in, one hidden input NAME per file carries its
   key and the form is posted the ordinary way (its own csrf_token field goes along).
   With data-upload-optional the form is posted at once when no file is chosen.
   Texts come from the form's data-text-* attributes (translated by the page). */
(function () {
  var CHUNK = 8 * 1024 * 1024;
  var RETRIES = 5;

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (whole, key) {
      return key in values ? values[key] : whole;
    });
  }

  function mib(bytes) { return (bytes / 1048576).toFixed(1) + ' MiB'; }

  function Fatal(message) { this.message = message; }

  function request(method, url, token, body, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader('X-CSRFToken', token);
      xhr.setRequestHeader('Accept', 'application/json');
      if (typeof body === 'string') xhr.setRequestHeader('Content-Type', 'application/json');
      else if (body) xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      if (onProgress) xhr.upload.onprogress = function (event) { onProgress(event.loaded); };
      xhr.onload = function () {
        var data = null;
        try { data = JSON.parse(xhr.responseText || 'null'); } catch (e) { data = null; }
        resolve({status: xhr.status, data: data});
      };
      xhr.onerror = xhr.onabort = xhr.ontimeout = function () {
        reject(new Error('the connection was lost'));
      };
      xhr.send(body || null);
    });
  }

  function errorText(answer) {
    return answer.data && answer.data.error ? answer.data.error.message : 'HTTP ' + answer.status;
  }

  function sleep(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  function bind(form) {
    if (form.dataset.uploadBound) return;
    form.dataset.uploadBound = '1';
    var input = form.querySelector('input[type=file][data-upload]');
    var bar = form.querySelector('progress');
    var status = form.querySelector('[role=status]');
    var retry = form.querySelector('[data-upload-retry]');
    var submit = form.querySelector('[type=submit]');
    var api = form.dataset.uploadApi;
    var token = form.querySelector('input[name=csrf_token]').value;
    var state = null;  // {files, keys: {index: key}, sent: bytes of finished files, total}

    function show(done) {
      var percent = state.total ? Math.floor(done * 100 / state.total) : 100;
      bar.hidden = false;
      bar.value = percent;
      status.textContent = fill(form.dataset.textProgress,
                                {done: mib(done), total: mib(state.total)}) +
        ' (' + percent + '%)';
    }

    async function sendOne(file, index) {
      var key = state.keys[index];
      var received = 0;
      if (key) {
        var now = await request('GET', api + '/' + key, token);
        if (now.status !== 200) throw new Fatal(errorText(now));
        received = now.data.received;
      } else {
        var made = await request('POST', api, token,
                                 JSON.stringify({filename: file.name, size: file.size}));
        if (made.status !== 201) throw new Fatal(file.name + ': ' + errorText(made));
        key = state.keys[index] = made.data.key;
      }
      var failures = 0;
      while (received < file.size) {
        var start = received;
        try {
          var piece = file.slice(start, Math.min(start + CHUNK, file.size));
          var answer = await request('PUT', api + '/' + key + '?offset=' + start, token, piece,
                                     function (loaded) { show(state.sent + start + loaded); });
          if (answer.status === 200) {
            received = answer.data.received;
            failures = 0;
            continue;
          }
          if (answer.status !== 409 && answer.status < 500) throw new Fatal(errorText(answer));
          throw new Error(errorText(answer));
        } catch (error) {
          if (error instanceof Fatal || ++failures > RETRIES) throw error;
          await sleep(500 * Math.pow(2, failures));
          try {
            var asked = await request('GET', api + '/' + key, token);
            if (asked.status === 200) received = asked.data.received;
          } catch (ignored) { /* still offline: the next try says so */ }
        }
      }
      return key;
    }

    async function run() {
      submit.disabled = true;
      retry.hidden = true;
      try {
        for (var i = 0; i < state.files.length; i++) {
          if (state.done[i]) continue;
          await sendOne(state.files[i], i);
          state.done[i] = true;
          state.sent += state.files[i].size;
          show(state.sent);
        }
      } catch (error) {
        status.textContent = fill(form.dataset.textFailed, {error: error.message});
        retry.hidden = false;
        submit.disabled = false;
        return;
      }
      status.textContent = status.textContent + ' ' + form.dataset.textSaving;
      form.querySelectorAll('input[data-upload-key]').forEach(function (old) { old.remove(); });
      state.files.forEach(function (file, index) {
        var hidden = document.createElement('input');
        hidden.type = 'hidden';
        hidden.name = input.dataset.upload;
        hidden.value = state.keys[index];
        hidden.setAttribute('data-upload-key', '');
        form.appendChild(hidden);
      });
      form.submit();  // the ordinary post: no submit event, so no second upload
    }

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (!input.files.length) {
        if ('uploadOptional' in form.dataset) { form.submit(); return; }  // a file may be left out
        status.textContent = form.dataset.textChoose;
        return;
      }
      var files = Array.prototype.slice.call(input.files);
      state = {files: files, keys: {}, done: {}, sent: 0,
               total: files.reduce(function (sum, file) { return sum + file.size; }, 0)};
      show(0);
      run();
    });
    retry.addEventListener('click', function () { if (state) run(); });
  }

  function bindAll() { document.querySelectorAll('form[data-upload-api]').forEach(bind); }

  // Loaded by a page (its tag may come before the rest of the form) or swapped in by htmx.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', bindAll);
  else bindAll();
})();
