// Follow a running task's log: append what the server sends (server-sent events of
// /v1/runs/RUN/tasks/TASK/log?follow=1&offset=BYTES_SHOWN) until it says the task ended.
(function () {
  var log = document.getElementById("log");
  if (!log || log.dataset.live !== "1" || !window.EventSource) return;
  var source = new EventSource(log.dataset.follow);
  var atEnd = function () { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; };
  source.onmessage = function (event) {
    var stick = atEnd();
    log.appendChild(document.createTextNode(event.data + "\n"));
    if (stick) log.scrollTop = log.scrollHeight;
  };
  source.addEventListener("end", function () {
    source.close();
    var note = document.getElementById("following");
    if (note) note.textContent = "ended";
  });
  source.onerror = function () { source.close(); };
})();
