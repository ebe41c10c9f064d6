// Reverse-mode automatic differentiation on `Tensor`, independent of the layers' hand-written
// `backward()` methods (the two never call each other; tests and `gradcheck` compare them).
//
// Recording: every tensor operation ends with `.recorded(op, inputs...)`. When autograd is on and
// an input requires gradients, the result remembers a `GradFn` (the op and its inputs) and
// requires gradients too; otherwise nothing is recorded and the operation costs nothing extra.
//
// Backward: `loss.backward()` orders the recorded graph topologically (iteratively, so a chain of
// 100,000 operations does not overflow the stack), then walks it from the loss to the leaves,
// asking `Derivatives.swift` for each op's input gradients.

/// A recorded operation: what produced a tensor, from which inputs (a node of autograd's graph).
final class GradFn {
    /// The operation, with whatever its derivative needs saved.
    package let op: Op
    /// The operands, in the order the derivative table returns their gradients.
    /// (`var` only so that `releaseIteratively` can take them apart.)
    package var inputs: [Tensor]
    /// The inputs' and the output's storage versions when the operation was recorded: a
    /// derivative computed after one of them changed in place would use the new values.
    let inputVersions: [Int]
    let outputVersion: Int

    init(op: Op, inputs: [Tensor], outputVersion: Int) {
        self.op = op
        self.inputs = inputs
        self.inputVersions = inputs.map(\.storage.version)
        self.outputVersion = outputVersion
    }

    /// Stops, naming the operation and the tensor, if an input or the output of this operation
    /// was changed in place after it was recorded (PyTorch's "one of the variables needed for
    /// gradient computation has been modified by an inplace operation").
    func checkVersions(output: Tensor) {
        for (index, input) in inputs.enumerated() where input.storage.version != inputVersions[index] {
            preconditionFailure(
                "backward(): input \(index + 1) of '\(op)' (shape \(input.shape)) was changed in place after the "
                    + "operation was recorded (version \(inputVersions[index]), now \(input.storage.version)); "
                    + "its gradient would use the new values. Change tensors in place only after backward(), "
                    + "or run the forward pass again")
        }
        if output.storage.version != outputVersion {
            preconditionFailure(
                "backward(): the result of '\(op)' (shape \(output.shape)) was changed in place after the "
                    + "operation was recorded (version \(outputVersion), now \(output.storage.version)); "
                    + "run the forward pass again")
        }
    }

    /// Releases a graph without recursion.
    ///
    /// Dropping the last reference to the end of a long chain would otherwise free the chain
    /// recursively, one stack frame per operation, and overflow the stack (a chain of 100,000
    /// operations). Instead, each node that is about to die hands its inputs' nodes to a work list.
    static func releaseIteratively(graphOf tensor: Tensor) {
        var pending: [GradFn] = []
        if let node = tensor.gradFn { pending.append(node) }
        tensor.gradFn = nil
        while var node = pending.popLast() {
            guard isKnownUniquelyReferenced(&node) else { continue }
            var inputs = node.inputs
            node.inputs = []
            while var input = inputs.popLast() {
                if isKnownUniquelyReferenced(&input), let inputNode = input.gradFn {
                    input.gradFn = nil
                    pending.append(inputNode)
                }
            }
        }
    }
}

/// Whether operations are recorded for autograd in the current task (PyTorch's grad mode).
public enum GradMode {
    @TaskLocal package static var isEnabled = true

    /// Runs `body` with recording off (PyTorch's `with torch.no_grad():`), for example to update
    /// parameters in place or to evaluate a model without building a graph.
    public static func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
        try $isEnabled.withValue(false, operation: body)
    }
}

extension Tensor {
    // Recording. One overload per number of inputs, rather than a variadic list, so that an
    // operation on tensors that do not require gradients (the seed's manual path) allocates
    // nothing: it reads one Bool per input and returns.

    /// Records `op` as the operation that produced `self` from `input`, if autograd tracks it;
    /// returns `self`.
    @inline(__always)
    func recorded(_ op: @autoclosure () -> Op, _ input: Tensor) -> Tensor {
        guard input.requiresGrad, GradMode.isEnabled else { return self }
        return record(op(), inputs: [input])
    }

    /// Records `op` as the operation that produced `self` from `a` and `b`, if autograd tracks
    /// either; returns `self`.
    @inline(__always)
    func recorded(_ op: @autoclosure () -> Op, _ a: Tensor, _ b: Tensor) -> Tensor {
        guard a.requiresGrad || b.requiresGrad, GradMode.isEnabled else { return self }
        return record(op(), inputs: [a, b])
    }

    /// Records `op` as the operation that produced `self` from `a`, `b` and `c`, if autograd
    /// tracks any of them; returns `self`.
    @inline(__always)
    func recorded(_ op: @autoclosure () -> Op, _ a: Tensor, _ b: Tensor, _ c: Tensor) -> Tensor {
        guard a.requiresGrad || b.requiresGrad || c.requiresGrad, GradMode.isEnabled else { return self }
        return record(op(), inputs: [a, b, c])
    }

    /// Records `op` as the operation that produced `self` from `inputs`, any number of them
    /// (`cat`, a custom operation), if autograd tracks one of them; returns `self`.
    func recorded(_ op: @autoclosure () -> Op, inputs: [Tensor]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: \.requiresGrad) else { return self }
        return record(op(), inputs: inputs)
    }

    /// Whether an operation on `inputs` would be recorded by autograd: recording is on and one of
    /// them requires gradients. A layer's fast path (a fused kernel that autograd has no
    /// derivative for) runs only where this is false; elsewhere the layer composes the operations
    /// that autograd records.
    package static func wouldRecord(_ inputs: Tensor...) -> Bool {
        GradMode.isEnabled && inputs.contains(where: \.requiresGrad)
    }

    /// Makes `self` a node of the graph: remembers `op` and `inputs`, and requires gradients.
    private func record(_ op: Op, inputs: [Tensor]) -> Tensor {
        gradFn = GradFn(op: op, inputs: inputs, outputVersion: storage.version)
        requiresGrad = true
        return self
    }

    /// The operation autograd recorded as producing this tensor, by name (`"•"`, `"+"`,
    /// `"sum(0)"`), and its inputs; `nil` for a leaf (PyTorch's `grad_fn` and `next_functions`).
    /// The explainer draws the graph from it.
    package var recordedOperation: (name: String, inputs: [Tensor])? {
        gradFn.map { ("\($0.op)", $0.inputs) }
    }

    /// Whether this tensor is a leaf of autograd's graph: created by the user, not recorded from
    /// an operation (PyTorch's `is_leaf`).
    public var isLeaf: Bool { gradFn == nil }

    /// Computes the gradient of this scalar with respect to every tensor that requires gradients
    /// and that it depends on, and adds it to their ``grad`` (PyTorch's `loss.backward()`).
    ///
    /// `.grad` is filled on every tensor of the graph that requires gradients, leaves and
    /// intermediate results alike, so that each can be compared with the seed's `.g` on the same
    /// object. Each `.grad` is a contiguous tensor of its owner's shape, with storage of its own
    /// (never a view of another tensor's gradient), so it may be changed in place.
    ///
    /// Gradients accumulate:
    /// - a tensor used by two operations (or twice by one) gets the sum of both contributions;
    /// - calling `backward()` twice adds the gradients twice, on leaves and intermediate results
    ///   alike: the graph is kept, as with PyTorch's `retain_graph=True`. Call ``zeroGrad()`` on
    ///   the tensors in between to start again.
    ///
    /// The seed's `.g` is never touched. The graph is walked in an iterative topological order,
    /// so its depth is limited by memory, not by the stack.
    /// - Precondition: this tensor has one element and requires gradients; otherwise stops
    ///   naming the shape or the missing `requiresGrad`. No tensor of the graph was changed in
    ///   place (through the subscript or ``withUnsafeMutableBufferPointer(_:)``) after the
    ///   operation that used it was recorded; otherwise stops naming the operation rather than
    ///   computing a gradient from the new values. This is stricter than PyTorch, which stops only
    ///   where the tensor changed was saved for the backward pass (a product's inputs, not a sum's):
    ///   every input and output of every operation is checked here, even where its derivative
    ///   would not read it. (A leaf that requires gradients may be changed in place before it is
    ///   used, which PyTorch refuses; and a second backward() replaces `.grad` by the sum rather
    ///   than adding into the tensor PyTorch keeps.)
    public func backward() {
        precondition(count == 1, "backward(): expects a scalar (one element), got shape \(shape)")
        precondition(
            requiresGrad, "backward(): this tensor does not require gradients; set requiresGrad on an input")
        GradMode.withNoGrad {
            let order = topologicalOrder()
            // Gradients flowing in this pass, by tensor identity (every tensor of `order` stays
            // alive until the end, so identities are not reused).
            var flowing: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): Tensor.ones(shape)]
            for tensor in order.reversed() {
                // All of this tensor's consumers come later in `order`, so its gradient is complete.
                guard let gradient = flowing.removeValue(forKey: ObjectIdentifier(tensor)) else { continue }
                // `gradient` may be a view of, or the very object of, another tensor's gradient
                // (`+` passes `g` through unchanged): `.grad` gets fresh storage.
                tensor.grad = tensor.grad.map { $0 + gradient } ?? gradient.copy()
                guard let node = tensor.gradFn else { continue }
                node.checkVersions(output: tensor)
                let inputGradients = node.op.inputGradients(
                    output: tensor, gradient: gradient, inputs: node.inputs)
                for (input, inputGradient) in zip(node.inputs, inputGradients) {
                    guard input.requiresGrad, let inputGradient else { continue }
                    precondition(
                        inputGradient.shape == input.shape,
                        "autograd: derivative of \(node.op) gave shape \(inputGradient.shape) for an input of shape \(input.shape)"
                    )
                    let key = ObjectIdentifier(input)
                    flowing[key] = flowing[key].map { $0 + inputGradient } ?? inputGradient
                }
            }
        }
    }

    /// Clears ``grad`` (PyTorch's `zero_grad(set_to_none=True)`): the next ``backward()`` starts
    /// this tensor's gradient from nothing instead of adding to it. `.g` is not touched.
    public func zeroGrad() {
        grad = nil
    }

    /// The tensors this one depends on through recorded operations, each after all of its
    /// inputs, ending with `self`. Iterative depth-first search: no recursion, no stack overflow.
    func topologicalOrder() -> [Tensor] {
        var order: [Tensor] = []
        var visited: Set<ObjectIdentifier> = []
        // Each entry: a tensor and how many of its inputs have been pushed.
        var stack: [(tensor: Tensor, nextInput: Int)] = [(self, 0)]
        visited.insert(ObjectIdentifier(self))
        while let top = stack.last {
            let inputs = top.tensor.gradFn?.inputs ?? []
            if top.nextInput < inputs.count {
                stack[stack.count - 1].nextInput += 1
                let input = inputs[top.nextInput]
                if input.requiresGrad && visited.insert(ObjectIdentifier(input)).inserted {
                    stack.append((input, 0))
                }
            } else {
                order.append(top.tensor)
                stack.removeLast()
            }
        }
        return order
    }
}
