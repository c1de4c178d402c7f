// Staff console: canned replies fill the reply box; the conversation and the queue refresh
// themselves. Everything shown comes from the server already escaped; no inline scripts (CSP).
(function () {
  "use strict";

  // Canned replies: choosing one fills (or, when the box has text, replaces) the reply box.
  document.querySelectorAll("select[data-fills]").forEach(function (select) {
    select.addEventListener("change", function () {
      var box = document.getElementById(select.dataset.fills);
      if (box && select.value) {
        box.value = select.value;
        box.focus();
      }
    });
  });

  function poll(url, onData, every) {
    var busy = false;
    function tick() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(onData)
        .catch(function (status) {
          var state = document.getElementById("live-state");
          if (state) {
            state.textContent = status === 401
              ? "Your session ended: log in again to see new messages."
              : "Could not refresh; retrying…";
          }
        })
        .finally(function () { busy = false; });
    }
    setInterval(tick, every);
  }

  // The conversation: replaced when the server says it changed (new message, delivery status).
  var thread = document.getElementById("thread");
  if (thread && thread.dataset.live) {
    var nearBottom = function () {
      return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
    };
    thread.scrollTop = thread.scrollHeight;
    poll(function () {
      return thread.dataset.live + "?stamp=" + encodeURIComponent(thread.dataset.stamp || "");
    }, function (data) {
      var state = document.getElementById("live-state");
      if (state) state.textContent = "Updated " + new Date().toLocaleTimeString();
      if (data.changed) {
        var stick = nearBottom();
        thread.innerHTML = data.html;
        thread.dataset.stamp = data.stamp;
        if (stick) thread.scrollTop = thread.scrollHeight;
      }
      var badge = document.getElementById("handoff-status");
      if (badge && data.status && badge.textContent.trim() !== data.status) {
        badge.textContent = data.status + " (reload the page)";
      }
    }, 3000);
  }

  // The queue: rows (timers, new hand-offs) refreshed every 20 s.
  var rows = document.getElementById("queue-rows");
  if (rows && rows.dataset.live) {
    poll(function () { return rows.dataset.live; }, function (data) {
      rows.innerHTML = data.html;
    }, 20000);
  }
})();
