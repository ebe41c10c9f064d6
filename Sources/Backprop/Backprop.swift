// The umbrella: `import Backprop` gives a user the whole public API, as `import MLX` does for
// mlx-swift's core. Each layer of the design is its own module below this one (README,
// "Architecture"); code inside the package imports only the modules it may use.

@_exported import BackpropCore
@_exported import BackpropData
@_exported import BackpropDistributed
@_exported import BackpropExplain
@_exported import BackpropNetwork
@_exported import BackpropONNX
@_exported import BackpropTraining
