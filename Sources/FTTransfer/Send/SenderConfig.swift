import FTEngine
import FTWire

/// How the sender moves file bytes into the socket.
public enum SendPath: String, Sendable, CaseIterable {
    /// `copy` when the push is verified, `sendfile` when it is not (and
    /// with `-P`, whose streams splice). Reading each chunk into a buffer
    /// and hashing it there while hot costs less than zero-copy saves, once
    /// zero-copy means reading every byte a second time to hash it (README,
    /// "Performance").
    case auto
    /// sendfile(2) from the loop thread, the ring for everything else.
    case sendfile
    /// file → pipe → socket as linked splice operations on the ring.
    case splice
    /// read into a buffer on the ring, then send it.
    case copy
    /// read into registered buffers, then IORING_OP_SEND_ZC from them; a
    /// buffer is reused only after the kernel's notification.
    case zc

    /// Measured fastest on this machine kind (README, "Performance").
    public static let `default` = SendPath.auto

    /// The path `auto` stands for in a push with these settings.
    package func resolved(verify: Bool, streams: Int) -> SendPath {
        guard self == .auto else { return self }
        return verify && streams <= 1 ? .copy : .sendfile
    }
}

package struct SendConfig: Sendable {
    package var endpoint: Endpoint
    package var paths: [String]
    /// Name under which stdin (`-`) arrives.
    package var stdinName: String
    package var path: SendPath
    /// Payload bytes per data frame. The splice path caps it at the pipe size.
    package var chunkSize: UInt32
    /// Hash every file and let the receiver check it (on by default).
    package var verify: Bool
    package var engine: EnginePreference
    package var connectTimeoutSeconds: Double
    /// A push that makes no progress for this long fails.
    package var idleTimeoutSeconds: Double
    /// The receiver's one-time code, if we have it.
    package var code: String?
    /// At most this many payload bytes per second (nil: as fast as possible).
    package var rateLimit: UInt64?
    /// Seal every frame after the proofs (needs the receiver's code).
    package var encrypt = false
    /// Offered with `encrypt`, in no order: the receiver picks.
    package var ciphers = CipherSuite.offer
    /// A chain push: the hosts the receiver relays to, in order (empty:
    /// the receiver is the chain's last host). Nil: a plain push.
    package var relay: [String]?
    /// Data streams (`-P N`): beside the push's own connection, N more
    /// carry the chunks. 1: everything on one connection.
    package var streams = 1
    /// Files up to `SmallFiles.maxFileSize` travel whole, many to a frame.
    /// Off, every file goes in chunks by the data path (tests of a path
    /// use it so that tiny files take that path too).
    package var batchSmallFiles = true
    /// Which symlinks travel as links (the others are skipped, each named).
    package var links = LinkPolicy.safe
    /// Keep uid and gid (the receiver applies them only as root).
    package var owner = false
    /// Ask the receiver to patch changed files it may replace (`--sync`):
    /// it sends chunk digests of its copy and only differing chunks travel.
    package var sync = false
    /// Identical means the same content, not the same size and mtime
    /// (`--checksum`; implies `sync`).
    package var checksum = false
    /// Remove what the pushed directories no longer hold at the receiver
    /// (it must allow it: `ft recv --allow-delete`).
    package var delete = false
    /// Say what would be sent, patched, skipped and deleted; write nothing.
    package var dryRun = false
    /// Entries of pushed directories that stay home.
    package var filter = PathFilter()

    package init(
        endpoint: Endpoint, paths: [String], stdinName: String = "stdin", path: SendPath = .default,
        chunkSize: UInt32 = 4 << 20, verify: Bool = true, engine: EnginePreference = .auto,
        connectTimeoutSeconds: Double = 10, idleTimeoutSeconds: Double = 60, code: String? = nil
    ) {
        self.code = code
        self.endpoint = endpoint
        self.paths = paths
        self.stdinName = stdinName
        self.path = path
        self.chunkSize = chunkSize
        self.verify = verify
        self.engine = engine
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
    }
}
