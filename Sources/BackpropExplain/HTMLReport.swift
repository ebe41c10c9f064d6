import BackpropCore
import BackpropNetwork
import Foundation

// The walkthrough as one self-contained web page: the narration's steps embedded as JSON, an SVG
// diagram of the trace (HTMLReport+SVG.swift), for a convnet a gallery of one image's feature maps
// and the first kernels (HTMLReport+FeatureMaps.swift), and the inline style and script that step
// through it (HTMLReport+Assets.swift). The page refers to nothing outside itself: no network, no
// external scripts, styles or fonts, its pictures inline as `data:` addresses, so it opens from a
// file on a machine with no connection.

/// A web page that steps through a narrated trace: diagram, code, narration, previous/next.
///
/// ```swift
/// let page = HTMLReport(narration: Narration(trace: trace)).html
/// try writeAtomically(Array(page.utf8), to: "walkthrough.html")
/// ```
///
/// The page honours a `#step=N` fragment (it opens at step `N`), the arrow keys (`←`, `→`, `Home`,
/// `End`) and two buttons; it switches to a vertical diagram below 760 px of width.
public struct HTMLReport {
    /// The narration shown.
    public let narration: Narration
    /// The boxes and arrows drawn.
    let diagram: Diagram

    /// Prepares the page for `narration`.
    public init(narration: Narration) {
        self.narration = narration
        self.diagram = Diagram(trace: narration.trace)
    }

    /// The page, one HTML document with its style, script, data and drawing inline.
    public var html: String {
        let count = narration.steps.count
        let gallery = featureMapsSection
        let style = gallery.isEmpty ? HTMLReport.style : HTMLReport.style + "\n" + HTMLReport.galleryStyle
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Backpropagation, step by step</title>
            <style>
            \(style)
            </style>
            </head>
            <body>
            <header>
            <h1>Backpropagation, step by step</h1>
            <p class="model">\(escapeMarkup(narration.heading))</p>
            </header>
            <nav class="controls" aria-label="Steps">
            <button id="prev" type="button" aria-label="Previous step">&#8592; Previous</button>
            <span id="counter" aria-live="polite">Step 0 of \(count - 1)</span>
            <button id="next" type="button" aria-label="Next step">Next &#8594;</button>
            </nav>
            <main>
            <figure class="diagram">
            \(svg)
            <figcaption>\(HTMLReport.legend)</figcaption>
            </figure>
            <section class="panel" aria-live="polite">
            <h2 id="step-title">\(escapeMarkup(narration.steps.first?.title ?? ""))</h2>
            <pre id="step-code"></pre>
            <ul id="step-lines"></ul>
            <p class="keys">Keys: &#8592; and &#8594; step back and forth; Home and End jump to the first and \
            last step.</p>
            </section>
            \(gallery)</main>
            <script type="application/json" id="steps">\(stepsJSON)</script>
            <script>
            \(HTMLReport.script)
            </script>
            </body>
            </html>

            """
    }

    // MARK: Step data

    /// One step as the page's script reads it.
    struct PageStep: Codable {
        struct Line: Codable {
            let text: String
            let preview: String?
        }
        let title: String
        let code: String
        let comment: String
        let formulas: [String]
        let lines: [Line]
        /// Boxes that exist, boxes whose `.g` is set, what the step is about, arrows drawn.
        let present: [String]
        let gradient: [String]
        let active: [String]
        let edges: [String]
        /// Each present tensor box's names at this step.
        let labels: [String: String]
    }

    /// The steps, as the page's script reads them.
    var pageSteps: [PageStep] {
        zip(narration.steps, diagram.states).map { step, state in
            PageStep(
                title: "Step \(step.index): \(step.title)", code: step.code, comment: step.comment,
                formulas: step.formulas,
                lines: step.lines.map { PageStep.Line(text: $0.text, preview: $0.tensor.map(narration.preview)) },
                present: state.present, gradient: state.gradient, active: state.active, edges: state.edges,
                labels: state.labels)
        }
    }

    /// The steps as JSON, safe inside a `<script>` element (`escapeScriptJSON`), keys sorted so that
    /// the same run writes the same page.
    var stepsJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data = (try? encoder.encode(pageSteps)) ?? Data("[]".utf8)
        return escapeScriptJSON(String(decoding: data, as: UTF8.self))
    }
}
