import BackpropNetwork

/// Checks that `explain` and `gradcheck` both make before running a described network once in
/// training mode (`train` makes its own, on batches, in `TrainingConfiguration.validate`): what
/// would otherwise stop in a layer's or a loss's precondition. Each returns the problem, for the
/// command to throw as its kind of error, or `nil`.
enum WalkthroughChecks {
    /// Unless the network's `output` per example is one vector, as both losses take it: the
    /// problem, naming `option` (`--layers`, `--init FILE`).
    static func oneVectorPerExample(_ output: [Int], option: String) -> String? {
        guard output.count != 1 else { return nil }
        return "\(option): the model's output per example is \(output); the loss expects one vector per example "
            + "(end with flatten and lin)"
    }

    /// When `rows` is 1 and a batch norm of `description` would see one value per channel (it
    /// needs two in training): the problem, naming `--rows` and the entry.
    static func batchNorms(_ description: ModelDescription, inputShape: [Int], rows: Int) -> String? {
        guard rows < 2, let index = try? description.firstBatchNormOfOneValuePerExample(input: inputShape) else {
            return nil
        }
        return "--rows \(rows): entry \(index + 1) \"\(description.entries[index])\" sees one value per channel in "
            + "each row, and a batch norm in training needs at least 2 rows"
    }
}
