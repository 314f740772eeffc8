/// The web UI's chart script: it turns every element with a `data-cml-chart` attribute (the URL of a
/// chart route, with its `key` or `ids`) into an interactive chart. The server draws each chart as SVG
/// (`ChartRoutes`); the script only asks for it and handles the pointer and keyboard:
///
/// - hover (or the arrow keys on the focused plot) shows a crosshair and, for each line, the step,
///   value and time of its nearest drawn point;
/// - dragging across the plot asks the server again for that x range, so a zoom shows the points
///   there rather than enlarging the ones drawn; a double click, Escape or the reset button zooms out;
/// - controls, each with its label: the x axis (step, time, elapsed), log scale, smoothing (a slider
///   of the exponential moving average's weight, as TensorBoard's);
/// - `data-refresh="5"` on the element asks again every 5 seconds (a live run), except while the
///   pointer is on the plot; `data-height` sets the plot's height in pixels (300).
///
/// The SVG is parsed as XML and imported, never assigned as HTML, and every text shown is set as text.
/// No inline script or style attribute is written, so it runs under `script-src 'self'`.
enum ChartScript {
    static let source = ##"""
        "use strict";
        (function () {
          const SVG = "http://www.w3.org/2000/svg";

          function element(name, attributes, text) {
            const node = document.createElement(name);
            for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
            if (text !== undefined) node.textContent = text;
            return node;
          }

          function svgElement(name, attributes) {
            const node = document.createElementNS(SVG, name);
            for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
            return node;
          }

          // "px,py,step,value,time[,smoothed]" separated by spaces, as SVGChart writes data-points.
          function parsePoints(text) {
            if (!text) return [];
            return text.split(" ").map(function (entry) {
              const f = entry.split(",");
              return { px: +f[0], py: +f[1], step: f[2], value: f[3], time: f[4] === "" ? null : +f[4], smoothed: f[5] };
            });
          }

          function formatTime(seconds) {
            if (seconds === null || !isFinite(seconds)) return "";
            return new Date(seconds * 1000).toISOString().replace("T", " ").replace("Z", " UTC");
          }

          function formatSmoothed(text) {
            const value = +text;
            return isFinite(value) ? String(+value.toPrecision(6)) : text;
          }

          let serial = 0;

          class Chart {
            constructor(box) {
              this.box = box;
              this.base = box.getAttribute("data-cml-chart");
              this.height = parseInt(box.getAttribute("data-height") || "300", 10);
              this.from = null;
              this.to = null;
              this.request = 0;
              this.hovering = false;
              this.cursor = -1;
              this.id = "cml-chart-" + (++serial);
              this.build();
              this.load();
              const refresh = parseFloat(box.getAttribute("data-refresh") || "0");
              if (refresh > 0) {
                setInterval(() => { if (!this.hovering && !this.drag) this.load(); }, refresh * 1000);
              }
              let width = this.plot.clientWidth;
              new ResizeObserver(() => {
                if (Math.abs(this.plot.clientWidth - width) < 20) return;
                width = this.plot.clientWidth;
                clearTimeout(this.resizing);
                this.resizing = setTimeout(() => this.load(), 150);
              }).observe(this.plot);
            }

            build() {
              const box = this.box;
              box.classList.add("cml-chart-box");
              box.style.position = "relative";
              const controls = element("div", { class: "cml-chart-controls", role: "group", "aria-label": "Chart options" });
              // Layout only, set through the CSSOM (which script-src 'self' allows); the page's own
              // stylesheet can style the classes.
              Object.assign(controls.style, { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "4px 16px" });
              const group = (...children) => {
                const span = element("span", { class: "cml-chart-control" });
                Object.assign(span.style, { display: "inline-flex", alignItems: "center", gap: "4px" });
                span.append(...children);
                controls.append(span);
              };
              const x = element("select", { id: this.id + "-x" });
              for (const name of ["step", "time", "elapsed"]) x.append(element("option", { value: name }, name));
              x.value = box.getAttribute("data-x") || "step";
              group(element("label", { for: this.id + "-x" }, "x axis"), x);
              const log = element("input", { type: "checkbox", id: this.id + "-log" });
              log.checked = box.getAttribute("data-log") === "1";
              group(log, element("label", { for: this.id + "-log" }, "log scale"));
              const smooth = element("input", { type: "range", id: this.id + "-smooth", min: "0", max: "0.99", step: "0.01" });
              smooth.value = box.getAttribute("data-smooth") || "0";
              const shown = element("output", { for: this.id + "-smooth" }, smooth.value);
              group(element("label", { for: this.id + "-smooth" }, "smoothing"), smooth, shown);
              const reset = element("button", { type: "button" }, "Reset zoom");
              reset.disabled = true;
              group(reset);
              this.plot = element("div", { class: "cml-chart-plot", tabindex: "0", role: "img",
                                           "aria-label": "Chart; drag to zoom, arrow keys to read points" });
              this.status = element("div", { class: "cml-chart-status", "aria-live": "polite" });
              this.tip = element("div", { class: "cml-chart-tip", role: "status" });
              Object.assign(this.tip.style, {
                position: "absolute", pointerEvents: "none", display: "none", whiteSpace: "nowrap",
                background: "rgba(255, 255, 255, 0.95)", border: "1px solid #bbb", borderRadius: "4px",
                padding: "4px 8px", font: "12px sans-serif", boxShadow: "0 1px 4px rgba(0, 0, 0, 0.15)",
              });
              box.replaceChildren(controls, this.plot, this.status, this.tip);
              Object.assign(this, { xSelect: x, logBox: log, smoothRange: smooth, smoothShown: shown, resetButton: reset });

              x.addEventListener("change", () => { this.from = this.to = null; this.load(); });
              log.addEventListener("change", () => this.load());
              smooth.addEventListener("input", () => {
                shown.textContent = smooth.value;
                clearTimeout(this.smoothing);
                this.smoothing = setTimeout(() => this.load(), 150);
              });
              reset.addEventListener("click", () => this.zoom(null, null));
              this.plot.addEventListener("dblclick", () => this.zoom(null, null));
              this.plot.addEventListener("mousemove", (event) => this.pointerMoved(event));
              this.plot.addEventListener("mouseleave", () => { this.hovering = false; this.hide(); });
              this.plot.addEventListener("mousedown", (event) => this.dragStarted(event));
              window.addEventListener("mouseup", (event) => this.dragEnded(event));
              this.plot.addEventListener("keydown", (event) => this.key(event));
            }

            url() {
              const url = new URL(this.base, window.location.href);
              url.searchParams.set("width", String(Math.max(240, Math.min(8000, Math.round(this.plot.clientWidth || 800)))));
              url.searchParams.set("height", String(this.height));
              url.searchParams.set("x", this.xSelect.value);
              if (this.logBox.checked) url.searchParams.set("log", "1"); else url.searchParams.delete("log");
              if (+this.smoothRange.value > 0) url.searchParams.set("smooth", this.smoothRange.value); else url.searchParams.delete("smooth");
              if (this.from !== null) url.searchParams.set("from", String(this.from)); else url.searchParams.delete("from");
              if (this.to !== null) url.searchParams.set("to", String(this.to)); else url.searchParams.delete("to");
              return url;
            }

            async load() {
              const request = ++this.request;
              this.box.setAttribute("aria-busy", "true");
              let text, failure = null;
              try {
                const response = await fetch(this.url(), { credentials: "same-origin" });
                text = await response.text();
                if (!response.ok) {
                  try { failure = JSON.parse(text).error; } catch (e) { failure = response.status + " " + response.statusText; }
                }
              } catch (e) {
                failure = "cannot reach the server: " + e.message;
              }
              if (request !== this.request) return;  // a later request has been made
              this.box.removeAttribute("aria-busy");
              if (failure) {
                this.status.textContent = failure;
                return;
              }
              const parsed = new DOMParser().parseFromString(text, "image/svg+xml");
              if (parsed.getElementsByTagName("parsererror").length > 0 || parsed.documentElement.localName !== "svg") {
                this.status.textContent = "the chart could not be read";
                return;
              }
              this.status.textContent = "";
              this.show(document.importNode(parsed.documentElement, true));
            }

            show(svg) {
              this.svg = svg;
              this.series = Array.from(svg.querySelectorAll("path.series")).map((path) => ({
                label: (path.querySelector("title") || {}).textContent || "",
                color: path.getAttribute("stroke"),
                points: parsePoints(path.getAttribute("data-points")),
              }));
              const plot = (svg.getAttribute("data-plot") || "").split(" ").map(Number);
              this.area = plot.length === 4 ? { left: plot[0], top: plot[1], right: plot[2], bottom: plot[3] } : null;
              const domain = (svg.getAttribute("data-x-domain") || "").split(" ").map(Number);
              this.domain = domain.length === 2 ? domain : null;
              const title = svg.querySelector("title");
              this.plot.setAttribute("aria-label", (title ? title.textContent + ": " : "") + "chart; drag to zoom, arrow keys to read points");
              this.overlay = svgElement("g", { class: "cml-chart-overlay", "pointer-events": "none" });
              svg.append(this.overlay);
              this.plot.replaceChildren(svg);
              this.resetButton.disabled = this.from === null && this.to === null;
              this.cursor = -1;
              this.hide();
            }

            // The pointer's position in the SVG's own coordinates.
            position(event) {
              const matrix = this.svg && this.svg.getScreenCTM();
              if (!matrix) return null;
              const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
              return { x: point.x, y: point.y };
            }

            inside(point) {
              const a = this.area;
              return a && point && point.x >= a.left - 2 && point.x <= a.right + 2 && point.y >= a.top && point.y <= a.bottom;
            }

            xAt(px) {
              const a = this.area, d = this.domain;
              const fraction = Math.max(0, Math.min(1, (px - a.left) / (a.right - a.left)));
              return d[0] + fraction * (d[1] - d[0]);
            }

            pointerMoved(event) {
              const point = this.position(event);
              if (this.drag) {
                const left = Math.max(this.area.left, Math.min(this.drag.x, point.x));
                const right = Math.min(this.area.right, Math.max(this.drag.x, point.x));
                this.drag.rect.setAttribute("x", left);
                this.drag.rect.setAttribute("width", Math.max(0, right - left));
                this.drag.to = point.x;
                return;
              }
              if (!this.inside(point)) { this.hovering = false; this.hide(); return; }
              this.hovering = true;
              this.mark(point.x, event);
            }

            // The crosshair at px, a ring on each line's nearest point, and the tooltip naming them.
            mark(px, event) {
              if (!this.area) return;
              const a = this.area;
              this.overlay.replaceChildren(svgElement("line", { x1: px, x2: px, y1: a.top, y2: a.bottom, stroke: "#888", "stroke-dasharray": "3 3" }));
              this.tip.replaceChildren();
              let marks = [];
              for (const line of this.series) {
                let best = null;
                for (const p of line.points) {
                  if (best === null || Math.abs(p.px - px) < Math.abs(best.px - px)) best = p;
                }
                if (best !== null) marks.push({ line: line, best: best });
              }
              // Many lines (a compare page of 200 runs): the tooltip names those nearest the pointer.
              const pointer = event ? this.position(event) : null;
              const hidden = Math.max(0, marks.length - 12);
              if (hidden > 0 && pointer) {
                marks.sort((m, n) => Math.abs(m.best.py - pointer.y) - Math.abs(n.best.py - pointer.y));
              }
              marks = marks.slice(0, 12);
              const shown = marks.length;
              for (const { line, best } of marks) {
                this.overlay.append(svgElement("circle", { cx: best.px, cy: best.py, r: 4, fill: "none", stroke: line.color || "#000", "stroke-width": 2 }));
                const row = element("div", { class: "cml-chart-tip-row" });
                if (this.series.length > 1) row.append(element("strong", {}, line.label + "  "));
                let text = (best.step !== "" ? "step " + best.step + " · " : "") + "value " + best.value;
                if (best.smoothed !== undefined) text += " (smoothed " + formatSmoothed(best.smoothed) + ")";
                if (best.time !== null) text += " · " + formatTime(best.time);
                row.append(document.createTextNode(text));
                this.tip.append(row);
              }
              if (hidden > 0) this.tip.append(element("div", { class: "cml-chart-tip-row" }, "… and " + hidden + " more lines"));
              if (shown === 0) { this.hide(); return; }
              this.tip.style.display = "block";
              const box = this.box.getBoundingClientRect();
              const plot = this.plot.getBoundingClientRect();
              const scale = plot.width / (this.svg.viewBox.baseVal.width || plot.width);
              const left = event ? event.clientX - box.left : plot.left - box.left + px * scale;
              const tipWidth = this.tip.offsetWidth;
              this.tip.style.left = Math.max(0, Math.min(left + 12, box.width - tipWidth)) + "px";
              this.tip.style.top = (plot.top - box.top + a.top * scale + 4) + "px";
            }

            hide() {
              if (this.overlay) this.overlay.replaceChildren();
              this.tip.style.display = "none";
            }

            dragStarted(event) {
              if (event.button !== 0) return;
              const point = this.position(event);
              if (!this.inside(point)) return;
              event.preventDefault();
              this.plot.focus();
              const rect = svgElement("rect", { x: point.x, y: this.area.top, width: 0, height: this.area.bottom - this.area.top,
                                                fill: "#0072B2", "fill-opacity": "0.15", class: "cml-chart-selection" });
              this.svg.append(rect);
              this.drag = { x: point.x, to: point.x, rect: rect };
            }

            dragEnded(event) {
              const drag = this.drag;
              if (!drag) return;
              this.drag = null;
              drag.rect.remove();
              if (Math.abs(drag.to - drag.x) < 4 || !this.domain) return;  // a click, not a drag
              let from = this.xAt(Math.min(drag.x, drag.to)), to = this.xAt(Math.max(drag.x, drag.to));
              // Steps are whole: the same points, and an axis that starts and ends on steps.
              if (this.svg.getAttribute("data-x-unit") === "step" && Math.ceil(from) <= Math.floor(to)) {
                from = Math.ceil(from);
                to = Math.floor(to);
              }
              this.zoom(from, to);
            }

            zoom(from, to) {
              if (from === null && this.from === null && this.to === null) return;
              this.from = from;
              this.to = to;
              this.load();
            }

            // Left and right move the crosshair from point to point (of the first line), Home and End
            // to the ends; Escape hides it, or zooms out when nothing is shown.
            key(event) {
              const points = this.series && this.series.length > 0 ? this.series[0].points : [];
              if (points.length === 0) return;
              const moves = { ArrowLeft: -1, ArrowRight: 1, Home: -Infinity, End: Infinity };
              if (event.key in moves) {
                event.preventDefault();
                const move = moves[event.key];
                let next = this.cursor < 0 ? (move > 0 ? 0 : points.length - 1) : this.cursor + move;
                if (move === -Infinity) next = 0;
                if (move === Infinity) next = points.length - 1;
                this.cursor = Math.max(0, Math.min(points.length - 1, next));
                this.mark(points[this.cursor].px, null);
              } else if (event.key === "Escape") {
                if (this.cursor >= 0) { this.cursor = -1; this.hide(); } else this.zoom(null, null);
              }
            }
          }

          function start() {
            for (const box of document.querySelectorAll("[data-cml-chart]")) {
              if (!box.cmlChart) box.cmlChart = new Chart(box);
            }
          }
          if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
          else start();
          window.cmlCharts = { start: start };
        })();
        """##
}
