import Foundation

// The one way this module writes SVG, for both of its drawings: the walkthrough's diagram and heat
// maps (HTMLReport+SVG.swift, HeatMap.swift) and the training plot (SVGPlot.swift). An element is
// written as text, its attributes in the order given; attribute values and text are escaped
// (`escapeMarkup`, Escaping.swift), children are SVG already and written as they are. Numbers go
// through `SVG.number(_:_:)`, in the format each drawing has always used.

/// Writes SVG elements and numbers as text.
enum SVG {
    /// An element's attributes, written in the order given: `["class": "box", "rx": "6"]`.
    struct Attributes: ExpressibleByDictionaryLiteral {
        /// The names and values, in order.
        private(set) var pairs: [(name: String, value: String)]

        /// The attributes of a literal, in the literal's order.
        init(dictionaryLiteral elements: (String, String)...) {
            pairs = elements.map { (name: $0.0, value: $0.1) }
        }

        /// Adds `name="value"` after the others.
        mutating func append(_ name: String, _ value: String) {
            pairs.append((name: name, value: value))
        }

        /// ` name="value"` for each attribute, values escaped; empty when there are none.
        var text: String {
            pairs.map { " \($0.name)=\"\(escapeMarkup($0.value))\"" }.joined()
        }
    }

    /// How an element's children are laid out in the text.
    enum Layout {
        /// One after the other: `<g><rect/><text>a</text></g>`.
        case inline
        /// A line break after the opening tag and after each child.
        case onePerLine
    }

    /// How a drawing writes its numbers.
    enum NumberFormat {
        /// Rounded to hundredths; a whole number without a point: `3`, `12.50`, `0.33` (the
        /// walkthrough's diagram).
        case hundredths
        /// Exactly one decimal: `3.0`, `12.5` (the training plot).
        case tenths
    }

    /// `<name a="1"/>`: an element without content.
    static func element(_ name: String, _ attributes: Attributes) -> String {
        "<\(name)\(attributes.text)/>"
    }

    /// `<name a="1">text</name>`, the text escaped.
    static func element(_ name: String, _ attributes: Attributes = [:], text: String) -> String {
        "<\(name)\(attributes.text)>\(escapeMarkup(text))</\(name)>"
    }

    /// `<name a="1">children</name>`, the children written as they are (they are SVG already).
    static func element(
        _ name: String, _ attributes: Attributes = [:], children: [String], layout: Layout = .inline
    ) -> String {
        switch layout {
        case .inline:
            "<\(name)\(attributes.text)>" + children.joined() + "</\(name)>"
        case .onePerLine:
            "<\(name)\(attributes.text)>\n" + children.map { $0 + "\n" }.joined() + "</\(name)>"
        }
    }

    /// `value` as an attribute value, in `format`.
    /// - Precondition: `value` is finite.
    static func number(_ value: Double, _ format: NumberFormat = .hundredths) -> String {
        switch format {
        case .hundredths:
            let rounded = (value * 100).rounded() / 100
            if rounded == rounded.rounded() { return String(Int(rounded)) }
            return String(format: "%.2f", rounded)
        case .tenths:
            return String(format: "%.1f", value)
        }
    }
}
