import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes straight to a file descriptor: no buffering to lose on exit, and
/// each line leaves in one write so concurrent lines do not interleave.
package struct Console: Sendable {
    package let fd: CInt

    package static let stdout = Console(fd: 1)
    package static let stderr = Console(fd: 2)

    package var isTTY: Bool { isatty(fd) == 1 }

    package func write(_ s: String) { write(bytes: Array(s.utf8)) }

    /// All of `bytes`, or as much as the reader takes before it fails.
    package func write(bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n > 0 { off += n } else if n < 0, errno == EINTR { continue } else { return }
        }
    }

    package func line(_ s: String) { write(s + "\n") }

    /// Columns of the terminal, or 80.
    package var width: Int {
        var ws = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 { return Int(ws.ws_col) }
        return 80
    }
}

/// "ft: warning: message" on stderr, the way command-line tools speak.
package struct CLILogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .info
    let program: String
    let console: Console

    package init(program: String, console: Console = .stderr) {
        self.program = program
        self.console = console
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        let level: String
        switch event.level {
        case .trace, .debug: level = "debug: "
        case .info, .notice: level = ""
        case .warning: level = "warning: "
        case .error, .critical: level = "error: "
        }
        ProgressLine.shared.clear(console)
        console.line("\(program): \(level)\(event.message)")
    }
}

/// The live bar's line, so that anything else printed clears it first.
package final class ProgressLine: @unchecked Sendable {
    package static let shared = ProgressLine()
    private var drawn = false

    package func draw(_ text: String, _ console: Console) {
        console.write("\r\u{1B}[2K" + text)
        drawn = true
    }

    package func clear(_ console: Console) {
        guard drawn else { return }
        console.write("\r\u{1B}[2K")
        drawn = false
    }
}
