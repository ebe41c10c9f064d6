import BackpropCore
import BackpropNetwork
import Foundation

// The diagram drawn as inline SVG. Every box and arrow carries both layouts (`data-h` and `data-v`:
// a `transform` for boxes, a path for arrows); the page's script applies one of them. Arrowheads
// are drawn into each path (no markers), so that nothing in the drawing refers to anything else.

extension HTMLReport {
    /// The diagram: arrows first (under the boxes), then the boxes.
    var svg: String {
        let horizontal = "0 0 \(svgNumber(diagram.horizontalSize.x)) \(svgNumber(diagram.horizontalSize.y))"
        let vertical = "0 0 \(svgNumber(diagram.verticalSize.x)) \(svgNumber(diagram.verticalSize.y))"
        var parts: [String] = []
        parts.append(
            "<svg id=\"diagram\" viewBox=\"\(horizontal)\" data-h=\"\(horizontal)\" data-v=\"\(vertical)\" "
                + "role=\"img\" aria-labelledby=\"diagram-title\">")
        parts.append(
            "<title id=\"diagram-title\">Layers and tensors of the model, with forward and backward arrows</title>")
        parts.append("<g class=\"edges\">")
        for edge in diagram.edges { parts.append(edgeSVG(edge)) }
        parts.append("</g>")
        for node in diagram.nodes { parts.append(node.kind == .tensor ? tensorSVG(node) : operationSVG(node)) }
        parts.append("</svg>")
        return parts.joined(separator: "\n")
    }

    /// The legend under the diagram.
    static let legend = """
        <span class="key forward">forward</span> \
        <span class="key backward">gradient (.g)</span> \
        <span class="key copy">copy: another object</span> \
        <span class="key cells">values: <span class="neg">negative</span> <span class="pos">positive</span></span> \
        One box per tensor object: names joined by = are the same object.
        """

    // MARK: Boxes

    private func tensorSVG(_ node: Diagram.Node) -> String {
        let size = node.size
        let title = node.names.joined(separator: " = ")
        let fontClass = title.count > 20 ? "names small" : "names"
        var tooltip = "\(title)\n"
        var body: [String] = []
        body.append("<rect class=\"box\" width=\"\(svgNumber(size.x))\" height=\"\(svgNumber(size.y))\" rx=\"6\"/>")
        body.append("<text class=\"\(fontClass)\" x=\"\(svgNumber(size.x / 2))\" y=\"15\">\(escapeHTML(title))</text>")
        body.append("<text class=\"shape\" x=\"\(svgNumber(size.x / 2))\" y=\"28\">\(escapeHTML(node.subtitle))</text>")
        if let tensor = node.tensor {
            tooltip += narration.preview(tensor)
            body.append(valueSVG(tensor, x: 8, y: 33, width: size.x - 16, height: 26))
        }
        body.append("<text class=\"glabel\" x=\"8\" y=\"83\">.g</text>")
        if let g = node.g {
            tooltip += "\n.g: " + narration.preview(g)
            body.append("<g class=\"gmap\">\(valueSVG(g, x: 26, y: 67, width: size.x - 34, height: 24))</g>")
        }
        body.append("<text class=\"gnone\" x=\"\(svgNumber(size.x / 2 + 9))\" y=\"83\">not set</text>")
        return group(node, tooltip: tooltip, body: body)
    }

    private func operationSVG(_ node: Diagram.Node) -> String {
        let size = node.size
        let small = Swift.max(node.names.joined().count, node.subtitle.count) > 16 ? " small" : ""
        let body = [
            "<rect class=\"box\" width=\"\(svgNumber(size.x))\" height=\"\(svgNumber(size.y))\" "
                + "rx=\"\(svgNumber(size.y / 2))\"/>",
            "<text class=\"op-name\(small)\" x=\"\(svgNumber(size.x / 2))\" y=\"18\">"
                + "\(escapeHTML(node.names.joined()))</text>",
            "<text class=\"op-class\(small)\" x=\"\(svgNumber(size.x / 2))\" y=\"32\">"
                + "\(escapeHTML(node.subtitle))</text>",
        ]
        return group(node, tooltip: "\(node.names.joined()): \(node.subtitle)", body: body)
    }

    private func group(_ node: Diagram.Node, tooltip: String, body: [String]) -> String {
        let horizontal = "translate(\(svgNumber(node.horizontal.x)),\(svgNumber(node.horizontal.y)))"
        let vertical = "translate(\(svgNumber(node.vertical.x)),\(svgNumber(node.vertical.y)))"
        return "<g id=\"\(node.id)\" class=\"node \(node.kind.rawValue)\" transform=\"\(horizontal)\" "
            + "data-h=\"\(horizontal)\" data-v=\"\(vertical)\"><title>\(escapeHTML(tooltip))</title>"
            + body.joined() + "</g>"
    }

    /// A heat map of a matrix or vector, or the number itself for a scalar.
    private func valueSVG(_ tensor: Tensor, x: Double, y: Double, width: Double, height: Double) -> String {
        if tensor.count == 1 {
            return "<text class=\"scalar\" x=\"\(svgNumber(x + width / 2))\" y=\"\(svgNumber(y + height / 2 + 4))\">"
                + "\(escapeHTML(tensor.preview()))</text>"
        }
        let map = HeatMap(tensor)
        // A column vector (`w2 (nh, 1)`) is drawn as a column, not stretched into a band.
        let drawnWidth = map.columns == 1 ? Swift.min(width, 18) : width
        return "<g class=\"cells\">" + map.svg(x: x, y: y, width: drawnWidth, height: height)
            + "<rect class=\"frame\" x=\"\(svgNumber(x))\" y=\"\(svgNumber(y))\" width=\"\(svgNumber(drawnWidth))\" "
            + "height=\"\(svgNumber(height))\"/></g>"
    }

    // MARK: Arrows

    private func edgeSVG(_ edge: Diagram.Edge) -> String {
        guard let from = diagram.node(edge.from), let to = diagram.node(edge.to) else { return "" }
        let offset = edge.kind == .backward ? 5.5 : (edge.kind == .forward ? -5.5 : 0)
        let horizontal = arrow(from: from.horizontal, from.size, to: to.horizontal, to.size, offset: offset)
        let vertical = arrow(from: from.vertical, from.size, to: to.vertical, to.size, offset: offset)
        let step = edge.step.map { " data-step=\"\($0)\"" } ?? ""
        return "<path id=\"\(edge.id)\" class=\"edge \(edge.kind.rawValue)\" d=\"\(horizontal)\" "
            + "data-h=\"\(horizontal)\" data-v=\"\(vertical)\"\(step)/>"
    }

    /// A straight arrow between two boxes, from border to border, shifted sideways by `offset` so
    /// that a forward arrow and the gradient arrow coming back along it are both visible.
    private func arrow(from origin: Point, _ originSize: Point, to target: Point, _ targetSize: Point, offset: Double)
        -> String
    {
        let a = Point(x: origin.x + originSize.x / 2, y: origin.y + originSize.y / 2)
        let b = Point(x: target.x + targetSize.x / 2, y: target.y + targetSize.y / 2)
        let dx = b.x - a.x
        let dy = b.y - a.y
        let length = Swift.max((dx * dx + dy * dy).squareRoot(), 1e-9)
        let ux = dx / length
        let uy = dy / length  // direction
        let nx = -uy
        let ny = ux  // normal
        func border(_ center: Point, _ size: Point, sign: Double) -> Point {
            let tx = Swift.abs(ux) > 1e-9 ? (size.x / 2) / Swift.abs(ux) : .infinity
            let ty = Swift.abs(uy) > 1e-9 ? (size.y / 2) / Swift.abs(uy) : .infinity
            let t = Swift.min(tx, ty)
            return Point(x: center.x + sign * ux * t + nx * offset, y: center.y + sign * uy * t + ny * offset)
        }
        let start = border(a, originSize, sign: 1)
        let end = border(b, targetSize, sign: -1)
        let tip = Point(x: end.x - ux * 2, y: end.y - uy * 2)
        let left = Point(x: tip.x - ux * 8 + nx * 4.5, y: tip.y - uy * 8 + ny * 4.5)
        let right = Point(x: tip.x - ux * 8 - nx * 4.5, y: tip.y - uy * 8 - ny * 4.5)
        return "M\(svgNumber(start.x)) \(svgNumber(start.y))L\(svgNumber(tip.x)) \(svgNumber(tip.y))"
            + "M\(svgNumber(left.x)) \(svgNumber(left.y))L\(svgNumber(tip.x)) \(svgNumber(tip.y))"
            + "L\(svgNumber(right.x)) \(svgNumber(right.y))"
    }
}
