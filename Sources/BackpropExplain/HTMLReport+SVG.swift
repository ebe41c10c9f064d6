import BackpropCore
import BackpropNetwork
import Foundation

// The diagram drawn as inline SVG (written with SVG.swift). Every box and arrow carries both
// layouts (`data-h` and `data-v`: a `transform` for boxes, a path for arrows); the page's script
// applies one of them. Arrowheads are drawn into each path (no markers), so that nothing in the
// drawing refers to anything else.

private typealias Point = Diagram.Point

extension HTMLReport {
    /// The diagram: arrows first (under the boxes), then the boxes.
    var svg: String {
        let horizontal = "0 0 \(SVG.number(diagram.horizontalSize.x)) \(SVG.number(diagram.horizontalSize.y))"
        let vertical = "0 0 \(SVG.number(diagram.verticalSize.x)) \(SVG.number(diagram.verticalSize.y))"
        let title = SVG.element(
            "title", ["id": "diagram-title"],
            text: "Layers and tensors of the model, with forward and backward arrows")
        let edges = SVG.element("g", ["class": "edges"], children: diagram.edges.map(edgeSVG), layout: .onePerLine)
        let nodes = diagram.nodes.map { $0.kind == .tensor ? tensorSVG($0) : operationSVG($0) }
        return SVG.element(
            "svg",
            [
                "id": "diagram", "viewBox": horizontal, "data-h": horizontal, "data-v": vertical, "role": "img",
                "aria-labelledby": "diagram-title",
            ],
            children: [title, edges] + nodes, layout: .onePerLine)
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
        let center = SVG.number(size.x / 2)
        var tooltip = "\(title)\n"
        var body: [String] = []
        body.append(
            SVG.element("rect", ["class": "box", "width": SVG.number(size.x), "height": SVG.number(size.y), "rx": "6"]))
        body.append(
            SVG.element(
                "text", ["class": title.count > 20 ? "names small" : "names", "x": center, "y": "15"], text: title))
        body.append(SVG.element("text", ["class": "shape", "x": center, "y": "28"], text: node.subtitle))
        if let tensor = node.tensor {
            tooltip += narration.preview(tensor)
            body.append(valueSVG(tensor, x: 8, y: 33, width: size.x - 16, height: 26))
        }
        body.append(SVG.element("text", ["class": "glabel", "x": "8", "y": "83"], text: ".g"))
        if let g = node.g {
            tooltip += "\n.g: " + narration.preview(g)
            body.append(
                SVG.element(
                    "g", ["class": "gmap"], children: [valueSVG(g, x: 26, y: 67, width: size.x - 34, height: 24)]))
        }
        body.append(
            SVG.element("text", ["class": "gnone", "x": SVG.number(size.x / 2 + 9), "y": "83"], text: "not set"))
        return group(node, tooltip: tooltip, body: body)
    }

    private func operationSVG(_ node: Diagram.Node) -> String {
        let size = node.size
        let name = node.names.joined()
        let small = Swift.max(name.count, node.subtitle.count) > 16 ? " small" : ""
        let center = SVG.number(size.x / 2)
        let body = [
            SVG.element(
                "rect",
                [
                    "class": "box", "width": SVG.number(size.x), "height": SVG.number(size.y),
                    "rx": SVG.number(size.y / 2),
                ]),
            SVG.element("text", ["class": "op-name\(small)", "x": center, "y": "18"], text: name),
            SVG.element("text", ["class": "op-class\(small)", "x": center, "y": "32"], text: node.subtitle),
        ]
        return group(node, tooltip: "\(name): \(node.subtitle)", body: body)
    }

    /// A box's group: placed by its horizontal layout, with both layouts and a tooltip.
    private func group(_ node: Diagram.Node, tooltip: String, body: [String]) -> String {
        let horizontal = "translate(\(SVG.number(node.horizontal.x)),\(SVG.number(node.horizontal.y)))"
        let vertical = "translate(\(SVG.number(node.vertical.x)),\(SVG.number(node.vertical.y)))"
        return SVG.element(
            "g",
            [
                "id": node.id, "class": "node \(node.kind.rawValue)", "transform": horizontal, "data-h": horizontal,
                "data-v": vertical,
            ],
            children: [SVG.element("title", text: tooltip)] + body)
    }

    /// A heat map of a matrix or vector, or the number itself for a scalar.
    private func valueSVG(_ tensor: Tensor, x: Double, y: Double, width: Double, height: Double) -> String {
        if tensor.count == 1 {
            return SVG.element(
                "text", ["class": "scalar", "x": SVG.number(x + width / 2), "y": SVG.number(y + height / 2 + 4)],
                text: tensor.preview())
        }
        let map = HeatMap(tensor)
        // A column vector (`w2 (nh, 1)`) is drawn as a column, not stretched into a band.
        let drawnWidth = map.columns == 1 ? Swift.min(width, 18) : width
        let frame = SVG.element(
            "rect",
            [
                "class": "frame", "x": SVG.number(x), "y": SVG.number(y), "width": SVG.number(drawnWidth),
                "height": SVG.number(height),
            ])
        return SVG.element(
            "g", ["class": "cells"], children: [map.svg(x: x, y: y, width: drawnWidth, height: height), frame])
    }

    // MARK: Arrows

    private func edgeSVG(_ edge: Diagram.Edge) -> String {
        guard let from = diagram.node(edge.from), let to = diagram.node(edge.to) else { return "" }
        let offset = edge.kind == .backward ? 5.5 : (edge.kind == .forward ? -5.5 : 0)
        let horizontal = arrow(from: from.horizontal, from.size, to: to.horizontal, to.size, offset: offset)
        let vertical = arrow(from: from.vertical, from.size, to: to.vertical, to.size, offset: offset)
        var attributes: SVG.Attributes = [
            "id": edge.id, "class": "edge \(edge.kind.rawValue)", "d": horizontal, "data-h": horizontal,
            "data-v": vertical,
        ]
        if let step = edge.step { attributes.append("data-step", "\(step)") }
        return SVG.element("path", attributes)
    }

    /// A straight arrow between two boxes, from border to border, shifted sideways by `offset` so
    /// that a forward arrow and the gradient arrow coming back along it are both visible.
    private func arrow(
        from origin: Point, _ originSize: Point, to target: Point, _ targetSize: Point, offset: Double
    )
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
        /// A path command to a point: `M12 30`, `L40.50 30`.
        func command(_ letter: String, _ point: Point) -> String {
            "\(letter)\(SVG.number(point.x)) \(SVG.number(point.y))"
        }
        let start = border(a, originSize, sign: 1)
        let end = border(b, targetSize, sign: -1)
        let tip = Point(x: end.x - ux * 2, y: end.y - uy * 2)
        let left = Point(x: tip.x - ux * 8 + nx * 4.5, y: tip.y - uy * 8 + ny * 4.5)
        let right = Point(x: tip.x - ux * 8 - nx * 4.5, y: tip.y - uy * 8 - ny * 4.5)
        return command("M", start) + command("L", tip) + command("M", left) + command("L", tip) + command("L", right)
    }
}
