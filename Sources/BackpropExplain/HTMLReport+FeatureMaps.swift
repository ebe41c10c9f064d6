import BackpropCore
import BackpropNetwork

// The page's gallery for a convnet (FeatureMaps.swift holds the numbers): the first image, each
// layer's feature maps, one small picture per channel, and the first convolution's kernels beside
// their gradients. Each picture is a PNG inlined as a `data:` address (PNG.swift), drawn at a
// whole multiple of its size with square pixels; the pictures of a row wrap to the page's width,
// so a phone shows five or six to a line and a desktop the whole row.

extension HTMLReport {
    /// How wide (in CSS pixels) a feature map is drawn at most: 28×28 maps twice their size.
    static let mapSize = 56
    /// How wide a kernel picture is drawn at most: 3×3 kernels 14 times their size.
    static let kernelSize = 42

    /// The gallery as a `<section>` (with a line break after it), or `""` when the run has no
    /// images (an MLP's walkthrough).
    var featureMapsSection: String {
        guard let maps = FeatureMaps(trace: narration.trace) else { return "" }
        var figures = maps.rows.map(figure)
        if let kernels = maps.kernels { figures.append(figure(kernels)) }
        let image = FeatureMaps.image
        // A model without a convolution (pools, then a Lin) has no kernels to show.
        let kernels =
            maps.kernels == nil
            ? "" : "; then the first convolution's kernels, each beside its gradient from the backward pass"
        return """
            <section class="maps" aria-labelledby="maps-title">
            <h2 id="maps-title">One image through the network</h2>
            <p class="note">Example \(image) of x (targ[\(image)] = \(escapeMarkup(maps.target))) and what each \
            layer made of it in the forward pass, one picture per channel\(kernels). The input is grey (black its \
            smallest value, white its largest); the rest use one scale per tensor, given with it: \
            <span class="neg">blue</span> negative, white zero, <span class="pos">red</span> positive.</p>
            \(figures.joined(separator: "\n"))
            </section>

            """
    }

    /// One tensor's planes: a caption and the pictures, one per channel.
    private func figure(_ row: FeatureMaps.Row) -> String {
        let (c, h, w) = (row.shape[0], row.shape[1], row.shape[2])
        var caption = "<b>\(escapeMarkup(row.name))</b> shape \(row.shape)"
        var range: ClosedRange<Float> = 0...0
        if row.isGrey {
            let values = row.planes.joined().filter(\.isFinite)
            range = (values.min() ?? 0)...(values.max() ?? 0)
            caption +=
                ", the input: grey from \(Tensor.format(range.lowerBound)) (black) to "
                + "\(Tensor.format(range.upperBound)) (white)"
        } else {
            caption +=
                ", made by \(escapeMarkup(row.producer ?? "")): \(c) channel\(c == 1 ? "" : "s"), "
                + "scale ±\(Tensor.format(Float(row.scale)))"
        }
        let zoom = Swift.max(1, HTMLReport.mapSize / Swift.max(h, w))
        let pictures = row.planes.enumerated().map { channel, plane in
            let png =
                row.isGrey
                ? FeatureMaps.grey(plane, height: h, width: w, range: range)
                : FeatureMaps.diverging(plane, height: h, width: w, scale: row.scale)
            return image(png, zoom: zoom, label: "\(row.name), channel \(channel)")
        }
        return """
            <figure class="maps-row">
            <figcaption>\(caption)</figcaption>
            <div class="tiles">\(pictures.joined())</div>
            </figure>
            """
    }

    /// A convolution's kernels, each beside its gradient.
    private func figure(_ kernels: FeatureMaps.Kernels) -> String {
        let name = escapeMarkup(kernels.layer)
        let (h, w) = kernels.pictureSize
        let zoom = Swift.max(1, HTMLReport.kernelSize / Swift.max(h, w))
        var caption =
            "<b>\(name).w</b> shape \(kernels.shape), the first convolution's kernels "
            + "(scale ±\(Tensor.format(Float(kernels.wScale))))"
        if kernels.g != nil {
            caption += ", each beside its gradient <b>\(name).w.g</b> (scale ±\(Tensor.format(Float(kernels.gScale))))"
        } else {
            caption += "; \(name).w.g was not set"
        }
        if kernels.shape[1] > 1 { caption += "; the \(kernels.shape[1]) input channels side by side" }
        let pairs = kernels.w.indices.map { channel in
            var pictures = [
                image(
                    FeatureMaps.diverging(kernels.w[channel], height: h, width: w, scale: kernels.wScale), zoom: zoom,
                    label: "\(kernels.layer).w[\(channel)]")
            ]
            if let g = kernels.g {
                pictures.append(
                    image(
                        FeatureMaps.diverging(g[channel], height: h, width: w, scale: kernels.gScale), zoom: zoom,
                        label: "\(kernels.layer).w.g[\(channel)]"))
            }
            return "<div class=\"pair\">\(pictures.joined())<span class=\"index\">\(channel)</span></div>"
        }
        return """
            <figure class="maps-row kernels">
            <figcaption>\(caption)</figcaption>
            <div class="tiles">\(pairs.joined())</div>
            </figure>
            """
    }

    /// `<img>` of a PNG, drawn `zoom` times its size, with `label` as its text and tooltip.
    private func image(_ png: PNG, zoom: Int, label: String) -> String {
        let text = escapeMarkup(label)
        return "<img src=\"\(png.dataURI)\" width=\"\(png.width * zoom)\" height=\"\(png.height * zoom)\" "
            + "alt=\"\(text)\" title=\"\(text)\">"
    }
}
