import BackpropCore
import BackpropNetwork

// The walkthrough's text, generated from a trace: for each step the seed's line of code, and what
// it did to the objects. Each relation is worded from what Trace+Relations.swift found on the
// objects: "`R.inp` is `L1.out`, the same object" only when `R.inp === L1.out` held at that step.

/// One statement of the walkthrough, optionally about one tensor whose shape and values it shows.
public struct NarratedLine {
    /// The statement: `R.inp is L1.out, the same object (R.inp === L1.out)`.
    public let text: String
    /// The tensor whose shape and preview follow the statement, if any.
    public let tensor: Tensor?

    /// Creates a statement, about `tensor` if given.
    public init(_ text: String, tensor: Tensor? = nil) {
        self.text = text
        self.tensor = tensor
    }
}

/// One step of the walkthrough: the seed's code that ran, and what it did.
public struct NarratedStep {
    /// The step's index in the trace.
    public let index: Int
    /// A short title: `forward through L1`, `backward through R`.
    public let title: String
    /// The line of the seed's program that runs: `x = L1(x)`.
    public let code: String
    /// The seed's method body it runs, with `self.`: `Lin.__call__: self.inp = inp; ...`; empty if
    /// none.
    public let comment: String
    /// The formulas this step computes, with the layer's name: `L2.inp.g = L2.out.g @ L2.w.t()`.
    public let formulas: [String]
    /// What the step did, checked on the objects.
    public let lines: [NarratedLine]
}

/// The walkthrough of a trace, step by step, in words.
///
/// ```swift
/// let narration = Narration(trace: Trace.record(model: model, x: x, targ: targ))
/// print(narration.text)
/// ```
public struct Narration {
    /// The trace narrated.
    public let trace: Trace
    /// One narrated step per trace step.
    public let steps: [NarratedStep]
    /// Whether activation statistics are part of the forward steps and the summary.
    public let includesStatistics: Bool
    /// How many entries at each end of a dimension the previews show.
    public let previewEdge: Int

    /// Narrates `trace`; with `statistics`, adds the mean and standard deviation after every layer.
    /// - Parameters:
    ///   - trace: the recorded run of the seed's program.
    ///   - statistics: whether to add the activations' mean and standard deviation.
    ///   - previewEdge: how many entries at each end of a dimension the previews show.
    ///   - inputs: where `x` and `targ` come from, said when the model is called
    ///     (`the first 5 rows of Fashion-MNIST's x_train and y_train`).
    public init(
        trace: Trace, statistics: Bool = false, previewEdge: Int = 2,
        inputs: String = "the seed's x_train and y_train"
    ) {
        self.trace = trace
        self.includesStatistics = statistics
        self.previewEdge = previewEdge
        let writer = StepWriter(trace: trace, statistics: statistics, inputs: inputs)
        self.steps = trace.steps.map { writer.narrate($0) }
    }

    /// `shape [5, 50]` and the values, elided in the middle of long dimensions.
    public func preview(_ tensor: Tensor) -> String {
        if tensor.rank == 0 { return "shape [] (a scalar)  \(tensor.preview())" }
        return "shape \(tensor.shape)  \(tensor.preview(edge: previewEdge))"
    }

    /// The whole walkthrough as plain text, one block per step.
    public var text: String {
        var output: [String] = []
        output.append("Backpropagation, step by step, from a live run. " + heading)
        for step in steps {
            output.append("")
            output.append("Step \(step.index) of \(steps.count - 1): \(step.title)")
            output.append("    \(step.code)")
            if !step.comment.isEmpty { output.append("        # \(step.comment)") }
            for formula in step.formulas { output.append("        \(formula)") }
            for line in step.lines {
                output.append("  - \(line.text)")
                if let tensor = line.tensor { output.append("      \(preview(tensor))") }
            }
        }
        return output.joined(separator: "\n") + "\n"
    }

    /// The model and the data, in one line: `Model: L1 (Lin), R (Relu), L2 (Lin), loss (Mse); ...`.
    public var heading: String {
        let layers = zip(trace.layerNames, trace.layerCode).map { "\($0) (\($1.className))" }
        return "Model: \(layers.joined(separator: ", ")), "
            + "loss (\(trace.lossCode.className)); x \(trace.x.shape), targ \(trace.targ.shape)."
    }
}

/// Writes the narration of each step; keeps nothing between steps but the trace.
private struct StepWriter {
    let trace: Trace
    let statistics: Bool
    let inputs: String

    func narrate(_ step: TraceStep) -> NarratedStep {
        switch step.event {
        case .modelCreated: modelCreated(step)
        case .modelCalled: modelCalled(step)
        case .layerForward(let index): layerForward(step, index)
        case .lossForward: lossForward(step)
        case .lossBackward: lossBackward(step)
        case .layerBackward(let index): layerBackward(step, index)
        case .backwardStopped(let index): backwardStopped(step, index)
        case .summary: summary(step)
        }
    }

    // MARK: Forward

    private func modelCreated(_ step: TraceStep) -> NarratedStep {
        let layers = zip(trace.layerNames, trace.layerCode).enumerated().map { index, pair in
            constructor(index: index, name: pair.0, code: pair.1)
        }
        var lines: [NarratedLine] = [
            NarratedLine(
                "model.layers = [\(trace.layerNames.joined(separator: ", "))] = [\(layers.joined(separator: ", "))]; "
                    + "model.loss = \(trace.lossName) = \(trace.lossCode.className)()")
        ]
        for state in step.snapshot.states where isParameter(state.slot) {
            lines.append(NarratedLine("\(trace.label(state.slot)): a parameter", tensor: state.tensor))
        }
        let empty = step.snapshot.states.filter { $0.tensor == nil }.map(\.slot.description)
        if !empty.isEmpty {
            lines.append(
                NarratedLine("Nothing has run yet, so these are still None: \(empty.joined(separator: ", "))."))
        }
        lines.append(gradientStatus(step.snapshot))
        let isSeedModel = trace.layerCode.map(\.className) == ["Lin", "Relu", "Lin"]
        let names = trace.slots.compactMap { trace.seedNames[$0] }
        let code =
            isSeedModel && trace.lossCode.className == "Mse"
            ? "model = Model(\(names.joined(separator: ", ")))"
            : "model = Model(layers: [\(layers.joined(separator: ", "))], loss: \(trace.lossCode.className)())"
        return NarratedStep(
            index: step.index, title: "the model is built", code: code, comment: "", formulas: [], lines: lines)
    }

    private func modelCalled(_ step: TraceStep) -> NarratedStep {
        var lines = [
            NarratedLine("x and targ are \(inputs). x, the input:", tensor: trace.x),
            NarratedLine("targ, the targets:", tensor: trace.targ),
            NarratedLine(
                "The loop will call the layers in order: \(trace.layerNames.joined(separator: ", ")); "
                    + "each call's result becomes the next x."),
        ]
        if statistics {
            lines.append(NarratedLine("stats " + ActivationStatistics(name: "x", tensor: trace.x).summary))
        }
        return NarratedStep(
            index: step.index, title: "the model is called", code: "loss = model(x, targ)",
            comment: "Model.__call__: for l in self.layers: x = l(x); return self.loss(x, targ)", formulas: [],
            lines: lines)
    }

    private func layerForward(_ step: TraceStep, _ index: Int) -> NarratedStep {
        let name = trace.layerNames[index]
        let code = trace.layerCode[index]
        var lines: [NarratedLine] = []
        if let link = trace.inputLink(at: step.index) { lines.append(contentsOf: describe(link)) }
        let out = step.snapshot.tensor(Slot(name, "out"))
        if code.isKnown {
            lines.append(NarratedLine(SeedCode.instantiate(code.result, as: name), tensor: out))
        } else {
            lines.append(NarratedLine("\(name).out, computed by \(code.className)", tensor: out))
        }
        if let link = trace.outputLink(at: step.index) {
            lines.append(contentsOf: describeReturn(link))
        }
        if statistics, let returned = step.returned {
            lines.append(NarratedLine("stats " + ActivationStatistics(name: "\(name).out", tensor: returned).summary))
        }
        return NarratedStep(
            index: step.index, title: "forward through \(name)", code: "x = \(name)(x)",
            comment: methodComment(code, method: "__call__", body: code.forward), formulas: [], lines: lines)
    }

    private func lossForward(_ step: TraceStep) -> NarratedStep {
        let name = trace.lossName
        let code = trace.lossCode
        var lines: [NarratedLine] = []
        if let link = trace.inputLink(at: step.index) {
            lines.append(contentsOf: describe(link))
            if link.identity == .sameObject {
                lines.append(NarratedLine("So \(name).inp is the model's output: the tensor the last layer returned."))
            }
        }
        if let link = trace.targetLink(at: step.index) { lines.append(contentsOf: describe(link)) }
        let out = step.snapshot.tensor(Slot(name, "out"))
        let result =
            code.isKnown ? SeedCode.instantiate(code.result, as: name) : "\(name).out, computed by \(code.className)"
        lines.append(NarratedLine(result, tensor: out))
        if let link = trace.outputLink(at: step.index) {
            if link.identity == .sameObject {
                lines.append(NarratedLine("The call returns \(name).out, so the program's loss is \(name).out."))
            } else {
                lines.append(contentsOf: describeReturn(link))
            }
        }
        return NarratedStep(
            index: step.index, title: "the loss", code: "return self.loss(x, targ)",
            comment: methodComment(code, method: "__call__", body: code.forward), formulas: [], lines: lines)
    }

    // MARK: Backward

    private func lossBackward(_ step: TraceStep) -> NarratedStep {
        let name = trace.lossName
        let code = trace.lossCode
        var lines = writes(step, owner: name, code: code)
        let outSlot = Slot(name, "out")
        if step.snapshot[outSlot]?.g == nil {
            lines.append(
                NarratedLine(
                    "\(name).out.g is not set (checked: it is None). The loss's backward writes \(name).inp.g, "
                        + "the gradient of the loss with respect to its input, not out.g."))
        } else {
            lines.append(NarratedLine("\(name).out.g is set too, by this step."))
        }
        return NarratedStep(
            index: step.index, title: "backward through the loss", code: "self.loss.backward()",
            comment: methodComment(code, method: "backward", body: ""),
            formulas: code.backward.map { SeedCode.instantiate($0.line, as: name) }, lines: lines)
    }

    private func layerBackward(_ step: TraceStep, _ index: Int) -> NarratedStep {
        let name = trace.layerNames[index]
        let code = trace.layerCode[index]
        var lines: [NarratedLine] = []
        if let source = trace.gradientSource(at: step.index) { lines.append(read(source)) }
        lines.append(contentsOf: writes(step, owner: name, code: code))
        return NarratedStep(
            index: step.index, title: "backward through \(name)", code: "l.backward()   # l = \(name)",
            comment: methodComment(code, method: "backward", body: ""),
            formulas: code.backward.map { SeedCode.instantiate($0.line, as: name) }, lines: lines)
    }

    private func backwardStopped(_ step: TraceStep, _ index: Int) -> NarratedStep {
        let name = trace.layerNames[index]
        var lines: [NarratedLine] = []
        if let source = trace.gradientSource(at: step.index) {
            lines.append(
                NarratedLine(
                    "\(name).backward() would read \(source.slot).g, but no step has set it (checked: it is None). "
                        + "In the seed, Python would fail here."))
        }
        // Why: the layer after this one wrote its inp.g on an object that is not this out.
        let nextForward =
            index + 1 < trace.layerNames.count
            ? trace.stepIndex(of: .layerForward(index + 1)) : trace.stepIndex(of: .lossForward)
        if let nextForward, let link = trace.inputLink(at: nextForward), link.identity != .sameObject {
            let kind = link.identity == .copy ? "a copy of" : "a different object from"
            lines.append(
                NarratedLine(
                    "\(link.slot.owner).backward wrote \(link.slot).g, but \(link.slot) is \(kind) \(name).out, "
                        + "not the same object, so that gradient never reached \(name).out.g."))
        }
        lines.append(
            NarratedLine("The walkthrough stops here: the gradient does not reach \(name) or the layers before it."))
        return NarratedStep(
            index: step.index, title: "backward stops at \(name)", code: "l.backward()   # l = \(name)",
            comment: "", formulas: [], lines: lines)
    }

    private func summary(_ step: TraceStep) -> NarratedStep {
        let takeaway = trace.takeaway
        let name = trace.lossName
        var lines: [NarratedLine] = []
        if let start = takeaway.start, let startStep = takeaway.startStep {
            lines.append(
                NarratedLine(
                    "Backpropagation starts at the end: \(name).backward() (step \(startStep)) computed the gradient "
                        + "of the loss and stored it in \(name).inp.g:", tensor: start))
        } else {
            lines.append(NarratedLine("\(name).inp.g was never set: the loss's backward did not start the chain."))
        }
        let output = takeaway.modelOutputName
        switch takeaway.lossInput.identity {
        case .sameObject:
            lines.append(
                NarratedLine(
                    "\(name).inp is \(output), the same object (\(name).inp === \(output)): the model's output. "
                        + "So \(name).inp.g is \(output).g, the gradient of the loss with respect to the output, "
                        + "stored in the output tensor itself."))
        case .copy, .different:
            lines.append(
                NarratedLine(
                    "\(name).inp is NOT \(takeaway.modelOutputName) (a different object): the gradient it holds "
                        + "is not on the model's output."))
        }
        if !takeaway.lossOutputGradientIsSet {
            lines.append(
                NarratedLine(
                    "\(name).out.g was never set (checked). That is why the loss's backward writes inp.g and not "
                        + "out.g: "
                        + "its inp is the network's output, where the gradient has to be."))
        }
        let chain = trace.steps.compactMap { traceStep -> String? in
            guard case .layerBackward = traceStep.event, let source = trace.gradientSource(at: traceStep.index),
                let writer = source.writerSlot
            else { return nil }
            return "\(source.slot).g is \(writer).g"
        }
        if !chain.isEmpty {
            lines.append(
                NarratedLine(
                    "From there each layer's backward read the out.g that the layer after it had written as its inp.g: "
                        + chain.joined(separator: ", ") + "."))
        }
        let parameters = step.snapshot.states.filter { isParameter($0.slot) }
        if !parameters.isEmpty {
            let set = parameters.filter { $0.g != nil }.map { "\(trace.seedNames[$0.slot] ?? $0.slot.description).g" }
            let unset = parameters.filter { $0.g == nil }.map { "\(trace.seedNames[$0.slot] ?? $0.slot.description).g" }
            var text = "Parameter gradients set: \(set.isEmpty ? "none" : set.joined(separator: ", "))"
            if !unset.isEmpty { text += "; not set: \(unset.joined(separator: ", "))" }
            lines.append(NarratedLine(text + "."))
        }
        if !takeaway.isComplete {
            lines.append(NarratedLine("The backward pass did not finish: see the step where it stopped."))
        }
        if statistics {
            let stats = trace.activationStatistics.map(\.summary)
            lines.append(
                NarratedLine(
                    "Activation statistics: " + stats.joined(separator: "; ") + ". Kaiming initialisation keeps "
                        + "the scale steady: x is normalised (mean 0, std 1); a Lin that feeds a ReLU (w · √(2/m)) "
                        + "gives std ≈ √2 ≈ 1.41, the ReLU brings its mean square back to 1 (mean ≈ 0.56, "
                        + "std ≈ 0.83; the lesson sees about 0.5 and 0.8), and the last Lin (w / √nh) gives "
                        + "std ≈ 1. With few rows, expect these to wander."))
        }
        return NarratedStep(
            index: step.index, title: "the takeaway", code: "# where the gradient starts", comment: "", formulas: [],
            lines: lines)
    }

    // MARK: Pieces

    /// "`R.inp` is `L1.out`, the same object", or what it is instead.
    private func describe(_ link: Link) -> [NarratedLine] {
        switch link.identity {
        case .sameObject:
            return [
                NarratedLine(
                    "\(link.slot) is \(link.otherName), the same object (\(link.slot) === \(link.otherName))",
                    tensor: link.tensor)
            ]
        case .copy:
            return [
                NarratedLine(
                    "\(link.slot) is NOT \(link.otherName): a different object with the same values (a copy). "
                        + "A .g written on \(link.slot) will not be \(link.otherName).g.", tensor: link.tensor)
            ]
        case .different:
            return [
                NarratedLine(
                    "\(link.slot) is NOT \(link.otherName): a different object, with another shape or other values.",
                    tensor: link.tensor)
            ]
        }
    }

    /// "`L1` returns `L1.out` itself: `x` is now `L1.out`", or what it returned instead.
    private func describeReturn(_ link: Link) -> [NarratedLine] {
        let owner = link.slot.owner
        switch link.identity {
        case .sameObject:
            return [NarratedLine("\(owner) returns \(link.slot) itself (checked: ===), so x is now \(link.slot).")]
        case .copy:
            return [
                NarratedLine(
                    "\(owner) returned a copy of \(link.slot), not \(link.slot) itself: x is now that copy, "
                        + "and a .g set on it will not be \(link.slot).g.")
            ]
        case .different:
            return [
                NarratedLine("\(owner) returned a different tensor than \(link.slot): x is now what \(owner) returned.")
            ]
        }
    }

    /// "reads `R.out.g`, set by `L2.backward` as `L2.inp.g`".
    private func read(_ source: GradientSource) -> NarratedLine {
        guard source.g != nil else { return NarratedLine("reads \(source.slot).g, which is not set") }
        guard let writerStep = source.writerStep, let writerSlot = source.writerSlot else {
            return NarratedLine("reads \(source.slot).g, set before this run", tensor: source.g)
        }
        let writer = trace.owner(of: trace.steps[writerStep].event) ?? "step \(writerStep)"
        var text = "reads \(source.slot).g, set by \(writer).backward (step \(writerStep)) as \(writerSlot).g"
        if writerSlot != source.slot {
            text += ": \(source.slot) is \(writerSlot), the same object (\(source.slot) === \(writerSlot))"
        }
        return NarratedLine(text, tensor: source.g)
    }

    /// One line per `.g` the step set, with the seed's formula for it when known, and every other
    /// name of the object that now carries it.
    private func writes(_ step: TraceStep, owner: String, code: SeedCode) -> [NarratedLine] {
        var lines: [NarratedLine] = []
        for write in step.writes {
            guard let slot = write.slots.first else { continue }
            var text = "writes \(slot).g"
            if slot.owner == owner, code.gradientLine(for: slot.field) == nil, code.isKnown {
                text += " (not one of the seed's lines for \(code.className).backward)"
            }
            if let seedName = trace.seedNames[slot] { text += ", that is \(seedName).g" }
            let others = write.slots.dropFirst()
            if !others.isEmpty {
                let names = others.map(\.description)
                text +=
                    ": \(slot) is \(names.joined(separator: " and ")), the same object, so this is also "
                    + names.map { "\($0).g" }.joined(separator: " and ")
            } else if slot.field == "inp" {
                text += ": no other slot holds \(slot), so no earlier layer will read this .g"
            }
            lines.append(NarratedLine(text, tensor: write.g))
        }
        // The seed's lines that did not leave a new .g where they say.
        for line in code.backward {
            let slot = Slot(owner, line.field)
            if !step.writes.contains(where: { $0.slots.first == slot }) {
                lines.append(NarratedLine("the seed's line for \(slot).g did not set a new .g on \(slot) (checked)"))
            }
        }
        if step.writes.isEmpty && code.backward.isEmpty {
            lines.append(NarratedLine("no .g was set by this step (checked on every slot)"))
        }
        return lines
    }

    /// `Lin(w1, b1)`, `Relu()`, or `CopyingReLU()` for a layer the walkthrough only observes.
    private func constructor(index: Int, name: String, code: SeedCode) -> String {
        let fields = code.parameterFields.map { field in
            trace.seedNames[Slot(name, field)] ?? "\(name).\(field)"
        }
        return "\(code.className)(\(fields.joined(separator: ", ")))"
    }

    /// `Lin.__call__: self.inp = inp; ...`, or a note that the lines are unknown.
    private func methodComment(_ code: SeedCode, method: String, body: String) -> String {
        guard code.isKnown else {
            return "\(code.className).\(method): not a layer of the seed; what it did is read from the objects"
        }
        return body.isEmpty ? "\(code.className).\(method)" : "\(code.className).\(method): \(body)"
    }

    /// "No .g is set yet", or which are.
    private func gradientStatus(_ snapshot: Snapshot) -> NarratedLine {
        let set = snapshot.states.filter { $0.g != nil }.map(\.slot.description)
        if set.isEmpty { return NarratedLine("No .g is set on any of these tensors yet (checked).") }
        return NarratedLine(".g is already set on: \(set.joined(separator: ", ")).")
    }

    /// Whether `slot` is a layer's parameter.
    private func isParameter(_ slot: Slot) -> Bool {
        guard let index = trace.layerNames.firstIndex(of: slot.owner) else { return false }
        return slot.field != "inp" && slot.field != "out" && index >= 0
    }
}
