import BackpropCore
import BackpropNetwork

// What a convnet did to one image, for the walkthrough's page: the first input image, the feature
// maps every layer made of it (one plane per channel), and the first convolution's kernels with
// their gradients. Everything is read from the trace's photographs of the live objects (the
// layers' `out`, `w` and `w.g` as the run left them), never recomputed.
//
// Colours: the input is grey, from its smallest value (black) to its largest (white), as the data
// set's pictures are; feature maps, kernels and gradients use the walkthrough's diverging scale
// (blue negative, near-white zero, red positive; HeatMap.swift), one scale for all the channels of
// one tensor, so that channels can be compared: a channel that stays white is one the layer
// silenced for this image.

/// The planes of one image through a convnet, and its first convolution's kernels, as numbers
/// ready to draw.
struct FeatureMaps {
    /// One tensor's planes for the image: the input, or a layer's output.
    struct Row {
        /// What the row shows: `x[0]`, `C1.out[0]`.
        let name: String
        /// The layer that produced it and its kind (`C1 (Conv2d)`), `nil` for the input.
        let producer: String?
        /// The shape of the image's part of the tensor. // (c, h, w)
        let shape: [Int]
        /// One plane per channel, row-major. // (c, h * w)
        let planes: [[Float]]
        /// The largest magnitude over every plane: the diverging scale's end.
        let scale: Double
        /// Whether the row is drawn in grey (the input) rather than on the diverging scale.
        let isGrey: Bool
    }

    /// A convolution's kernels and their gradients, one picture per output channel.
    struct Kernels {
        /// The layer's name: `C1`.
        let layer: String
        /// The kernels' shape. // (cOut, cIn, kh, kw)
        let shape: [Int]
        /// Per output channel, its `cIn` kernels side by side: `kh` rows of `cIn * kw` values.
        let w: [[Float]]
        /// The same for `w.g`, `nil` if the run set no `.g` on `w`.
        let g: [[Float]]?
        /// The largest magnitude of `w`, and of `w.g` (0 without one).
        let wScale: Double
        let gScale: Double

        /// The height and width of one picture: `kh` by `cIn * kw`.
        var pictureSize: (height: Int, width: Int) { (shape[2], shape[1] * shape[3]) }
    }

    /// Which example of the batch is drawn: the first.
    static let image = 0

    /// The input (when it is an image), then every layer output that is an image, in layer order.
    let rows: [Row]
    /// The first convolution's kernels, `nil` if the model has none.
    let kernels: Kernels?
    /// The targets' value for the image (`9.0000`: its class), for the caption.
    let target: String

    /// The feature maps of the trace's first image, or `nil` when neither the input nor any
    /// layer's output is an image (`[n, c, h, w]`): an MLP's walkthrough has none.
    init?(trace: Trace) {
        var rows: [Row] = []
        if trace.x.rank == 4 {
            rows.append(Self.row(trace.x, name: "x[\(Self.image)]", producer: nil, isGrey: true))
        }
        for step in trace.steps {
            guard case .layerForward(let index) = step.event else { continue }
            let name = trace.layerNames[index]
            guard let out = step.snapshot.tensor(Trace.Slot(name, "out")), out.rank == 4 else { continue }
            let producer = "\(name) (\(trace.layerCode[index].className))"
            rows.append(Self.row(out, name: "\(name).out[\(Self.image)]", producer: producer, isGrey: false))
        }
        var kernels: Kernels?
        if let index = trace.model.layers.firstIndex(where: { $0 is Conv2d }),
            let last = trace.steps.last
        {
            let name = trace.layerNames[index]
            let state = last.snapshot[Trace.Slot(name, "w")]
            if let w = state?.tensor {
                kernels = Self.kernels(w, g: state?.g, layer: name)
            }
        }
        guard !rows.isEmpty || kernels != nil else { return nil }
        self.rows = rows
        self.kernels = kernels
        target = trace.targ.count > Self.image ? Tensor.format(trace.targ.values[Self.image]) : "?"
    }

    /// The image's planes of a `[n, c, h, w]` tensor.
    private static func row(_ tensor: Tensor, name: String, producer: String?, isGrey: Bool) -> Row {
        let (c, h, w) = (tensor.shape[1], tensor.shape[2], tensor.shape[3])
        let size = h * w
        let planes: [[Float]] = tensor.withUnsafeBufferPointer { values in
            let start = image * c * size
            return (0..<c).map { channel in Array(values[(start + channel * size)..<(start + (channel + 1) * size)]) }
        }
        return Row(
            name: name, producer: producer, shape: [c, h, w], planes: planes, scale: largestMagnitude(planes),
            isGrey: isGrey)
    }

    /// `w` and `g` (`[cOut, cIn, kh, kw]`) as one picture per output channel.
    private static func kernels(_ w: Tensor, g: Tensor?, layer: String) -> Kernels {
        let (cOut, cIn, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        func pictures(_ tensor: Tensor) -> [[Float]] {
            tensor.withUnsafeBufferPointer { values in
                (0..<cOut).map { o in
                    var picture: [Float] = []
                    picture.reserveCapacity(kh * cIn * kw)
                    for y in 0..<kh {
                        for i in 0..<cIn {
                            let start = ((o * cIn + i) * kh + y) * kw
                            picture += values[start..<(start + kw)]
                        }
                    }
                    return picture
                }
            }
        }
        let wPictures = pictures(w)
        let gPictures = g.flatMap { $0.shape == w.shape ? pictures($0) : nil }
        return Kernels(
            layer: layer, shape: w.shape, w: wPictures, g: gPictures, wScale: largestMagnitude(wPictures),
            gScale: gPictures.map(largestMagnitude) ?? 0)
    }

    /// The largest finite magnitude among the values (0 if none).
    private static func largestMagnitude(_ planes: [[Float]]) -> Double {
        var largest = 0.0
        for plane in planes {
            for value in plane where value.isFinite { largest = Swift.max(largest, Double(Swift.abs(value))) }
        }
        return largest
    }

    // MARK: Pictures

    /// How many colour steps each side of zero the pictures use (finer than the diagram's cells).
    static let levels = 32

    /// The diverging palette: `2 * levels + 1` colours, blue to near-white to red.
    static let divergingPalette: [(red: UInt8, green: UInt8, blue: UInt8)] = (-levels...levels).map {
        HeatMap.rgb(fraction: Double($0) / Double(levels))
    }

    /// The grey palette: 256 greys, black to white.
    static let greyPalette: [(red: UInt8, green: UInt8, blue: UInt8)] = (0..<256).map {
        (UInt8($0), UInt8($0), UInt8($0))
    }

    /// A plane on the diverging scale whose ends are `±scale`.
    static func diverging(_ values: [Float], height: Int, width: Int, scale: Double) -> PNG {
        let pixels = values.map { value -> UInt8 in
            guard scale > 0, value.isFinite else { return UInt8(levels) }
            let step = (Double(value) / scale * Double(levels)).rounded()
            return UInt8(Swift.min(Swift.max(step, -Double(levels)), Double(levels)) + Double(levels))
        }
        return PNG(width: width, height: height, pixels: pixels, palette: divergingPalette)
    }

    /// A plane in grey, from its row's smallest value (black) to its largest (white).
    static func grey(_ values: [Float], height: Int, width: Int, range: ClosedRange<Float>) -> PNG {
        let span = range.upperBound - range.lowerBound
        let pixels = values.map { value -> UInt8 in
            guard span > 0, value.isFinite else { return 0 }
            return UInt8(Swift.min(Swift.max(((value - range.lowerBound) / span * 255).rounded(), 0), 255))
        }
        return PNG(width: width, height: height, pixels: pixels, palette: greyPalette)
    }
}
