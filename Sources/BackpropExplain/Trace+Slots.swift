import BackpropCore
import BackpropNetwork

// The named places of the seed's program (`x`, `L1.inp`, `L1.w`, `loss.out`, ...), how to read
// each one from the live objects, and what they hold at one moment. The trace photographs them
// after every step (Trace.swift); the DOT graph names autograd's tensors by them (DOT.swift).

extension Trace {
    /// A named place where the seed's program holds a tensor: `x`, `targ`, `L1.inp`, `L1.w`,
    /// `loss.out`.
    struct Slot: Hashable, Sendable, CustomStringConvertible {
        /// The layer's name (`"L1"`, `"R"`, `"loss"`), or `""` for the model's arguments.
        let owner: String
        /// The field: `"inp"`, `"out"`, `"targ"`, a parameter (`"w"`, `"b"`), or `"x"`/`"targ"`
        /// for the model's arguments.
        let field: String

        /// Creates the slot `owner.field` (just `field` when `owner` is empty).
        init(_ owner: String, _ field: String) {
            self.owner = owner
            self.field = field
        }

        /// The model's input, the seed's `x` (`x_train`).
        static let x = Slot("", "x")
        /// The model's targets, the seed's `targ` (`y_train`).
        static let targ = Slot("", "targ")

        /// `owner.field`, as the seed writes it: `L1.inp`, `loss.targ`, `x`.
        var description: String { owner.isEmpty ? field : "\(owner).\(field)" }
    }

    /// Every slot of a model, the names the walkthrough gives them, and how to read each one from
    /// the live objects.
    ///
    /// The names follow the rule in SeedCode.swift: the layers are `L1`, `R`, `L2` for the seed's
    /// model, the loss is `loss`, a parameter is named by its field (`w`, `b`; `p1`, `p2`, ... for
    /// a layer that does not say), and a numbered `Lin`'s parameters also carry the seed's names
    /// (`L1.w` is `w1`).
    struct SlotTable {
        /// The layers' names, in layer order: `["L1", "R", "L2"]`.
        let layerNames: [String]
        /// The loss's name: `"loss"`.
        let lossName = "loss"
        /// `x`, `targ`, each layer's parameters, then each layer's `inp` and `out`, then
        /// `loss.inp`, `loss.targ`, `loss.out`.
        let slots: [Slot]
        /// The seed's names for parameters of numbered `Lin` layers: `L1.w` is `w1`.
        let seedNames: [Slot: String]
        /// How to read each slot from the model, in slot order.
        private let readers: [() -> Tensor?]

        /// The slots of `model` called with `x` and `targ`.
        init(model: Model, x: Tensor, targ: Tensor) {
            let layerNames = SeedCode.layerNames(for: model.layers)
            var slots: [Slot] = [.x, .targ]
            var readers: [() -> Tensor?] = [{ x }, { targ }]
            var seedNames: [Slot: String] = [:]
            for (index, layer) in model.layers.enumerated() {
                let name = layerNames[index]
                let fields = SeedCode.of(layer).parameterFields
                for position in layer.parameters.indices {
                    let field = position < fields.count ? fields[position] : "p\(position + 1)"
                    let slot = Slot(name, field)
                    slots.append(slot)
                    readers.append { layer.parameters[position] }
                    seedNames[slot] = SeedCode.seedName(of: field, in: layer, named: name)
                }
            }
            for (index, layer) in model.layers.enumerated() {
                slots += [Slot(layerNames[index], "inp"), Slot(layerNames[index], "out")]
                readers += [{ layer.inp }, { layer.out }]
            }
            let loss = model.loss
            slots += [Slot(lossName, "inp"), Slot(lossName, "targ"), Slot(lossName, "out")]
            readers += [{ loss.inp }, { loss.targ }, { loss.out }]
            self.layerNames = layerNames
            self.slots = slots
            self.seedNames = seedNames
            self.readers = readers
        }

        /// What every slot holds now, in slot order (`nil` before its layer has run).
        func read() -> [(slot: Slot, tensor: Tensor?)] {
            zip(slots, readers).map { slot, read in (slot, read()) }
        }

        /// `slot` with its seed name when it has one: `L1.w (w1)`.
        func label(_ slot: Slot) -> String {
            if let seedName = seedNames[slot] { return "\(slot) (\(seedName))" }
            return slot.description
        }
    }

    /// What one slot holds at one moment: the tensor object, and the `.g` object it carries.
    struct SlotState {
        /// The slot.
        let slot: Slot
        /// The tensor the slot holds, `nil` before the layer has been called.
        let tensor: Tensor?
        /// `tensor.g` at that moment, `nil` while no backward has written it.
        let g: Tensor?
    }

    /// Every slot's state at one moment.
    struct Snapshot {
        /// One state per slot, in the trace's slot order.
        let states: [SlotState]

        /// The state of `slot`, `nil` if the trace has no such slot.
        subscript(slot: Slot) -> SlotState? {
            states.first { $0.slot == slot }
        }

        /// The tensor that `slot` holds, `nil` if none.
        func tensor(_ slot: Slot) -> Tensor? { self[slot]?.tensor }

        /// Every slot that holds this very object (`===`), in slot order.
        func slots(holding tensor: Tensor) -> [Slot] {
            states.filter { $0.tensor === tensor }.map(\.slot)
        }

        /// The `.g` that `tensor` carried at that moment, if some slot holds it.
        func gradient(of tensor: Tensor) -> Tensor? {
            states.first { $0.tensor === tensor }?.g
        }

        /// The distinct tensor objects the slots hold, in slot order.
        var objects: [Tensor] {
            var seen: Set<ObjectIdentifier> = []
            var result: [Tensor] = []
            for state in states {
                if let tensor = state.tensor, seen.insert(ObjectIdentifier(tensor)).inserted { result.append(tensor) }
            }
            return result
        }
    }
}
