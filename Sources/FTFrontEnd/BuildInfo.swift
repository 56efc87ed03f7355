import CURing
import FTEngine
import FTWire

/// What `ft --version` and `ftbench --version` print: enough to tell two
/// hosts' binaries apart and whether they can talk, and whether this host
/// runs the fast engine.
package enum BuildInfo {
    package static let version = "0.2.0"

    package static var commit: String { String(cString: ft_git_commit()) }

    package static func versionText(program: String) -> String {
        let engine = Engine.ioUringUnavailableReason().map { "poll(2) fallback: io_uring unusable here (\($0))" } ?? "io_uring usable"
        let protocols = ProtocolVersion.min == ProtocolVersion.max
            ? "\(ProtocolVersion.min)" : "\(ProtocolVersion.min)-\(ProtocolVersion.max)"
        let built = commit == "unknown" ? "commit unknown (a development build; tools/package records it)" : "commit \(commit)"
        return """
            \(program) \(version)
            \(built)
            protocol \(protocols)
            engine: \(engine)
            """
    }
}
