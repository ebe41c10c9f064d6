import BackpropCore
import BackpropNetwork

// A recorder that runs the seed's program one step at a time and photographs the objects after
// each step: which tensor object every named slot (`L1.inp`, `R.out`, `w1`, ...) holds, and which
// `.g` object each of them carries at that moment (the slots: Trace+Slots.swift).
//
// It runs the model exactly as `Model` does, one call at a time so that it can look in between:
//
//     forward:   for l in layers { x = l(x) };  loss(x, targ)        (Model.callAsFunction)
//     backward:  loss.backward();  for l in layers.reversed() { l.backward() }   (Model.backward)
//
// It calls the layers' own methods and never changes what they compute. Everything the
// walkthrough later says ("`L2.inp` is `R.out`", "`R.backward` reads `R.out.g`, set by
// `L2.backward`") is derived from these photographs by comparing object identities (`===`), in
// Trace+Relations.swift.

/// A run of the seed's program, recorded step by step from the live objects, for ``Narration``
/// to tell.
///
/// ```swift
/// let trace = Trace.record(model: Model(w1, b1, w2, b2), x: xTrain, targ: yTrain)
/// trace.layerNames                  // ["L1", "R", "L2"]
/// print(Narration(trace: trace).text)
/// ```
public final class Trace {
    /// The model that ran (its layers keep the last run's `inp` and `out`).
    public let model: Model
    /// The layers' names, by the rule in SeedCode.swift: `["L1", "R", "L2"]` for the seed's model,
    /// `["L1", "R1", "L2", "R2", "L3"]` for two hidden layers.
    public let layerNames: [String]
    /// The model's input. // (n, m)
    public let x: Tensor
    /// The targets: values for `Mse`, class indices for `CrossEntropy`. // (n)
    public let targ: Tensor
    /// The loss the forward pass returned, a scalar. // ()
    public private(set) var loss: Tensor?

    /// The loss's name: `"loss"`.
    let lossName: String
    /// What the walkthrough shows of each layer's kind, in layer order.
    let layerCode: [SeedCode]
    /// What the walkthrough shows of the loss's kind.
    let lossCode: SeedCode
    /// The steps, in the order they ran.
    private(set) var steps: [Step] = []
    /// For each tensor object, the step and slot that first held it (``firstSlot(holding:through:)``),
    /// over the first `indexedSteps` steps: built as the walkthrough asks, once, where a search
    /// through every step's snapshot for every layer made `explain` cubic in the layers.
    var firstHolders: [ObjectIdentifier: (step: Int, slot: Slot)] = [:]
    var indexedSteps = 0
    /// Every slot, its name and how to read it.
    private let slotTable: SlotTable

    /// Every slot, in the order the walkthrough lists them: `x`, `targ`, each layer's parameters,
    /// then each layer's `inp` and `out`, then `loss.inp`, `loss.targ`, `loss.out`.
    var slots: [Slot] { slotTable.slots }
    /// The seed's names for parameters of numbered `Lin` layers: `L1.w` is `w1`.
    var seedNames: [Slot: String] { slotTable.seedNames }

    private init(model: Model, x: Tensor, targ: Tensor) {
        self.model = model
        self.x = x
        self.targ = targ
        slotTable = SlotTable(model: model, x: x, targ: targ)
        layerNames = slotTable.layerNames
        lossName = slotTable.lossName
        layerCode = model.layers.map { SeedCode.of($0) }
        lossCode = SeedCode.of(model.loss)
    }

    /// Runs `model(x, targ)` and `model.backward()` one step at a time, recording every slot after
    /// each step.
    ///
    /// The run starts from a clean slate, as a fresh run of the seed does: `.g` is cleared on `x`,
    /// `targ` and the parameters first. It stops early, at a layer whose `out.g` no later layer has
    /// set (where the seed would crash reading `None`), instead of crashing; the narration says
    /// where and why.
    /// - Parameters:
    ///   - model: the model to run; its layers keep this run's `inp`, `out` and `.g`.
    ///   - x: the input. // (n, m)
    ///   - targ: the targets, as `model.loss` expects them. // (n)
    /// - Precondition: `x` and `targ` fit the model (the layers stop with a message naming the
    ///   shapes otherwise).
    public static func record(model: Model, x: Tensor, targ: Tensor) -> Trace {
        let trace = Trace(model: model, x: x, targ: targ)
        trace.run()
        return trace
    }

    private func run() {
        for tensor in [x, targ] + model.parameters { tensor.g = nil }
        append(.modelCreated)
        append(.modelCalled, passed: x)
        let output = model.predict(x) { index, passed, returned in
            append(.layerForward(index), passed: passed, returned: returned, kept: keptTensors(of: index))
        }
        loss = model.loss(output, targ)
        append(.lossForward, passed: output, returned: loss)

        // Model.backward(), one step at a time: the walkthrough stops where the seed would read
        // `None` (a layer whose `out.g` nobody wrote), which the model's own loop cannot.
        model.loss.backward()
        append(.lossBackward)
        // As Model.backward(): from the last layer down to the first whose backward runs (training's
        // first layer that learns writes no inp.g, and the layers before it learn nothing).
        let firstBackward = model.firstBackwardIndex
        for index in model.layers.indices.reversed() where index >= firstBackward {
            let layer = model.layers[index]
            guard let out = layer.out, out.g != nil else {
                append(.backwardStopped(index))
                break
            }
            layer.backward()
            append(.layerBackward(index), kept: keptTensors(of: index))
        }
        append(.summary)
    }

    /// What the layer at `index` keeps for its backward besides `inp` and `out` (a convolution's
    /// `cols`; none for the seed's layers).
    private func keptTensors(of index: Int) -> [(field: String, tensor: Tensor)] {
        (model.layers[index] as? any SeedCodeDescribing)?.keptForBackward ?? []
    }

    /// Photographs every slot.
    private func capture() -> Snapshot {
        Snapshot(states: slotTable.read().map { SlotState(slot: $0.slot, tensor: $0.tensor, g: $0.tensor?.g) })
    }

    /// Records a step: the snapshot after it, and the `.g` writes found by comparing with the
    /// previous snapshot.
    private func append(
        _ event: Event, passed: Tensor? = nil, returned: Tensor? = nil, kept: [(field: String, tensor: Tensor)] = []
    ) {
        let snapshot = capture()
        var writes: [GradientWrite] = []
        if let before = steps.last?.snapshot {
            let owner = self.owner(of: event)
            for tensor in snapshot.objects {
                guard let g = tensor.g, g !== before.gradient(of: tensor) else { continue }
                let slots = snapshot.slots(holding: tensor)
                let own = slots.filter { $0.owner == owner }
                writes.append(GradientWrite(tensor: tensor, g: g, slots: own + slots.filter { $0.owner != owner }))
            }
            // The stepping layer's own slots in its field order (inp, then parameters).
            writes.sort { rank(of: $0, owner: owner) < rank(of: $1, owner: owner) }
        }
        steps.append(
            Step(
                index: steps.count, event: event, passed: passed, returned: returned, snapshot: snapshot,
                writes: writes, kept: kept))
    }

    /// Orders a step's writes as the seed's backward lines do: `inp.g`, then the parameters.
    private func rank(of write: GradientWrite, owner: String?) -> Int {
        guard let slot = write.slots.first, slot.owner == owner else { return Int.max }
        if slot.field == "inp" { return -1 }
        return slots.firstIndex(of: slot) ?? Int.max
    }

    /// The name of the layer or loss that runs in `event`, `nil` for steps that run none.
    func owner(of event: Event) -> String? {
        switch event {
        case .layerForward(let index), .layerBackward(let index), .backwardStopped(let index):
            layerNames[index]
        case .lossForward, .lossBackward:
            lossName
        case .modelCreated, .modelCalled, .summary:
            nil
        }
    }

    /// `slot` with its seed name when it has one: `L1.w (w1)`.
    func label(_ slot: Slot) -> String { slotTable.label(slot) }

    /// Whether `slot` is a layer's parameter (`L1.w`), not its `inp` or `out`, nor the loss's.
    func isParameter(_ slot: Slot) -> Bool {
        layerNames.contains(slot.owner) && slot.field != "inp" && slot.field != "out"
    }
}

extension Trace {
    /// What happened in one step of the seed's program.
    enum Event: Equatable, Sendable {
        /// `model = Model(w1, b1, w2, b2)`: the layers and the loss exist, nothing has run.
        case modelCreated
        /// `loss = model(x, targ)` is entered with the data.
        case modelCalled
        /// `x = l(x)` for the layer at this index.
        case layerForward(Int)
        /// `return self.loss(x, targ)`.
        case lossForward
        /// `self.loss.backward()`.
        case lossBackward
        /// `l.backward()` for the layer at this index.
        case layerBackward(Int)
        /// The layer at this index was not run backward: its `out.g` was not set, so the seed's
        /// `backward()` would read `None`. The trace stops here.
        case backwardStopped(Int)
        /// The end: nothing runs, the walkthrough draws its conclusion.
        case summary
    }

    /// A `.g` that a step set: on which object, the new gradient, and every slot naming that object.
    struct GradientWrite {
        /// The object whose `.g` was set.
        let tensor: Tensor
        /// The gradient now in `tensor.g`.
        let g: Tensor
        /// Every slot holding `tensor` after the step; the stepping layer's own slots first
        /// (`[L2.inp, R.out]` for `L2.backward`).
        let slots: [Slot]
    }

    /// One step of the seed's program and the state of every slot after it.
    struct Step {
        /// The step's position in ``Trace/steps``.
        let index: Int
        /// What ran.
        let event: Event
        /// For a forward step, the tensor the model handed to the layer or loss (the seed's `x`).
        let passed: Tensor?
        /// For a forward step, the tensor the layer or loss returned.
        let returned: Tensor?
        /// Every slot after the step.
        let snapshot: Snapshot
        /// The `.g` values this step set, found by comparing every object's `.g` before and after.
        let writes: [GradientWrite]
        /// For a layer's forward or backward step, what the layer keeps for its backward besides
        /// `inp` and `out`, by field (a convolution's `cols`), read after the step; empty otherwise.
        let kept: [(field: String, tensor: Tensor)]
    }
}
