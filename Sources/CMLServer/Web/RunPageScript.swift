/// The run page's script (served by `StaticAssets`, loaded only by the run page): the console's live
/// tail and the image step sliders. New output is appended as text nodes, never parsed as markup.
enum RunPageScript {
    static let js = #"""
"use strict";
(function () {
  // The live tail: while the run runs, the output after the offset the page was read to is fetched
  // every second from data-tail ({"text", "offset", "running"}) and appended; the console follows its
  // bottom unless the reader scrolled up.
  var pre = document.querySelector("pre[data-tail]");
  if (pre) {
    var offset = pre.dataset.from;
    var status = document.getElementById("console-live");
    var atBottom = function () { return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24; };
    pre.scrollTop = pre.scrollHeight;
    var poll = function () {
      fetch(pre.dataset.tail + "?from=" + encodeURIComponent(offset), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data) { return 2000; }
          if (data.text) {
            var follow = atBottom();
            pre.appendChild(document.createTextNode(data.text));
            if (follow) { pre.scrollTop = pre.scrollHeight; }
          }
          offset = data.offset;
          if (!data.running && !data.text) { return null; }
          return data.text.length >= 1 << 20 ? 0 : 1000;
        })
        .catch(function () { return 2000; })
        .then(function (delay) {
          if (delay === null) {
            if (status) { status.textContent = "The run has ended."; }
            pre.removeAttribute("data-tail");
          } else {
            window.setTimeout(poll, delay);
          }
        });
    };
    window.setTimeout(poll, 1000);
  }

  // Image steps: the slider shows the image of the step it points at (the list's links, in order).
  document.querySelectorAll("input[data-image-slider]").forEach(function (slider) {
    var box = slider.closest(".image-steps");
    var img = box.querySelector("img"), caption = box.querySelector("figcaption");
    var links = box.querySelectorAll("ol.image-list a");
    slider.addEventListener("input", function () {
      var link = links[Number(slider.value)];
      if (!link) { return; }
      img.src = link.getAttribute("href");
      img.alt = link.dataset.alt;
      caption.textContent = link.textContent;
      links.forEach(function (other) { other.removeAttribute("aria-current"); });
      link.setAttribute("aria-current", "true");
    });
  });
})();
"""#
}
