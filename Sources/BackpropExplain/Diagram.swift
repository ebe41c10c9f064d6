import BackpropCore
import BackpropNetwork

// The picture of a trace for the HTML walkthrough: one box per tensor *object* (so `L1.out` and
// `R.inp` share a box when they are the same object, and get two boxes joined by a "copy" arrow
// when they are not), one box per layer and for the loss, forward arrows (inputs to layer to
// output) and backward arrows (the `.g` each backward step read and wrote, found in the trace's
// writes).
//
// Two layouts are computed: horizontal for wide screens (the chain in a row, a layer's parameters
// above and below it) and vertical for phones (the chain in a column, parameters to the right).
// The page switches between them; each element carries both geometries.

/// The boxes and arrows of a trace, their two layouts, and which are shown at each step.
struct Diagram {
    /// A point or a size in the diagram's coordinates (SVG user units).
    struct Point: Equatable {
        var x: Double
        var y: Double
    }

    /// What a box stands for.
    enum NodeKind: String {
        case tensor, operation
    }

    /// A box: a tensor object, or a layer (or the loss).
    struct Node {
        /// `t0`, `t1`, ... for tensors in order of first appearance; `op0`, ... for layers; `op-loss`.
        let id: String
        let kind: NodeKind
        /// Every slot name the object had (`["L1.out", "R.inp"]`), or the layer's name.
        let names: [String]
        /// The shape, or the layer's class.
        let subtitle: String
        /// The tensor object (nil for layers).
        let tensor: Tensor?
        /// The last `.g` the object carried during the run (nil if none).
        let g: Tensor?
        /// The box's size.
        let size: Point
        /// The box's top-left corner in each layout.
        var horizontal = Point(x: 0, y: 0)
        var vertical = Point(x: 0, y: 0)
    }

    /// What an arrow stands for.
    enum EdgeKind: String {
        /// A forward pass: an input into a layer, or a layer into its output.
        case forward
        /// A gradient: a layer reading its `out.g`, or writing a `.g`.
        case backward
        /// A value handed on as a different object (a layer that keeps a copy of its input).
        case copy
    }

    /// An arrow between two boxes.
    struct Edge {
        let id: String
        let kind: EdgeKind
        let from: String
        let to: String
        /// The step from which the arrow is drawn: the forward step that used it, or the backward
        /// step that read or wrote the gradient (0 for a parameter, part of its layer from the start).
        let step: Int?
    }

    /// Which boxes and arrows a step shows, and how.
    struct StepState {
        /// Boxes that exist after the step (layers always exist).
        var present: [String] = []
        /// Boxes whose tensor's `.g` is set after the step.
        var gradient: [String] = []
        /// Boxes and arrows the step is about.
        var active: [String] = []
        /// Arrows to draw: each from the step that used it.
        var edges: [String] = []
        /// The names each present tensor box has at this step (`x` at first, `x = L1.inp` once L1
        /// has run).
        var labels: [String: String] = [:]
    }

    private(set) var nodes: [Node] = []
    private(set) var edges: [Edge] = []
    private(set) var states: [StepState] = []
    private(set) var horizontalSize = Point(x: 0, y: 0)
    private(set) var verticalSize = Point(x: 0, y: 0)

    /// The size of a tensor box and of a layer box.
    static let tensorSize = Point(x: 132, y: 100)
    static let operationSize = Point(x: 64, y: 40)

    /// A layer box wide enough for its name and class (at most a tensor box's width).
    static func operationSize(name: String, className: String) -> Point {
        let characters = Double(Swift.max(name.count, className.count))
        return Point(x: Swift.min(tensorSize.x, Swift.max(operationSize.x, 7.4 * characters + 18)), y: operationSize.y)
    }

    /// Tensor boxes by object identity.
    private var tensorIDs: [ObjectIdentifier: String] = [:]

    init(trace: Trace) {
        addTensorNodes(trace)
        let layerIDs = trace.layerNames.indices.map { "op\($0)" }
        for (index, name) in trace.layerNames.enumerated() {
            nodes.append(
                Node(
                    id: layerIDs[index], kind: .operation, names: [name], subtitle: trace.layerCode[index].className,
                    tensor: nil, g: nil,
                    size: Diagram.operationSize(name: name, className: trace.layerCode[index].className)))
        }
        nodes.append(
            Node(
                id: "op-loss", kind: .operation, names: [trace.lossName], subtitle: trace.lossCode.className,
                tensor: nil, g: nil,
                size: Diagram.operationSize(name: trace.lossName, className: trace.lossCode.className)))
        addEdges(trace)
        layOut(trace)
        addStates(trace)
    }

    /// The box of this object, if it has one.
    func id(of tensor: Tensor?) -> String? {
        tensor.flatMap { tensorIDs[ObjectIdentifier($0)] }
    }

    /// The box with this id.
    func node(_ id: String) -> Node? { nodes.first { $0.id == id } }

    /// The position in ``nodes`` of the box with this id.
    /// - Precondition: the box exists.
    private func nodeIndex(of id: String) -> Int { nodes.firstIndex { $0.id == id }! }

    // MARK: Boxes and arrows

    private mutating func addTensorNodes(_ trace: Trace) {
        var order: [Tensor] = []
        var slots: [ObjectIdentifier: [Trace.Slot]] = [:]
        var gradients: [ObjectIdentifier: Tensor] = [:]
        for step in trace.steps {
            for state in step.snapshot.states {
                guard let tensor = state.tensor else { continue }
                let key = ObjectIdentifier(tensor)
                if slots[key] == nil { order.append(tensor) }
                if !(slots[key] ?? []).contains(state.slot) { slots[key, default: []].append(state.slot) }
                if let g = state.g { gradients[key] = g }
            }
        }
        for (index, tensor) in order.enumerated() {
            let key = ObjectIdentifier(tensor)
            let id = "t\(index)"
            tensorIDs[key] = id
            let labels = slots[key]!.map(trace.label)
            nodes.append(
                Node(
                    id: id, kind: .tensor, names: labels, subtitle: "\(tensor.shape)", tensor: tensor,
                    g: gradients[key], size: Diagram.tensorSize))
        }
    }

    private mutating func addEdge(_ kind: EdgeKind, _ from: String?, _ to: String?, step: Int? = nil) {
        guard let from, let to, from != to else { return }
        if kind != .backward, edges.contains(where: { $0.kind == kind && $0.from == from && $0.to == to }) { return }
        edges.append(Edge(id: "e\(edges.count)", kind: kind, from: from, to: to, step: step))
    }

    private mutating func addEdges(_ trace: Trace) {
        for step in trace.steps {
            let snapshot = step.snapshot
            if let (owner, op) = forwardBox(step.event, trace) {
                let inp = id(of: snapshot.tensor(Trace.Slot(owner, "inp")))
                let now = step.index
                if let passed = id(of: step.passed), passed != inp { addEdge(.copy, passed, inp, step: now) }
                addEdge(.forward, inp, op, step: now)
                for state in snapshot.states where state.slot.owner == owner {
                    // A parameter (or the targets) belongs to its layer from the start.
                    let since = state.slot.field == "targ" ? now : 0
                    if !["inp", "out"].contains(state.slot.field) {
                        addEdge(.forward, id(of: state.tensor), op, step: since)
                    }
                }
                let out = id(of: snapshot.tensor(Trace.Slot(owner, "out")))
                addEdge(.forward, op, out, step: now)
                if let returned = id(of: step.returned), returned != out { addEdge(.forward, op, returned, step: now) }
            }
            switch step.event {
            case .layerBackward(let index):
                let op = "op\(index)"
                let read = id(
                    of: trace.steps[step.index - 1].snapshot.tensor(Trace.Slot(trace.layerNames[index], "out")))
                addEdge(.backward, read, op, step: step.index)
                for write in step.writes { addEdge(.backward, op, id(of: write.tensor), step: step.index) }
            case .lossBackward:
                for write in step.writes { addEdge(.backward, "op-loss", id(of: write.tensor), step: step.index) }
            default:
                break
            }
        }
    }

    /// For a forward step, the name of the layer (or loss) that runs and its box.
    private func forwardBox(_ event: Trace.Event, _ trace: Trace) -> (owner: String, op: String)? {
        switch event {
        case .layerForward(let index): (trace.layerNames[index], "op\(index)")
        case .lossForward: (trace.lossName, "op-loss")
        default: nil
        }
    }

    // MARK: Layout

    /// The boxes in the order the layouts place them.
    private struct Arrangement {
        /// The chain: `x`, then for each layer (and the loss) its input if new, the layer, its output.
        var chain: [String] = []
        /// Each layer box's side boxes: its parameters, or `targ` for the loss.
        var attached: [String: [String]] = [:]
        /// The boxes on neither.
        var leftovers: [String] = []
    }

    /// The margin around each layout.
    private static let margin = 12.0

    private mutating func layOut(_ trace: Trace) {
        let arrangement = arrange(trace)
        layOutHorizontally(arrangement)
        layOutVertically(arrangement)
    }

    private func arrange(_ trace: Trace) -> Arrangement {
        var arrangement = Arrangement()
        var placed: Set<String> = []
        func appendToChain(_ id: String?) {
            guard let id, !placed.contains(id) else { return }
            arrangement.chain.append(id)
            placed.insert(id)
        }
        appendToChain(id(of: trace.x))
        for step in trace.steps {
            guard let (owner, op) = forwardBox(step.event, trace) else { continue }
            appendToChain(id(of: step.passed))
            appendToChain(id(of: step.snapshot.tensor(Trace.Slot(owner, "inp"))))
            appendToChain(op)
            for state in step.snapshot.states where state.slot.owner == owner {
                guard !["inp", "out"].contains(state.slot.field), let side = id(of: state.tensor),
                    !placed.contains(side)
                else { continue }
                arrangement.attached[op, default: []].append(side)
                placed.insert(side)
            }
            appendToChain(id(of: step.snapshot.tensor(Trace.Slot(owner, "out"))))
            appendToChain(id(of: step.returned))
        }
        arrangement.leftovers = nodes.map(\.id).filter { !placed.contains($0) }
        return arrangement
    }

    /// The widest a horizontal row may be before the chain is folded into bands (a convnet's
    /// chain would otherwise be drawn too small to read on a desktop).
    static let widestRow = 2600.0
    /// The width of one band of a folded chain.
    static let bandWidth = 1500.0

    /// The chain in one row (``layOutInOneRow(_:)``), or, when that row would be wider than
    /// ``widestRow``, folded into bands that run left to right, then right to left, and so on
    /// (``layOutInBands(_:)``), so that each arrow between bands is short and vertical.
    private mutating func layOutHorizontally(_ arrangement: Arrangement) {
        layOutInOneRow(arrangement)
        if horizontalSize.x > Diagram.widestRow { layOutInBands(arrangement) }
    }

    /// The chain folded into bands of at most ``bandWidth``: each band has the one row's three
    /// rows (parameters above, the chain, parameters below); odd bands run right to left.
    private mutating func layOutInBands(_ arrangement: Arrangement) {
        let tensor = Diagram.tensorSize
        let margin = Diagram.margin
        let gap = 46.0
        let rowGap = 44.0
        let bandHeight = 3 * tensor.y + 2 * rowGap + 56
        var band = 0
        var cursor = 0.0  // from the band's start, along its direction
        var widest = 0.0
        func place(_ index: Int, width: Double, top: Double) -> Double {
            if cursor > 0 && cursor + width > Diagram.bandWidth {
                band += 1
                cursor = 0
            }
            let offset = band % 2 == 0 ? cursor : Diagram.bandWidth - cursor - width
            let x = margin + offset
            nodes[index].horizontal = Point(x: x, y: margin + Double(band) * bandHeight + top)
            cursor += width + gap
            widest = Swift.max(widest, offset + width)
            return x
        }
        for id in arrangement.chain + arrangement.leftovers {
            let index = nodeIndex(of: id)
            let size = nodes[index].size
            let middle = tensor.y + rowGap
            let x = place(index, width: size.x, top: middle + (tensor.y - size.y) / 2)
            let center = x + size.x / 2
            let bandTop = margin + Double(band) * bandHeight
            for (position, side) in (arrangement.attached[id] ?? []).enumerated() {
                let sideIndex = nodeIndex(of: side)
                let row = position == 0 ? 0 : 2 * (tensor.y + rowGap)
                let shift = Double(Swift.max(0, position - 1)) * (tensor.x + 8)
                nodes[sideIndex].horizontal = Point(x: center - tensor.x / 2 + shift, y: bandTop + row)
                widest = Swift.max(widest, center - tensor.x / 2 + shift + tensor.x - margin)
            }
        }
        horizontalSize = Point(x: widest + 2 * margin, y: Double(band + 1) * bandHeight - 56 + 2 * margin)
    }

    /// The chain in the middle row, each layer's parameters above it (the first) and below (the
    /// others), the leftovers at the end of the row.
    private mutating func layOutInOneRow(_ arrangement: Arrangement) {
        let tensor = Diagram.tensorSize
        let margin = Diagram.margin
        let gap = 46.0
        let rowGap = 44.0
        let topRow = margin
        let middleRow = margin + tensor.y + rowGap
        let bottomRow = middleRow + tensor.y + rowGap
        var cursor = margin
        var usesBottom = false
        for id in arrangement.chain {
            let index = nodeIndex(of: id)
            if nodes[index].kind == .tensor {
                nodes[index].horizontal = Point(x: cursor, y: middleRow)
                cursor += tensor.x + gap
            } else {
                let operation = nodes[index].size
                nodes[index].horizontal = Point(x: cursor, y: middleRow + (tensor.y - operation.y) / 2)
                let center = cursor + operation.x / 2
                for (position, side) in (arrangement.attached[id] ?? []).enumerated() {
                    let sideIndex = nodeIndex(of: side)
                    let row = position == 0 ? topRow : bottomRow
                    let shift = Double(Swift.max(0, position - 1)) * (tensor.x + 8)
                    nodes[sideIndex].horizontal = Point(x: center - tensor.x / 2 + shift, y: row)
                    if position > 0 { usesBottom = true }
                }
                cursor += operation.x + gap
            }
        }
        for id in arrangement.leftovers {
            let index = nodeIndex(of: id)
            nodes[index].horizontal = Point(x: cursor, y: middleRow)
            cursor += nodes[index].size.x + gap
        }
        horizontalSize = Point(
            x: cursor - gap + margin, y: (usesBottom ? bottomRow : middleRow) + tensor.y + margin)
    }

    /// The chain in a column, each layer's parameters stacked to its right, the leftovers at the
    /// bottom of the column.
    private mutating func layOutVertically(_ arrangement: Arrangement) {
        let tensor = Diagram.tensorSize
        let margin = Diagram.margin
        let sideColumn = margin + tensor.x + 40
        var top = margin
        var bottom = margin
        var sideBottom = -Double.infinity  // the lowest side box so far
        for id in arrangement.chain {
            let index = nodeIndex(of: id)
            if nodes[index].kind == .tensor {
                nodes[index].vertical = Point(x: margin, y: top)
                top += tensor.y + 30
            } else {
                let operation = nodes[index].size
                nodes[index].vertical = Point(x: margin + (tensor.x - operation.x) / 2, y: top)
                let center = top + operation.y / 2
                let sides = arrangement.attached[id] ?? []
                let stackTop = center - (Double(sides.count) * (tensor.y + 8) - 8) / 2
                for (position, side) in sides.enumerated() {
                    let sideIndex = nodeIndex(of: side)
                    // Centred on the layer, but below the stack of the layer before (two layers
                    // with parameters in a row, as a convolution and its batch norm).
                    let y = Swift.max(margin, stackTop + Double(position) * (tensor.y + 8), sideBottom + 8)
                    nodes[sideIndex].vertical = Point(x: sideColumn, y: y)
                    bottom = Swift.max(bottom, y + tensor.y)
                    sideBottom = y + tensor.y
                }
                top += operation.y + 30
            }
        }
        for id in arrangement.leftovers {
            let index = nodeIndex(of: id)
            nodes[index].vertical = Point(x: margin, y: top)
            top += nodes[index].size.y + 30
        }
        verticalSize = Point(x: sideColumn + tensor.x + margin, y: Swift.max(top - 30, bottom) + margin)
    }

    // MARK: Steps

    private mutating func addStates(_ trace: Trace) {
        let operations = nodes.filter { $0.kind == .operation }.map(\.id)
        for step in trace.steps {
            var state = StepState()
            let objects = step.snapshot.objects
            state.present = objects.compactMap { id(of: $0) } + operations
            state.gradient = objects.filter { step.snapshot.gradient(of: $0) != nil }.compactMap { id(of: $0) }
            let present = Set(state.present)
            state.edges = edges.filter { edge in
                (edge.step ?? 0) <= step.index && present.contains(edge.from) && present.contains(edge.to)
            }.map(\.id)
            state.active = activeElements(step, trace: trace)
            for object in objects {
                guard let id = id(of: object) else { continue }
                state.labels[id] = step.snapshot.slots(holding: object).map(trace.label).joined(separator: " = ")
            }
            states.append(state)
        }
    }

    /// The boxes and arrows a step is about.
    private func activeElements(_ step: Trace.Step, trace: Trace) -> [String] {
        let snapshot = step.snapshot
        switch step.event {
        case .modelCreated:
            let parameters = snapshot.states.filter { trace.isParameter($0.slot) }
            return nodes.filter { $0.kind == .operation }.map(\.id) + parameters.compactMap { id(of: $0.tensor) }
        case .modelCalled:
            return [id(of: trace.x), id(of: trace.targ)].compactMap { $0 }
        case .layerForward(let index):
            return elements(around: "op\(index)", owner: trace.layerNames[index], snapshot, backward: nil)
        case .backwardStopped(let index):
            // The layer, the output whose .g is missing, and the copy arrow that lost it.
            let out = id(of: snapshot.tensor(Trace.Slot(trace.layerNames[index], "out")))
            let copies = edges.filter { $0.kind == .copy && $0.from == out }.map(\.id)
            return ["op\(index)"] + [out].compactMap { $0 } + copies
        case .lossForward:
            return elements(around: "op-loss", owner: trace.lossName, snapshot, backward: nil)
        case .layerBackward(let index):
            return elements(around: "op\(index)", owner: trace.layerNames[index], snapshot, backward: step.index)
        case .lossBackward:
            return elements(around: "op-loss", owner: trace.lossName, snapshot, backward: step.index)
        case .summary:
            return [id(of: snapshot.tensor(Trace.Slot(trace.lossName, "inp"))), "op-loss"].compactMap { $0 }
        }
    }

    /// A layer box, its slots' boxes, and its forward arrows (or the backward arrows of one step).
    private func elements(around op: String, owner: String, _ snapshot: Trace.Snapshot, backward: Int?) -> [String] {
        var result = [op]
        if let backward {
            let arrows = edges.filter { $0.kind == .backward && $0.step == backward }
            result += arrows.map(\.id) + arrows.flatMap { [$0.from, $0.to] }.filter { $0 != op }
        } else {
            result += snapshot.states.filter { $0.slot.owner == owner }.compactMap { id(of: $0.tensor) }
            let arrows = edges.filter { $0.kind != .backward && ($0.from == op || $0.to == op) }
            result += arrows.map(\.id)
            // The copy arrow into this layer's input.
            let inputs = Set(arrows.map(\.from))
            result += edges.filter { $0.kind == .copy && inputs.contains($0.to) }.map(\.id)
        }
        var seen: Set<String> = []
        return result.filter { seen.insert($0).inserted }
    }
}
