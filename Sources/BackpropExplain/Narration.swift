import BackpropCore
import BackpropNetwork

// The walkthrough's text, generated from a trace: for each step the seed's line of code, and what
// it did to the objects. Each relation is worded from what Trace+Relations.swift found on the
// objects: "`R.inp` is `L1.out`, the same object" only when `R.inp === L1.out` held at that step.

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
    public let steps: [Step]
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

    /// `shape [5, 50]` and the values, elided in the middle of long dimensions (at most one entry
    /// at each end of every dimension for a tensor of rank 3 or more: a batch of images).
    public func preview(_ tensor: Tensor) -> String {
        if tensor.rank == 0 { return "shape [] (a scalar)  \(tensor.preview())" }
        let edge = tensor.rank >= 3 ? Swift.min(previewEdge, 1) : previewEdge
        return "shape \(tensor.shape)  \(tensor.preview(edge: edge))"
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

extension Narration {
    /// One statement of the walkthrough, optionally about one tensor whose shape and values it shows.
    public struct Line {
        /// The statement: `R.inp is L1.out, the same object (R.inp === L1.out)`.
        public let text: String
        /// The tensor whose shape and preview follow the statement, if any.
        public let tensor: Tensor?

        /// Creates a statement, about `tensor` if given.
        init(_ text: String, tensor: Tensor? = nil) {
            self.text = text
            self.tensor = tensor
        }
    }

    /// One step of the walkthrough: the seed's code that ran, and what it did.
    public struct Step {
        /// The step's index in the trace, from 0.
        public let index: Int
        /// A short title: `forward through L1`, `backward through R`.
        public let title: String
        /// The line of the seed's program that runs: `x = L1(x)`.
        public let code: String
        /// The seed's method body it runs, with `self.`: `Lin.__call__: self.inp = inp; ...`; empty
        /// if none.
        public let comment: String
        /// The formulas this step computes, with the layer's name: `L2.inp.g = L2.out.g @ L2.w.t()`.
        public let formulas: [String]
        /// What the step did, checked on the objects.
        public let lines: [Line]
    }
}

extension Narration {
    /// Writes the narration of each step; keeps nothing between steps but the trace.
    fileprivate struct StepWriter {
        let trace: Trace
        let statistics: Bool
        let inputs: String

        func narrate(_ step: Trace.Step) -> Step {
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

        private func modelCreated(_ step: Trace.Step) -> Step {
            let layers = zip(trace.layerNames, trace.layerCode).map { constructor(name: $0, code: $1) }
            var lines: [Line] = [
                Line(
                    "model.layers = [\(trace.layerNames.joined(separator: ", "))] = [\(layers.joined(separator: ", "))]; "
                        + "model.loss = \(trace.lossName) = \(trace.lossCode.className)()")
            ]
            for state in step.snapshot.states where trace.isParameter(state.slot) {
                lines.append(Line("\(trace.label(state.slot)): a parameter", tensor: state.tensor))
            }
            let empty = step.snapshot.states.filter { $0.tensor == nil }.map(\.slot.description)
            if !empty.isEmpty {
                lines.append(Line("Nothing has run yet, so these are still None: \(empty.joined(separator: ", "))."))
            }
            lines.append(gradientStatus(step.snapshot))
            let isSeedModel = trace.layerCode.map(\.className) == ["Lin", "Relu", "Lin"]
            let names = trace.slots.compactMap { trace.seedNames[$0] }
            let code =
                isSeedModel && trace.lossCode.className == "Mse"
                ? "model = Model(\(names.joined(separator: ", ")))"
                : "model = Model(layers: [\(layers.joined(separator: ", "))], loss: \(trace.lossCode.className)())"
            return Step(
                index: step.index, title: "the model is built", code: code, comment: "", formulas: [], lines: lines)
        }

        private func modelCalled(_ step: Trace.Step) -> Step {
            var lines = [
                Line("x and targ are \(inputs). x, the input:", tensor: trace.x),
                Line("targ, the targets:", tensor: trace.targ),
                Line(
                    "The loop will call the layers in order: \(trace.layerNames.joined(separator: ", ")); "
                        + "each call's result becomes the next x."),
            ]
            if statistics { lines.append(statisticsLine("x", trace.x)) }
            return Step(
                index: step.index, title: "the model is called", code: "loss = model(x, targ)",
                comment: "Model.__call__: for l in self.layers: x = l(x); return self.loss(x, targ)", formulas: [],
                lines: lines)
        }

        private func layerForward(_ step: Trace.Step, _ index: Int) -> Step {
            let name = trace.layerNames[index]
            let code = trace.layerCode[index]
            var lines: [Line] = []
            if let link = trace.inputLink(at: step.index) { lines.append(contentsOf: describe(link)) }
            lines.append(contentsOf: kept(step, name: name, code: code))
            lines.append(result(of: step, name: name, code: code))
            if let link = trace.outputLink(at: step.index) { lines.append(contentsOf: describeReturn(link)) }
            if statistics, let returned = step.returned { lines.append(statisticsLine("\(name).out", returned)) }
            return forwardStep(step, title: "forward through \(name)", line: "x = \(name)(x)", code: code, lines: lines)
        }

        private func lossForward(_ step: Trace.Step) -> Step {
            let name = trace.lossName
            let code = trace.lossCode
            var lines: [Line] = []
            if let link = trace.inputLink(at: step.index) {
                lines.append(contentsOf: describe(link))
                if link.identity == .sameObject {
                    lines.append(Line("So \(name).inp is the model's output: the tensor the last layer returned."))
                }
            }
            if let link = trace.targetLink(at: step.index) { lines.append(contentsOf: describe(link)) }
            lines.append(result(of: step, name: name, code: code))
            if let link = trace.outputLink(at: step.index) {
                if link.identity == .sameObject {
                    lines.append(Line("The call returns \(name).out, so the program's loss is \(name).out."))
                } else {
                    lines.append(contentsOf: describeReturn(link))
                }
            }
            return forwardStep(step, title: "the loss", line: "return self.loss(x, targ)", code: code, lines: lines)
        }

        // MARK: Backward

        private func lossBackward(_ step: Trace.Step) -> Step {
            let name = trace.lossName
            var lines = writes(step, owner: name, code: trace.lossCode)
            if step.snapshot[Trace.Slot(name, "out")]?.g == nil {
                lines.append(
                    Line(
                        "\(name).out.g is not set (checked: it is None). The loss's backward writes \(name).inp.g, "
                            + "the gradient of the loss with respect to its input, not out.g."))
            } else {
                lines.append(Line("\(name).out.g is set too, by this step."))
            }
            return backwardStep(
                step, title: "backward through the loss", line: "self.loss.backward()", name: name,
                code: trace.lossCode, lines: lines)
        }

        private func layerBackward(_ step: Trace.Step, _ index: Int) -> Step {
            let name = trace.layerNames[index]
            let code = trace.layerCode[index]
            var lines: [Line] = []
            if let source = trace.gradientSource(at: step.index) { lines.append(read(source)) }
            lines.append(contentsOf: readsKept(step, index: index))
            lines.append(contentsOf: writes(step, owner: name, code: code))
            return backwardStep(
                step, title: "backward through \(name)", line: "l.backward()   # l = \(name)", name: name, code: code,
                lines: lines)
        }

        private func backwardStopped(_ step: Trace.Step, _ index: Int) -> Step {
            let name = trace.layerNames[index]
            var lines: [Line] = []
            if let source = trace.gradientSource(at: step.index) {
                lines.append(
                    Line(
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
                    Line(
                        "\(link.slot.owner).backward wrote \(link.slot).g, but \(link.slot) is \(kind) \(name).out, "
                            + "not the same object, so that gradient never reached \(name).out.g."))
            }
            lines.append(
                Line("The walkthrough stops here: the gradient does not reach \(name) or the layers before it."))
            return Step(
                index: step.index, title: "backward stops at \(name)", code: "l.backward()   # l = \(name)",
                comment: "", formulas: [], lines: lines)
        }

        private func summary(_ step: Trace.Step) -> Step {
            let takeaway = trace.takeaway
            let name = trace.lossName
            var lines: [Line] = []
            if let start = takeaway.start, let startStep = takeaway.startStep {
                lines.append(
                    Line(
                        "Backpropagation starts at the end: \(name).backward() (step \(startStep)) computed the "
                            + "gradient of the loss and stored it in \(name).inp.g:", tensor: start))
            } else {
                lines.append(Line("\(name).inp.g was never set: the loss's backward did not start the chain."))
            }
            let output = takeaway.modelOutputName
            switch takeaway.lossInput.identity {
            case .sameObject:
                lines.append(
                    Line(
                        "\(name).inp is \(output), the same object (\(name).inp === \(output)): the model's output. "
                            + "So \(name).inp.g is \(output).g, the gradient of the loss with respect to the output, "
                            + "stored in the output tensor itself."))
            case .copy, .different:
                lines.append(
                    Line(
                        "\(name).inp is NOT \(output) (a different object): the gradient it holds is not on the "
                            + "model's output."))
            }
            if !takeaway.lossOutputGradientIsSet {
                lines.append(
                    Line(
                        "\(name).out.g was never set (checked). That is why the loss's backward writes inp.g and not "
                            + "out.g: its inp is the network's output, where the gradient has to be."))
            }
            let chain = trace.steps.compactMap { traceStep -> String? in
                guard case .layerBackward = traceStep.event, let source = trace.gradientSource(at: traceStep.index),
                    let writer = source.writerSlot
                else { return nil }
                return "\(source.slot).g is \(writer).g"
            }
            if !chain.isEmpty {
                lines.append(
                    Line(
                        "From there each layer's backward read the out.g that the layer after it had written as its "
                            + "inp.g: " + chain.joined(separator: ", ") + "."))
            }
            let parameters = step.snapshot.states.filter { trace.isParameter($0.slot) }
            if !parameters.isEmpty {
                func gradientName(_ state: Trace.SlotState) -> String {
                    "\(trace.seedNames[state.slot] ?? state.slot.description).g"
                }
                let set = parameters.filter { $0.g != nil }.map(gradientName)
                let unset = parameters.filter { $0.g == nil }.map(gradientName)
                var text = "Parameter gradients set: \(set.isEmpty ? "none" : set.joined(separator: ", "))"
                if !unset.isEmpty { text += "; not set: \(unset.joined(separator: ", "))" }
                lines.append(Line(text + "."))
            }
            if !takeaway.isComplete {
                lines.append(Line("The backward pass did not finish: see the step where it stopped."))
            }
            if statistics {
                let stats = trace.activationStatistics.map(\.summary)
                // The lesson's reading of the numbers holds for its kind of network alone: Lins and
                // ReLUs in turn, ending in a Lin. Any other gets the numbers without it.
                let kinds = trace.model.layers.map { $0 is Lin ? "L" : ($0 is ReLU ? "R" : "?") }.joined()
                let isSeedKind =
                    kinds.count >= 3 && kinds.hasPrefix("LR") && kinds.hasSuffix("L")
                    && kinds.split(separator: "R", omittingEmptySubsequences: false).allSatisfy { $0 == "L" }
                let reading =
                    isSeedKind
                    ? " Kaiming initialisation keeps the scale steady: x is normalised (mean 0, std 1); a Lin that "
                        + "feeds a ReLU (w · √(2/m)) gives std ≈ √2 ≈ 1.41, the ReLU brings its mean square back to 1 "
                        + "(mean ≈ 0.56, std ≈ 0.83; the lesson sees about 0.5 and 0.8), and the last Lin (w / √nh) "
                        + "gives std ≈ 1." : ""
                lines.append(
                    Line(
                        "Activation statistics: " + stats.joined(separator: "; ") + "." + reading
                            + " With few rows, expect these to wander."))
            }
            return Step(
                index: step.index, title: "the takeaway", code: "# where the gradient starts", comment: "",
                formulas: [], lines: lines)
        }

        // MARK: Pieces

        /// A forward step of a layer or the loss: the seed's `__call__` as the comment, no formulas.
        private func forwardStep(
            _ step: Trace.Step, title: String, line: String, code: SeedCode, lines: [Line]
        ) -> Step {
            Step(
                index: step.index, title: title, code: line,
                comment: methodComment(code, method: "__call__", body: code.forward), formulas: [], lines: lines)
        }

        /// A backward step of the layer or loss `name`: the seed's backward lines, with `name.` for
        /// `self.`, as the formulas.
        private func backwardStep(
            _ step: Trace.Step, title: String, line: String, name: String, code: SeedCode, lines: [Line]
        ) -> Step {
            Step(
                index: step.index, title: title, code: line, comment: methodComment(code, method: "backward", body: ""),
                formulas: (code.backwardPreamble + code.backward.map(\.line)).map {
                    SeedCode.instantiate($0, as: name)
                },
                lines: lines)
        }

        /// What a forward step stored in `name.out`: the seed's line for it (`L1.out = lin(...)`), or
        /// `name.out, computed by Kind` for a kind whose lines are unknown.
        private func result(of step: Trace.Step, name: String, code: SeedCode) -> Line {
            let out = step.snapshot.tensor(Trace.Slot(name, "out"))
            if code.isKnown { return Line(SeedCode.instantiate(code.result, as: name), tensor: out) }
            return Line("\(name).out, computed by \(code.className)", tensor: out)
        }

        /// `stats L1.out: mean 0.0123, std 0.9876`.
        private func statisticsLine(_ name: String, _ tensor: Tensor) -> Line {
            Line("stats " + ActivationStatistics(name: name, tensor: tensor).summary)
        }

        /// What a layer's forward kept for its backward, each with the line that computed it:
        /// `C1.cols = unfold(C1.inp, 3, padding=1)`. None for the seed's layers.
        private func kept(_ step: Trace.Step, name: String, code: SeedCode) -> [Line] {
            step.kept.map { field, tensor in
                let line = code.kept.first { $0.field == field }?.line ?? "self.\(field), kept for the backward"
                return Line(SeedCode.instantiate(line, as: name), tensor: tensor)
            }
        }

        /// For a layer's backward, what it reads besides `out.g`: the tensors its forward kept,
        /// checked against what the forward step recorded ("the same object", or the same values).
        private func readsKept(_ step: Trace.Step, index: Int) -> [Line] {
            let name = trace.layerNames[index]
            guard let forward = trace.stepIndex(of: .layerForward(index)) else { return [] }
            return step.kept.map { field, tensor in
                let text = "reads \(name).\(field), kept by \(name)'s forward (step \(forward))"
                guard let before = trace.steps[forward].kept.first(where: { $0.field == field })?.tensor else {
                    return Line(text + ": the forward kept no \(field) (checked)")
                }
                switch Trace.Identity.between(tensor, before) {
                case .sameObject: return Line(text + ": the same object (checked: ===)")
                case .copy: return Line(text + ": the same values (checked)")
                case .different: return Line(text + ": NOT what the forward kept: its values changed (checked)")
                }
            }
        }

        /// "`R.inp` is `L1.out`, the same object", or what it is instead.
        private func describe(_ link: Trace.Link) -> [Line] {
            switch link.identity {
            case .sameObject:
                return [
                    Line(
                        "\(link.slot) is \(link.otherName), the same object (\(link.slot) === \(link.otherName))",
                        tensor: link.tensor)
                ]
            case .copy:
                return [
                    Line(
                        "\(link.slot) is NOT \(link.otherName): a different object with the same values (a copy). "
                            + "A .g written on \(link.slot) will not be \(link.otherName).g.", tensor: link.tensor)
                ]
            case .different:
                return [
                    Line(
                        "\(link.slot) is NOT \(link.otherName): a different object, with another shape or other "
                            + "values.", tensor: link.tensor)
                ]
            }
        }

        /// "`L1` returns `L1.out` itself: `x` is now `L1.out`", or what it returned instead.
        private func describeReturn(_ link: Trace.Link) -> [Line] {
            let owner = link.slot.owner
            switch link.identity {
            case .sameObject:
                return [Line("\(owner) returns \(link.slot) itself (checked: ===), so x is now \(link.slot).")]
            case .copy:
                return [
                    Line(
                        "\(owner) returned a copy of \(link.slot), not \(link.slot) itself: x is now that copy, "
                            + "and a .g set on it will not be \(link.slot).g.")
                ]
            case .different:
                return [
                    Line("\(owner) returned a different tensor than \(link.slot): x is now what \(owner) returned.")
                ]
            }
        }

        /// "reads `R.out.g`, set by `L2.backward` as `L2.inp.g`".
        private func read(_ source: Trace.GradientSource) -> Line {
            guard source.g != nil else { return Line("reads \(source.slot).g, which is not set") }
            guard let writerStep = source.writerStep, let writerSlot = source.writerSlot else {
                return Line("reads \(source.slot).g, set before this run", tensor: source.g)
            }
            let writer = trace.owner(of: trace.steps[writerStep].event) ?? "step \(writerStep)"
            var text = "reads \(source.slot).g, set by \(writer).backward (step \(writerStep)) as \(writerSlot).g"
            if writerSlot != source.slot {
                text += ": \(source.slot) is \(writerSlot), the same object (\(source.slot) === \(writerSlot))"
            }
            return Line(text, tensor: source.g)
        }

        /// One line per `.g` the step set, with the seed's formula for it when known, and every other
        /// name of the object that now carries it.
        private func writes(_ step: Trace.Step, owner: String, code: SeedCode) -> [Line] {
            var lines: [Line] = []
            for write in step.writes {
                guard let slot = write.slots.first else { continue }
                var text = "writes \(slot).g"
                if slot.owner == owner, code.gradientLine(for: slot.field) == nil, code.isKnown {
                    text += " (not one of \(code.origin) lines for \(code.className).backward)"
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
                lines.append(Line(text, tensor: write.g))
            }
            // The seed's lines that did not leave a new .g where they say.
            for line in code.backward {
                let slot = Trace.Slot(owner, line.field)
                if !step.writes.contains(where: { $0.slots.first == slot }) {
                    lines.append(Line("\(code.origin) line for \(slot).g did not set a new .g on \(slot) (checked)"))
                }
            }
            if step.writes.isEmpty && code.backward.isEmpty {
                lines.append(Line("no .g was set by this step (checked on every slot)"))
            }
            return lines
        }

        /// `Lin(w1, b1)`, `Relu()`, or `CopyingReLU()` for a layer the walkthrough only observes.
        private func constructor(name: String, code: SeedCode) -> String {
            let fields = code.parameterFields.map { field in
                trace.seedNames[Trace.Slot(name, field)] ?? "\(name).\(field)"
            }
            return "\(code.className)(\((fields + code.arguments).joined(separator: ", ")))"
        }

        /// `Lin.__call__: self.inp = inp; ...`, or a note that the lines are unknown.
        private func methodComment(_ code: SeedCode, method: String, body: String) -> String {
            guard code.isKnown else {
                return "\(code.className).\(method): not a layer of the seed; what it did is read from the objects"
            }
            return body.isEmpty ? "\(code.className).\(method)" : "\(code.className).\(method): \(body)"
        }

        /// "No .g is set yet", or which are.
        private func gradientStatus(_ snapshot: Trace.Snapshot) -> Line {
            let set = snapshot.states.filter { $0.g != nil }.map(\.slot.description)
            if set.isEmpty { return Line("No .g is set on any of these tensors yet (checked).") }
            return Line(".g is already set on: \(set.joined(separator: ", ")).")
        }
    }
}
