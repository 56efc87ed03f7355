import ArgumentParser
import Logging
import FTEngine
import FTFrontEnd
import FTTransfer
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Push files, directory trees or stdin to an ft receiver.",
        discussion: """
            Each PATH arrives under its own name: a directory with its whole
            tree (empty files and directories, modes and mtimes, symlinks
            (see --links), hard links and holes of sparse files kept), `-` as
            a stream read from stdin. Fifos, sockets and devices are skipped,
            each named in a warning. The tree is walked while its first
            files are already on their way.

            The receiver prints a one-time code; give it with FT_CODE=CODE or
            --code-file FILE (never on the command line, where other users
            could read it).

            With --to h1,h2,...,hN the push goes to h1 only; each host
            keeps its copy and relays the stream to the next (splice and tee,
            zero-copy), so N hosts cost the sender's link one push. Every
            host verifies its own copy. Chain hosts share one code (start
            each `ft recv` with the same FT_CODE or --code-file). A host that
            fails is reported and the chain closes around it; the report
            lists every host's outcome.

            With -P N the chunks of big files travel on N more connections
            beside the push's own (which keeps the manifest, small files,
            trailers and acknowledgements). Each chunk lands at its offset;
            a stream that breaks or stalls hands its chunks to the others.
            It helps where one TCP stream cannot fill the link (long paths,
            per-flow limits, several NIC queues); on loopback it does not.

            EXAMPLES
              FT_CODE=k7mq-2fxp-93rd ft send 192.168.1.5 photos/ notes.txt
              ft send 192.168.1.5:9000 big.iso --io splice
              tar c src | ft send nas - --name src.tar
              FT_CODE=k7mq-2fxp-93rd ft send --to rack1,rack2,rack3 image.raw
              ft send -P 4 far-site:7878 dataset/

            \(ExitStatus.help)
            """)

    @Argument(help: ArgumentHelp("Receiver as HOST[:PORT]; port \(Endpoint.ftPort) by default. With --to, the first PATH.",
                                 discussion: "IPv6: [ADDR]:PORT.", valueName: "host[:port]"))
    var destination: String

    @Option(name: .customLong("to"), help: ArgumentHelp(
        "Relay chain: push to the first host, which relays to the next, and so on.",
        discussion: "Comma-separated HOST[:PORT] list, up to 64 hosts. No HOST argument then: every argument is a PATH.",
        valueName: "h1,h2,..."))
    var chain: String?

    @Argument(help: ArgumentHelp("Files and directories to push; - reads stdin.", valueName: "path"))
    var paths: [String] = []

    @Option(help: "Name under which stdin (-) arrives.")
    var name: String?

    @Option(help: ArgumentHelp(
        "Symlinks: safe, all or none.",
        discussion: "safe (default): keep a link whose target, read as a path from the link's directory, stays inside the pushed tree; skip the others, each named. all: keep every link's target as it is (as tar does). none: skip every link. The receiver applies its own --links too.",
        valueName: "policy"))
    var links: LinkPolicy = .safe

    @Flag(help: "Keep uid and gid by number (applied when the receiver runs as root).")
    var owner = false

    @Flag(help: ArgumentHelp(
        "Patch changed files: only the chunks that differ travel.",
        discussion: "For files the receiver may replace (ft recv --overwrite) and that are 1M or more on both sides: the receiver sends a hash of each chunk of its copy and rebuilds the file from its matching chunks and the new ones, then verifies it whole. Files already there with the same size and mtime are skipped with or without --sync."))
    var sync = false

    @Flag(help: ArgumentHelp(
        "Identical means the same content (xxh3-128), not the same size and mtime; implies --sync.",
        discussion: "The receiver hashes its copy of every file of the same size, so a re-push reads both trees whole."))
    var checksum = false

    @Flag(help: ArgumentHelp(
        "Remove what the pushed directories no longer hold at the receiver.",
        discussion: "Only inside the directories this push names, only if the receiver allows it (ft recv --allow-delete), never through a symlink. Each removed path is named in the receiver's log; the summary counts them. Not with --exclude (the excluded entries would go)."))
    var delete = false

    @Flag(name: [.customShort("n"), .customLong("dry-run")], help: ArgumentHelp(
        "Say what would be sent, patched, skipped and deleted; write nothing.",
        discussion: "The receiver checks the push as usual (a refusal shows), compares with what it holds, and makes no file, directory or link. Each file that would travel is named; the receiver's log names what --delete would remove."))
    var dryRun = false

    @Option(help: ArgumentHelp(
        "Leave out entries of pushed directories that match (repeatable).",
        discussion: "gitignore patterns, matched below each pushed directory: * and ? within a name, [a-z], ** for any directories (**/cache, logs/**), a leading or inner / anchors to the top (/build, doc/*.txt), a trailing / matches directories only, a pattern without / matches a name at any depth. An excluded directory is not walked. Order: --exclude-from's lines, then --exclude, then --include; the last pattern that matches decides.",
        valueName: "pattern"))
    var exclude: [String] = []

    @Option(help: ArgumentHelp("Keep entries that match, though an exclude matched them (repeatable).", valueName: "pattern"))
    var include: [String] = []

    @Option(help: ArgumentHelp("Read exclude patterns from a file: one per line, # comments, !pattern includes.", valueName: "file"))
    var excludeFrom: String?

    @Option(name: .customLong("io"), help: ArgumentHelp(
        "Data path: auto, sendfile, splice, copy or zc.",
        discussion: "auto (default): copy when verifying, sendfile with --no-verify or -P. copy: io_uring read into a buffer, hashed there while in cache, then send. sendfile: sendfile(2) from the ring's thread, least CPU when nothing is hashed; verified, a helper thread reads every byte again to hash it. splice: file→pipe→socket as linked io_uring ops. zc: io_uring read into registered buffers, then zero-copy send (IORING_OP_SEND_ZC). README, Performance, has the figures."))
    var io: SendPath = .default

    @Option(name: [.customShort("P"), .customLong("streams")], help: ArgumentHelp(
        "Data streams: chunks go on this many extra connections (1 to \(DataStreamRules.maxStreams)).",
        discussion: "1 (default): everything on one connection. Works with --io sendfile or splice; chunks are then at most 1M."))
    var streams: Int = 1

    @Option(help: "Payload bytes per chunk, e.g. 1M or 4M (16K to 64M).")
    var chunk: String = "4M"

    @Option(help: ArgumentHelp("At most this many bytes per second, e.g. 50M (MiB/s) or 500K.", valueName: "rate"))
    var limit: String?

    @Flag(help: ArgumentHelp(
        "Seal everything with AES-256-GCM or ChaCha20-Poly1305, keys from the code.",
        discussion: "AES-256-GCM when both hosts' CPUs have AES-NI, ChaCha20-Poly1305 otherwise. Bytes then pass through user space (no zero-copy path): measure the cost with ftbench."))
    var encrypt = false

    @Option(help: ArgumentHelp(
        "With --encrypt, offer only this cipher: aes-256-gcm or chacha20-poly1305.",
        discussion: "The push fails if the receiver takes another (ft recv --cipher).", valueName: "name"))
    var cipher: Cipher?

    @Flag(help: "Do not hash; the receiver cannot verify what arrives.")
    var noVerify = false

    @Option(help: ArgumentHelp("Read the receiver's one-time code from this file (or set FT_CODE).", valueName: "path"))
    var codeFile: String?

    @Option(help: "Fail after this many seconds without progress.")
    var timeout: Double = 60

    @OptionGroup var output: OutputOptions

    var chunkBytes: UInt64 { Sizes.parse(chunk) ?? 0 }

    /// The paths to push: with --to the first argument is one of them.
    var sources: [String] { chain == nil ? paths : [destination] + paths }

    var chainHosts: [String] {
        (chain ?? "").split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmed }
    }

    func validate() throws {
        if chain != nil, let why = chainProblem(chainHosts, options: try options()) { throw ValidationError(why) }
        let paths = sources
        guard !paths.isEmpty else { throw ValidationError("give at least one PATH to send (or - for stdin)") }
        if paths.filter({ $0 == "-" }).count > 1 { throw ValidationError("stdin (-) can be sent once per push") }
        if name != nil, !paths.contains("-") { throw ValidationError("--name names stdin; add - to the paths") }
        if cipher != nil, !encrypt { throw ValidationError("--cipher chooses how --encrypt seals; add --encrypt") }
        guard let c = Sizes.parse(chunk) else { throw ValidationError("--chunk '\(chunk)' is not a size (try 1M or 4M)") }
        guard (16 << 10)...(64 << 20) ~= c else { throw ValidationError("--chunk must be between 16K and 64M, not \(chunk)") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let why = DataStreamRules.refusal(streams: streams, path: io, encrypt: encrypt, chain: chain != nil) {
            throw ValidationError(why)
        }
        if let limit, (Sizes.parse(limit) ?? 0) < 1024 {
            throw ValidationError("--limit '\(limit)' is not a rate of at least 1K per second")
        }
        if delete, !(exclude.isEmpty && excludeFrom == nil) {
            throw ValidationError("--delete with --exclude would remove the excluded entries at the receiver; push without one of them")
        }
        _ = try pathFilter()
        if chain == nil {
            do {
                _ = try Endpoint.parse(destination, defaultPort: Endpoint.ftPort)
            } catch {
                throw ValidationError("destination '\(destination)': \(error)")
            }
        }
    }

    /// --exclude-from, --exclude and --include, in that order.
    func pathFilter() throws -> PathFilter {
        var f = PathFilter()
        do {
            if let excludeFrom {
                let text: String
                do { text = try readTextFile(excludeFrom) } catch {
                    throw ValidationError("--exclude-from '\(excludeFrom)': \(error)")
                }
                try f.addLines(text)
            }
            for p in exclude { try f.add(p, include: false) }
            for p in include { try f.add(p, include: true) }
        } catch let e as PathFilter.PatternError {
            throw ValidationError("bad pattern: \(e)")
        }
        return f
    }

    func run() async throws {
        if chain != nil {
            try await runChain()
            return
        }
        let logger = output.logger("ft")
        let code = try loadCode(logger)
        let options = try options()
        let renderer = ProgressRenderer(program: "ft", verb: "sent", json: output.json, quiet: output.quiet)
        let summary: PushSummary
        do {
            summary = try await push(sources, to: destination, code: code, options: options, logger: logger) {
                renderer.handle($0)
            }
            renderer.flush()
        } catch {
            if !renderer.reportedFailure { _ = fail(error.description, program: "ft", json: output.json) }
            throw Failure(code: ExitStatus.of(error))
        }
        // Like rsync's 23: what could be read arrived verified, but not all
        // of what was asked for.
        let unreadable = summary.tally.skipped["unreadable", default: 0]
        if unreadable > 0 {
            if !output.json {
                Console.stderr.line("ft: \(unreadable) \(unreadable == 1 ? "entry" : "entries") could not be read and \(unreadable == 1 ? "was" : "were") left out (named above); exit \(ExitStatus.partial)")
            }
            throw Failure(code: ExitStatus.partial)
        }
    }
}

extension Send {
    /// The receiver's code, from FT_CODE or --code-file.
    func loadCode(_ logger: Logger) throws -> String? {
        do {
            return try AuthCode.load(file: codeFile) { logger.warning("\($0)") }
        } catch {
            _ = fail(error.description, program: "ft", json: output.json)
            throw Failure(code: ExitStatus.of(FTError(error)))
        }
    }

    /// The push the flags describe (validate() has checked them).
    func options() throws -> PushOptions {
        var o = PushOptions()
        o.verify = !noVerify
        o.encrypt = encrypt
        o.cipher = cipher
        o.streams = streams
        o.rateLimit = limit.flatMap { Sizes.parse($0) }
        o.sync = sync || checksum
        o.checksum = checksum
        o.delete = delete
        o.dryRun = dryRun
        o.links = links
        o.keepOwner = owner
        o.filter = try pathFilter()
        o.dataPath = io
        o.chunkSize = Int(chunkBytes)
        o.stdinName = name ?? "stdin"
        o.idleTimeout = .seconds(timeout)
        o.engine = IOEngine(output.engine)
        return o
    }

    func runChain() async throws {
        let logger = output.logger("ft")
        let code = try loadCode(logger)
        let options = try options()
        let renderer = ProgressRenderer(program: "ft", verb: "sent", json: output.json, quiet: output.quiet)
        let outcomes: [HostOutcome]
        do {
            outcomes = try await push(sources, along: chainHosts, code: code, options: options, logger: logger,
                                      progress: { renderer.handle($0) },
                                      passStarted: { pass, chain in
                guard pass > 1 else { return }
                renderer.note("pass \(pass): a new chain over \(chain.joined(separator: ", ")), the hosts the last pass did not reach",
                              json: PassEvent(pass: pass, chain: chain))
            })
        } catch {
            renderer.flush()
            _ = fail(error.description, program: "ft", json: output.json)
            throw Failure(code: ExitStatus.of(error))
        }
        renderer.hosts(outcomes, verified: !noVerify)
        if outcomes.contains(where: { !$0.ok }) { throw Failure() }
    }
}

/// A small text file (a pattern list): at most 1 MiB, read whole.
func readTextFile(_ path: String) throws -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw IOError(Errno(rawValue: errno), "open", path) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0, errno == EINTR { continue }
        guard n >= 0 else { throw IOError(Errno(rawValue: errno), "read", path) }
        if n == 0 { break }
        out += buf[..<n]
        guard out.count <= 1 << 20 else { throw IOError(.fileTooLarge, "read", path + " (over 1 MiB of patterns)") }
    }
    return String(decoding: out, as: UTF8.self)
}
