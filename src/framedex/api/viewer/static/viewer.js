// framedex viewer: a little progressive enhancement. Every page works without it.
(function () {
  "use strict";

  // The player: start at the moment, seek when a chosen frame or the curve is clicked,
  // and show the frame strip when the browser cannot play the file.
  function player() {
    var video = document.querySelector("video[data-testid=player]");
    if (!video) return null;
    var strip = document.querySelector("[data-testid=frame-strip]");
    video.addEventListener("error", function () {
      if (strip) strip.hidden = false;
      video.hidden = true;
    }, true);
    var start = parseFloat(video.dataset.start || "0");
    video.addEventListener("loadedmetadata", function () {
      if (start > 0 && Math.abs(video.currentTime - start) > 0.5) video.currentTime = start;
    });
    return video;
  }

  function seekable(video) {
    document.querySelectorAll("a.seek[data-t]").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        if (!video || video.hidden || ev.ctrlKey || ev.metaKey) return;
        ev.preventDefault();
        video.currentTime = parseFloat(a.dataset.t);
        video.scrollIntoView({ block: "nearest", behavior: "smooth" });
      });
    });
    var svg = document.querySelector("svg[data-testid=relevance-curve]");
    if (!svg || !video) return;
    svg.addEventListener("click", function (ev) {
      if (ev.target.closest("a")) return;
      var box = svg.getBoundingClientRect();
      var vb = svg.viewBox.baseVal;
      var x = (ev.clientX - box.left) * vb.width / box.width;
      var left = parseFloat(svg.dataset.left), width = parseFloat(svg.dataset.plotWidth);
      var frac = (x - left) / width;
      if (frac < 0 || frac > 1 || video.hidden) return;
      video.currentTime = frac * parseFloat(svg.dataset.duration);
    });
  }

  // "Copy as OpenAI / Gemini request": fetch the request body the server built, put it on
  // the clipboard, and show it (the clipboard can be refused; the text is there either way).
  function copyButtons() {
    var out = document.querySelector(".copy-out");
    var status = document.querySelector(".copy-status");
    document.querySelectorAll("a.copy").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        status.textContent = "building the " + a.dataset.format + " request…";
        fetch(a.href, { credentials: "same-origin" }).then(function (r) {
          return r.text().then(function (body) {
            if (!r.ok) throw new Error(body || r.statusText);
            return body;
          });
        }).then(function (body) {
          var pretty = JSON.stringify(JSON.parse(body), null, 2);
          out.value = pretty;
          out.hidden = false;
          var kb = Math.round(pretty.length / 1024);
          var done = function (ok) {
            status.textContent = a.dataset.format + " request (" + kb + " KB) " +
              (ok ? "copied to the clipboard" : "shown below: copy it from there");
          };
          if (navigator.clipboard && window.isSecureContext) {
            navigator.clipboard.writeText(pretty).then(function () { done(true); },
                                                       function () { done(false); });
          } else {
            done(false);
          }
        }).catch(function (err) {
          status.textContent = "could not build the request: " + err.message;
        });
      });
    });
  }

  // /jobs: follow the jobs by re-reading the page's own table (the viewer's page, with its
  // cookie: no API key in the browser). Every second while a job runs, every 5 s otherwise.
  function liveJobs() {
    var box = document.getElementById("jobs");
    if (!box) return;
    var later = function () { setTimeout(tick, box.dataset.active === "true" ? 1000 : 5000); };
    var tick = function () {
      if (document.hidden) return later();
      fetch(location.href, { credentials: "same-origin" }).then(function (r) {
        return r.ok ? r.text() : Promise.reject(r.status);
      }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("jobs");
        if (fresh) {
          box.innerHTML = fresh.innerHTML;
          box.dataset.active = fresh.dataset.active;
        }
      }).catch(function () {}).then(later);
    };
    later();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var video = player();
    seekable(video);
    copyButtons();
    liveJobs();
  });
})();
