import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// MARK: - A tiny dataset in the Fashion-MNIST layout

/// 12 training images of 2×2 pixels (10 train + 2 valid) and 3 test images; pixel `p` of image
/// `i` is `(37 i + 11 p) mod 256`, label of image `i` is `i mod 10`.
private let trainCount = 12
private let testCount = 3
private func pixel(_ image: Int, _ p: Int, offset: Int = 0) -> UInt8 {
    UInt8((37 * (image + offset) + 11 * p) % 256)
}

/// Writes the four files into `folder`; `compressed` picks `.gz` for each file (in `fileNames`
/// order), and the other parameters corrupt one thing at a time.
private func writeTinyDataset(
    in folder: String, compressed: [Bool] = [true, false, true, false],
    trainLabels: [UInt8]? = nil, testLabels: [UInt8] = [7, 8, 9], skip: String? = nil,
    trainCount: Int = trainCount, testCount: Int = testCount
) throws {
    let trainImages = (0..<trainCount).flatMap { i in (0..<4).map { pixel(i, $0) } }
    let testImages = (0..<testCount).flatMap { i in (0..<4).map { pixel(i, $0, offset: 100) } }
    let labels = trainLabels ?? (0..<trainCount).map { UInt8($0 % 10) }
    let contents: [([UInt8], [Int])] = [
        (trainImages, [trainCount, 2, 2]), (labels, [labels.count]),
        (testImages, [testCount, 2, 2]), (testLabels, [testLabels.count]),
    ]
    for (index, name) in FashionMNIST.fileNames.enumerated() where name != skip {
        let path = folder + "/" + name + (compressed[index] ? ".gz" : "")
        try IDX.write(contents[index].0, shape: contents[index].1, to: path)
    }
}

/// The lesson's preparation of `bytes`, computed here independently in Double:
/// mean and std (count − 1) of `trainBytes / 255`, then `(byte / 255 − mean) / std`.
private func reference(_ bytes: [UInt8], trainBytes: [UInt8]) -> [Double] {
    let train = trainBytes.map { Double($0) / 255 }
    let mean = train.reduce(0, +) / Double(train.count)
    let variance = train.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(train.count - 1)
    return bytes.map { (Double($0) / 255 - mean) / variance.squareRoot() }
}

private func expectClose(
    _ actual: [Float], _ expected: [Double], tolerance: Double = 1e-5,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(actual.count == expected.count, sourceLocation: sourceLocation)
    for (a, e) in zip(actual, expected) where abs(Double(a) - e) > tolerance {
        Issue.record("\(a) is not within \(tolerance) of \(e)", sourceLocation: sourceLocation)
        return
    }
}

@Test func fashionMNISTSplitsAndNormalisesWithTrainingStatistics() throws {
    try withTemporaryFolder { folder in
        try writeTinyDataset(in: folder)
        let data = try FashionMNIST(directory: folder)
        // 12 rows: the last sixth (2) validate, as 10,000 of 60,000 do.
        #expect(data.xTrain.shape == [10, 4])
        #expect(data.xValid.shape == [2, 4])
        #expect(data.xTest.shape == [3, 4])
        #expect(data.yTrain.shape == [10])
        #expect(data.yTrain.values == (0..<10).map { Float($0) })
        #expect(data.trainLabels == Array(0..<10))
        #expect(data.validLabels == [0, 1])
        #expect(data.yValid.values == [0, 1])
        #expect(data.testLabels == [7, 8, 9])
        #expect(data.yTest.values == [7, 8, 9])

        let trainBytes = (0..<10).flatMap { i in (0..<4).map { pixel(i, $0) } }
        let validBytes = (10..<12).flatMap { i in (0..<4).map { pixel(i, $0) } }
        let testBytes = (0..<3).flatMap { i in (0..<4).map { pixel(i, $0, offset: 100) } }
        expectClose(data.xTrain.values, reference(trainBytes, trainBytes: trainBytes))
        expectClose(data.xValid.values, reference(validBytes, trainBytes: trainBytes))
        expectClose(data.xTest.values, reference(testBytes, trainBytes: trainBytes))

        let train = trainBytes.map { Double($0) / 255 }
        #expect(abs(data.trainMean - train.reduce(0, +) / 40) < 1e-12)
    }
}

@Test func fashionMNISTLimitReadsOnlyTheFirstRows() throws {
    try withTemporaryFolder { folder in
        try writeTinyDataset(in: folder, compressed: [true, true, false, false])
        let data = try FashionMNIST(directory: folder, limit: 6)
        #expect(data.xTrain.shape == [5, 4])
        #expect(data.xValid.shape == [1, 4])
        #expect(data.xTest.shape == [3, 4])  // only 3 test rows exist
        #expect(data.trainLabels == [0, 1, 2, 3, 4])
        // Statistics come from the 5 training rows read.
        let trainBytes = (0..<5).flatMap { i in (0..<4).map { pixel(i, $0) } }
        expectClose(data.xTrain.values, reference(trainBytes, trainBytes: trainBytes))
    }
}

@Test func fashionMNISTNamesAMissingFolder() {
    expectDataError(
        containing: [
            "/no/such/data: no such folder", "train-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]",
            "BACKPROP_DATA",
        ]
    ) {
        try FashionMNIST(directory: "/no/such/data")
    }
}

@Test func fashionMNISTNamesAMissingFile() throws {
    try withTemporaryFolder { folder in
        try writeTinyDataset(in: folder, skip: "t10k-labels-idx1-ubyte")
        expectDataError(containing: [folder, "missing t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte"]) {
            try FashionMNIST(directory: folder)
        }
    }
}

@Test func fashionMNISTNamesBothFilesWhenCountsDiffer() throws {
    try withTemporaryFolder { folder in
        try writeTinyDataset(in: folder, trainLabels: [UInt8](repeating: 1, count: 11))
        expectDataError(
            containing: [
                folder + "/train-labels-idx1-ubyte: holds 11 labels but",
                folder + "/train-images-idx3-ubyte.gz holds 12 images",
            ]
        ) {
            try FashionMNIST(directory: folder)
        }
    }
}

@Test func fashionMNISTNamesALabelOutsideTheTenClasses() throws {
    try withTemporaryFolder { folder in
        var labels = [UInt8](repeating: 3, count: trainCount)
        labels[7] = 12
        try writeTinyDataset(in: folder, trainLabels: labels)
        expectDataError(containing: [folder + "/train-labels-idx1-ubyte: label at index 7 is 12, outside 0…9"]) {
            try FashionMNIST(directory: folder)
        }
    }
}

/// The training and the test files are read at once, on two threads; when both are bad, the
/// training file's error is the one reported, as when they were read in turn.
@Test func fashionMNISTReportsTheTrainingFilesErrorFirst() throws {
    try withTemporaryFolder { folder in
        var labels = [UInt8](repeating: 3, count: trainCount)
        labels[2] = 10
        try writeTinyDataset(in: folder, trainLabels: labels, testLabels: [7, 11, 9])
        expectDataError(containing: [folder + "/train-labels-idx1-ubyte: label at index 2 is 10, outside 0…9"]) {
            try FashionMNIST(directory: folder)
        }
    }
    try withTemporaryFolder { folder in
        try writeTinyDataset(in: folder, testLabels: [7, 11, 9])
        expectDataError(containing: [folder + "/t10k-labels-idx1-ubyte: label at index 1 is 11, outside 0…9"]) {
            try FashionMNIST(directory: folder)
        }
    }
}

/// Enough rows that the normalisation is cut into several pieces over the threads (at least
/// 1,024 rows each): every split against the lesson's preparation computed here in Double.
@Test func fashionMNISTNormalisesManyRowsInPieces() throws {
    try withTemporaryFolder { folder in
        let (rows, testRows) = (6_003, 2_500)
        let labels = (0..<rows).map { UInt8($0 % 10) }
        try writeTinyDataset(
            in: folder, trainLabels: labels, testLabels: (0..<testRows).map { UInt8($0 % 10) },
            trainCount: rows, testCount: testRows)
        let data = try FashionMNIST(directory: folder)
        let nValid = rows / 6
        #expect(data.xTrain.shape == [rows - nValid, 4])
        #expect(data.xValid.shape == [nValid, 4])
        #expect(data.xTest.shape == [testRows, 4])
        let trainBytes = (0..<(rows - nValid)).flatMap { i in (0..<4).map { pixel(i, $0) } }
        let validBytes = ((rows - nValid)..<rows).flatMap { i in (0..<4).map { pixel(i, $0) } }
        let testBytes = (0..<testRows).flatMap { i in (0..<4).map { pixel(i, $0, offset: 100) } }
        expectClose(data.xTrain.values, reference(trainBytes, trainBytes: trainBytes))
        expectClose(data.xValid.values, reference(validBytes, trainBytes: trainBytes))
        expectClose(data.xTest.values, reference(testBytes, trainBytes: trainBytes))
    }
}

/// Over 4 MiB, the bytes are counted in pieces on the threads, four histograms a piece: the mean
/// and standard deviation against a direct sum in Double, on 5 MiB and 5 bytes (a last piece
/// and a last group of four bytes that are not whole), of which all but the last byte are counted.
@Test func fashionMNISTMeanAndStdInPieces() {
    var generator = RandomGenerator(seed: 7)
    let count = 5 << 20 + 5
    // Half zeros, as the images' background, and the rest spread over 1...255.
    let bytes = (0...count).map { _ in
        generator.nextUniform() < 0.5 ? UInt8(0) : UInt8(1 + generator.nextIndex(below: 255))
    }
    let (mean, std) = FashionMNIST.meanAndStd(bytes, count: count)
    var sum = 0.0
    for i in 0..<count { sum += Double(bytes[i]) / 255 }
    let expectedMean = sum / Double(count)
    var squares = 0.0
    for i in 0..<count {
        let deviation = Double(bytes[i]) / 255 - expectedMean
        squares += deviation * deviation
    }
    let expectedStd = (squares / Double(count - 1)).squareRoot()
    // (The direct sums of 5 M terms carry their own rounding, about 1e-12; the histogram's are exact.)
    #expect(abs(mean - expectedMean) < 1e-10)
    #expect(abs(std - expectedStd) < 1e-10)
}

@Test func fashionMNISTResolvesTheDataFolder() {
    let environment = ["BACKPROP_DATA": "/from/environment"]
    #expect(FashionMNIST.resolveDirectory("/from/argument", environment: environment) == "/from/argument")
    #expect(FashionMNIST.resolveDirectory(nil, environment: environment) == "/from/environment")
    #expect(FashionMNIST.resolveDirectory("", environment: environment) == "/from/environment")
    #expect(FashionMNIST.resolveDirectory(nil, environment: ["BACKPROP_DATA": ""]) == FashionMNIST.defaultDirectory)
    #expect(FashionMNIST.resolveDirectory(nil, environment: [:]) == "/usr/share/datasets/fashion-mnist")
}

@Test func fashionMNISTMeanAndStdAreExact() {
    // Pixels 0 and 255 in equal numbers: mean 0.5, std (count − 1) = sqrt(4 × 0.25 / 3).
    let (mean, std) = FashionMNIST.meanAndStd([0, 255, 0, 255, 9], count: 4)
    #expect(mean == 0.5)
    #expect(abs(std - (1.0 / 3).squareRoot()) < 1e-15)
}

// MARK: - The real Fashion-MNIST files

private let realDataFolder = FashionMNIST.defaultDirectory
private let realDataPresent = FileManager.default.fileExists(
    atPath: realDataFolder + "/train-images-idx3-ubyte.gz")

@Test(
    .enabled(
        if: realDataPresent,
        "Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)"))
func fashionMNISTFirst300RealRows() throws {
    let data = try FashionMNIST(directory: realDataFolder, limit: 300)
    #expect(data.xTrain.shape == [250, 784])
    #expect(data.xValid.shape == [50, 784])
    #expect(data.xTest.shape == [300, 784])
    // Labels as Python's gzip + numpy read them from the files.
    #expect(Array(data.trainLabels.prefix(10)) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    #expect(Array(data.testLabels.prefix(10)) == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
    #expect(Array(data.yTrain.values.prefix(3)) == [9, 0, 0])

    // Training statistics are those of the 250 training rows (numpy: x[:250] / 255, .mean(),
    // .std(ddof=1)), not of the 300 rows read and not of the full set.
    #expect(abs(data.trainMean - 0.2899308923569428) < 1e-12)
    #expect(abs(data.trainStd - 0.35496210204083684) < 1e-12)
    // Pixel 154 of image 0 is 102: (102 / 255 − mean) / std = 0.31008697 (numpy float32).
    #expect(abs(data.xTrain[0, 154] - 0.31008697) < 1e-6)
    // Normalised training pixels are centred; validation and test pixels, normalised with the
    // training statistics, are not exactly (numpy: 0.026132965 and 0.0024807143).
    let trainMean = data.xTrain.values.reduce(0, +) / Float(data.xTrain.count)
    let validMean = data.xValid.values.reduce(0, +) / Float(data.xValid.count)
    let testMean = data.xTest.values.reduce(0, +) / Float(data.xTest.count)
    #expect(abs(trainMean) < 1e-4)
    #expect(abs(validMean - 0.026132965) < 1e-4)
    #expect(abs(testMean - 0.0024807143) < 1e-4)
}
