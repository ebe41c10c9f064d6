import BackpropCore
import Foundation

/// Fashion-MNIST (or MNIST: same files, same format) prepared as the seed lesson prepares MNIST.
///
/// The lesson's steps, in its names:
///
///     x_train, x_valid = x[:50000], x[50000:]            # rows of the training file
///     x_train, x_valid = x_train / 255, x_valid / 255    # pixels as Float in 0…1
///     train_mean, train_std = x_train.mean(), x_train.std()
///     x_train = normalize(x_train, train_mean, train_std)   # (x - m) / s
///     x_valid = normalize(x_valid, train_mean, train_std)   # the TRAINING statistics
///
/// The mean and standard deviation are single scalars over every pixel of ``xTrain`` (computed in
/// `Double`; the standard deviation divides by count − 1, as PyTorch's `x_train.std()` does). The
/// same two numbers normalise ``xValid`` and ``xTest``, so validation and test pixels are not
/// exactly centred: that is the point of using training statistics.
///
/// Shapes (`n` rows, 784 = 28 × 28 pixels per image, row-major):
/// ``xTrain`` `(nTrain, 784)`, ``yTrain`` `(nTrain)`, ``xValid`` `(nValid, 784)`, ``yValid``
/// `(nValid)`, ``xTest`` `(nTest, 784)`, ``yTest`` `(nTest)`. The `y` tensors hold the class index
/// as a `Float` (the seed fits them by MSE regression); ``trainLabels``, ``validLabels`` and
/// ``testLabels`` hold the same classes as `Int` for classification.
public struct FashionMNIST {
    /// Where the Debian package `dataset-fashion-mnist` installs the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    /// The environment variable that names the data folder when no `--data DIR` is given.
    public static let environmentVariable = "BACKPROP_DATA"
    /// The four files, without `.gz`: training images and labels, test images and labels.
    package static let fileNames = [
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    ]
    /// The ten Fashion-MNIST classes, indexed by label.
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// The shape of one Fashion-MNIST image as a convnet takes it: `[1, 28, 28]` (one channel).
    public static let imageShape = [1, 28, 28]

    /// The folder the files were read from.
    public let directory: String
    /// The shape of one image of these files, `[1, height, width]` (`[1, 28, 28]` for
    /// Fashion-MNIST); the rows of `xTrain`, `xValid` and `xTest` hold its pixels row-major.
    public let imageShape: [Int]
    /// Training images, normalised: `(nTrain, 784)`.
    public let xTrain: Tensor
    /// Training classes as `Float`: `(nTrain)`.
    public let yTrain: Tensor
    /// Validation images (the rows after the training rows), normalised with training statistics:
    /// `(nValid, 784)`.
    public let xValid: Tensor
    /// Validation classes as `Float`: `(nValid)`.
    public let yValid: Tensor
    /// Test images (`t10k-…`), normalised with training statistics: `(nTest, 784)`.
    public let xTest: Tensor
    /// Test classes as `Float`: `(nTest)`.
    public let yTest: Tensor
    /// Training classes 0…9.
    public let trainLabels: [Int]
    /// Validation classes 0…9.
    public let validLabels: [Int]
    /// Test classes 0…9.
    public let testLabels: [Int]
    /// The mean of the training pixels after `/ 255`, before normalising (the lesson's
    /// `train_mean`), or the one given to the initialiser.
    public let trainMean: Double
    /// The standard deviation (count − 1) of the training pixels after `/ 255` (`train_std`), or
    /// the one given to the initialiser.
    public let trainStd: Double

    /// Loads and prepares the four files in `directory`, plain or `.gz`.
    ///
    /// The rows of the training file are split as the lesson splits them: all but the last sixth
    /// train, the last sixth validate (50,000 and 10,000 of the full 60,000).
    ///
    /// - Parameters:
    ///   - directory: the folder holding `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    ///     `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`. If both a plain and a
    ///     `.gz` file exist, the plain one is read (it is faster).
    ///   - limit: read only the first `limit` rows of the training file (and at most `limit` test
    ///     rows); the split and the statistics then come from those rows: `limit: 300` gives 250
    ///     training rows, whose mean and standard deviation normalise everything, and 50
    ///     validation rows. Gzip files are inflated only as far as needed. `nil` reads everything.
    ///   - normalization: the mean and standard deviation to normalise with (those a saved model
    ///     was trained with); `nil` computes them from the training rows.
    ///   - requiresValidation: whether the split must leave at least one validation row (training
    ///     needs one; `evaluate`, `seed`, `gradcheck`, `explain` and `bench` use only the training
    ///     or test rows and pass `false`).
    /// - Throws: ``DataError`` when the folder is missing (naming it and the files it looked for),
    ///   a file is missing (naming the folder and the names tried), a file is malformed (see
    ///   ``IDX/read(path:maxItems:maxBytes:)``), images and labels disagree in count (naming both
    ///   files and both counts), a label is outside 0…9 (naming the file, the index and the
    ///   value), images have no pixels (0 rows or 0 columns), the training file holds no images,
    ///   the test file holds no images, or (with `requiresValidation`) the rows read are fewer
    ///   than 6, so that the last sixth would leave no validation row (naming `--limit` when the
    ///   limit is the cause, else the training file and its count).
    /// - Precondition: `limit`, if given, is at least 1.
    public init(
        directory: String, limit: Int? = nil, normalization: (mean: Double, std: Double)? = nil,
        requiresValidation: Bool = true
    ) throws {
        if let limit { precondition(limit >= 1, "FashionMNIST: limit must be at least 1, got \(limit)") }
        let paths = try FashionMNIST.locateFiles(in: directory)
        // The training files and the test files are read at once, on two threads: inflating the
        // 26 MB of training images takes most of the loading (0.35 s on the machine of
        // BENCHMARKS.md), and the test images' 0.06 s then hide behind it. A training file's
        // error is reported first, as when they were read one after the other.
        var splits: [Result<RawSplit, any Error>?] = [nil, nil]
        splits.withUnsafeMutableBufferPointer { slots in
            Parallel.forEachPiece(2) { piece in
                slots[piece] = Result {
                    try FashionMNIST.readImagesAndLabels(
                        images: paths[2 * piece], labels: paths[2 * piece + 1], limit: limit)
                }
            }
        }
        let train = try splits[0]!.get()
        let test = try splits[1]!.get()
        if train.labels.isEmpty {
            throw DataError(path: paths[0], problem: "holds no images; at least one is needed to train")
        }
        if test.labels.isEmpty {
            throw DataError(path: paths[2], problem: "holds no images; at least one is needed to test")
        }
        if requiresValidation && train.labels.count < FashionMNIST.minimumRows {
            throw FashionMNIST.tooFewToSplit(train.labels.count, limit: limit, path: paths[0])
        }
        if test.pixels != train.pixels {
            throw DataError(
                path: paths[2],
                problem: "images have \(test.pixels) pixels but those of \(paths[0]) have \(train.pixels)")
        }
        if test.imageShape != train.imageShape {
            // As many pixels in another shape: a convnet would read them as the training images' shape.
            let size = { (shape: [Int]) in "\(shape[1])×\(shape[2])" }
            throw DataError(
                path: paths[2],
                problem:
                    "images are \(size(test.imageShape)) pixels but those of \(paths[0]) are \(size(train.imageShape))")
        }

        let rows = train.labels.count
        let nValid = rows / 6
        let nTrain = rows - nValid
        let pixels = train.pixels

        let (mean, std) = normalization ?? FashionMNIST.meanAndStd(train.bytes, count: nTrain * pixels)
        let table = FashionMNIST.normalizationTable(mean: mean, std: std)

        self.directory = directory
        self.imageShape = train.imageShape
        self.trainMean = mean
        self.trainStd = std
        xTrain = FashionMNIST.normalize(train.bytes, rows: 0..<nTrain, pixels: pixels, table: table)
        xValid = FashionMNIST.normalize(train.bytes, rows: nTrain..<rows, pixels: pixels, table: table)
        xTest = FashionMNIST.normalize(test.bytes, rows: 0..<test.labels.count, pixels: pixels, table: table)
        trainLabels = Array(train.labels[..<nTrain])
        validLabels = Array(train.labels[nTrain...])
        testLabels = test.labels
        yTrain = Tensor(trainLabels.map { Float($0) })
        yValid = Tensor(validLabels.map { Float($0) })
        yTest = Tensor(testLabels.map { Float($0) })
    }

    /// The fewest training rows that leave one validation row: the last sixth validates.
    public static let minimumRows = 6

    /// The error for `rows` training rows, fewer than ``minimumRows``: about `--limit` when the
    /// limit cut them (`--limit 3`), else about the training file (which holds only `rows`).
    private static func tooFewToSplit(_ rows: Int, limit: Int?, path: String) -> DataError {
        if let limit, limit == rows {
            return DataError(
                path: "--limit",
                problem: "expected at least \(minimumRows) images (one sixth validate), found \(limit): "
                    + "\(rows) rows leave \(rows - rows / 6) to train and \(rows / 6) to validate")
        }
        return DataError(
            path: path,
            problem: "holds \(rows) images, too few to split: the last sixth validates, so at least \(minimumRows) "
                + "are needed (\(rows) leave \(rows - rows / 6) to train and \(rows / 6) to validate)")
    }

    /// Whether `directory` holds the four files (plain or `.gz`), without reading them: `false`
    /// for a folder that does not exist or lacks one of them.
    package static func filesExist(in directory: String) -> Bool {
        (try? locateFiles(in: directory)) != nil
    }

    /// The data folder to use: `explicit` (from `--data DIR`), else `$BACKPROP_DATA`, else
    /// ``defaultDirectory``.
    ///
    /// Empty strings count as not given. The folder is not checked here; ``init(directory:limit:normalization:requiresValidation:)``
    /// reports a missing one.
    /// - Parameters:
    ///   - explicit: the `--data` argument, if the user gave one.
    ///   - environment: the process environment (a parameter so tests can pass their own).
    public static func resolveDirectory(
        _ explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let fromEnvironment = environment[environmentVariable], !fromEnvironment.isEmpty { return fromEnvironment }
        return defaultDirectory
    }

    /// The paths of the four files in `directory`, in the order of ``fileNames``; plain preferred
    /// over `.gz` when both exist.
    ///
    /// - Throws: ``DataError`` naming `directory` if it is not a folder, or if files are missing
    ///   (every missing one is named, with both spellings tried; a symbolic link of either name
    ///   that leads to no file is named with its target instead).
    static func locateFiles(in directory: String) throws -> [String] {
        let (mode, failure) = fileStatus(directory)
        let exists = mode != nil
        if mode.map({ $0 & S_IFMT != S_IFDIR }) ?? true {
            let looked = fileNames.map { $0 + "[.gz]" }.joined(separator: ", ")
            let what =
                switch exists ? nil : failure {
                case nil: "is not a folder"
                case ELOOP: "is a symbolic link that loops"
                case EACCES: "cannot be reached: permission denied"
                case ENAMETOOLONG:
                    "the path is \(directory.utf8.count) bytes long, more than the system takes (\(PATH_MAX - 1))"
                default: "no such folder"
                }
            throw DataError(
                path: directory,
                problem: "\(what); expected a folder holding \(looked) (give --data DIR or set \(environmentVariable))")
        }
        // A folder that cannot be searched (`chmod 000`) hides every file: said once, not as four
        // missing files.
        if fileStatus(directory + "/" + fileNames[0]).failure == EACCES
            && fileStatus(directory + "/" + fileNames[0] + ".gz").failure == EACCES
        {
            throw DataError(path: directory, problem: "cannot read the folder: permission denied")
        }
        var found: [String] = []
        var problems: [String] = []
        for name in fileNames {
            let plain = directory + "/" + name
            let compressed = plain + ".gz"
            if fileMode(plain) != nil {
                found.append(plain)
            } else if fileMode(compressed) != nil {
                found.append(compressed)
            } else if let link = brokenLink(name + ".gz", in: directory) ?? brokenLink(name, in: directory) {
                // A dangling link named like the file: not missing, but leading nowhere.
                problems.append(link)
            } else {
                problems.append("missing \(name).gz or \(name)")
            }
        }
        if !problems.isEmpty {
            throw DataError(path: directory, problem: problems.joined(separator: "; "))
        }
        return found
    }

    /// `NAME is a symbolic link to TARGET, which does not exist` when `DIR/NAME` is a symbolic
    /// link that leads to no file, else `nil` (see `FileInput.brokenLink`).
    private static func brokenLink(_ name: String, in directory: String) -> String? {
        guard let bytes = try? FileSystemPath.bytes(of: directory + "/" + name),
            let problem = FileInput.brokenLink(bytes)
        else { return nil }
        return "\(name) \(problem)"
    }

    /// The kind and permissions of `path` (`stat(2)`'s `st_mode`), `nil` if nothing is there.
    ///
    /// Through the bytes the user gave (see `FileSystemPath`), not a repaired String, so that a
    /// folder whose name is not UTF-8 is found (FileManager would look for another name).
    private static func fileMode(_ path: String) -> mode_t? {
        fileStatus(path).mode
    }

    /// `path`'s `st_mode`, or `nil` and `stat(2)`'s `errno` (`ENOENT`, `ELOOP`, `EACCES`, …).
    private static func fileStatus(_ path: String) -> (mode: mode_t?, failure: Int32) {
        guard let bytes = try? FileSystemPath.bytes(of: path) else { return (nil, ENOENT) }
        var status = stat()
        let found = bytes.withCPath { stat($0, &status) } == 0
        return found ? (status.st_mode, 0) : (nil, errno)
    }

    /// One split as read from disk: pixel bytes row-major, labels checked to lie in 0…9.
    private struct RawSplit {
        let bytes: [UInt8]
        let labels: [Int]
        /// Pixels per image (rows × columns).
        let pixels: Int
        /// `[1, rows, columns]`.
        let imageShape: [Int]
    }

    /// Reads an images file and its labels file, checking that they agree with each other.
    private static func readImagesAndLabels(
        images imagesPath: String, labels labelsPath: String, limit: Int?
    ) throws
        -> RawSplit
    {
        let images = try IDX.read(path: imagesPath, maxItems: limit)
        let labels = try IDX.read(path: labelsPath, maxItems: limit)
        if images.dataType != .uint8 || images.shape.count != 3 {
            throw DataError(
                path: imagesPath,
                problem: "holds \(images.dataType) values of shape \(images.declaredShape); "
                    + "expected uint8 images of shape [n, rows, columns]")
        }
        if labels.dataType != .uint8 || labels.shape.count != 1 {
            throw DataError(
                path: labelsPath,
                problem:
                    "holds \(labels.dataType) values of shape \(labels.declaredShape); expected uint8 labels of shape [n]"
            )
        }
        if images.declaredShape[0] != labels.declaredShape[0] {
            throw DataError(
                path: labelsPath,
                problem:
                    "holds \(labels.declaredShape[0]) labels but \(imagesPath) holds \(images.declaredShape[0]) images")
        }
        let (height, width) = (images.declaredShape[1], images.declaredShape[2])
        if height == 0 || width == 0 {
            throw DataError(
                path: imagesPath, problem: "holds images of \(height)×\(width) pixels; expected at least 1×1")
        }
        let classes = try labels.integers()
        if let index = classes.firstIndex(where: { !(0...9).contains($0) }) {
            throw DataError(path: labelsPath, problem: "label at index \(index) is \(classes[index]), outside 0…9")
        }
        return RawSplit(
            bytes: images.payload, labels: classes, pixels: images.shape[1] * images.shape[2],
            imageShape: [1, images.shape[1], images.shape[2]])
    }

    /// The mean and standard deviation (count − 1) of the first `count` bytes, each divided by 255.
    ///
    /// Counted through a 256-bin histogram, so the sums are exact and the result does not depend
    /// on the order of the pixels. The bytes are counted in pieces of 4 MiB on Backprop's threads,
    /// each piece into four histograms of its own (alternate bytes, so that a run of equal pixels,
    /// the images' black background, does not make each count wait for the one before), which are
    /// then added: integers, so the result is the same however the work is cut.
    static func meanAndStd(_ bytes: [UInt8], count: Int) -> (mean: Double, std: Double) {
        precondition(count >= 0 && count <= bytes.count, "meanAndStd: \(count) of \(bytes.count) bytes")
        let pieceBytes = 1 << 22
        let pieces = Swift.max(1, (count + pieceBytes - 1) / pieceBytes)
        var counts = [Int](repeating: 0, count: 4 * 256 * pieces)
        bytes.withUnsafeBufferPointer { source in
            counts.withUnsafeMutableBufferPointer { counts in
                Parallel.forEachRange(pieces, minimumPerPiece: 1) { range in
                    for piece in range {
                        let h0 = counts.baseAddress! + 4 * 256 * piece
                        let (h1, h2, h3) = (h0 + 256, h0 + 512, h0 + 768)
                        let start = piece * pieceBytes
                        let end = Swift.min(count, start + pieceBytes)
                        var i = start
                        while i + 4 <= end {
                            h0[Int(source[i])] += 1
                            h1[Int(source[i + 1])] += 1
                            h2[Int(source[i + 2])] += 1
                            h3[Int(source[i + 3])] += 1
                            i += 4
                        }
                        while i < end {
                            h0[Int(source[i])] += 1
                            i += 1
                        }
                    }
                }
            }
        }
        var histogram = [Int](repeating: 0, count: 256)
        for (index, tally) in counts.enumerated() { histogram[index % 256] += tally }
        var sum = 0.0
        for value in 0..<256 { sum += Double(histogram[value]) * (Double(value) / 255) }
        let mean = sum / Double(count)
        var squares = 0.0
        for value in 0..<256 {
            let deviation = Double(value) / 255 - mean
            squares += Double(histogram[value]) * deviation * deviation
        }
        let std = count > 1 ? (squares / Double(count - 1)).squareRoot() : 0
        return (mean, std)
    }

    /// The normalised `Float` value of each possible pixel byte: `(byte / 255 − mean) / std`,
    /// computed in `Float` as the lesson computes it on `Float` tensors.
    ///
    /// A standard deviation of 0 (every training pixel equal) is replaced by 1, so the result is
    /// centred rather than infinite.
    static func normalizationTable(mean: Double, std: Double) -> [Float] {
        let m = Float(mean)
        let s = std > 0 ? Float(std) : 1
        return (0..<256).map { value in (Float(value) / 255 - m) / s }
    }

    /// The first pixel byte whose normalised value (``normalizationTable(mean:std:)``) is not a
    /// finite `Float`, with that value, or `nil`: a mean beyond `Float`'s range (1e39), or a
    /// deviation so small that `(byte / 255 − mean) / std` overflows (1e-45). Training on such
    /// inputs gives a NaN loss at the first step, which would otherwise be blamed on the learning
    /// rate.
    package static func nonFiniteNormalizedPixel(mean: Double, std: Double) -> (byte: Int, value: Float)? {
        let table = normalizationTable(mean: mean, std: std)
        return table.firstIndex { !$0.isFinite }.map { ($0, table[$0]) }
    }

    /// Rows `rows` of `bytes` (each `pixels` long), mapped through `table`: `(rows.count, pixels)`.
    private static func normalize(_ bytes: [UInt8], rows: Range<Int>, pixels: Int, table: [Float]) -> Tensor {
        let result = Tensor(uninitializedShape: [rows.count, pixels])
        let destination = result.pointer
        let start = rows.lowerBound * pixels
        // On Backprop's threads, in pieces of at least 1,024 rows (3.2 MB of floats for 28 × 28).
        bytes.withUnsafeBufferPointer { source in
            table.withUnsafeBufferPointer { lookup in
                Parallel.forEachRange(rows.count, minimumPerPiece: 1024) { pieceRows in
                    for i in (pieceRows.lowerBound * pixels)..<(pieceRows.upperBound * pixels) {
                        destination[i] = lookup[Int(source[start + i])]
                    }
                }
            }
        }
        return result
    }
}
