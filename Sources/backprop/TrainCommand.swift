import ArgumentParser
import BackpropCore
import BackpropData
import BackpropDistributed
import BackpropExplain
import BackpropNetwork
import BackpropONNX
import BackpropTraining
import Foundation

/// `backprop train`: trains a model (an MLP, or any network given by `--layers`) on Fashion-MNIST
/// with the layers' hand-written backward.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a network on Fashion-MNIST with minibatches, cross-entropy and an optimizer.",
        discussion: """
            Trains on the first 50,000 training images, validates on the other 10,000 after each \
            epoch, and reports the accuracy on the 10,000 test images (t10k) at the end. The \
            defaults are the best recipe found for the MLP (see Training.md). The network is \
            the MLP of --hidden, or any network given by --layers: a model description such as \
            'conv 32 3 pad 1, relu, maxpool 2, flatten, lin 10', or a preset (seed, mlp, cnn); a \
            network that starts with a convolution takes the images as [n, 1, 28, 28].
            """
    )

    private static let recipe = TrainingConfiguration()

    // Numeric options parse `.unconditional`ly: `--epochs -3` is refused as negative, naming the
    // option and the value, rather than as a missing value. The settings are optional, their
    // defaults applied in `parsedConfiguration()`: `--resume` must tell an option typed (which must
    // agree with the checkpoint, even when it equals the default) from one left out.

    @Option(
        parsing: .unconditional,
        help: "Hidden layer sizes of an MLP, comma-separated (e.g. 256,128; '' for none: one Lin, softmax regression).")
    var hidden: String?

    @Option(
        help: """
            The network as a model description ('conv 32 3 pad 1, relu, maxpool 2, flatten, lin 10') or a \
            preset: \(ModelDescription.presets.map(\.name).joined(separator: ", ")) (see README, "Model descriptions").
            """)
    var layers: String?

    @Option(parsing: .unconditional, help: "Passes over the training set (default: \(recipe.epochs)).")
    var epochs: Int?

    @Option(parsing: .unconditional, help: "Rows per minibatch (default: \(recipe.batchSize)).")
    var batchSize: Int?

    @Option(
        name: .customLong("lr"), parsing: .unconditional,
        help: "Peak learning rate (default: \(FloatArgument(recipe.learningRate).text)).")
    var learningRate: FloatArgument?

    @Option(
        help: """
            Optimizer: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")) (default: \
            \(recipe.optimizer.rawValue)).
            """)
    var optimizer: String?

    @Option(
        parsing: .unconditional,
        help: """
            Decoupled weight decay on the weight matrices (default: \(recipe.weightDecay), or the preset's: \
            \(TrainingConfiguration.recipe(layers: "cnn").weightDecay) with --layers cnn).
            """)
    var weightDecay: FloatArgument?

    @Option(
        help: """
            Learning-rate schedule: \(LearningRateSchedule.allCases.map(\.rawValue).joined(separator: ", ")) \
            (default: \(recipe.schedule.rawValue)).
            """)
    var schedule: String?

    @Option(
        help: """
            Loss: \(LossKind.allCases.map(\.rawValue).joined(separator: ", ")) (the seed's regression of the \
            class number, one output) (default: \(recipe.loss.rawValue), or the loss of --init's checkpoint).
            """)
    var loss: String?

    @Flag(
        help: """
            Seeded data augmentation: each epoch flips a random half of the training images left to right \
            (from --seed and the epoch; never the validation or test images). Needs a network that takes images.
            """)
    var flip = false

    @Option(parsing: .unconditional, help: "Seed of the initial weights and of the shuffles (default: \(recipe.seed)).")
    var seed: UInt64?

    @Option(
        parsing: .unconditional,
        help: """
            Threads for the matrix products and other large loops (default: $BACKPROP_THREADS, else \
            every core, at most 8). The results are the same for any count.
            """)
    var threads: Int?

    @Option(
        help: "Folder with the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    @Option(
        parsing: .unconditional,
        help: "Use only the first N training images (5/6 train, 1/6 validate) and N test images, for quick trials.")
    var limit: Int?

    @Option(
        help: """
            Write the model, with the optimizer's state, to this safetensors file after every epoch \
            (atomically), and at the end; Ctrl-C, SIGTERM or SIGHUP stops after the current step and keeps the \
            last completed epoch there.
            """)
    var save: String?

    @Option(
        help: """
            Continue the run saved in this checkpoint (by --save) to the result the uninterrupted run \
            would have had; its settings are the checkpoint's. Saves to the same file unless --save is given.
            """)
    var resume: String?

    @Option(
        name: .customLong("init"),
        help: """
            Start from the weights in this file: a Backprop checkpoint, a state_dict that `backprop export \
            --format pytorch` wrote, or an ONNX model (dropout aside, which exporters leave out), which give \
            their own network when neither --layers nor --hidden is given (else the same network), or a PyTorch \
            state_dict (safetensors) of the nn.Sequential that --layers describes (layer I is index I; \
            see README, "PyTorch interop"). The optimizer starts afresh.
            """)
    var initialWeights: String?

    @Option(
        // `.unconditional`: `--normalize -0.5,1` reads a negative mean, not a missing value.
        parsing: .unconditional,
        help: """
            MEAN,STD: normalise the pixels / 255 with this mean and standard deviation (default: the one \
            --init's model or --resume's checkpoint stores, else the training images'); 0,1 gives pixels in \
            0…1, as torchvision's ToTensor(). Saved with the model.
            """)
    var normalize: String?

    @Option(help: "Write an SVG plot of the losses and the validation accuracy to this file.")
    var plot: String?

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    @Flag(
        help: """
            Under mpirun: after every step, check that every process holds the same weights, bit for bit (a \
            checksum compared across the processes); stop with an error if not.
            """)
    var checkReplicas = false

    func validate() throws {
        try PathArgument.checkNotEmpty(initialWeights, option: "--init")
        try PathArgument.checkNotEmpty(resume, option: "--resume")
        if let threads, !(1...64).contains(threads) {
            throw ValidationError("--threads: expected 1 to 64, found \(threads)")
        }
        if let save { try checkOutput(save, option: "--save", suffix: ".safetensors") }
        if let plot { try checkOutput(plot, option: "--plot", suffix: ".svg") }
        if let resume, save == nil { try OutputPath.check(resume, option: "--resume") }
        if resume != nil && initialWeights != nil {
            throw ValidationError("--init and --resume both give the starting weights; use one")
        }
        // Names that differ can still be one file, through a symbolic link (`plot.svg ->
        // model.safetensors`): the plot, written after the checkpoint, replaced the model.
        if let plot, let save, ExportCommand.samePath(plot, save) {
            throw ValidationError("--plot \(plot) is the --save file \(save); the plot would replace the saved model")
        }
        if let plot {
            try checkOutputIsNotAnInput(
                plot, option: "--plot", inputs: [("--resume", resume), ("--init", initialWeights)])
        }
        if let save { try checkOutputIsNotAnInput(save, option: "--save", inputs: [("--init", initialWeights)]) }
        for (option, path) in [("--save", save), ("--plot", plot), ("--resume", resume)] {
            if let path { try checkOutputIsNotData(path, option: option, data: data) }
        }
        if let normalize { _ = try EvaluateCommand.normalization(parsing: normalize) }
        _ = try parsedConfiguration()
    }

    /// What would make the processes of the run train different models, or `nil` when every one is
    /// about to train the same network on the same batches with the same settings, data and
    /// starting weights (``Trainer/replicaDifference(settings:data:)``): each host reads its own
    /// data folder and files, and a process whose network or batches differ would sum gradients of
    /// another size. Every process calls it; every one gets the same answer.
    private func processDisagreement(
        _ trainer: Trainer, group: any ReplicaGroup, configuration: TrainingConfiguration, limit: Int?,
        dataset: FashionMNIST
    ) -> String? {
        // Each setting on its own, so that the message names the option that differs; the same
        // entries, in the same order, on every process (one comparison each).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let encoded = (try? encoder.encode(configuration)) ?? Data()
        let object = (try? JSONSerialization.jsonObject(with: encoded)) as? [String: Any] ?? [:]
        func text(_ value: Any?) -> String {
            guard let value else { return "not given" }
            let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])
            return data.map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
        }
        var settings: [(name: String, value: String)] = Self.configurationOptions.map { key, option in
            ("\(option) settings", text(object[key]))
        }
        settings += [
            // The whole configuration too: whatever the entries above leave out.
            ("settings", String(decoding: encoded, as: UTF8.self)),
            ("--limit settings", limit.map(String.init) ?? "not given"),
            // --check-replicas adds collective calls to every step: every process takes it or none.
            ("--check-replicas settings", checkReplicas ? "given" : "not given"),
            // Rank 0 alone writes --save, --plot and --json; another process's would go unseen.
            ("--save paths", save ?? "not given"), ("--plot paths", plot ?? "not given"),
            ("--json settings", json ? "given" : "not given"),
        ]
        // The images and labels themselves, hashed: data of the same size and statistics (labels
        // shuffled, another folder's images) would train a model of neither without a word.
        let data =
            "\(dataset.xTrain.shape[0]) training, \(dataset.xValid.shape[0]) validation and \(dataset.xTest.shape[0]) "
            + "test images of shape \(dataset.imageShape), normalised by mean \(dataset.trainMean), std \(dataset.trainStd), "
            + "images and labels hashed to \(String(Self.contentHash(of: dataset), radix: 16))"
        guard let (what, here) = trainer.replicaDifference(settings: settings, data: data) else { return nil }
        return "mpirun -np \(group.count): the processes would not train the same model: their \(what) differ "
            + "(on rank 0: \(here)); give every process the same options, data of the same size, and the same "
            + "--init or --resume file"
    }

    /// The keys of a ``TrainingConfiguration``'s JSON, with the options that set them: what the
    /// processes of a run compare one by one (``processDisagreement(_:group:configuration:limit:dataset:)``).
    static let configurationOptions: [(key: String, option: String)] = [
        ("layers", "--layers"), ("hidden", "--hidden"), ("loss", "--loss"), ("epochs", "--epochs"),
        ("batchSize", "--batch-size"), ("learningRate", "--lr"), ("optimizer", "--optimizer"),
        ("weightDecay", "--weight-decay"), ("schedule", "--schedule"), ("seed", "--seed"), ("flip", "--flip"),
    ]

    /// A 64-bit FNV-1a hash of every image and label of `dataset` (training, validation, test):
    /// the same in every process that read the same files.
    static func contentHash(of dataset: FashionMNIST) -> UInt64 {
        var hash = FNV1a()
        for tensor in [dataset.xTrain, dataset.yTrain, dataset.xValid, dataset.yValid, dataset.xTest, dataset.yTest] {
            hash.combine(UInt64(tensor.count))
            tensor.contiguous().withUnsafeBufferPointer { values in
                var index = 0
                while index + 1 < values.count {  // two floats per word
                    hash.combine(UInt64(values[index].bitPattern) << 32 | UInt64(values[index + 1].bitPattern))
                    index += 2
                }
                if index < values.count { hash.combine(UInt64(values[index].bitPattern)) }
            }
        }
        return hash.value
    }

    func run() throws {
        let started = ContinuousClock.now
        // `Interruption.install()` is in place (`BackpropCommand.runCommand()`). Ctrl-C while the
        // data inflates: the readers check between chunks (nothing to save yet).
        ReadingInterruption.install { if let signal = Interruption.requested { Foundation.exit(128 + signal) } }
        var configuration = try parsedConfiguration()
        // --init's file, read once (an ONNX model, else a safetensors checkpoint or state_dict): its
        // network, its normalisation and its weights all come from the same bytes, released once
        // the weights are copied. A file that cannot be read stops the run before the data loads.
        var initialFile = try initialWeights.map(InitialWeightsFile.init(path:))
        let networkOfInit = try networkOfInitialWeights(initialFile)
        if let network = networkOfInit?.description {
            // `--init FILE` alone: FILE's own network, as evaluate and gradcheck take it.
            configuration.layers = network.description
            if weightDecay == nil {
                configuration.weightDecay = TrainingConfiguration.recipe(layers: network.description).weightDecay
            }
            // And its loss: an MSE checkpoint's one output fine-tunes with MSE.
            if loss == nil, let stored = networkOfInit?.loss { configuration.loss = stored }
        }
        var limit = self.limit
        if let resume {
            let state = try TrainingCheckpoint.readState(path: resume)
            try checkResumedSettings(configuration, limit: limit, against: state, path: resume)
            configuration = state.configuration
            limit = state.limit
        }
        // Under mpirun, one process of a data-parallel run: rank 0 alone prints and writes files.
        let run = try DistributedRun.join()
        let isLeader = run.isLeader
        // Checkpoints go to --save, or back to the file being resumed; rank 0 writes them.
        let checkpointPath = isLeader ? save ?? resume : nil
        if let threads {
            Threads.set(threads)
        } else if run.group != nil, ProcessInfo.processInfo.environment["BACKPROP_THREADS"] == nil {
            Threads.set(run.defaultThreads)
        }
        let dataset = try FashionMNIST(
            directory: FashionMNIST.resolveDirectory(data), limit: limit,
            normalization: try inputNormalization(initialFile))
        // Rows of 784 pixels, or images [n, 1, 28, 28] for a network that starts with a convolution.
        // The options were checked for Fashion-MNIST's 28×28 images and its 60,000 training images
        // (or --limit of them): again for other sizes, for a folder with fewer images (the last
        // batch a batch norm sees), and for the network of --init's file.
        do {
            try configuration.validate(
                imageShape: dataset.imageShape, classes: FashionMNIST.classNames.count, limit: limit,
                trainingRows: dataset.xTrain.shape[0])
        } catch {
            let network =
                networkOfInit.map { ", with the network '\($0.description)' of --init \(initialWeights ?? "")" } ?? ""
            throw CommandLineError(
                "\(error.description) (for the \(dataset.xTrain.shape[0]) training images of shape "
                    + "\(dataset.imageShape) in \(dataset.directory)\(network))")
        }
        let inputShape = try configuration.modelInputShape(imageShape: dataset.imageShape)
        if let initialWeights, let stored = networkOfInit?.inputShape, stored != inputShape {
            throw CommandLineError(
                "\(initialWeights): the model takes inputs of shape \(stored), but the images in \(dataset.directory) "
                    + "have shape \(dataset.imageShape)")
        }
        func shaped(_ x: Tensor) -> Tensor { x.reshape([x.shape[0]] + inputShape) }
        let trainer = Trainer(
            configuration: configuration, classes: FashionMNIST.classNames.count,
            train: (shaped(dataset.xTrain), dataset.yTrain), valid: (shaped(dataset.xValid), dataset.yValid))
        if let resume { try TrainingCheckpoint.restore(trainer, from: resume) }
        if let initialWeights, let file = initialFile {
            let network = configuration.layers.map { "--layers '\($0)'" } ?? "the MLP of --hidden"
            switch file {
            case .onnx(let imported):
                try loadONNX(
                    imported, from: initialWeights, into: trainer.model, describedAs: network, inputShape: inputShape)
            case .safetensors(let stored):
                try Checkpoint.load(stored, into: trainer.model, describedAs: network)
            }
            initialFile = nil
        }
        if let group = run.group {
            let (rows, smallest) = (trainer.batches.rowCount, trainer.batches.smallestBatchRows)
            if smallest < group.count {
                let which =
                    configuration.batchSize < group.count
                    ? "every batch of --batch-size \(configuration.batchSize) has fewer rows"
                    : "the last batch of each epoch has \(smallest) row\(smallest == 1 ? "" : "s") (\(rows) training "
                        + "rows in batches of --batch-size \(configuration.batchSize)), fewer"
                throw CommandLineError(
                    "mpirun -np \(group.count): \(which) than the \(group.count) processes that share every batch; "
                        + "choose another --batch-size or --limit")
            }
            trainer.replicas = group
            trainer.checksReplicas = checkReplicas
            if let disagreement = processDisagreement(
                trainer, group: group, configuration: configuration, limit: limit, dataset: dataset)
            {
                // Every process learns it from the same exchange: rank 0 says it, the others end quietly.
                guard isLeader else {
                    run.finish()
                    Foundation.exit(1)
                }
                throw CommandLineError(disagreement)
            }
        }

        // Text goes to stdout, or to stderr when stdout carries the JSON.
        let textOutput = json ? StandardStream.error : StandardStream.output
        let progress = ProgressDisplay(
            // mpirun gives its processes a terminal of its own even when its output goes to a file: no bar.
            output: textOutput, isTerminal: run.group == nil && isatty(json ? STDERR_FILENO : STDOUT_FILENO) == 1,
            totalEpochs: configuration.epochs)
        // After each epoch, the checkpoint; an error writing it stops the run at the next step. A
        // failed write of the progress does too, after the checkpoint is saved.
        var checkpointError: (any Error)?
        // Which file holds the run's latest state, for the messages of a run that stops early: the
        // checkpoint written last in this run, else the file it resumed from (which --save, when
        // it names another file, has not replaced yet).
        var kept = KeptState(resumed: resume.map { ($0, trainer.epoch) }, target: checkpointPath)
        func saveCheckpoint(_ record: EpochRecord) {
            guard isLeader else { return }
            progress.epoch(record)
            guard let checkpointPath, checkpointError == nil else { return }
            do {
                try TrainingCheckpoint.save(
                    trainer, configuration: configuration, limit: limit, to: checkpointPath,
                    normalization: (dataset.trainMean, dataset.trainStd))
                kept.writtenEpoch = trainer.epoch
            } catch {
                checkpointError = error
            }
        }
        Interruption.startPolling()
        do {
            try trainer.fit(
                onStep: { if isLeader { progress.step($0) } }, onEpoch: saveCheckpoint,
                shouldStop: { checkpointError != nil || Interruption.requested != nil || textOutput.failure != nil })
        } catch let error as TrainingError {
            // Every process of a run meets the same error (the loss is the whole batch's): rank 0 says it.
            if !isLeader {
                run.finish()
                Foundation.exit(1)
            }
            progress.clear()
            var note = ""
            if let (path, epoch) = kept.latest {
                note = " (\(path) holds epoch \(epoch), the last before the divergence\(kept.unwrittenTarget))"
            } else if let checkpointPath {
                note = " (nothing was written to \(checkpointPath))"
            }
            throw CommandLineError(error.description + note)
        }
        if let checkpointError {
            // Writes are atomic: the file keeps what it held. Say what that is, and how to go on,
            // as for an interrupted run (a full disk gave the bare error).
            progress.clear()
            var note = "; the run stopped after epoch \(trainer.epoch) of \(trainer.epochs)"
            if let (path, epoch) = kept.latest {
                note +=
                    ": \(path) holds epoch \(epoch) with the optimizer's state\(kept.unwrittenTarget); continue with: "
                    + "backprop train --resume \(path)"
            } else {
                note += ", nothing saved"
            }
            throw CommandLineError("\(checkpointError)" + note)
        }
        if !trainer.isFinished, let signal = Interruption.requested {
            if isLeader {
                progress.clear()
                reportInterruption(by: "interrupted by \(Interruption.name(of: signal))", trainer, kept)
            }
            run.finish()
            Foundation.exit(128 + signal)
        }
        if !trainer.isFinished, isLeader, let failure = textOutput.failureDescription {
            reportInterruption(by: "Error: \(failure); stopped", trainer, kept)
            run.finish()
            Foundation.exit(textOutput.failureStatus)
        }
        if !trainer.isFinished {
            // Another process of the run stopped it (interrupted, or it could not write): it says why.
            if isLeader {
                progress.clear()
                reportInterruption(by: "stopped by another process of the run", trainer, kept)
            }
            run.finish()
            Foundation.exit(1)
        }
        let test =
            run.group.map { evaluate(trainer.model, x: shaped(dataset.xTest), y: dataset.yTest, replicas: $0) }
            ?? evaluate(trainer.model, x: shaped(dataset.xTest), y: dataset.yTest)
        run.finish()
        guard isLeader else { return }
        let last = trainer.history.last!

        if let checkpointPath {
            let metadata = ["test_accuracy": "\(test.accuracy)", "valid_accuracy": "\(last.validAccuracy)"]
            do {
                try TrainingCheckpoint.save(
                    trainer, configuration: configuration, limit: limit, to: checkpointPath,
                    normalization: (dataset.trainMean, dataset.trainStd), metadata: metadata)
            } catch {
                // The run finished; only the last file, with the test results, could not be
                // written (it gave the bare error): say what there is, as for a save mid-run.
                progress.clear()
                var note =
                    "; the run finished all \(trainer.epochs) epochs, test accuracy \(format(test.accuracy, 4))"
                if let (path, epoch) = kept.latest {
                    note +=
                        ": \(path) holds epoch \(epoch) with the optimizer's state\(kept.unwrittenTarget), without the test results"
                } else {
                    note += ", nothing saved"
                }
                throw CommandLineError("\(error)" + note)
            }
        }
        if let plot {
            let network =
                configuration.layers.map { "network \($0)" }
                ?? "MLP \(trainer.model.sizes.map(String.init).joined(separator: "-"))"
            let title =
                "Fashion-MNIST, \(network), \(configuration.optimizer.rawValue), "
                + "test accuracy \(format(test.accuracy, 4))"
            try writeAtomically(Data(trainingPlotSVG(trainer.history, title: title).utf8), to: plot)
        }
        let seconds = started.duration(to: .now).seconds
        if json {
            let report = TrainReport(
                testAccuracy: test.accuracy, testLoss: test.loss, validAccuracy: last.validAccuracy,
                validLoss: last.validLoss, seconds: seconds, sizes: trainer.model.sizes, layers: configuration.layers,
                configuration: configuration, epochs: trainer.history,
                steps: StepTiming(
                    count: trainer.stepsTaken, seconds: trainer.stepSeconds,
                    allReduceSeconds: trainer.replicaSumSeconds,
                    processes: run.group?.count ?? 1, threads: Threads.count))
            StandardStream.output.write(try encodeJSON(report) + "\n")
        } else {
            textOutput.write(
                "test accuracy \(format(test.accuracy, 4)) (\(dataset.yTest.count) images), test loss "
                    + "\(format(test.loss, 4)), \(format(seconds, 1)) s\n")
            if let checkpointPath { textOutput.write("saved model to \(checkpointPath)\n") }
            if let plot { textOutput.write("wrote plot to \(plot)\n") }
        }
        // The run is complete and saved; the report could not be written.
        for stream in [StandardStream.output, StandardStream.error] {
            if let failure = stream.failureDescription {
                let saved = checkpointPath.map { "; \($0) holds the finished run" } ?? ""
                StandardStream.error.write("Error: \(failure)\(saved)\n")
                Foundation.exit(stream.failureStatus)
            }
        }
    }

    /// Which file holds a run's latest state: what a message about an early stop points to.
    struct KeptState {
        /// The file the run resumed from, and the epoch it held.
        let resumed: (path: String, epoch: Int)?
        /// Where the run writes its checkpoints (rank 0), or `nil`.
        let target: String?
        /// The epoch last written to `target` in this run, or `nil`.
        var writtenEpoch: Int?

        /// The file that holds the latest state saved, and its epoch: `target` once written, else
        /// the file resumed from (`nil` before any epoch of a new run).
        var latest: (path: String, epoch: Int)? {
            if let target, let writtenEpoch { return (target, writtenEpoch) }
            if let resumed, resumed.epoch > 0 { return resumed }
            return nil
        }

        /// `"; nothing was written to TARGET yet"` when `latest` is another file than `target`.
        var unwrittenTarget: String {
            guard let target, let latest, latest.path != target else { return "" }
            return "; nothing was written to \(target) yet"
        }
    }

    /// One line on stderr: what stopped the run (`cause`, as in `interrupted by SIGINT`), where its
    /// last completed epoch is, how to go on.
    private func reportInterruption(by cause: String, _ trainer: Trainer, _ kept: KeptState) {
        let position: String
        if trainer.step > 0 {
            position =
                "in epoch \(trainer.epoch + 1) of \(trainer.epochs), step \(trainer.step) of \(trainer.batches.count)"
        } else if trainer.epoch > 0 {
            position = "after epoch \(trainer.epoch) of \(trainer.epochs)"
        } else {
            position = "before the first step"
        }
        let message: String
        if let (path, epoch) = kept.latest {
            message =
                "\(cause) \(position): \(path) holds epoch \(epoch) with the optimizer's state"
                + "\(kept.unwrittenTarget); continue with: backprop train --resume \(path)"
        } else if kept.target != nil {
            message = "\(cause) \(position), before any epoch completed: nothing saved"
        } else {
            message = "\(cause) \(position): nothing saved (give --save FILE to keep checkpoints)"
        }
        StandardStream.error.write(message + "\n")
    }

    /// With --resume, the options typed on the command line must agree with the checkpoint's, even
    /// where they equal the defaults (a typed `--epochs 15` against a run of 3 used to pass, the
    /// default being 15): the run continues as it was started. Options left out take the
    /// checkpoint's.
    private func checkResumedSettings(
        _ given: TrainingConfiguration, limit: Int?, against state: TrainingState, path: String
    ) throws {
        let saved = state.configuration
        func check<T: Equatable>(_ option: String, typed: Bool, _ value: T, _ savedValue: T) throws {
            if typed && value != savedValue {
                throw ValidationError(
                    "\(option) \(value) differs from \(savedValue) in \(path); --resume continues the run as it was started"
                )
            }
        }
        // The network, as the layers it makes: `--layers mlp` is the MLP of `--hidden 256,128`.
        if layers != nil || hidden != nil {
            let option = layers.map { "--layers '\($0)'" } ?? "--hidden \(hidden ?? "")"
            let (network, savedNetwork) = (Self.network(of: given), Self.network(of: saved))
            if network != savedNetwork {
                throw ValidationError(
                    "\(option) is the network '\(network)', but \(path) holds a run of '\(savedNetwork)'; --resume "
                        + "continues the run as it was started")
            }
        }
        try check("--epochs", typed: epochs != nil, given.epochs, saved.epochs)
        try check("--batch-size", typed: batchSize != nil, given.batchSize, saved.batchSize)
        try check("--lr", typed: learningRate != nil, given.learningRate, saved.learningRate)
        try check("--optimizer", typed: optimizer != nil, given.optimizer.rawValue, saved.optimizer.rawValue)
        try check("--weight-decay", typed: weightDecay != nil, given.weightDecay, saved.weightDecay)
        try check("--schedule", typed: schedule != nil, given.schedule.rawValue, saved.schedule.rawValue)
        try check("--loss", typed: loss != nil, given.loss.rawValue, saved.loss.rawValue)
        try check("--seed", typed: seed != nil, given.seed, saved.seed)
        try check("--flip", typed: flip, given.flip, saved.flip)
        if let limit, limit != state.limit {
            throw ValidationError(
                "--limit \(limit) differs from \(state.limit.map(String.init) ?? "none") in \(path); "
                    + "--resume continues the run as it was started")
        }
        if state.completedEpochs >= saved.epochs {
            throw ValidationError("--resume \(path): the run is complete (\(saved.epochs) of \(saved.epochs) epochs)")
        }
    }

    /// The network a configuration trains, as a model description's text: its `--layers` (a
    /// preset expanded), or the MLP of its `--hidden` for its loss's outputs.
    private static func network(of configuration: TrainingConfiguration) -> String {
        if let description = try? configuration.modelDescription() { return description.description }
        let outputs = configuration.loss == .mse ? 1 : FashionMNIST.classNames.count
        let hidden = configuration.hidden.flatMap { [ModelDescription.Entry.lin(out: $0, bias: true), .relu] }
        return ModelDescription(entries: hidden + [.lin(out: outputs, bias: true)]).description
    }

    /// What the inputs are normalised with: `--normalize`; else the normalisation that `--resume`'s
    /// checkpoint or `--init`'s model stores (a model trained on other inputs goes on with its own:
    /// a PyTorch model on `ToTensor()`'s pixels in 0…1 stays on them); else `nil`, the training
    /// images' mean and standard deviation. A resumed run keeps its checkpoint's: a different
    /// `--normalize` is an error, as any other changed setting. `initialFile`: `--init`'s file.
    private func inputNormalization(_ initialFile: InitialWeightsFile?) throws -> (mean: Double, std: Double)? {
        let given = try normalize.map(EvaluateCommand.normalization(parsing:))
        if let resume {
            let saved = try Checkpoint.normalization(path: resume)
            if let given, let saved, given != saved {
                throw ValidationError(
                    "--normalize \(normalize ?? "") differs from \(saved.mean),\(saved.std) in \(resume); "
                        + "--resume continues the run as it was started")
            }
            return saved ?? given
        }
        if let given { return given }
        switch initialFile {
        case nil: return nil
        case .onnx(let imported): return imported.normalization
        case .safetensors(let stored): return try Checkpoint.readNormalization(stored)
        }
    }

    /// The network `--init`'s file holds, when neither `--layers` nor `--hidden` chooses one: a
    /// Backprop checkpoint, a state_dict that `backprop export` wrote and an ONNX model store theirs
    /// (a state_dict that PyTorch wrote does not, and is read with `--layers`; without it, with the
    /// default MLP, whose error says to give `--layers`).
    /// With it, the shape of one example that the file's model takes. `initialFile`: `--init`'s
    /// file.
    private func networkOfInitialWeights(
        _ initialFile: InitialWeightsFile?
    ) throws -> (description: ModelDescription, inputShape: [Int], loss: LossKind?)? {
        guard let initialFile, layers == nil, hidden == nil else { return nil }
        switch initialFile {
        case .onnx(let imported):
            // An ONNX graph stores no loss; one output per example can only be the seed's MSE.
            let outputs = try? imported.description.shapes(input: imported.inputShape).last
            return (imported.description, imported.inputShape, outputs == [1] ? .mse : nil)
        case .safetensors(let stored):
            guard Checkpoint.isBackpropCheckpoint(stored) else { return nil }
            let saved = try Checkpoint.load(from: stored)
            let loss: LossKind = saved.model.loss is Mse ? .mse : .crossEntropy
            return (try Checkpoint.modelDescription(of: saved.model), saved.inputShape, loss)
        }
    }

    /// The options as a configuration, or an error naming the option, the expected and the found
    /// value: the library's one check of training settings (`TrainingConfiguration.validate`,
    /// which `--resume` applies to a checkpoint's too).
    private func parsedConfiguration() throws -> TrainingConfiguration {
        var configuration = TrainingConfiguration()
        if let hidden {
            if layers != nil {
                throw ValidationError(
                    "--hidden and --layers both choose the network; use one (--hidden 256,128 is "
                        + "--layers 'lin 256, relu, lin 128, relu, lin 10')")
            }
            configuration.hidden = try parseSizes(hidden, option: "--hidden")
        }
        configuration.layers = layers
        configuration.flip = flip
        if let epochs { configuration.epochs = epochs }
        if let batchSize { configuration.batchSize = batchSize }
        if let learningRate {
            configuration.learningRate = try learningRate.checked("--lr", expected: "a positive number", positive: true)
        }
        if let optimizer { configuration.optimizer = try parseChoice(optimizer, option: "--optimizer") }
        configuration.weightDecay =
            try weightDecay?.checked("--weight-decay", expected: "a number ≥ 0", positive: false)
            ?? TrainingConfiguration.recipe(layers: layers).weightDecay
        if let schedule { configuration.schedule = try parseChoice(schedule, option: "--schedule") }
        if let loss { configuration.loss = try parseChoice(loss, option: "--loss") }
        if let seed { configuration.seed = seed }
        do {
            try configuration.validate(
                imageShape: FashionMNIST.imageShape, classes: FashionMNIST.classNames.count, limit: limit)
        } catch {
            throw ValidationError(error.description)
        }
        return configuration
    }
}

/// The `--json` output of `backprop train`.
struct TrainReport: Encodable {
    var testAccuracy: Float
    var testLoss: Float
    var validAccuracy: Float
    var validLoss: Float
    var seconds: Double
    /// The linear layers' sizes (all of an MLP's).
    var sizes: [Int]
    /// The model description, for a network given by `--layers`.
    var layers: String?
    var configuration: TrainingConfiguration
    var epochs: [EpochRecord]
    /// The training steps of this run (resumed epochs excluded), on rank 0.
    var steps: StepTiming
}

/// The steps of a `train` run in `--json`: how many, their seconds (validation excluded), the
/// seconds of those spent summing gradients over the processes, and the processes and threads.
struct StepTiming: Encodable {
    var count: Int
    var seconds: Double
    var allReduceSeconds: Double
    var processes: Int
    var threads: Int
}

/// `value` as one line of JSON, keys in snake_case and sorted.
func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Parses `"256,128"` into `[256, 128]`, or throws naming the option.
func parseSizes(_ text: String, option: String) throws -> [Int] {
    if text.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    var sizes: [Int] = []
    for part in parts {
        guard let size = Int(part.trimmingCharacters(in: .whitespaces)), size > 0 else {
            throw ValidationError("\(option): expected comma-separated positive sizes such as 256,128, found '\(text)'")
        }
        sizes.append(size)
    }
    return sizes
}

/// Checks, before any work, that `path` has the expected suffix and can be written.
func checkOutput(_ path: String, option: String, suffix: String) throws {
    try PathArgument.checkNotEmpty(path, option: option)
    guard path.hasSuffix(suffix) else {
        throw ValidationError("\(option) \(path): expected a file name ending in \(suffix)")
    }
    try OutputPath.check(path, option: option)
}

/// `value` with `digits` digits after the point.
func format(_ value: Float, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

/// `value` with `digits` digits after the point.
func format(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

extension Duration {
    /// The duration in seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// The file of `train --init`, read once: an ONNX model (by its first bytes, as
/// `ONNXImport.looksLikeONNX(path:)` tells), else a safetensors file (a Backprop checkpoint or a
/// PyTorch `state_dict`).
enum InitialWeightsFile {
    case onnx(ONNXImportedModel)
    case safetensors(SafetensorsFile)

    /// Reads the file at `path`.
    /// - Throws: as `ONNXImport.read(path:)` or `Safetensors.read(path:)`, naming `path`.
    init(path: String) throws {
        self =
            ONNXImport.looksLikeONNX(path: path)
            ? .onnx(try ONNXImport.read(path: path)) : .safetensors(try Safetensors.read(path: path))
    }
}

extension TrainCommand {
    /// Copies the weights of the ONNX model `imported`, read from `path`, into `model` (`network`:
    /// `--layers '…'`), which must have the same layers for the same examples, dropout aside:
    /// exporters leave dropout out of inference graphs (torch.onnx.export does).
    func loadONNX(
        _ imported: ONNXImportedModel, from path: String, into model: Model, describedAs network: String,
        inputShape: [Int]
    ) throws {
        let target = try Checkpoint.modelDescription(of: model)
        func withoutDropout(_ description: ModelDescription) -> [ModelDescription.Entry] {
            description.entries.filter { if case .dropout = $0 { false } else { true } }
        }
        guard withoutDropout(imported.description) == withoutDropout(target), imported.inputShape == inputShape else {
            let norms = { (description: ModelDescription) in
                description.entries.filter { if case .batchNorm = $0 { true } else { false } }.count
            }
            let normsFolded =
                norms(target) > norms(imported.description)
                ? " (torch.onnx.export folds a batch norm into the layer before it unless told not to: "
                    + "do_constant_folding=False, or optimize=False with dynamo=True)" : ""
            let targetText = network.hasPrefix("--layers") ? "" : " ('\(target)')"
            throw CommandLineError(
                "\(path): holds the model '\(imported.description)' for examples of shape \(imported.inputShape), "
                    + "not \(network)\(targetText) for \(inputShape)\(normsFolded)")
        }
        let sources = imported.model.namedParameters + imported.model.namedBuffers
        let destinations = model.namedParameters + model.namedBuffers
        Checkpoint.copy(zip(sources, destinations).map { ($0.tensor, $1.tensor) })
    }
}
