import ArgumentParser
import FTBench
import FTEngine
import FTFrontEnd
import FTTransfer
import FTWire

#if canImport(Glibc)
import Glibc
#endif

struct Throughput: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sweep ft's io paths and chunk sizes, loopback or against `ftbench serve`.",
        discussion: """
            Every cell (io × chunk) runs --warmup times unmeasured, then --repeat
            times, cells interleaved round by round so noise spreads evenly. Each
            run is a real `ft recv` and `ft send` pair: wall time from the
            sender's start until both exited, CPU seconds per GiB for each side
            (getrusage of each process), peak RSS of each side.

            EXAMPLES
              ftbench throughput --size 1G --io sendfile,splice,copy,zc --chunk 256K,1M,4M
              ftbench throughput --sink file:/mnt/scratch --repeat 5 --json t.json --svg t.svg
              ftbench throughput --connect 10.0.0.2:7878 --size 4G
              ftbench throughput --io sendfile --chunk 1M --streams 1,2,4

            With --streams above 1 (ft send -P N) chunks are at most 1M, and
            the bytes land in files (a receiver writing to stdout takes one
            stream): --sink null then becomes a scratch directory beside the
            source, emptied after every run.
            """)

    @Option(help: "Bytes per push, e.g. 256M, 2G.")
    var size: String = "256M"

    @Option(help: "Data paths to compare: sendfile, splice, copy, zc (comma list).")
    var io: String = "sendfile,splice,copy,zc"

    @Option(help: "Chunk sizes (comma list, 16K to 64M).")
    var chunk: String = "64K,256K,1M,4M"

    @Option(help: "Data streams per push, ft send -P N (comma list, 1 to 16).")
    var streams: String = "1"

    @Option(help: "Where bytes land: null (discarded after arriving) or file:DIR.")
    var sink: String = "null"

    @Option(help: "Measured runs per cell.")
    var `repeat`: Int = 3

    @Option(help: "Unmeasured runs per cell before the measured ones.")
    var warmup: Int = 1

    @Flag(help: "Push with --no-verify (measure the data path alone).")
    var noVerify = false

    @Flag(help: "Push with --encrypt (sealed records through user space).")
    var encrypt = false

    @Option(help: ArgumentHelp("Push to an `ftbench serve` at HOST:PORT instead of a local receiver.", valueName: "host:port"))
    var connect: String?

    @Option(help: ArgumentHelp("Scratch directory (default: a new one in /tmp, removed after).", valueName: "dir"))
    var work: String?

    @OptionGroup var report: ReportOptions

    var sizeBytes: UInt64 { Sizes.parse(size) ?? 0 }

    func validate() throws {
        try report.validateCommon()
        guard let s = Sizes.parse(size), s > 0 else { throw ValidationError("--size '\(size)' is not a size (try 256M or 2G)") }
        _ = s
        for p in list(io) where SendPath(rawValue: p) == nil {
            throw ValidationError("--io '\(p)' is not a data path (sendfile, splice, copy, zc)")
        }
        if list(io).isEmpty { throw ValidationError("--io needs at least one data path") }
        for c in list(chunk) {
            guard let v = Sizes.parse(c) else { throw ValidationError("--chunk '\(c)' is not a size") }
            guard (16 << 10)...(64 << 20) ~= v else { throw ValidationError("--chunk '\(c)' must be between 16K and 64M") }
        }
        for s in list(streams) {
            guard let n = Int(s) else { throw ValidationError("--streams '\(s)' is not a stream count") }
            for p in list(io).compactMap(SendPath.init(rawValue:)) {
                if let why = DataStreamRules.refusal(streams: n, path: p, encrypt: encrypt, chain: false) {
                    throw ValidationError("--streams \(n) (ft send -P \(n)) with --io \(p.rawValue): \(why)")
                }
            }
        }
        guard sink == "null" || sink.hasPrefix("file:") else { throw ValidationError("--sink is null or file:DIR, not '\(sink)'") }
        if sink.hasPrefix("file:"), sink.dropFirst(5).isEmpty { throw ValidationError("--sink file:DIR needs a directory") }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup cannot be negative") }
        if let connect {
            do {
                let e = try Endpoint.parse(connect, defaultPort: Endpoint.ftPort)
                if e.host == nil { throw ValidationError("--connect '\(connect)' needs a host") }
            } catch let e as Endpoint.ParseError {
                throw ValidationError("--connect '\(connect)': \(e)")
            }
        }
    }

    func run() throws {
        let ft = try ftBinary()
        if let connect { try probe(connect) }
        let (work, scratch) = try workDirectory(self.work)
        defer { if scratch { _ = try? Spawned(["rm", "-rf", work]).wait(timeoutSeconds: 60) } }
        let source = work + "/source.bin"
        Console.stderr.line("ftbench: preparing a \(Sizes.format(sizeBytes)) source in \(work)")
        do { try Fixtures.file(source, bytes: sizeBytes) } catch { throw BenchFailure(message: error.description) }
        let sinkValue: Sink = sink == "null" ? .null : .file(String(sink.dropFirst(5)))
        if case .file(let dir) = sinkValue { mkdir(dir, 0o755) }

        let recipes = Recipes(ft: ft, engine: report.engine)
        let bench = Workbench(timeoutSeconds: report.timeout, syncBeforeRuns: sinkValue != .null, log: work + "/participants.log")
        let chunks = list(chunk).map { ($0, Sizes.parse($0)!) }
        var cells: [ThroughputCell] = []
        let streamCounts = list(streams).map { Int($0)! }
        // Extra streams need files to land in (stdout takes one stream).
        let streamSink: Sink = sinkValue == .null ? .file(work + "/streams-sink") : sinkValue
        if case .file(let dir) = streamSink { mkdir(dir, 0o755) }
        if sinkValue == .null, streamCounts.contains(where: { $0 > 1 }) {
            Console.stderr.line("ftbench: cells with more than one stream write into \(work)/streams-sink (a receiver on stdout takes one stream)")
        }
        for p in list(io) {
            for (text, bytes) in chunks {
                for n in streamCounts {
                    let cellSink = n > 1 ? streamSink : sinkValue
                    cells.append(ThroughputCell(tool: encrypt ? "ft --encrypt" : "ft", io: p, chunk: bytes, streams: n, sink: cellSink.description,
                                                trial: Trial(label: "ft \(p) \(text)" + (n > 1 ? " -P \(n)" : ""),
                                                             parameters: [("chunk", text), ("streams", "\(n)")], bytes: sizeBytes)))
                }
            }
        }
        func once(_ cell: ThroughputCell) -> Run {
            let chunkText = "\(cell.chunk!)"
            if let connect {
                var argv = [ft, "send", connect, source, "-q", "--io", cell.io, "--chunk", chunkText, "--engine", report.engine.rawValue]
                if noVerify { argv.append("--no-verify") }
                if encrypt { argv.append("--encrypt") }
                if cell.streams > 1 { argv += ["-P", "\(cell.streams)"] }
                return bench.measureSender(argv)
            }
            return bench.measure(recipes.ftFile(source, bytes: sizeBytes, sink: cell.streams > 1 ? streamSink : sinkValue, io: cell.io,
                                                chunk: chunkText, verify: !noVerify, encrypt: encrypt, streams: cell.streams))
        }
        let throttle = Throttle()
        for w in 0..<warmup {
            for c in cells {
                throttle.say("ftbench: warm-up \(w + 1)/\(warmup): \(c.trial.label)")
                _ = once(c)
            }
        }
        for r in 0..<`repeat` {
            for i in cells.indices {
                throttle.say("ftbench: run \(r + 1)/\(`repeat`): \(cells[i].trial.label)")
                cells[i].trial.runs.append(once(cells[i]))
            }
        }
        var result = BenchReport(mode: "throughput", command: CommandLine.arguments)
        result.throughput = cells
        try report.write(result)
        if let failure = cells.flatMap(\.trial.failures).first {
            Console.stderr.line("ftbench: some runs failed, first: \(failure) (details in the json)")
        }
    }

    /// An unreachable target is a usage error: say so before measuring.
    private func probe(_ target: String) throws {
        let e = try! Endpoint.parse(target, defaultPort: Endpoint.ftPort)
        do {
            guard let address = try e.resolve().first else { throw IOError(.noSuchAddressOrDevice, "resolve", target) }
            let fd = try Socket.makeTCP(family: address.family)
            var tv = timeval(tv_sec: 3, tv_usec: 0)
            setsockopt(fd.raw, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            try address.withSockaddr { sa, len throws(IOError) in
                _ = try retryingEINTR("connect to", target) { Glibc.connect(fd.raw, sa, len) }
            }
        } catch {
            throw BenchFailure(message: "--connect \(target) is unreachable: \(error) (is `ftbench serve` running there?)", code: 2)
        }
    }
}
