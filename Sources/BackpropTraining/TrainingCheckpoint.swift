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
            throw fail("metadata \"training\" is not valid settings: \(error)")
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
        case .described(let description, let inputShape, _):
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
            throw fail("metadata \"history\" is not a list of epoch records: \(error)")
        }
        guard let completed = Int(completedText), completed == history.count, completed <= configuration.epochs
        else {
            throw fail(
                "metadata \"epochs_completed\" is '\(completedText)', expected \(history.count) (the epochs in "
                    + "\"history\"), at most \(configuration.epochs)")
        }
        return TrainingState(configuration: configuration, history: history, limit: limit)
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
