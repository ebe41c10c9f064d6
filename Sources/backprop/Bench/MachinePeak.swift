import BackpropCore
import CKernels
import Foundation

/// The machine's limits on the threads Backprop uses: how fast its cores do fused multiply-adds,
/// and how fast memory streams. `backprop bench` sets each workload's floor against them
/// (``WorkloadFloor``).
///
/// - The FMA rate: every one of ``Threads/count`` threads runs a loop of independent FMAs in
///   registers (`Sources/CKernels/Peak.c`) for a fixed time, all at once, on Backprop's thread
///   pool; the rate is `2 × (the multiply-adds of all threads) / (the wall time of the whole loop)`,
///   the best of a few runs. Measured with each instruction set the processor has (8-lane AVX2,
///   16-lane AVX-512; plain C where it has neither); the floor uses the fastest.
/// - The bandwidth: every thread streams its part of a buffer much larger than the last-level
///   cache: a read (`8` bytes per word read), and STREAM's triad `a = b + s · c` (`12` bytes per
///   element, as STREAM counts it: the cache's read of `a` before writing it is not counted). The
///   best of a few passes of each; the floor uses the faster of the two.
struct MachinePeak: Sendable, Encodable {
    /// One loop of independent FMAs, for one instruction set.
    enum Kernel: String, CaseIterable, Sendable {
        /// 16 accumulators of 16 lanes (`bp_peak_fma_avx512`).
        case avx512
        /// 12 accumulators of 8 lanes (`bp_peak_fma_avx2`).
        case avx2
        /// 32 floats in plain C, for a processor with neither (`bp_peak_fma_portable`).
        case portable

        /// Whether this processor runs the loop.
        var isAvailable: Bool {
            switch self {
            case .avx512: Kernel.avx512IsAvailable
            case .avx2: Tensor.skinnyKernelIsAvailable  // AVX2 and FMA
            case .portable: true
            }
        }

        /// Asked once: `cpuid` is slow in a virtual machine (the hypervisor answers it), and
        /// ``run(trips:a:b:accumulators:)`` checks before every call.
        private static let avx512IsAvailable = bp_peak_avx512_available() != 0

        /// The independent accumulators the loop updates once per trip.
        var accumulators: Int {
            switch self {
            case .avx512: Int(BP_PEAK_AVX512_ACCUMULATORS)
            case .avx2: Int(BP_PEAK_AVX2_ACCUMULATORS)
            case .portable: Int(BP_PEAK_PORTABLE_ACCUMULATORS)
            }
        }

        /// Floats in each accumulator.
        var lanes: Int {
            switch self {
            case .avx512: Int(BP_PEAK_AVX512_LANES)
            case .avx2: Int(BP_PEAK_AVX2_LANES)
            case .portable: Int(BP_PEAK_PORTABLE_LANES)
            }
        }

        /// Runs `trips` trips of the loop, `acc = acc · a + b` on every lane of every accumulator,
        /// from and back to `accumulators` (`accumulators × lanes` floats); returns the lane
        /// multiply-adds it did, `trips × accumulators × lanes`.
        /// - Precondition: ``isAvailable``; `accumulators` holds `accumulators × lanes` floats.
        func run(trips: Int, a: Float, b: Float, accumulators: UnsafeMutablePointer<Float>) -> Int {
            precondition(isAvailable, "MachinePeak.Kernel.run: this processor does not run \(rawValue)")
            return switch self {
            case .avx512: bp_peak_fma_avx512(trips, a, b, accumulators)
            case .avx2: bp_peak_fma_avx2(trips, a, b, accumulators)
            case .portable: bp_peak_fma_portable(trips, a, b, accumulators)
            }
        }

        /// The kernels this processor runs, widest first: AVX-512 and AVX2 where it has them,
        /// else the plain C loop.
        static var available: [Kernel] {
            let vector = [Kernel.avx512, .avx2].filter(\.isAvailable)
            return vector.isEmpty ? [.portable] : vector
        }
    }

    /// One kernel's best run on all threads.
    struct FMARate: Sendable, Encodable {
        /// The kernel.
        let kernel: Kernel
        /// `2 × multiplyAdds / seconds`, in billions per second.
        let gflops: Double
        /// Lane multiply-adds done by all threads in the best run.
        let multiplyAdds: Int
        /// The trips of the loop that all threads made in the best run (each
        /// `accumulators × lanes` multiply-adds).
        let trips: Int
        /// The best run's wall time.
        let seconds: Double

        private enum CodingKeys: String, CodingKey {
            case gflops, trips, seconds
            case multiplyAdds = "multiply_adds"
        }
    }

    /// The threads that ran the loops (``Threads/count``).
    let threads: Int
    /// Each available kernel's rate, widest first.
    let fma: [FMARate]
    /// The runs of each kernel that ``fma`` is the best of (more after
    /// ``keepingFasterFMA(_:runs:)``).
    let fmaRuns: Int
    /// Streaming read, GB/s (10⁹ bytes per second).
    let readGBps: Double
    /// STREAM's triad, GB/s (12 bytes per element).
    let triadGBps: Double
    /// The bytes of the streamed buffer.
    let bufferBytes: Int
    /// The last-level cache that the buffer is larger than (bytes; 0 if the system does not say).
    let lastLevelCacheBytes: Int

    /// The fastest kernel's rate, which sets the arithmetic floor.
    var best: FMARate { fma.max { $0.gflops < $1.gflops }! }

    /// The fastest kernel's GFLOP/s.
    var fmaGflops: Double { best.gflops }

    /// The faster of the read and the triad, GB/s, which sets the memory floor.
    var bandwidthGBps: Double { Swift.max(readGBps, triadGBps) }

    /// Creates a record of measured limits, `fma` the best of `fmaRuns` runs of each kernel.
    /// - Precondition: `fma` is not empty.
    init(
        threads: Int, fma: [FMARate], fmaRuns: Int = 1, readGBps: Double, triadGBps: Double, bufferBytes: Int,
        lastLevelCacheBytes: Int
    ) {
        precondition(!fma.isEmpty, "MachinePeak: no FMA rate")
        self.threads = threads
        self.fma = fma
        self.fmaRuns = fmaRuns
        self.readGBps = readGBps
        self.triadGBps = triadGBps
        self.bufferBytes = bufferBytes
        self.lastLevelCacheBytes = lastLevelCacheBytes
    }

    /// Measures the limits on ``Threads/count`` threads: each available FMA kernel for
    /// `seconds` per run, the best of `runs`; then the read and the triad on a buffer of
    /// `bufferBytes` (``defaultBufferBytes`` when `nil`), the best of
    /// ``bandwidthPassesPerRun`` `× runs` passes each.
    /// - Precondition: `seconds > 0`, `runs ≥ 1`.
    static func measure(seconds: Double = 0.2, runs: Int = 3, bufferBytes: Int? = nil) -> MachinePeak {
        precondition(seconds > 0 && runs >= 1, "MachinePeak.measure: seconds \(seconds), runs \(runs)")
        let rates = measureFMARates(seconds: seconds, runs: runs)
        let bytes = bufferBytes ?? defaultBufferBytes
        let (read, triad) = measureBandwidth(bytes: bytes, passes: bandwidthPassesPerRun * runs)
        return MachinePeak(
            threads: Threads.count, fma: rates, fmaRuns: runs, readGBps: read, triadGBps: triad, bufferBytes: bytes,
            lastLevelCacheBytes: lastLevelCacheBytes)
    }

    /// Each available kernel's best of `runs` runs of `seconds` (``measureFMA(_:seconds:runs:)``),
    /// widest first.
    /// - Precondition: `seconds > 0`, `runs ≥ 1`.
    static func measureFMARates(seconds: Double = 0.2, runs: Int = 3) -> [FMARate] {
        Kernel.available.map { measureFMA($0, seconds: seconds, runs: runs) }
    }

    /// These limits with each kernel's rate the faster of ``fma`` and `rates` (the best of
    /// `runs` more runs, measured at another moment); the bandwidth unchanged.
    ///
    /// On a shared machine the host can slow the FMA loop for the second it runs; the floor then
    /// comes out too high, and a workload timed after it, in a faster moment, below it (a ratio
    /// under 1). `backprop bench` measures the loop again after the workloads and keeps the faster.
    func keepingFasterFMA(_ rates: [FMARate], runs: Int) -> MachinePeak {
        let faster = fma.map { mine in
            rates.first { $0.kernel == mine.kernel && $0.gflops > mine.gflops } ?? mine
        }
        return MachinePeak(
            threads: threads, fma: faster, fmaRuns: fmaRuns + runs, readGBps: readGBps, triadGBps: triadGBps,
            bufferBytes: bufferBytes, lastLevelCacheBytes: lastLevelCacheBytes)
    }

    /// Passes of the read and of the triad per run of ``measure(seconds:runs:bufferBytes:)``, the
    /// best of which is kept (`backprop bench` prints the count).
    static let bandwidthPassesPerRun = 3

    /// Trips of the FMA loop between two looks at the clock: tens of microseconds.
    static let tripsPerCall = 16_384

    /// Runs `kernel` on every thread at once, each for `seconds`, `runs` times; returns the best run.
    ///
    /// Each thread calls the kernel in pieces of ``tripsPerCall`` trips until its `seconds` are
    /// up, from accumulators of 0 with `a = b = 1` (each lane counts its trips, up to 2^24, and
    /// stays at 2^24 after: no special values). The pool cuts a loop into at most 16 pieces: with
    /// more threads some run two pieces in turn, and the rate is still the work over the time.
    /// - Precondition: `kernel.isAvailable`, `seconds > 0`, `runs ≥ 1`.
    static func measureFMA(_ kernel: Kernel, seconds: Double, runs: Int) -> FMARate {
        precondition(kernel.isAvailable, "MachinePeak.measureFMA: this processor does not run \(kernel.rawValue)")
        precondition(seconds > 0 && runs >= 1, "MachinePeak.measureFMA: seconds \(seconds), runs \(runs)")
        let threads = Threads.count
        let width = kernel.accumulators * kernel.lanes
        var best: FMARate?
        for _ in 0..<runs {
            // Per thread: its multiply-adds and its trips (each written by its own thread only).
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: 2 * threads)
            defer { counts.deallocate() }
            let start = Timing.now()
            Parallel.forEachRange(threads, minimumPerPiece: 1) { range in
                let accumulators = UnsafeMutablePointer<Float>.allocate(capacity: width)
                defer { accumulators.deallocate() }
                for thread in range {
                    accumulators.initialize(repeating: 0, count: width)
                    var multiplyAdds = 0
                    var trips = 0
                    let begin = Timing.now()
                    repeat {
                        multiplyAdds += kernel.run(trips: tripsPerCall, a: 1, b: 1, accumulators: accumulators)
                        trips += tripsPerCall
                    } while Timing.now() - begin < seconds
                    counts[2 * thread] = multiplyAdds
                    counts[2 * thread + 1] = trips
                }
            }
            let elapsed = Timing.now() - start
            let multiplyAdds = (0..<threads).reduce(0) { $0 + counts[2 * $1] }
            let trips = (0..<threads).reduce(0) { $0 + counts[2 * $1 + 1] }
            let rate = FMARate(
                kernel: kernel, gflops: 2 * Double(multiplyAdds) / elapsed * 1e-9, multiplyAdds: multiplyAdds,
                trips: trips, seconds: elapsed)
            if best == nil || rate.gflops > best!.gflops { best = rate }
        }
        return best!
    }

    /// The streamed buffer unless told otherwise: 8 times the last-level cache, at least 256 MiB,
    /// at most a quarter of the machine's memory.
    static var defaultBufferBytes: Int {
        let wanted = Swift.max(256 << 20, 8 * lastLevelCacheBytes)
        let quarter = Int(clamping: ProcessInfo.processInfo.physicalMemory / 4)
        return Swift.max(1 << 20, Swift.min(wanted, quarter))
    }

    /// The largest cache of CPU 0 (`/sys/devices/system/cpu/cpu0/cache/index*/size`, `32768K`), in
    /// bytes; 0 where the system does not say.
    static var lastLevelCacheBytes: Int {
        let folder = "/sys/devices/system/cpu/cpu0/cache"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var largest = 0
        for entry in entries where entry.hasPrefix("index") {
            guard let text = try? String(contentsOfFile: "\(folder)/\(entry)/size", encoding: .utf8) else { continue }
            let size = text.trimmingCharacters(in: .whitespacesAndNewlines)
            let unit: Int =
                switch size.last {
                case "K": 1 << 10
                case "M": 1 << 20
                case "G": 1 << 30
                default: 1
                }
            let digits = unit == 1 ? size : String(size.dropLast())
            if let value = Int(digits) { largest = Swift.max(largest, value * unit) }
        }
        return largest
    }

    /// GB/s of a streaming read and of STREAM's triad over `bytes` of memory (rounded down to whole
    /// blocks of 64 floats), on all threads: the best of `passes` passes of each.
    ///
    /// The buffer is written first (all threads, so that its pages are mapped), as floats of 1:
    /// no special values reach the triad. The read takes the whole buffer; the triad three
    /// quarters of it, `a`, `b` and `c` a quarter each.
    /// - Precondition: `bytes ≥ 1 MiB`, `passes ≥ 1`.
    static func measureBandwidth(bytes: Int, passes: Int) -> (read: Double, triad: Double) {
        precondition(bytes >= 1 << 20 && passes >= 1, "MachinePeak.measureBandwidth: \(bytes) bytes, \(passes) passes")
        let block = 64  // floats: a whole number of 64-bit words and of cache lines
        let floats = bytes / 4 / (4 * block) * (4 * block)
        let buffer = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: floats, for: "the buffer that measures the memory bandwidth")
        defer { buffer.deallocate() }
        let minimum = 1 << 16
        Parallel.forEachRange(floats, minimumPerPiece: minimum, grain: block) { range in
            (buffer + range.lowerBound).initialize(repeating: 1, count: range.count)
        }
        let words = UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt64.self)
        let wordCount = floats / 2
        var read = 0.0
        for _ in 0..<passes {
            let start = Timing.now()
            Parallel.forEachRange(wordCount, minimumPerPiece: minimum, grain: block / 2) { range in
                _ = bp_peak_read(words + range.lowerBound, range.count)
            }
            read = Swift.max(read, Double(8 * wordCount) / (Timing.now() - start) * 1e-9)
        }
        let quarter = floats / 4
        let (a, b, c) = (buffer, buffer + quarter, buffer + 2 * quarter)
        var triad = 0.0
        for _ in 0..<passes {
            let start = Timing.now()
            Parallel.forEachRange(quarter, minimumPerPiece: minimum, grain: block) { range in
                bp_peak_triad(a + range.lowerBound, b + range.lowerBound, c + range.lowerBound, 3, range.count)
            }
            triad = Swift.max(triad, Double(12 * quarter) / (Timing.now() - start) * 1e-9)
        }
        return (read, triad)
    }

    private enum CodingKeys: String, CodingKey {
        case threads
        case fmaGflops = "fma_gflops"
        case fmaKernel = "fma_kernel"
        case fmaByKernel = "fma_by_kernel"
        case fmaRuns = "fma_runs"
        case readGBps = "read_gbps"
        case triadGBps = "triad_gbps"
        case bandwidthGBps = "bandwidth_gbps"
        case bufferBytes = "buffer_bytes"
        case lastLevelCacheBytes = "last_level_cache_bytes"
    }

    /// Writes `threads`, `fma_gflops` and `fma_kernel` (the fastest kernel, which the floors use),
    /// `fma_by_kernel` (kernel → `gflops`, `multiply_adds`, `trips`, `seconds` of its best run),
    /// `fma_runs` (the runs of each kernel that the best is taken from),
    /// `read_gbps`, `triad_gbps`, `bandwidth_gbps` (the faster, which the floors use),
    /// `buffer_bytes` and `last_level_cache_bytes`.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(threads, forKey: .threads)
        try container.encode(fmaGflops, forKey: .fmaGflops)
        try container.encode(best.kernel.rawValue, forKey: .fmaKernel)
        let byKernel = Dictionary(uniqueKeysWithValues: fma.map { ($0.kernel.rawValue, $0) })
        try container.encode(byKernel, forKey: .fmaByKernel)
        try container.encode(fmaRuns, forKey: .fmaRuns)
        try container.encode(readGBps, forKey: .readGBps)
        try container.encode(triadGBps, forKey: .triadGBps)
        try container.encode(bandwidthGBps, forKey: .bandwidthGBps)
        try container.encode(bufferBytes, forKey: .bufferBytes)
        try container.encode(lastLevelCacheBytes, forKey: .lastLevelCacheBytes)
    }
}
