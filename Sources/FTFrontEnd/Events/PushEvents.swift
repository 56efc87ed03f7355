import FTEngine
import FTTransfer

// The events of one push, as `ft send` prints them and `ft recv` prints
// them per push (docs/events.md). Each is built from the library's
// `ProgressEvent`; `session` matches across the two sides.

/// The push passed the handshake.
package struct StartEvent: EventBody {
    package static var event: String { "start" }
    package var session: String
    package var peer: String
    package var files: Int
    package var directories: Int
    /// Null until the sender's walk is done.
    package var totalBytes: UInt64?
    package var bytesSkipped: UInt64

    enum CodingKeys: String, CodingKey {
        case session, peer, files, directories
        case totalBytes = "total_bytes"
        case bytesSkipped = "bytes_skipped"
    }
}

/// At most five a second.
package struct ProgressLineEvent: EventBody {
    package static var event: String { "progress" }
    package var session: String
    /// The file moving now (empty when none is).
    package var file: String
    package var fileBytes: UInt64
    /// Null for a stream.
    package var fileSize: UInt64?
    package var bytes: UInt64
    package var totalBytes: UInt64?
    package var rateBytesPerSecond: Double
    package var elapsedSeconds: Double
    package var etaSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case session, file
        case fileBytes = "file_bytes"
        case fileSize = "file_size"
        case bytes
        case totalBytes = "total_bytes"
        case rateBytesPerSecond = "rate_bytes_per_second"
        case elapsedSeconds = "elapsed_seconds"
        case etaSeconds = "eta_seconds"
    }
}

/// One file verified and under its final name.
package struct FileDoneEvent: EventBody {
    package static var event: String { "file-done" }
    package var session: String
    package var path: String
    package var bytes: UInt64
    /// Hex; null with --no-verify.
    package var xxh3_128: String?
}

extension FileDoneEvent {
    /// `line`, byte for byte, written straight into one string. Why: with
    /// `--json` a push writes one of these per file, and through Codable's
    /// dispatch each took ~20 µs: a third of a pinned receiver's CPU on
    /// 100,000 small files, on the one core that also stores them.
    package var directLine: String {
        var out = ""
        out.reserveCapacity(96 + session.utf8.count + path.utf8.count)
        out += #"{"event":"#
        JSON.quote(Self.event, into: &out)
        out += #","v":"#
        out += String(EventLine<Self>.version)
        out += #","session":"#
        JSON.quote(session, into: &out)
        out += #","path":"#
        JSON.quote(path, into: &out)
        out += #","bytes":"#
        out += String(bytes)
        out += #","xxh3_128":"#
        if let x = xxh3_128 { JSON.quote(x, into: &out) } else { out += "null" }
        out += "}"
        return out
    }
}

/// The push is complete, every file confirmed.
package struct DoneEvent: EventBody {
    package static var event: String { "done" }

    package struct Operation: Codable, Sendable {
        package var count: UInt64
        package var bytes: UInt64
    }

    package struct Engine: Codable, Sendable {
        package var backend: String
        package var dataPath: String
        package var operations: OrderedFields<Operation>

        enum CodingKeys: String, CodingKey {
            case backend
            case dataPath = "data_path"
            case operations
        }
    }

    package var session: String
    package var peer: String
    package var files: Int
    package var directories: Int
    package var bytesSent: UInt64
    package var bytesSkipped: UInt64
    package var identicalFiles: UInt64
    package var patchedFiles: UInt64
    package var deleted: UInt64
    package var symlinks: UInt64
    package var hardLinks: UInt64
    package var holeBytes: UInt64
    package var dryRun: Bool
    /// Entries left out, by reason, reasons sorted.
    package var skipped: OrderedFields<Int>
    package var seconds: Double
    package var verified: Bool
    /// Path → xxh3-128 hex, the first 1,000 files.
    package var hashes: OrderedFields<String>
    package var engine: Engine

    enum CodingKeys: String, CodingKey {
        case session, peer, files, directories
        case bytesSent = "bytes_sent"
        case bytesSkipped = "bytes_skipped"
        case identicalFiles = "identical_files"
        case patchedFiles = "patched_files"
        case deleted, symlinks
        case hardLinks = "hard_links"
        case holeBytes = "hole_bytes"
        case dryRun = "dry_run"
        case skipped, seconds, verified, hashes, engine
    }
}

/// The last event of a failed push, and of any command that failed before
/// a push began (then only `message`, and `kind` where it is known, have
/// values).
package struct ErrorEvent: EventBody {
    package static var event: String { "error" }
    /// Null when the failure came before the push had one (a host that
    /// does not resolve, a bad option value read at run time).
    package var session: String?
    package var peer: String?
    package var message: String
    package var kind: String?
    package var errno: Int32?
    package var path: String?
    package var refusal: String?

    package init(message: String, session: String? = nil, peer: String? = nil, error: FTError? = nil) {
        self.session = session
        self.peer = peer
        self.message = message
        kind = error?.kind.rawValue
        errno = error?.errno
        path = error?.path
        refusal = error?.refusal?.rawValue
    }
}

/// A relay chain's later pass starts over the hosts the last one missed.
package struct PassEvent: EventBody {
    package static var event: String { "pass" }
    package var pass: Int
    package var chain: [String]

    package init(pass: Int, chain: [String]) {
        self.pass = pass
        self.chain = chain
    }
}

/// Last in a relay chain: one entry per host, in the order given.
package struct HostsEvent: EventBody {
    package static var event: String { "hosts" }

    package struct Host: Codable, Sendable {
        package var host: String
        package var ok: Bool
        package var files: UInt64
        package var bytes: UInt64
        package var pass: Int
        /// Why it failed; empty when ok.
        package var message: String
    }

    package var hosts: [Host]
}

extension ProgressEvent {
    /// The NDJSON line for this event.
    package var jsonLine: String {
        switch self {
        case .started(let s):
            return StartEvent(session: s.session, peer: s.peer, files: s.files, directories: s.directories,
                              totalBytes: s.totalBytes, bytesSkipped: s.skippedBytes).line
        case .progress(let p):
            return ProgressLineEvent(session: p.session, file: p.path, fileBytes: p.fileBytes,
                                     fileSize: p.fileSize, bytes: p.bytes, totalBytes: p.totalBytes,
                                     rateBytesPerSecond: p.rate, elapsedSeconds: p.elapsed, etaSeconds: p.eta).line
        case .fileDone(let f):
            return FileDoneEvent(session: f.session, path: f.path, bytes: f.bytes, xxh3_128: f.digest?.hex).directLine
        case .finished(let s):
            let t = s.tally
            let engine = DoneEvent.Engine(
                backend: s.engine.backend.rawValue, dataPath: s.engine.dataPath,
                operations: OrderedFields(s.engine.operations.map { ($0.kind.description, DoneEvent.Operation(count: $0.count, bytes: $0.bytes)) }))
            return DoneEvent(
                session: s.session, peer: s.peer, files: s.files, directories: s.directories, bytesSent: s.bytes,
                bytesSkipped: s.skippedBytes, identicalFiles: t.identicalFiles, patchedFiles: t.patchedFiles, deleted: t.deleted,
                symlinks: t.symlinks, hardLinks: t.hardLinks, holeBytes: t.holeBytes, dryRun: t.dryRun,
                skipped: OrderedFields(t.skipped.keys.sorted().map { ($0, t.skipped[$0]!) }),
                seconds: s.seconds, verified: s.verified,
                hashes: OrderedFields(s.digests.map { ($0.path, $0.digest.hex) }), engine: engine).line
        case .failed(let f):
            return ErrorEvent(message: f.message, session: f.session, peer: f.peer, error: f.error).line
        }
    }
}
