import ArgumentParser
import FTEngine
import FTFrontEnd
import FTTransfer
import Logging

extension EnginePreference: ExpressibleByArgument {}
extension SendPath: ExpressibleByArgument {}
extension ReceivePath: ExpressibleByArgument {}
extension LinkPolicy: ExpressibleByArgument {}
extension Cipher: ExpressibleByArgument {}

extension IOEngine {
    init(_ preference: EnginePreference) {
        switch preference {
        case .auto: self = .auto
        case .ioUring: self = .ioUring
        case .poll: self = .poll
        }
    }
}

/// Flags every subcommand shares.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print NDJSON events (start, progress, file-done, done, error), one per line.")
    var json = false

    @Flag(name: .shortAndLong, help: "Print errors only.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Print debug detail on stderr.")
    var verbose = false

    @Option(help: ArgumentHelp(
        "I/O engine: auto, io_uring or poll.",
        discussion: "auto uses io_uring and, if the kernel refuses it, warns once and falls back to poll(2). FT_ENGINE in the environment sets the same."))
    var engine: EnginePreference = .auto

    func logger(_ program: String) -> Logger {
        var l = Logger(label: program) { _ in CLILogHandler(program: program) }
        l.logLevel = verbose ? .debug : (quiet ? .error : .info)
        return l
    }
}

/// The addresses a peer can use to reach a socket bound to `bound`:
/// this host's interfaces when it is bound to all of them.
func reachable(at bound: SocketAddress) -> [String] {
    var hosts: [String]
    if bound.isUnspecified {
        hosts = Socket.interfaceAddresses()
        if hosts.isEmpty { hosts = ["127.0.0.1"] }
    } else {
        hosts = [bound.host]
    }
    return hosts.map { Endpoint(host: $0, port: bound.port).description }
}

/// Reports an error in the user's chosen format and ends with exit 1.
func fail(_ message: String, program: String, json: Bool, console: Console = .stdout) -> Failure {
    if json {
        console.line(ErrorEvent(message: message).line)
    } else {
        ProgressLine.shared.clear(.stderr)
        Console.stderr.line("\(program): \(message)")
    }
    return Failure()
}
