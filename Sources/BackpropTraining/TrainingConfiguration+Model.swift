import BackpropCore
import BackpropNetwork

// The model a configuration trains: the MLP that `hidden` gives, or the network that `layers`
// describes (`--layers cnn`), built for the shape of the data's rows.

extension TrainingConfiguration {
    /// The parsed ``layers``, or `nil` when the configuration trains the MLP of ``hidden``.
    ///
    /// - Throws: ``TrainingSettingError`` for `--layers`, naming the bad token and its position
    ///   (see `ModelDescription.init(parsing:)`).
    public func modelDescription() throws(TrainingSettingError) -> ModelDescription? {
        guard let layers else { return nil }
        do {
            return try ModelDescription(parsing: layers)
        } catch {
            throw TrainingSettingError(layersError: error)
        }
    }

    /// The shape of one example as the model takes it, for data whose examples have shape
    /// `imageShape`: `[c, h, w]` for a description that starts with a convolution, a pool or
    /// `flatten`; `[c·h·w]` for one that starts with `lin`, and for the MLP of ``hidden``.
    ///
    /// `[1, 28, 28]` (a Fashion-MNIST image) gives `[1, 28, 28]` with `--layers cnn` and `[784]`
    /// without. A shape that is not `[c, h, w]` (such as `[m]`) is passed on as it is to a
    /// description, and flattened for an MLP. The caller reshapes its `(N, …)` inputs to
    /// `[N] + modelInputShape(…)` before giving them to ``Trainer``.
    /// - Throws: ``TrainingSettingError`` for `--layers` when the description does not parse.
    public func modelInputShape(imageShape: [Int]) throws(TrainingSettingError) -> [Int] {
        guard let description = try modelDescription() else { return [imageShape.reduce(1, *)] }
        guard imageShape.count == 3 else { return imageShape }
        return description.inputShape(channels: imageShape[0], height: imageShape[1], width: imageShape[2])
    }

    /// The model of this configuration, initialised from `generator`, for examples of shape
    /// `inputShape` (see ``modelInputShape(imageShape:)``).
    ///
    /// With ``layers``: `Model(description:inputShape:loss:generator:)`. Without: the MLP
    /// `[m] + hidden + [outputs]` of `Model.mlp(sizes:loss:generator:)`, `outputs` being
    /// `classes` for cross-entropy and 1 for the seed's MSE.
    /// - Throws: ``TrainingSettingError`` for `--layers` when the description does not parse or
    ///   does not fit `inputShape`, for `--hidden` when the MLP gets examples that are not vectors
    ///   `[m]` or a size that is not positive.
    public func makeModel(
        inputShape: [Int], classes: Int, generator: inout RandomGenerator
    ) throws(TrainingSettingError) -> Model {
        if let description = try modelDescription() {
            do {
                return try Model(
                    description: description, inputShape: inputShape, loss: loss.make(), generator: &generator)
            } catch {
                throw TrainingSettingError(layersError: error)
            }
        }
        let sizes = inputShape + hidden + [loss.outputs(classes: classes)]
        guard inputShape.count == 1, sizes.allSatisfy({ $0 > 0 }) else {
            throw TrainingSettingError(
                option: "--hidden",
                problem: "an MLP takes examples of m > 0 inputs and positive sizes, found examples of shape "
                    + "\(inputShape) and sizes \(sizes)")
        }
        return Model.mlp(sizes: sizes, loss: loss.make(), generator: &generator)
    }
}

extension TrainingSettingError {
    /// The `--layers` error that a model description's error describes.
    init(layersError error: ModelDescriptionError) {
        let prefix = "--layers: "
        let text = error.description
        self.init(option: "--layers", problem: text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text)
    }
}
