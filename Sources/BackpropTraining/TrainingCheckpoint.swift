import BackpropCore
import BackpropData
import BackpropNetwork
import Foundation

/// What a training checkpoint says about the run it was saved from, besides the weights.
public struct TrainingState: Equatable, Sendable {
    /// The run's settings (architecture, optimizer, schedule, seed, epochs in all).
    public var configuration: TrainingConfiguration
    /// One record per completed epoch; `history.count` epochs are done.
    public var history: [EpochRecord]
    /// The `limit` on data rows the run was started with (`nil`: every row).
    public var limit: Int?

    /// Creates a description of a run.
    public init(configuration: TrainingConfiguration, history: [EpochRecord], limit: Int?) {
        self.configuration = configuration
        self.history = history
        self.limit = limit
    }

    /// The epochs completed.
    public var completedEpochs: Int { history.count }
}

/// A training run saved between two epochs, so that it can stop at any moment and resume to the
/// same result.
///
/// The file is a model checkpoint (see ``Checkpoint``, so that `backprop evaluate` reads it:
/// the weights, and a described model's buffers such as batch norm's running statistics) that
/// also holds the optimizer's state as `optimizer.<name>` tensors (Adam's `optimizer.0.m`,
/// `optimizer.0.v`, …, `optimizer.step`) and, in `__metadata__`:
///
///     "training":         the settings, as JSON (`{"batch_size":128,"epochs":15,…}`)
///     "epochs_completed": "3"
///     "history":          the completed epochs' records, as JSON
///     "limit":            the rows limit, when the run had one
///
/// Resuming rebuilds the run from its settings (the model of ``TrainingConfiguration/layers`` or
/// ``TrainingConfiguration/hidden``), copies the weights, buffers and the optimizer's state in,
/// and starts at the next epoch. Each epoch's shuffle depends only on the seed and the epoch
/// number, and the learning rate only on the step, so the resumed run computes exactly what the
/// uninterrupted one would have. The file is written atomically: a run killed at any moment leaves
/// the previous checkpoint or the new one, never a mixture.
/// Dropout masks too depend only on the seed, the epoch and the layer (``Trainer`` reseeds each
/// dropout layer at the start of an epoch). Batch norm's running statistics are buffers, saved
/// and restored.
public enum TrainingCheckpoint {
    /// Saves `trainer`'s weights, optimizer state and history, at the end of an epoch, atomically.
    ///
    /// - Parameters:
    ///   - trainer: a run between two epochs (no step of the next epoch done).
    ///   - configuration: the settings the run was built from (stored, to rebuild it).
    ///   - limit: the rows limit the data was read with, if any (stored, to read the same rows).
    ///   - path: the destination; its folder must exist.
    ///   - normalization: the mean and standard deviation the training inputs were normalised
    ///     with (`x̂ = (x − mean) / std`), stored for `Checkpoint.load(from:layers:)` and `backprop
    ///     evaluate` (see `Checkpoint.save(_:to:normalization:metadata:optimizerState:inputShape:)`).
    ///   - metadata: more `__metadata__` entries.
    /// - Throws: `CheckpointError` if a weight is NaN or infinite or the normalisation is not a
    ///   finite mean and a positive standard deviation; `DataError` naming `path` if it cannot be
    ///   written. The file at `path` is then unchanged.
    /// - Precondition: `trainer` is between two epochs.
    public static func save(
        _ trainer: Trainer, configuration: TrainingConfiguration, limit: Int?, to path: String,
        normalization: (mean: Double, std: Double)? = nil, metadata: [String: String] = [:]
    ) throws {
        precondition(trainer.step == 0, "TrainingCheckpoint.save: the run is in the middle of an epoch")
        var entries = metadata
        entries["training"] = try encode(configuration)
        entries["history"] = try encode(trainer.history)
        entries["epochs_completed"] = String(trainer.epoch)
        if let limit { entries["limit"] = String(limit) }
        try Checkpoint.save(
            trainer.model, to: path, normalization: normalization, metadata: entries,
            optimizerState: trainer.optimizer.state, inputShape: Array(trainer.batches.x.shape.dropFirst()))
    }

    /// Reads the settings and history of the run saved in `path`.
    ///
    /// - Throws: `DataError` naming `path` when it cannot be read, or is a model checkpoint
    ///   without the training state (`holds no "training" settings: it is a model, not a training
    ///   run to resume`), or the state is malformed.
    public static func readState(path: String) throws -> TrainingState {
        try readState(Safetensors.read(path: path))
    }

    /// Restores the run saved in `path` into `trainer`, a new run built from the same settings.
    ///
    /// - Throws: `DataError` naming `path` if the file does not fit `trainer` (another
    ///   architecture, optimizer or number of epochs, or a missing or misshapen tensor). The
    ///   trainer is then unusable: make a new one.
    public static func restore(_ trainer: Trainer, from path: String) throws {
        let file = try Safetensors.read(path: path)
        let state = try readState(file, layers: Checkpoint.savableLayerTypes(of: trainer.model))
        guard state.configuration.epochs == trainer.epochs else {
            throw DataError(
                path: path, problem: "saved a run of \(state.configuration.epochs) epochs, not \(trainer.epochs)")
        }
        try Checkpoint.load(path: path, into: trainer.model)
        var optimizerState: [String: Tensor] = [:]
        for name in file.names where name.hasPrefix(Checkpoint.optimizerPrefix) {
            optimizerState[String(name.dropFirst(Checkpoint.optimizerPrefix.count))] = try Checkpoint.finiteTensor(
                file, name)
        }
        let expectedNames = trainer.optimizer.state.keys.sorted()
        let foundNames = optimizerState.keys.sorted()
        guard foundNames == expectedNames else {
            func list(_ names: [String]) -> String {
                names.isEmpty ? "none" : names.map { Checkpoint.optimizerPrefix + $0 }.joined(separator: ", ")
            }
            throw DataError(
                path: path,
                problem: "holds optimizer state \(list(foundNames)), expected \(list(expectedNames)) "
                    + "(another optimizer?)")
        }
        do {
            try trainer.optimizer.loadState(optimizerState)
        } catch {
            throw DataError(path: path, problem: "\(error)")
        }
        trainer.resume(history: state.history)
    }

    /// The state in `file`'s metadata; `layers`: the types of the layers of your own the model
    /// may hold, besides the registered ones.
    static func readState(_ file: SafetensorsFile, layers: [any SavableLayer.Type] = []) throws -> TrainingState {
        func fail(_ problem: String) -> DataError { DataError(path: file.path, problem: problem) }
        guard let settings = file.metadata["training"] else {
            throw fail("holds no \"training\" settings: it is a model, not a training run to resume")
        }
        let configuration: TrainingConfiguration
        let history: [EpochRecord]
        do {
            configuration = try decode(TrainingConfiguration.self, settings)
        } catch {
            throw fail(settingsProblem(settings, error))
        }
        var limit: Int? = nil
        if let limitText = file.metadata["limit"] {
            guard let value = Int(limitText), value > 0 else {
                throw fail("metadata \"limit\" is '\(limitText)', expected a positive number of rows")
            }
            limit = value
        }
        // The settings are checked as the command line checks its options: a file can say anything.
        let (imageShape, classes): ([Int], Int)
        switch try Checkpoint.readStoredModel(file, layers: layers) {
        case .mlp(let architecture):
            (imageShape, classes) = ([architecture.sizes[0]], architecture.sizes.last ?? 10)
        case .described(let description, let inputShape, _), .exported(let description, let inputShape, _):
            // The outputs, for the check that the last layer gives them (`validate` names what
            // does not fit).
            let outputs = (try? description.shapes(input: inputShape))?.last?.first
            (imageShape, classes) = (inputShape, outputs ?? 10)
        }
        do {
            try configuration.validate(imageShape: imageShape, classes: classes, limit: limit)
        } catch {
            throw fail("metadata \"training\" holds a setting out of range: \(error)")
        }
        guard let historyText = file.metadata["history"], let completedText = file.metadata["epochs_completed"] else {
            throw fail("holds no \"history\" and \"epochs_completed\": it is a model, not a training run to resume")
        }
        do {
            history = try decode([EpochRecord].self, historyText)
        } catch {
            throw fail(historyProblem(historyText, error))
        }
        guard let completed = Int(completedText), completed == history.count, completed <= configuration.epochs
        else {
            throw fail(
                "metadata \"epochs_completed\" is '\(completedText)', expected \(history.count) (the epochs in "
                    + "\"history\"), at most \(configuration.epochs)")
        }
        return TrainingState(configuration: configuration, history: history, limit: limit)
    }

    /// The range of values a number in the settings or the history can hold: that of its Swift
    /// type, which decoding checks before any setting is validated.
    enum NumberRange {
        /// A `UInt64`: the seed.
        case unsigned
        /// An `Int`: the epochs, the batch size, the hidden sizes, an epoch's number.
        case integer
        /// A `Float`: the learning rate, the weight decay, an epoch's losses.
        case float
        /// A `Double`: an epoch's seconds.
        case double

        /// `a whole number from 0 to 18446744073709551615`.
        var expected: String {
            switch self {
            case .unsigned: "a whole number from 0 to \(UInt64.max)"
            case .integer: "a whole number from 1 to \(Int.max)"
            case .float: "a number from -\(Float.greatestFiniteMagnitude) to \(Float.greatestFiniteMagnitude)"
            case .double: "a number from -\(Double.greatestFiniteMagnitude) to \(Double.greatestFiniteMagnitude)"
            }
        }

        /// Whether `number`, as `JSONSerialization` read it, fits this range.
        func contains(_ number: NSNumber) -> Bool {
            // The C type the number was read as: a signed or an unsigned integer, or a double.
            let type = String(cString: number.objCType)
            let isSigned = ["c", "s", "i", "l", "q"].contains(type)
            let isUnsigned = ["C", "S", "I", "L", "Q"].contains(type)
            let value = number.doubleValue
            let isWhole = value.isFinite && value.rounded(.towardZero) == value
            switch self {
            case .unsigned:
                if isUnsigned { return true }
                if isSigned { return number.int64Value >= 0 }
                return isWhole && value >= 0 && value < 0x1p64
            case .integer:
                if isUnsigned { return number.uint64Value <= UInt64(Int.max) }
                if isSigned { return true }
                return isWhole && value >= -0x1p63 && value < 0x1p63
            case .float:
                return value.isFinite && abs(value) <= Double(Float.greatestFiniteMagnitude)
            case .double:
                return value.isFinite
            }
        }
    }

    /// The numbers of the settings (`training`), by JSON key, with the option that sets each.
    static let settingNumbers: [(key: String, option: String, range: NumberRange)] = [
        ("seed", "--seed", .unsigned), ("epochs", "--epochs", .integer), ("batch_size", "--batch-size", .integer),
        ("learning_rate", "--lr", .float), ("weight_decay", "--weight-decay", .float),
    ]

    /// The numbers of an epoch's record (`history`), by JSON key.
    static let recordNumbers: [(key: String, range: NumberRange)] = [
        ("epoch", .integer), ("train_loss", .float), ("valid_loss", .float), ("valid_accuracy", .float),
        ("learning_rate", .float), ("seconds", .double),
    ]

    /// Why the settings `text` (metadata `training`) did not decode, `error` being the decoder's:
    /// a setting out of its type's range (`metadata "training" holds a setting out of range:
    /// "seed" (--seed): expected a whole number from 0 to 18446744073709551615, found -1`, which the
    /// decoder reports as JSON that is not valid), text that is not JSON, or the decoder's
    /// reason (a missing setting, one of another type).
    static func settingsProblem(_ text: String, _ error: any Error) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        else {
            return "metadata \"training\" is not valid JSON: '\(brief(text))'"
        }
        guard let settings = object as? [String: Any] else {
            return "metadata \"training\" is '\(brief(text))', expected a JSON object of settings"
        }
        for (key, option, range) in settingNumbers {
            if let number = settings[key] as? NSNumber, !range.contains(number) {
                return "metadata \"training\" holds a setting out of range: \"\(key)\" (\(option)): expected "
                    + "\(range.expected), found \(number)"
            }
        }
        if let hidden = settings["hidden"] as? [Any] {
            for (index, size) in hidden.enumerated() {
                if let number = size as? NSNumber, !NumberRange.integer.contains(number) {
                    return "metadata \"training\" holds a setting out of range: \"hidden\" (--hidden) size \(index): "
                        + "expected \(NumberRange.integer.expected), found \(number)"
                }
            }
        }
        return "metadata \"training\" is not valid settings: \(decodingProblem(error))"
    }

    /// Why the history `text` (metadata `history`) did not decode, as ``settingsProblem(_:_:)``
    /// says it of the settings: a number out of its type's range (`record 2 "train_loss":
    /// expected …, found 1e+39`), text that is not JSON, or the decoder's reason.
    static func historyProblem(_ text: String, _ error: any Error) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        else {
            return "metadata \"history\" is not valid JSON: '\(brief(text))'"
        }
        for (index, record) in (object as? [Any] ?? []).enumerated() {
            guard let record = record as? [String: Any] else { continue }
            for (key, range) in recordNumbers {
                if let number = record[key] as? NSNumber, !range.contains(number) {
                    return "metadata \"history\" holds a number out of range: record \(index) \"\(key)\": expected "
                        + "\(range.expected), found \(number)"
                }
            }
        }
        return "metadata \"history\" is not a list of epoch records: \(decodingProblem(error))"
    }

    /// The decoder's reason in a few words: `no "seed"`, `"hidden" [0]: expected a whole number,
    /// found a string`, `"lr": expected a number, found null`, or the error as it describes itself.
    /// (Foundation's own words name Swift types: `Expected to decode Array<Any> but found a
    /// dictionary instead.`)
    private static func decodingProblem(_ error: any Error) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? "\"\(snakeCase($0.stringValue))\"" }.joined(separator: " ")
        }
        func place(_ context: DecodingError.Context) -> String {
            context.codingPath.isEmpty ? "" : path(context.codingPath) + ": "
        }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?:
            let place = context.codingPath.isEmpty ? "" : " in " + path(context.codingPath)
            return "no \"\(snakeCase(key.stringValue))\"\(place)"
        case .typeMismatch(let type, let context)?:
            // "… but found a string instead." gives what the JSON holds.
            let text = context.debugDescription
            if let found = text.range(of: "but found "), let end = text.range(of: " instead", options: .backwards),
                found.upperBound <= end.lowerBound
            {
                return place(context)
                    + "expected \(jsonKind(of: type)), found \(text[found.upperBound..<end.lowerBound])"
            }
            return place(context) + text
        case .valueNotFound(let type, let context)?:
            return place(context) + "expected \(jsonKind(of: type)), found null"
        case .dataCorrupted(let context)?:
            return place(context) + context.debugDescription
        default:
            return "\(error)"
        }
    }

    /// What a JSON value of Swift type `type` is, in words: `a whole number`, `a list`.
    private static func jsonKind(of type: Any.Type) -> String {
        if type == Int.self || type == Int64.self || type == UInt64.self || type == Int32.self {
            return "a whole number"
        }
        if type == Double.self || type == Float.self { return "a number" }
        if type == String.self { return "a string" }
        if type == Bool.self { return "true or false" }
        let name = String(describing: type)
        if name.hasPrefix("Array<") { return "a list" }
        return "an object"
    }

    /// `batchSize` as its JSON key, `batch_size` (a key already in snake case is unchanged).
    private static func snakeCase(_ key: String) -> String {
        var result = ""
        for character in key {
            if character.isUppercase {
                result += "_" + character.lowercased()
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// `text`, cut to its first 80 characters for a message.
    private static func brief(_ text: String) -> String {
        text.count <= 80 ? text : text.prefix(80) + "…"
    }

    /// One line of JSON with snake_case keys, sorted (as `backprop train --json` writes).
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// The value `text` encodes (see ``encode(_:)``).
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(type, from: Data(text.utf8))
    }
}
