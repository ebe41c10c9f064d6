import BackpropCore
import BackpropNetwork

// The computation graph of a model's forward pass as autograd records it, written in Graphviz's
// DOT language, as micrograd's `draw_dot` draws it: a box per tensor (its name when the seed's
// program has one, its shape and the norm of its gradient) and an ellipse per operation, with
// edges input → operation → output.
//
// The graph comes from autograd, not from the layers' hand-written `backward()`: the model runs
// once more with gradients required on `x` and the parameters, `loss.backward()` fills `.grad`,
// and the recorded `gradFn` nodes are walked from the loss. The gradient norms are therefore an
// independent check of the `.g` the walkthrough narrates.

/// A recorded computation graph: tensors, operations and the edges between them.
public struct ComputationGraph {
    /// A box (a tensor) or an ellipse (an operation).
    public struct Node: Equatable, Sendable {
        /// The DOT identifier: `t0`, `t1`, ... for tensors, `f0`, ... for operations.
        public let id: String
        /// For a tensor: its names in the seed's program (`L1.out = R.inp`), or nil if unnamed.
        public let name: String?
        /// For a tensor: its shape.
        public let shape: [Int]?
        /// For a tensor: the Euclidean norm of the gradient autograd computed, nil if none.
        public let gradientNorm: Double?
        /// For an operation: its name (`lin`, `clampMin(0.0)`, `mean`); for a tensor, the operation
        /// that produced it (nil for a leaf).
        public let operation: String?
        /// Whether this node is an operation.
        public let isOperation: Bool
    }

    /// An edge: input tensor → operation, or operation → output tensor.
    public struct Edge: Equatable, Sendable {
        /// The source node's id.
        public let from: String
        /// The target node's id.
        public let to: String
    }

    /// The nodes, tensors before the operations that use them.
    public let nodes: [Node]
    /// The edges.
    public let edges: [Edge]

    /// Runs `model(x, targ)` with autograd on, `loss.backward()`, and walks the recorded graph.
    ///
    /// Gradients are required on `x` and on every parameter for the run only: their
    /// `requiresGrad` and `grad` are restored afterwards, and their `.g` is not touched. The layers
    /// keep this run's `inp` and `out` (equal in value to a plain run's).
    ///
    /// The run is the same function as the walkthrough's: a `Dropout` reuses its last mask (its
    /// `freezesMask` is on for the run), and the buffers a training run moves (batch norm's running
    /// statistics) are put back afterwards.
    /// - Precondition: `x` and `targ` fit the model (the layers stop naming the shapes otherwise).
    public static func record(model: Model, x: Tensor, targ: Tensor) -> ComputationGraph {
        let leaves = [x] + model.parameters
        let saved = leaves.map { (requiresGrad: $0.requiresGrad, grad: $0.grad) }
        let dropouts = model.layers.compactMap { $0 as? Dropout }
        let frozen = dropouts.map(\.freezesMask)
        let buffers = model.layers.flatMap(\.buffers).map(\.tensor)
        let bufferValues = buffers.map(\.values)
        defer {
            for (leaf, state) in zip(leaves, saved) {
                leaf.requiresGrad = state.requiresGrad
                leaf.grad = state.grad
            }
            for (dropout, wasFrozen) in zip(dropouts, frozen) { dropout.freezesMask = wasFrozen }
            for (buffer, values) in zip(buffers, bufferValues) {
                buffer.withUnsafeMutableBufferPointer { target in
                    for index in target.indices { target[index] = values[index] }
                }
            }
        }
        for dropout in dropouts { dropout.freezesMask = true }
        for leaf in leaves {
            leaf.requiresGrad = true
            leaf.grad = nil
        }
        let loss = GradMode.$isEnabled.withValue(true) { model(x, targ) }
        loss.backward()
        return ComputationGraph(loss: loss, names: names(in: model, x: x, targ: targ))
    }

    /// Every tensor the model's slots hold after a run, with its names as the walkthrough gives
    /// them (Trace+Slots.swift): `L1.out = R.inp`, `L1.w (w1)`.
    private static func names(in model: Model, x: Tensor, targ: Tensor) -> [ObjectIdentifier: String] {
        let table = Trace.SlotTable(model: model, x: x, targ: targ)
        var result: [ObjectIdentifier: String] = [:]
        for (slot, tensor) in table.read() {
            guard let tensor else { continue }
            let key = ObjectIdentifier(tensor)
            let name = table.label(slot)
            result[key] = result[key].map { "\($0) = \(name)" } ?? name
        }
        return result
    }

    /// Walks the graph from `loss` (inputs before outputs) and numbers its nodes.
    private init(loss: Tensor, names: [ObjectIdentifier: String]) {
        // Every tensor reachable through gradFn inputs, including inputs that need no gradient
        // (the targets), in an order where inputs come before the tensors computed from them.
        var order: [Tensor] = []
        var visited: Set<ObjectIdentifier> = [ObjectIdentifier(loss)]
        var stack: [(tensor: Tensor, next: Int)] = [(loss, 0)]
        while let top = stack.last {
            let inputs = top.tensor.recordedOperation?.inputs ?? []
            if top.next < inputs.count {
                stack[stack.count - 1].next += 1
                let input = inputs[top.next]
                if visited.insert(ObjectIdentifier(input)).inserted { stack.append((input, 0)) }
            } else {
                order.append(top.tensor)
                stack.removeLast()
            }
        }
        var ids: [ObjectIdentifier: String] = [:]
        var nodes: [Node] = []
        var edges: [Edge] = []
        for (index, tensor) in order.enumerated() {
            let id = "t\(index)"
            ids[ObjectIdentifier(tensor)] = id
            nodes.append(
                Node(
                    id: id, name: names[ObjectIdentifier(tensor)], shape: tensor.shape,
                    gradientNorm: tensor.grad.map { $0.norm() }, operation: tensor.recordedOperation?.name,
                    isOperation: false))
        }
        for tensor in order {
            guard let recorded = tensor.recordedOperation else { continue }
            let id = "f\(ids[ObjectIdentifier(tensor)]!.dropFirst())"
            nodes.append(
                Node(id: id, name: nil, shape: nil, gradientNorm: nil, operation: recorded.name, isOperation: true))
            var seen: Set<String> = []
            for input in recorded.inputs {
                let inputID = ids[ObjectIdentifier(input)]!
                if seen.insert(inputID).inserted { edges.append(Edge(from: inputID, to: id)) }
            }
            edges.append(Edge(from: id, to: ids[ObjectIdentifier(tensor)]!))
        }
        self.nodes = nodes
        self.edges = edges
    }

    /// The graph in Graphviz's DOT language, left to right (`dot -Tsvg graph.dot > graph.svg`).
    public var dot: String {
        var lines = ["digraph backprop {", "  rankdir=LR;", "  node [fontsize=10];"]
        for node in nodes {
            if node.isOperation {
                lines.append("  \"\(node.id)\" [shape=ellipse, label=\"\(escapeDOT(node.operation ?? "?"))\"];")
            } else {
                var label = [node.name ?? "(\(node.operation ?? "leaf"))"]
                if let shape = node.shape { label.append("shape \(shape)") }
                label.append(node.gradientNorm.map { "|grad| \(Tensor.format(Float($0)))" } ?? "no grad")
                let text = label.map(escapeDOT).joined(separator: "\\n")
                lines.append("  \"\(node.id)\" [shape=box, style=rounded, label=\"\(text)\"];")
            }
        }
        for edge in edges { lines.append("  \"\(edge.from)\" -> \"\(edge.to)\";") }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
