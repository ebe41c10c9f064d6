import BackpropCore

// A model built from a model description: its layers, its modes, and the names its checkpoints
// give its tensors (`layers.I.NAME`, as PyTorch's `nn.Sequential` names them in a state dict).

extension Model {
    /// The layers of `description`, initialised by ``ModelDescription/makeLayers(inputShape:generator:)``,
    /// then `loss`.
    ///
    /// The ``firstTrainableLayer``'s `needsInputGradient` is off (``skipsInputGradient()``, as in
    /// ``mlp(sizes:loss:generator:)``): its input is the data, or what layers that learn nothing
    /// made of it (`flatten, lin 10`), whose gradient nobody reads.
    /// - Parameters:
    ///   - description: the layers.
    ///   - inputShape: the shape of one example (`[1, 28, 28]` for a convnet on Fashion-MNIST,
    ///     `[784]` for an MLP; see ``ModelDescription/inputShape(channels:height:width:)``).
    ///   - loss: the loss after the last layer.
    ///   - generator: the source of the weights and dropout seeds.
    /// - Throws: ``ModelDescriptionError`` when the layers do not fit `inputShape`.
    public convenience init(
        description: ModelDescription, inputShape: [Int], loss: any Loss, generator: inout RandomGenerator
    ) throws(ModelDescriptionError) {
        let layers = try description.makeLayers(inputShape: inputShape, generator: &generator)
        self.init(layers: layers, loss: loss)
        skipsInputGradient()
    }

    /// Training mode: `isTraining = true` on every ``ModeDependentLayer`` (dropout drops, batch
    /// norm normalises with the batch's statistics and updates its running ones).
    public func train() {
        setTraining(true)
    }

    /// Evaluation mode: `isTraining = false` on every ``ModeDependentLayer`` (dropout is the
    /// identity, batch norm normalises with its running statistics).
    public func eval() {
        setTraining(false)
    }

    /// Sets `isTraining` on every layer that has it.
    private func setTraining(_ isTraining: Bool) {
        for layer in layers {
            (layer as? any ModeDependentLayer)?.isTraining = isTraining
        }
    }

    /// Every parameter by its checkpoint name `layers.I.NAME` (`I` the layer's index from 0,
    /// `NAME` from the layer's ``Layer/namedParameters``), in layer order: `layers.0.w`,
    /// `layers.0.b`, `layers.2.w`, … for `[Lin, ReLU, Lin]`.
    public var namedParameters: [(name: String, tensor: Tensor)] {
        layers.enumerated().flatMap { i, layer in
            layer.namedParameters.map { ("layers.\(i).\($0.name)", $0.tensor) }
        }
    }

    /// Every buffer (a tensor a layer keeps but does not learn) by its checkpoint name
    /// `layers.I.NAME`, in layer order: `layers.1.running_mean`, `layers.1.running_var` for a
    /// batch norm second.
    public var namedBuffers: [(name: String, tensor: Tensor)] {
        layers.enumerated().flatMap { i, layer in
            layer.buffers.map { ("layers.\(i).\($0.name)", $0.tensor) }
        }
    }
}
