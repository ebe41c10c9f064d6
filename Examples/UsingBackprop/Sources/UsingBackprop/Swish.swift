import Backprop

/// A layer of one's own, in the seed's form: Swish with a learned slope per feature,
/// `out = inp · σ(β · inp)` (Ramachandran et al., 2017; `β = 1` is PyTorch's `nn.SiLU`).
///
/// As the seed's `Lin` and `ReLU` do, calling it stores `inp` and `out`, and `backward()` reads
/// `out.g` (written by the layer after it) and writes the gradients, with `s = σ(β · inp)`:
///
/// - `inp.g = out.g · (s + β · inp · s · (1 - s))`   // (n, nh)
/// - `β.g = Σ_rows out.g · inp² · s · (1 - s)`       // (nh)
///
/// The forward is built from tensor operations that autograd records (`*`, `sigmoid()`), so the
/// library's `gradientCheck` can compare this backward with autograd's `.grad` and with finite
/// differences (see `checkCustomLayer`).
///
/// As a `SavableLayer` it saves and loads in checkpoints: its entry in the model's description
/// is `swish NH` (``kind``, then ``arguments``), and `β` is stored as `layers.I.beta`.
final class Swish: SavableLayer {
    /// The layer's word in model descriptions and checkpoints.
    static let kind = "swish"

    /// The slope of each feature, `β`, learned (1 at the start). // (nh)
    let beta: Tensor
    /// The input of the last call (the very object passed in). // (n, nh)
    private(set) var inp: Tensor!
    /// The output of the last call. // (n, nh)
    private(set) var out: Tensor!

    /// A layer for `features` features (`nh`), every `β` 1.
    init(features: Int) {
        beta = Tensor.ones([features])
    }

    /// A layer as ``arguments`` describe it: `["128"]` for 128 features (`β`'s values are loaded
    /// after).
    convenience init(arguments: [String]) throws {
        guard arguments.count == 1, let features = Int(arguments[0]), features > 0 else {
            throw SwishError(arguments: arguments)
        }
        self.init(features: features)
    }

    /// What follows ``kind`` in the description: the number of features, `β`'s size.
    var arguments: [String] { ["\(beta.count)"] }

    /// `[β]`: what the optimizer updates.
    var parameters: [Tensor] { [beta] }

    /// `β`'s name in checkpoints: `layers.I.beta`.
    var namedParameters: [(name: String, tensor: Tensor)] { [("beta", beta)] }

    /// The forward pass: stores `inp`, computes `out = inp · σ(β · inp)`, returns `out`.
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = inp * (inp * beta).sigmoid()  // β (nh) broadcasts over the rows
        return out
    }

    /// The backward pass: `inp.g` and `β.g` from `out.g` (the formulas above).
    func backward() {
        checkReadyForBackward()  // a clear stop if the layer was not called, or out.g is not set
        let s = (inp * beta).sigmoid()  // σ(β · inp) // (n, nh)
        let slope = s * (1 - s)  // σ'(β · inp) // (n, nh)
        inp.g = out.g * (s + inp * beta * slope)
        beta.g = (out.g * inp * inp * slope).sum(0)
    }
}

/// Arguments that do not describe a `Swish` layer (a checkpoint or description names them).
struct SwishError: Error, CustomStringConvertible {
    let arguments: [String]
    var description: String {
        "swish takes one argument, the number of features (a positive integer); got \(arguments)"
    }
}
