import ArgumentParser
import FTEngine
import FTFrontEnd
import FTTransfer
import FTWire

#if canImport(Glibc)
import Glibc
#endif

struct Recv: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recv",
        abstract: "Receive pushes into a directory (or stdout), many senders at once.",
        discussion: """
            Prints one ready line with the address to send to, then serves
            until interrupted (or one push with --once). Every file lands under
            a temp name beside its final name and is renamed into place only
            after its xxh3-128 matches the sender's. Existing files are kept
            unless --overwrite is given. Peer paths are checked and opened
            beneath DIR without following links.

            EXAMPLES
              ft recv --dir ~/incoming
              ft recv --listen 127.0.0.1:9000 --once
              ft recv --stdout | tar x

            EXIT STATUS
              0   served until interrupted (with --once: the push arrived verified)
              1   with --once (or --stdout), the push failed for another reason
              2   bad arguments
              3-7 with --once (or --stdout), the push failed and this is why, as
                  ft send's status says it: 3 the code, 4 refused by this
                  receiver's rules, 5 verification failed, 6 I/O error, 7 timed out
              6   also: cannot listen (address in use, not allowed) or write into DIR
            """)

    @Option(help: ArgumentHelp("Address to listen on, [ADDR:]PORT.", discussion: "Default: every interface, port \(Endpoint.ftPort). IPv6: [ADDR]:PORT. Port 0 picks a free port.", valueName: "addr:port"))
    var listen: String = ":\(Endpoint.ftPort)"

    @Option(help: "Directory to write into.")
    var dir: String = "."

    @Flag(help: "Serve one push, then exit with its status.")
    var once = false

    @Flag(help: "Replace existing files (never done by default).")
    var overwrite = false

    @Flag(help: ArgumentHelp(
        "Let a push remove what its directories no longer hold (ft send --delete).",
        discussion: "Only beneath directories the push names, never through a symlink; ft's own .ft-* part files stay. Each removal is logged."))
    var allowDelete = false

    @Option(name: .customLong("relay-to"), help: ArgumentHelp(
        "Networks this host may dial as the next host of a chain push (ft send --to), e.g. 10.0.0.0/8,192.168.1.7.",
        discussion: "Default: any address. A hop outside them is reported as refused by this host's --relay-to. Whatever the setting, the chain's report says only 'did not answer as an ft receiver' for a hop that did not answer in ft, not whether its port was closed or held by something else.",
        valueName: "cidr,..."))
    var relayTo: String?

    @Flag(help: "Write the one incoming file or stream to stdout (implies --once).")
    var stdout = false

    @Option(name: .customLong("io"), help: ArgumentHelp(
        "Receive path: auto, splice or copy.",
        discussion: "auto (default): copy for a verified push, splice for one sent with --no-verify. splice: socket→pipe→file as linked io_uring ops, hashed from the page cache afterwards. copy: io_uring recv into a buffer, hashed there while in cache, then write (less CPU than splice when verifying: README, Performance)."))
    var io: ReceivePath = .auto

    @Flag(help: "Accept pushes from anyone, without the one-time code.")
    var noAuth = false

    @Option(help: ArgumentHelp("Read the one-time code from this file instead of making one (or set FT_CODE).", valueName: "path"))
    var codeFile: String?

    @Flag(help: "Take encrypted pushes only (ft send --encrypt).")
    var encrypt = false

    @Option(help: ArgumentHelp(
        "The one cipher an encrypted push may use: aes-256-gcm or chacha20-poly1305.",
        discussion: "Default: whichever the sender offers, AES-256-GCM first when this CPU has AES-NI.",
        valueName: "name"))
    var cipher: Cipher?

    @Option(help: ArgumentHelp(
        "Symlinks a push may make: safe, all or none.",
        discussion: "safe (default): only links whose target stays inside the pushed tree; the others are skipped, each named. all: every link as sent. none: no links. No link is ever followed when writing.",
        valueName: "policy"))
    var links: LinkPolicy = .safe

    @Flag(help: "Accept credential and start-up names (.ssh/, authorized_keys, .bashrc, ...), refused by default.")
    var allowSensitive = false

    @Option(help: "Delete partial files of interrupted pushes older than this many hours.")
    var keepPartial: Double = 24

    @Option(help: "Sessions served at once; more are turned away.")
    var maxSessions: Int = 128

    @Option(help: ArgumentHelp(
        "Connections held that have not proved the code yet.",
        discussion: "Each holds a few KiB for at most 10 s. When they are all taken, the oldest is dropped for a newcomer, and no host may hold more than an eighth of them (at least 8), so a stranger who opens many cannot keep a sender out."))
    var maxPending: Int = 4096

    @Option(help: "End a session after this many seconds without progress.")
    var timeout: Double = 60

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let r = relayTo, case .failure(let why) = RelayScope.parse(r) { throw ValidationError(why.description) }
        do {
            _ = try Endpoint.parse(listen, defaultPort: Endpoint.ftPort, allowPortZero: true)
        } catch {
            throw ValidationError("--listen '\(listen)': \(error)")
        }
        guard maxSessions > 0 else { throw ValidationError("--max-sessions must be at least 1") }
        guard maxPending >= 8 else { throw ValidationError("--max-pending must be at least 8") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        guard keepPartial > 0 else { throw ValidationError("--keep-partial must be positive hours") }
        if noAuth, codeFile != nil { throw ValidationError("--no-auth and --code-file contradict each other") }
        if noAuth, encrypt { throw ValidationError("--encrypt needs the one-time code; drop --no-auth") }
        if stdout, isatty(1) == 1 {
            throw ValidationError("--stdout would write file bytes to the terminal; pipe or redirect stdout")
        }
    }

    func run() async throws {
        // With --stdout the data owns stdout, so events go to stderr.
        let jsonConsole: Console = stdout ? .stderr : .stdout
        let logger = output.logger("ft recv")
        var code: String? = nil
        // A code ft made is shown (it is the only way to learn it); one
        // read from FT_CODE or a file is not echoed into logs.
        var made = false
        if !noAuth {
            do {
                code = try AuthCode.load(file: codeFile) { logger.warning("\($0)") }
            } catch {
                _ = fail(error.description, program: "ft recv", json: output.json, console: jsonConsole)
                throw Failure(code: ExitStatus.of(FTError(error)))
            }
            if let given = code, let weak = AuthCode.weakness(given) {
                logger.warning("the code from \(codeFile ?? "FT_CODE") \(weak): anyone could guess it; let ft recv make one (leave FT_CODE unset)")
            }
            if code == nil {
                code = Receiver.makeCode()
                made = true
            }
        }
        var options = ReceiveOptions()
        options.once = once || stdout
        options.overwrite = overwrite
        options.toStdout = stdout
        options.dataPath = io
        options.engine = IOEngine(output.engine)
        options.maxSessions = maxSessions
        options.maxPending = maxPending
        options.idleTimeout = .seconds(timeout)
        options.allowSensitive = allowSensitive
        options.requireEncryption = encrypt
        options.cipher = cipher
        options.keepPartials = .seconds(keepPartial * 3600)
        options.links = links
        options.allowDelete = allowDelete
        options.relayTo = relayTo
        let receiver: Receiver
        do {
            receiver = try Receiver(directory: dir, listen: listen, code: code, options: options, logger: logger)
        } catch {
            _ = fail(error.description, program: "ft recv", json: output.json, console: jsonConsole)
            throw Failure(code: ExitStatus.of(error))
        }
        announce(receiver, jsonConsole, code: code, shown: made)
        let renderer = ProgressRenderer(program: "ft recv", verb: "received", json: output.json, quiet: output.quiet, jsonTo: jsonConsole)
        StopSignals.install(fd: receiver.stopDescriptor)
        let outcome: Receiver.Outcome
        do {
            outcome = try await receiver.run { renderer.handle($0) }
            renderer.flush()
        } catch {
            renderer.flush()
            throw fail(error.description, program: "ft recv", json: output.json, console: jsonConsole)
        }
        if outcome.interrupted, !output.quiet, !output.json {
            let unfinished = outcome.sessions - outcome.succeeded
            let kept = unfinished > 0 ? "; what the unfinished ones stored is kept as .ft-*.part files, and pushing them again resumes" : ""
            Console.stderr.line("ft recv: interrupted; \(outcome.succeeded) of \(outcome.sessions) pushes completed\(kept)")
        }
        let failed = !outcome.failures.isEmpty && (options.once || outcome.succeeded == 0)
        if failed || (options.once && outcome.succeeded == 0) {
            // The status says why, as ft send's does: 4 for a push the
            // rules refused, 5 for one that failed verification, ….
            throw Failure(code: renderer.firstFailure.map(ExitStatus.of) ?? ExitStatus.failed)
        }
    }

    /// The ready line: where we listen and the command that reaches us.
    private func announce(_ r: Receiver, _ jsonConsole: Console, code: String?, shown: Bool) {
        let targets = reachable(at: r.bound)
        let absolute = absolutePath(dir)
        if output.json {
            jsonConsole.line(ReadyEvent(
                listen: r.address.description, sendTo: targets, dir: stdout ? "-" : absolute, engine: r.backend.rawValue,
                code: shown ? code : nil, auth: code == nil ? "none" : shown ? "made" : codeFile != nil ? "code-file" : "FT_CODE",
                detail: "ready on \(r.address), writing to \(stdout ? "stdout" : absolute)").line)
        } else if !output.quiet {
            let into = stdout ? "stdout" : absolute
            let flags = encrypt ? " --encrypt" : ""
            if let code, shown {
                Console.stderr.line("ft recv: ready on \(r.address), writing to \(into); one-time code \(code)")
                Console.stderr.line("ft recv: send with: FT_CODE=\(code) ft send\(flags) \(targets[0]) PATH...   (or put the code in a file for --code-file)")
            } else if code != nil {
                let from = codeFile.map { "the code in \($0)" } ?? "the code in FT_CODE"
                Console.stderr.line("ft recv: ready on \(r.address), writing to \(into); pushes must prove \(from)")
                Console.stderr.line("ft recv: send with: ft send\(flags) \(targets[0]) PATH...   (with the same code in FT_CODE or --code-file)")
            } else {
                Console.stderr.line("ft recv: ready on \(r.address), writing to \(into); accepting anyone (--no-auth); send with: ft send \(targets[0]) PATH...")
            }
            if targets.count > 1 {
                Console.stderr.line("ft recv: also reachable at \(targets.dropFirst().joined(separator: ", "))")
            }
        }
    }
}

func absolutePath(_ p: String) -> String {
    guard let r = realpath(p, nil) else { return p }
    defer { free(r) }
    return String(decoding: UnsafeRawBufferPointer(start: r, count: strlen(r)), as: UTF8.self)
}

/// SIGINT and SIGTERM write to an eventfd the loop watches, so it winds
/// down cleanly; a second signal kills the process.
enum StopSignals {
    nonisolated(unsafe) static var fd: CInt = -1

    static func install(fd stopFD: CInt) {
        fd = stopFD
        // A parent may have started us with these blocked (threads of
        // Dispatch-based launchers block everything); we handle them.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { s in
                signalEventFD(StopSignals.fd)
                signal(s, SIG_DFL)
            }
        }
    }
}
