import BackpropNetwork

// A preset network comes with the settings it was tuned with: `train --layers cnn` trains the
// convnet with the weight decay its search chose (Docs/ConvnetRecipe.md), where `--hidden` and
// `--layers mlp` keep the MLP's recipe (Docs/Training.md). Options given on the command line
// still win.

extension TrainingConfiguration {
    /// The settings each preset was tuned with, by preset name (as `ModelDescription.presets`
    /// names them): only what differs from the default recipe.
    ///
    /// `cnn`: weight decay 0.3 (chosen on the validation split over 0.1; see
    /// Docs/ConvnetRecipe.md).
    public static let presetSettings: [String: @Sendable (inout TrainingConfiguration) -> Void] = [
        "cnn": { $0.weightDecay = 0.3 }
    ]

    /// The default recipe for `layers` (a description or a preset name, as `--layers` takes it;
    /// `nil` for the MLP of `hidden`): the initialiser's defaults, changed as ``presetSettings``
    /// says when `layers` names a preset (in any case, with spaces around it, as
    /// `ModelDescription(parsing:)` reads it).
    public static func recipe(layers: String?) -> TrainingConfiguration {
        var configuration = TrainingConfiguration(layers: layers)
        if let layers, let name = ModelDescription.presetName(layers), let change = presetSettings[name] {
            change(&configuration)
        }
        return configuration
    }
}
