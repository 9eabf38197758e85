// Mesh: the only script (the CSP allows no inline script). Every page works without it; it adds:
// - the workspace switcher submits when its choice changes;
// - "Show message" loads the email's sandboxed iframe only when opened; "Load images" reloads it
//   with remote images;
// - live updates: an open contact page polls /contacts/<id>/since every 10 s and inserts the
//   new items (server-rendered HTML) at the top of the timeline;
// - "Older »" on a contact or device timeline appends the older page below what is shown
//   (the server sends only those items and the next link); without script it loads the page;
// - a signed-in person with no time zone yet gets the browser's, sent once;
// - j / k move the focus from timeline item to item.
(function () {
  "use strict";
  var POLL_MS = 10000;

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      var form = select.form;
      form.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
      select.addEventListener("change", function () { form.submit(); });
    });
  }

  function messages(root) {
    root.querySelectorAll("details[data-message]").forEach(function (details) {
      if (details.dataset.bound) return;
      details.dataset.bound = "1";
      details.addEventListener("toggle", function () {
        var frame = details.querySelector("iframe[data-src]");
        if (details.open && frame && !frame.getAttribute("src")) frame.setAttribute("src", frame.dataset.src);
      });
      var load = details.querySelector("a[data-load-images]");
      if (load) {
        load.addEventListener("click", function (event) {
          var frame = details.querySelector("iframe");
          if (!frame) return;
          event.preventDefault();
          frame.setAttribute("src", load.getAttribute("href"));
          load.parentNode.textContent = "Remote images loaded.";
        });
      }
    });
  }

  function live() {
    var timeline = document.querySelector("[data-live-url]");
    if (!timeline || !window.fetch) return;
    var url = timeline.dataset.liveUrl;
    var after = timeline.dataset.liveAfter;
    var items = timeline.querySelector("[data-live-items]");
    var status = timeline.querySelector("[data-live-status]");
    var busy = false;

    function poll() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url + "?after=" + encodeURIComponent(after), {
        credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store"
      }).then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      }).then(function (data) {
        if (data.reload) {
          status.hidden = false;
          status.textContent = "";
          var link = document.createElement("a");
          link.href = window.location.pathname;
          link.textContent = "New activity — reload to see it";
          status.appendChild(link);
          return;
        }
        after = data.after;
        if (data.count > 0) {
          // The fragment is our own template output: every value in it is escaped server-side.
          items.insertAdjacentHTML("afterbegin", data.html);
          messages(items);
          status.hidden = false;
          status.textContent = data.count + " new item" + (data.count === 1 ? "" : "s") + " just arrived";
          timeline.dataset.liveAfter = after;
        }
      }).catch(function () { /* offline or signed out: try again at the next tick */ })
        .then(function () { busy = false; });
    }

    timeline.dataset.liveActive = "1";
    window.setInterval(poll, Number(timeline.dataset.livePoll || POLL_MS));
    document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
  }

  function more() {
    var timeline = document.querySelector("section.timeline[data-more]");
    if (!timeline || !window.fetch || !window.DOMParser) return;
    timeline.addEventListener("click", function (event) {
      var link = event.target.closest && event.target.closest("nav.pager a.older");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      if (link.dataset.busy) return;
      link.dataset.busy = "1";
      link.setAttribute("aria-busy", "true");
      var pager = link.closest("nav.pager");
      fetch(link.href, { credentials: "same-origin", headers: { "X-Mesh-More": "1" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        }).then(function (html) {
          // Our own template output (every value escaped server-side), parsed inertly.
          var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
          var box = doc.body.firstElementChild;
          var nextPager = box.querySelector("nav.pager");
          if (nextPager) nextPager.remove();
          // The day heading the shown page ends with is not repeated.
          var days = timeline.querySelectorAll("h2.day time");
          var first = box.firstElementChild;
          if (first && first.matches("h2.day") && days.length) {
            var t = first.querySelector("time");
            if (t && t.getAttribute("datetime") === days[days.length - 1].getAttribute("datetime")) first.remove();
          }
          var firstNew = box.querySelector("article.activity");
          var fragment = document.createDocumentFragment();
          while (box.firstChild) fragment.appendChild(document.adoptNode(box.firstChild));
          pager.parentNode.insertBefore(fragment, pager);
          var older = nextPager ? nextPager.querySelector("a.older") : null;
          if (older) {
            link.href = older.getAttribute("href");
            delete link.dataset.busy;
            link.removeAttribute("aria-busy");
          } else {
            link.remove();
          }
          messages(timeline);
          if (firstNew) {
            var target = document.getElementById(firstNew.id);
            if (target) { target.setAttribute("tabindex", "-1"); target.focus({ preventScroll: true }); }
          }
        }).catch(function () {
          window.location.href = link.href;  // fall back to the whole page
        });
    });
  }

  // A person with no time zone yet: send the browser's once (streams/timezones.py). The page
  // is not reloaded under them; the footer says from when their zone applies.
  function browserZone() {
    var form = document.querySelector("form[data-browser-zone]");
    if (!form || !window.fetch || !window.Intl) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone) return;
    form.elements.time_zone.value = zone;
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) {
        var shown = document.querySelector("[data-time-zone]");
        if (!response.ok || !shown || shown.dataset.timeZone === zone) return;
        var note = document.createElement("span");
        note.textContent = " · from the next page: " + zone + " (your browser's)";
        shown.appendChild(note);
      }).catch(function () { /* offline: the next page asks again */ });
  }

  // j / k: focus the next / previous timeline item, as mail and feed readers do; after the last
  // item, j reaches "Older »" (Enter loads more). Tab from an item goes through its own links.
  // Not while typing in a field, nor with a modifier (the browser's own shortcuts).
  function timelineKeys() {
    var timeline = document.querySelector("section.timeline");
    if (!timeline) return;
    var hint = document.querySelector("[data-keys-hint]");
    if (hint) hint.hidden = false;
    document.addEventListener("keydown", function (event) {
      if ((event.key !== "j" && event.key !== "k") || event.ctrlKey || event.metaKey || event.altKey) return;
      var target = event.target;
      if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
      var stops = timeline.querySelectorAll("article.activity, nav.pager a.older");
      if (!stops.length) return;
      var at = -1;
      for (var i = 0; i < stops.length; i++) {
        if (stops[i].contains(document.activeElement)) { at = i; break; }
      }
      var next = event.key === "j" ? at + 1 : at - 1;
      var stop = stops[Math.max(0, Math.min(stops.length - 1, next))];
      if (stop.tagName === "ARTICLE") stop.setAttribute("tabindex", "-1");
      stop.focus();
      stop.scrollIntoView({ block: "nearest" });
      event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    browserZone();
    autosubmit();
    messages(document);
    live();
    more();
    timelineKeys();
  });
})();
