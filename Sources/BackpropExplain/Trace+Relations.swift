import BackpropCore
import BackpropNetwork

// The relations the walkthrough states, each derived from a trace's snapshots by comparing object
// identities (`===`), shapes and values, never assumed from the model's type: a layer that copies
// its input gets `.copy` where the seed's `Lin` gets `.sameObject`.

extension Trace {
    /// How two tensors that the seed's program connects are related, checked on the objects.
    enum Identity: Equatable, Sendable {
        /// The very same object (`===`): a `.g` set on one is the other's `.g`.
        case sameObject
        /// A different object with the same shape and values: a `.g` set on one is not on the other.
        case copy
        /// A different object with another shape or other values.
        case different

        /// Compares two tensors: identity first, then shape and values.
        static func between(_ a: Tensor, _ b: Tensor) -> Identity {
            if a === b { return .sameObject }
            if a.shape == b.shape && a.values == b.values { return .copy }
            return .different
        }
    }

    /// A relation the walkthrough states: `slot` against another tensor, such as "`R.inp` is
    /// `L1.out`".
    struct Link {
        /// The slot the relation is about (`R.inp`).
        let slot: Slot
        /// The tensor in that slot.
        let tensor: Tensor
        /// The other tensor (`L1.out`'s object).
        let other: Tensor
        /// The other tensor's name at that moment (`"L1.out"`, `"x"`, `"what L1 returned"`).
        let otherName: String
        /// How the two are related, found by ``Identity/between(_:_:)``.
        let identity: Identity

        /// Relates `tensor`, held in `slot`, to `other`, by comparing the two objects.
        init(slot: Slot, tensor: Tensor, other: Tensor, otherName: String) {
            self.slot = slot
            self.tensor = tensor
            self.other = other
            self.otherName = otherName
            self.identity = .between(tensor, other)
        }
    }

    /// Where the `out.g` that a layer's backward reads comes from.
    struct GradientSource {
        /// The slot read: the layer's `out`.
        let slot: Slot
        /// The object in that slot.
        let tensor: Tensor
        /// Its `.g` just before the layer's backward ran, `nil` if not set.
        let g: Tensor?
        /// The step that set that `.g`, `nil` if none did.
        let writerStep: Int?
        /// The name under which the writing step wrote it (`L2.inp` when `L2.backward` set
        /// `R.out.g`).
        let writerSlot: Slot?
    }

    /// The seed's takeaway, checked: where the gradient of the loss starts.
    struct Takeaway {
        /// The tensor the last layer returned: the model's output.
        let modelOutput: Tensor
        /// Its first name (`L2.out` for the seed's model).
        let modelOutputName: String
        /// How `loss.inp` relates to the model's output (`.sameObject` for the seed's model).
        let lossInput: Link
        /// The step that set `loss.inp.g`, `nil` if none did.
        let startStep: Int?
        /// The first gradient: `loss.inp.g` at the end of the run.
        let start: Tensor?
        /// Whether `loss.out.g` is set at the end (it is not: `Mse.backward` writes `inp.g`).
        let lossOutputGradientIsSet: Bool
        /// Whether every layer ran backward (false if the chain broke, see
        /// ``Event/backwardStopped(_:)``).
        let isComplete: Bool
    }
}

extension Trace {
    /// The slot that first held this very object, looking at steps `0...step` in order (slot order
    /// within a step): `L1.out` for the tensor `R.inp` also holds.
    func firstSlot(holding tensor: Tensor, through step: Int) -> Slot? {
        while indexedSteps < steps.count {
            for state in steps[indexedSteps].snapshot.states {
                guard let held = state.tensor, firstHolders[ObjectIdentifier(held)] == nil else { continue }
                firstHolders[ObjectIdentifier(held)] = (indexedSteps, state.slot)
            }
            indexedSteps += 1
        }
        guard let first = firstHolders[ObjectIdentifier(tensor)], first.step <= step else { return nil }
        return first.slot
    }

    /// A name for this object at `step`: its first slot, else "what `L1` returned" if a layer
    /// returned it without storing it, else "an unnamed tensor".
    func name(of tensor: Tensor, through step: Int) -> String {
        if let slot = firstSlot(holding: tensor, through: step) { return slot.description }
        for index in 0...min(step, steps.count - 1) where steps[index].returned === tensor {
            return "what \(owner(of: steps[index].event) ?? "the model") returned"
        }
        return "an unnamed tensor"
    }

    /// For a forward step, how the layer's (or loss's) `inp` relates to what the model passed it:
    /// for the seed's `L2`, `L2.inp` is `R.out`, the same object. `nil` for other steps.
    func inputLink(at step: Int) -> Link? {
        let traceStep = steps[step]
        guard let owner = forwardOwner(traceStep.event), let passed = traceStep.passed,
            let inp = traceStep.snapshot.tensor(Slot(owner, "inp"))
        else { return nil }
        return Link(
            slot: Slot(owner, "inp"), tensor: inp, other: passed, otherName: name(of: passed, through: step - 1))
    }

    /// For a forward step, how the layer's (or loss's) `out` relates to what it returned (the
    /// model's next `x`). `nil` for other steps.
    func outputLink(at step: Int) -> Link? {
        let traceStep = steps[step]
        guard let owner = forwardOwner(traceStep.event), let returned = traceStep.returned,
            let out = traceStep.snapshot.tensor(Slot(owner, "out"))
        else { return nil }
        return Link(slot: Slot(owner, "out"), tensor: out, other: returned, otherName: "what \(owner) returned")
    }

    /// For the loss's forward step, how `loss.targ` relates to the model's `targ`. `nil` otherwise.
    func targetLink(at step: Int) -> Link? {
        guard steps[step].event == .lossForward,
            let stored = steps[step].snapshot.tensor(Slot(lossName, "targ"))
        else { return nil }
        return Link(slot: Slot(lossName, "targ"), tensor: stored, other: targ, otherName: "targ")
    }

    /// For a layer's backward step (or the step where the trace stopped), the `out.g` it reads and
    /// which earlier step set it, found by identity: for the seed's `R`, `R.out.g` set by
    /// `L2.backward` as `L2.inp.g`. `nil` for other steps.
    func gradientSource(at step: Int) -> GradientSource? {
        let index: Int
        switch steps[step].event {
        case .layerBackward(let layer), .backwardStopped(let layer): index = layer
        default: return nil
        }
        let slot = Slot(layerNames[index], "out")
        let before = steps[step - 1].snapshot
        guard let out = before.tensor(slot) else { return nil }
        let g = before.gradient(of: out)
        guard let g else {
            return GradientSource(slot: slot, tensor: out, g: nil, writerStep: nil, writerSlot: nil)
        }
        let writer = self.writer(of: g, on: out, before: step)
        return GradientSource(slot: slot, tensor: out, g: g, writerStep: writer?.step, writerSlot: writer?.slot)
    }

    /// The last step before `end` (all steps if `nil`) that set this very `.g` on this object, with
    /// the name it was written under.
    func writer(of g: Tensor, on tensor: Tensor, before end: Int? = nil) -> (step: Int, slot: Slot?)? {
        for step in steps[..<(end ?? steps.count)].reversed() {
            if let write = step.writes.first(where: { $0.tensor === tensor && $0.g === g }) {
                return (step.index, write.slots.first)
            }
        }
        return nil
    }

    /// The index of the step with this event, if it ran.
    func stepIndex(of event: Event) -> Int? {
        steps.firstIndex { $0.event == event }
    }

    /// The seed's conclusion, checked on the objects: the gradient of the loss starts in
    /// `loss.inp.g`, which is the model's output's `.g`.
    var takeaway: Takeaway {
        let lossStep = stepIndex(of: .lossForward)!
        let last = steps[steps.count - 1]
        let lossSlot = Slot(lossName, "inp")
        let output = steps[lossStep].passed!
        let outputName = name(of: output, through: lossStep - 1)
        let lossInput = last.snapshot.tensor(lossSlot)!
        let start = last.snapshot.gradient(of: lossInput)
        let startStep = start.flatMap { writer(of: $0, on: lossInput)?.step }
        let complete = !steps.contains {
            if case .backwardStopped = $0.event { return true }
            return false
        }
        return Takeaway(
            modelOutput: output, modelOutputName: outputName,
            lossInput: Link(slot: lossSlot, tensor: lossInput, other: output, otherName: outputName),
            startStep: startStep, start: start,
            lossOutputGradientIsSet: last.snapshot[Slot(lossName, "out")]?.g != nil,
            isComplete: complete)
    }

    /// The name of the layer or loss a forward step runs, `nil` for other steps.
    private func forwardOwner(_ event: Event) -> String? {
        switch event {
        case .layerForward(let index): layerNames[index]
        case .lossForward: lossName
        default: nil
        }
    }
}
