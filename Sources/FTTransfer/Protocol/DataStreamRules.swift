/// `-P N`: which pushes may carry their chunks on extra data streams. One
/// place for the rules, so `ft send`, the library and `ftbench` agree.
package enum DataStreamRules {
    package static let maxStreams = 16
    /// A stream's chunks are spliced file → pipe → socket, so a chunk fits
    /// its pipe.
    package static let maxChunk = 1 << 20

    /// Why a push with these settings cannot use `streams` data streams,
    /// or nil when it can (or asks for none).
    package static func refusal(streams: Int, path: SendPath, encrypt: Bool, chain: Bool) -> String? {
        guard (1...maxStreams).contains(streams) else { return "-P must be between 1 and \(maxStreams), not \(streams)" }
        guard streams > 1 else { return nil }
        if chain { return "-P and --to do not go together: a chain push travels on one stream" }
        if encrypt { return "-P and --encrypt do not go together: sealed records travel on one stream" }
        if path != .sendfile, path != .splice, path != .auto {
            return "-P works with --io sendfile or splice (its streams splice and hash apart), not \(path.rawValue)"
        }
        return nil
    }
}
