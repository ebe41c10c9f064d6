import BackpropCore
import BackpropNetwork

// A recorder that runs the seed's program one step at a time and photographs the objects after
// each step: which tensor object every named slot (`L1.inp`, `R.out`, `w1`, ...) holds, and which
// `.g` object each of them carries at that moment.
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

/// A named place where the seed's program holds a tensor: `x`, `targ`, `L1.inp`, `L1.w`, `loss.out`.
public struct Slot: Hashable, Sendable, CustomStringConvertible {
    /// The layer's name (`"L1"`, `"R"`, `"loss"`), or `""` for the model's arguments.
    public let owner: String
    /// The field: `"inp"`, `"out"`, `"targ"`, a parameter (`"w"`, `"b"`), or `"x"`/`"targ"` for the
    /// model's arguments.
    public let field: String

    /// Creates the slot `owner.field` (just `field` when `owner` is empty).
    public init(_ owner: String, _ field: String) {
        self.owner = owner
        self.field = field
    }

    /// The model's input, the seed's `x` (`x_train`).
    public static let x = Slot("", "x")
    /// The model's targets, the seed's `targ` (`y_train`).
    public static let targ = Slot("", "targ")

    /// `owner.field`, as the seed writes it: `L1.inp`, `loss.targ`, `x`.
    public var description: String { owner.isEmpty ? field : "\(owner).\(field)" }
}

/// What one slot holds at one moment: the tensor object, and the `.g` object it carries.
public struct SlotState {
    /// The slot.
    public let slot: Slot
    /// The tensor the slot holds, `nil` before the layer has been called.
    public let tensor: Tensor?
    /// `tensor.g` at that moment, `nil` while no backward has written it.
    public let g: Tensor?
}

/// Every slot's state at one moment.
public struct Snapshot {
    /// One state per slot, in the trace's slot order.
    public let states: [SlotState]

    /// The state of `slot`, `nil` if the trace has no such slot.
    public subscript(slot: Slot) -> SlotState? {
        states.first { $0.slot == slot }
    }

    /// The tensor that `slot` holds, `nil` if none.
    public func tensor(_ slot: Slot) -> Tensor? { self[slot]?.tensor }

    /// Every slot that holds this very object (`===`), in slot order.
    public func slots(holding tensor: Tensor) -> [Slot] {
        states.filter { $0.tensor === tensor }.map(\.slot)
    }

    /// The `.g` that `tensor` carried at that moment, if some slot holds it.
    public func gradient(of tensor: Tensor) -> Tensor? {
        states.first { $0.tensor === tensor }?.g
    }

    /// The distinct tensor objects the slots hold, in slot order.
    public var objects: [Tensor] {
        var seen: Set<ObjectIdentifier> = []
        var result: [Tensor] = []
        for state in states {
            if let tensor = state.tensor, seen.insert(ObjectIdentifier(tensor)).inserted { result.append(tensor) }
        }
        return result
    }
}

/// What happened in one step of the seed's program.
public enum TraceEvent: Equatable, Sendable {
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
public struct GradientWrite {
    /// The object whose `.g` was set.
    public let tensor: Tensor
    /// The gradient now in `tensor.g`.
    public let g: Tensor
    /// Every slot holding `tensor` after the step; the stepping layer's own slots first
    /// (`[L2.inp, R.out]` for `L2.backward`).
    public let slots: [Slot]
}

/// One step of the seed's program and the state of every slot after it.
public struct TraceStep {
    /// The step's position in ``Trace/steps``.
    public let index: Int
    /// What ran.
    public let event: TraceEvent
    /// For a forward step, the tensor the model handed to the layer or loss (the seed's `x`).
    public let passed: Tensor?
    /// For a forward step, the tensor the layer or loss returned.
    public let returned: Tensor?
    /// Every slot after the step.
    public let snapshot: Snapshot
    /// The `.g` values this step set, found by comparing every object's `.g` before and after.
    public let writes: [GradientWrite]
}

/// A run of the seed's program, recorded step by step from the live objects.
///
/// ```swift
/// let trace = Trace.record(model: Model(w1, b1, w2, b2), x: xTrain, targ: yTrain)
/// trace.steps.count                 // 11 for the seed's model
/// trace.layerNames                  // ["L1", "R", "L2"]
/// ```
public final class Trace {
    /// The model that ran (its layers keep the last run's `inp` and `out`).
    public let model: Model
    /// The layers' names, by the rule in SeedCode.swift: `["L1", "R", "L2"]`.
    public let layerNames: [String]
    /// The loss's name: `"loss"`.
    public let lossName = "loss"
    /// What the walkthrough shows of each layer's kind, in layer order.
    public let layerCode: [SeedCode]
    /// What the walkthrough shows of the loss's kind.
    public let lossCode: SeedCode
    /// The model's input. // (n, m)
    public let x: Tensor
    /// The targets. // (n) for `Mse`
    public let targ: Tensor
    /// Every slot, in the order the walkthrough lists them: `x`, `targ`, each layer's parameters,
    /// then each layer's `inp` and `out`, then `loss.inp`, `loss.targ`, `loss.out`.
    public let slots: [Slot]
    /// The seed's names for parameters of numbered `Lin` layers: `L1.w` is `w1`.
    public let seedNames: [Slot: String]
    /// The steps, in the order they ran.
    public private(set) var steps: [TraceStep] = []
    /// The loss the forward pass returned (a scalar).
    public private(set) var loss: Tensor?

    /// How to read each slot from the model, in slot order.
    private let readers: [(slot: Slot, read: () -> Tensor?)]

    private init(model: Model, x: Tensor, targ: Tensor) {
        self.model = model
        self.x = x
        self.targ = targ
        layerNames = SeedCode.layerNames(for: model.layers)
        layerCode = model.layers.map { SeedCode.of($0) }
        lossCode = SeedCode.of(model.loss)
        var readers: [(slot: Slot, read: () -> Tensor?)] = [(.x, { x }), (.targ, { targ })]
        var seedNames: [Slot: String] = [:]
        for (index, layer) in model.layers.enumerated() {
            let name = layerNames[index]
            let fields = layerCode[index].parameterFields
            for position in layer.parameters.indices {
                let field = position < fields.count ? fields[position] : "p\(position + 1)"
                let slot = Slot(name, field)
                readers.append((slot, { layer.parameters[position] }))
                seedNames[slot] = SeedCode.seedName(of: field, in: layer, named: name)
            }
        }
        for (index, layer) in model.layers.enumerated() {
            let name = layerNames[index]
            readers.append((Slot(name, "inp"), { layer.inp }))
            readers.append((Slot(name, "out"), { layer.out }))
        }
        let loss = model.loss
        readers.append((Slot(lossName, "inp"), { loss.inp }))
        readers.append((Slot(lossName, "targ"), { loss.targ }))
        readers.append((Slot(lossName, "out"), { loss.out }))
        self.readers = readers
        self.slots = readers.map(\.slot)
        self.seedNames = seedNames
    }

    /// Runs `model(x, targ)` and `model.backward()` one step at a time, recording every slot after
    /// each step.
    ///
    /// The run starts from a clean slate, as a fresh run of the seed does: `.g` is cleared on `x`,
    /// `targ` and the parameters first. It stops early, with a ``TraceEvent/backwardStopped(_:)``
    /// step, at a layer whose `out.g` no later layer has set (where the seed would crash reading
    /// `None`), instead of crashing.
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
        var current = x
        for (index, layer) in model.layers.enumerated() {
            let returned = layer(current)
            append(.layerForward(index), passed: current, returned: returned)
            current = returned
        }
        loss = model.loss(current, targ)
        append(.lossForward, passed: current, returned: loss)

        model.loss.backward()
        append(.lossBackward)
        for index in model.layers.indices.reversed() {
            let layer = model.layers[index]
            guard let out = layer.out, out.g != nil else {
                append(.backwardStopped(index))
                break
            }
            layer.backward()
            append(.layerBackward(index))
        }
        append(.summary)
    }

    /// Photographs every slot.
    private func capture() -> Snapshot {
        Snapshot(
            states: readers.map { reader in
                let tensor = reader.read()
                return SlotState(slot: reader.slot, tensor: tensor, g: tensor?.g)
            })
    }

    /// Records a step: the snapshot after it, and the `.g` writes found by comparing with the
    /// previous snapshot.
    private func append(_ event: TraceEvent, passed: Tensor? = nil, returned: Tensor? = nil) {
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
            TraceStep(
                index: steps.count, event: event, passed: passed, returned: returned, snapshot: snapshot,
                writes: writes))
    }

    /// Orders a step's writes as the seed's backward lines do: `inp.g`, then the parameters.
    private func rank(of write: GradientWrite, owner: String?) -> Int {
        guard let slot = write.slots.first, slot.owner == owner else { return Int.max }
        if slot.field == "inp" { return -1 }
        return slots.firstIndex(of: slot) ?? Int.max
    }

    /// The name of the layer or loss that runs in `event`, `nil` for steps that run none.
    public func owner(of event: TraceEvent) -> String? {
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
    public func label(_ slot: Slot) -> String {
        if let seedName = seedNames[slot] { return "\(slot) (\(seedName))" }
        return slot.description
    }
}
