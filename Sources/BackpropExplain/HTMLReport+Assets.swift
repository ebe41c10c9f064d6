import BackpropCore
import BackpropNetwork

// The page's inline style and script. Both are plain text embedded in the page: system fonts only,
// no external resource of any kind.

extension HTMLReport {
    /// The page's style: one column below 760 px (text first, then the vertical diagram), the
    /// diagram above the text on wider screens.
    static let style = """
        :root { --ink: #1d2330; --muted: #5b6478; --line: #c9cfdb; --paper: #ffffff; --page: #f4f6fa;
          --forward: #3b4a6b; --backward: #d95f02; --copy: #7b3294; --active: #f2a900; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
          color: var(--ink); background: var(--page); }
        header { padding: 12px 16px 4px; }
        h1 { font-size: 1.3rem; margin: 0 0 4px; }
        .model { margin: 0; color: var(--muted); font-size: 0.9rem; overflow-wrap: anywhere; }
        .controls { position: sticky; top: 0; z-index: 2; display: flex; align-items: center; gap: 12px;
          padding: 8px 16px; background: var(--page); border-bottom: 1px solid var(--line); }
        .controls button { font: inherit; padding: 8px 14px; min-height: 44px; border-radius: 8px;
          border: 1px solid var(--forward); background: var(--paper); color: var(--ink); cursor: pointer; }
        .controls button:disabled { opacity: 0.4; cursor: default; }
        .controls button:focus-visible { outline: 3px solid var(--active); outline-offset: 2px; }
        #counter { flex: 1; text-align: center; font-weight: 600; }
        main { display: flex; flex-direction: column; gap: 12px; padding: 12px 16px 24px; }
        figure.diagram { margin: 0; background: var(--paper); border: 1px solid var(--line); border-radius: 8px;
          padding: 8px; }
        #diagram { display: block; width: 100%; height: auto; }
        figcaption { font-size: 0.8rem; color: var(--muted); padding: 6px 4px 0; }
        .key { white-space: nowrap; margin-right: 10px; }
        .key::before { content: ""; display: inline-block; width: 22px; height: 0; margin-right: 4px;
          vertical-align: middle; border-top: 3px solid var(--forward); }
        .key.backward::before { border-top-color: var(--backward); }
        .key.copy::before { border-top: 3px dashed var(--copy); }
        .key.cells::before { display: none; }
        .neg { color: #2166ac; font-weight: 600; } .pos { color: #b2182b; font-weight: 600; }
        .panel { background: var(--paper); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
        .panel h2 { font-size: 1.1rem; margin: 0 0 8px; }
        pre, code { font-family: ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
        #step-code { margin: 0 0 10px; padding: 10px 12px; background: #f0f2f7; border-radius: 6px;
          white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.9rem; }
        #step-code span { display: block; }
        #step-code .comment, #step-code .formula { padding-left: 2em; }
        #step-code .comment { color: var(--muted); }
        #step-code .formula { color: var(--backward); }
        #step-lines { margin: 0; padding-left: 1.2em; }
        #step-lines li { margin: 0 0 8px; overflow-wrap: anywhere; }
        #step-lines code.preview { display: block; font-size: 0.8rem; color: var(--muted);
          white-space: pre-wrap; overflow-wrap: anywhere; }
        .keys { font-size: 0.8rem; color: var(--muted); margin: 8px 0 0; }
        /* The diagram */
        .node .box { fill: var(--paper); stroke: var(--line); stroke-width: 1.5; }
        .node.operation .box { fill: #e8ecf5; stroke: var(--forward); }
        .node text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: var(--ink);
          text-anchor: middle; }
        .node text.names { font-weight: 700; }
        .node text.names.small { font-size: 9px; }
        .node text.shape, .node text.op-class { fill: var(--muted); font-size: 10px; }
        .node text.op-name { font-weight: 700; font-size: 12px; }
        .node text.op-name.small, .node text.op-class.small { font-size: 9px; }
        .node text.glabel { text-anchor: start; font-weight: 700; fill: var(--backward); }
        .node text.gnone { fill: var(--muted); font-style: italic; }
        .node text.scalar { font: 12px ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
        .node .frame { fill: none; stroke: #8891a5; stroke-width: 0.5; }
        .node .gmap { display: none; }
        .node.g-set .gmap { display: inline; }
        .node.g-set .gnone { display: none; }
        .node.g-set .box { stroke: var(--backward); }
        .node.absent { opacity: 0.15; }
        .node.active .box { stroke: var(--active); stroke-width: 4; }
        .edge { fill: none; stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; opacity: 0.55; }
        .edge.forward { stroke: var(--forward); }
        .edge.backward { stroke: var(--backward); }
        .edge.copy { stroke: var(--copy); stroke-dasharray: 5 4; }
        .edge.hidden { display: none; }
        .edge.active { stroke-width: 4; opacity: 1; }
        @media (min-width: 760px) {
          header, .controls, main { padding-left: 24px; padding-right: 24px; }
          h1 { font-size: 1.5rem; }
        }
        @media (max-width: 759px) {
          .panel { order: 1; }
          figure.diagram { order: 2; }
          .controls { gap: 8px; padding: 8px 12px; }
          .controls button { padding: 8px 10px; }
          main { padding: 10px 10px 20px; }
        }
        """

    /// The style of a convnet's gallery (HTMLReport+FeatureMaps.swift), added only to pages that
    /// have one: last in the column, its pictures wrapping to the width.
    static let galleryStyle = """
        /* The gallery of a convnet's feature maps and kernels */
        .maps { order: 3; background: var(--paper); border: 1px solid var(--line); border-radius: 8px;
          padding: 12px 16px; min-width: 0; }
        .maps h2 { font-size: 1.1rem; margin: 0 0 8px; }
        .maps .note { font-size: 0.85rem; color: var(--muted); margin: 0 0 12px; }
        .maps figure { margin: 0 0 14px; }
        .maps figcaption { font-size: 0.85rem; margin: 0 0 4px; overflow-wrap: anywhere; }
        .tiles { display: flex; flex-wrap: wrap; gap: 3px; align-items: flex-end; }
        .tiles img { display: block; max-width: 100%; height: auto; image-rendering: pixelated;
          outline: 1px solid var(--line); }
        .pair { display: flex; align-items: flex-end; gap: 2px; padding: 2px; border: 1px solid var(--line);
          border-radius: 4px; }
        .pair .index { font-size: 0.7rem; color: var(--muted); min-width: 1.4em; text-align: right; }
        """

    /// The page's script: reads the steps, applies the layout for the screen's width, shows a step
    /// (from `#step=N` first), and answers the buttons and the arrow keys.
    static let script = """
        (function () {
          "use strict";
          var steps = JSON.parse(document.getElementById("steps").textContent);
          var svg = document.getElementById("diagram");
          var prev = document.getElementById("prev");
          var next = document.getElementById("next");
          var narrow = window.matchMedia("(max-width: 759px)");
          var current = 0;

          function layout() {
            var key = narrow.matches ? "v" : "h";
            svg.setAttribute("viewBox", svg.getAttribute("data-" + key));
            svg.querySelectorAll(".node").forEach(function (node) {
              node.setAttribute("transform", node.getAttribute("data-" + key));
            });
            svg.querySelectorAll(".edge").forEach(function (edge) {
              edge.setAttribute("d", edge.getAttribute("data-" + key));
            });
          }

          function element(tag, className, text) {
            var e = document.createElement(tag);
            if (className) { e.className = className; }
            if (text !== undefined) { e.textContent = text; }
            return e;
          }

          function show(index) {
            current = Math.max(0, Math.min(steps.length - 1, index));
            var step = steps[current];
            var present = new Set(step.present), gradient = new Set(step.gradient);
            var active = new Set(step.active), edges = new Set(step.edges);
            svg.querySelectorAll(".node").forEach(function (node) {
              node.classList.toggle("absent", !present.has(node.id));
              node.classList.toggle("g-set", gradient.has(node.id));
              node.classList.toggle("active", active.has(node.id));
              var label = step.labels[node.id], names = node.querySelector("text.names");
              if (label && names) {
                names.textContent = label;
                names.classList.toggle("small", label.length > 20);
              }
            });
            svg.querySelectorAll(".edge").forEach(function (edge) {
              edge.classList.toggle("hidden", !edges.has(edge.id));
              edge.classList.toggle("active", active.has(edge.id));
            });
            document.getElementById("counter").textContent = "Step " + current + " of " + (steps.length - 1);
            document.getElementById("step-title").textContent = step.title;
            var code = document.getElementById("step-code");
            code.textContent = "";
            code.appendChild(element("span", "code", step.code));
            if (step.comment) { code.appendChild(element("span", "comment", "# " + step.comment)); }
            step.formulas.forEach(function (formula) {
              code.appendChild(element("span", "formula", formula));
            });
            var list = document.getElementById("step-lines");
            list.textContent = "";
            step.lines.forEach(function (line) {
              var item = element("li", null, line.text);
              if (line.preview) { item.appendChild(element("code", "preview", line.preview)); }
              list.appendChild(item);
            });
            prev.disabled = current === 0;
            next.disabled = current === steps.length - 1;
            if (location.hash !== "#step=" + current) {
              try { history.replaceState(null, "", "#step=" + current); } catch (e) { /* some file: URLs */ }
            }
          }

          function fromHash() {
            var match = /step=(\\d+)/.exec(location.hash);
            return match ? parseInt(match[1], 10) : 0;
          }

          prev.addEventListener("click", function () { show(current - 1); });
          next.addEventListener("click", function () { show(current + 1); });
          document.addEventListener("keydown", function (event) {
            if (event.altKey || event.ctrlKey || event.metaKey) { return; }
            if (event.key === "ArrowRight") { show(current + 1); event.preventDefault(); }
            else if (event.key === "ArrowLeft") { show(current - 1); event.preventDefault(); }
            else if (event.key === "Home") { show(0); event.preventDefault(); }
            else if (event.key === "End") { show(steps.length - 1); event.preventDefault(); }
          });
          window.addEventListener("hashchange", function () { show(fromHash()); });
          if (narrow.addEventListener) { narrow.addEventListener("change", layout); }
          layout();
          show(fromHash());
        })();
        """
}
