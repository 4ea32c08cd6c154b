/* AFE pages: live fragments without a full reload, and log following. No dependencies.
 *
 * <el data-poll="URL" [data-poll-every="5"]>: every N seconds (default 5) GET URL and
 *   replace the element's content; checked boxes inside it stay checked. Paused while the
 *   tab is hidden. After each refresh, every <el data-poll-copy="NAME"> elsewhere on the
 *   page takes the content of the refreshed <el data-poll-source="NAME"> (one fragment
 *   keeping two places of the page current, e.g. a job's status counts).
 * <pre data-follow="URL">: GET URL (then URL?offset=N from the X-Log-Offset header) every
 *   3 seconds and append the text.
 */
(function () {
  "use strict";
  function checked(el) {
    var keep = {};
    el.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
      keep[box.name + "=" + box.value] = true;
    });
    return keep;
  }
  function copies(el) {
    el.querySelectorAll("[data-poll-source]").forEach(function (source) {
      var name = source.getAttribute("data-poll-source");
      document.querySelectorAll("[data-poll-copy]").forEach(function (target) {
        if (target.getAttribute("data-poll-copy") === name && !el.contains(target)) {
          target.innerHTML = source.innerHTML;
        }
      });
    });
  }
  function poll(el) {
    var every = (parseFloat(el.getAttribute("data-poll-every")) || 5) * 1000;
    function tick() {
      if (document.hidden) { return setTimeout(tick, every); }
      fetch(el.getAttribute("data-poll"), {credentials: "same-origin", headers: {"X-Requested-With": "poll"}})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var keep = checked(el);
          el.innerHTML = html;
          el.querySelectorAll("input[type=checkbox]").forEach(function (box) {
            if (keep[box.name + "=" + box.value]) { box.checked = true; }
          });
          copies(el);
        })
        .catch(function () {})
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  function follow(pre) {
    var base = pre.getAttribute("data-follow"), offset = null;
    var scroll = document.querySelector("[data-follow-scroll]");
    function tick() {
      var url = base + (offset === null ? "" : (base.indexOf("?") < 0 ? "?" : "&") + "offset=" + offset);
      fetch(url, {credentials: "same-origin"})
        .then(function (r) {
          if (!r.ok) { return Promise.reject(r.status); }
          offset = r.headers.get("X-Log-Offset") || offset;
          return r.text();
        })
        .then(function (text) {
          if (text) {
            pre.appendChild(document.createTextNode(text));
            if (!scroll || scroll.checked) { window.scrollTo(0, document.body.scrollHeight); }
          }
        })
        .catch(function () {})
        .then(function () { setTimeout(tick, 3000); });
    }
    tick();
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("[data-follow]").forEach(follow);
  });
})();
