import BackpropData
import BackpropNetwork
import BackpropONNX
import BackpropTraining
import Foundation

// `backprop export MODEL --format onnx OUT`: the ONNX model of a checkpoint (BackpropONNX), and
// the Python that runs it with ONNX Runtime.

extension ExportCommand {
    /// Writes the ONNX model of `model` to `output` and prints the Python that runs it.
    func runONNX() throws {
        let (network, inputShape, normalization) = try loadModel()
        let description = try? Checkpoint.modelDescription(of: network)
        var metadata: [String: String] = [:]
        if let description { metadata["layers"] = description.description }
        let operators: [String]
        do {
            operators = try ONNXExport.operators(of: network)
            try ONNXExport.write(
                network, to: output, inputShape: inputShape, normalization: normalization, metadata: metadata)
        } catch let error as ONNXExportError {
            throw CommandLineError("\(model): cannot export: \(error)")
        }
        let outputShape = try? description?.shapes(input: inputShape).last
        let script = onnxScript(
            operators: operators, inputShape: inputShape, outputShape: outputShape, normalization: normalization,
            description: description)
        StandardStream.output.write(script)
    }

    /// The Python that runs ``output`` with ONNX Runtime on Fashion-MNIST pixels.
    private func onnxScript(
        operators: [String], inputShape: [Int], outputShape: [Int]?, normalization: (mean: Double, std: Double)?,
        description: ModelDescription?
    ) -> String {
        let input = ONNXExport.inputName(normalizing: normalization != nil)
        let output = ONNXExport.outputName
        let shapeText = inputShape.map(String.init).joined(separator: ", ")
        let outputText = outputShape.map { "[n, " + $0.map(String.init).joined(separator: ", ") + "]" } ?? "[n, c]"
        let describedAs = description.map { " ('\($0)')" } ?? ""
        var lines = [
            "# backprop export: wrote \(self.output), an ONNX model (opset \(ONNXExport.opsetVersion)) of \(model)"
                + "\(describedAs):",
            "#   \(input) [n, \(shapeText)] -> "
                + (normalization == nil ? "" : "(pixels / 255 - mean) / std -> ")
                + operators.joined(separator: ", ") + " -> \(output) \(outputText)",
            "import numpy as np",
            "import onnxruntime as ort  # pip install onnxruntime",
            "",
            "session = ort.InferenceSession(\(Self.pythonPath(self.output)))",
        ]
        if let normalization {
            lines += [
                "",
                "",
                "def logits(pixels):",
                "    \"\"\"Pixels 0 to 255 (n images) as the input \"\(input)\" [n, \(shapeText)]: the graph normalises them as",
                "    the model was trained, (pixels / 255 - \(normalization.mean)) / \(normalization.std). Returns the",
                "    logits \(outputText).\"\"\"",
                "    x = np.asarray(pixels, dtype=np.float32).reshape(-1, \(shapeText))",
                "    return session.run([\"\(output)\"], {\"\(input)\": x})[0]",
            ]
        } else {
            lines += [
                "",
                "# \(model) stores no normalisation: the graph takes the model's input \"\(input)\" as it was trained,",
                "# (pixels / 255 - MEAN) / STD: set MEAN and STD to the mean and standard deviation of the training",
                "# pixels / 255 (backprop evaluate computes them from the training images), or give them to",
                "# backprop export --normalize MEAN,STD to have the graph normalise.",
                "MEAN, STD = 0.0, 1.0",
                "",
                "",
                "def logits(pixels):",
                "    \"\"\"Pixels 0 to 255 (n images), normalised, as the input \"\(input)\" [n, \(shapeText)]. Returns the",
                "    logits \(outputText).\"\"\"",
                "    x = ((np.asarray(pixels, dtype=np.float32) / 255 - MEAN) / STD).astype(np.float32)",
                "    return session.run([\"\(output)\"], {\"\(input)\": x.reshape(-1, \(shapeText))})[0]",
            ]
        }
        return lines.map(Self.pythonComment).joined(separator: "\n") + "\n"
    }
}
