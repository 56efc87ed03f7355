/// How a push runs. The defaults are `ft send`'s: verified, in the clear,
/// one connection, no pace limit, files already there with the same size
/// and mtime skipped, nothing replaced or deleted at the receiver.
public struct PushOptions: Sendable {
    /// Hash every file (xxh3-128) so the receiver checks it before giving it
    /// its final name (`--no-verify` turns it off).
    public var verify = true
    /// Seal every frame after the handshake with keys from the code
    /// (`--encrypt`). Bytes then pass through user space.
    public var encrypt = false
    /// The one cipher to offer with ``encrypt`` (`--cipher`); nil offers
    /// AES-256-GCM where this CPU has AES-NI, and ChaCha20-Poly1305, and
    /// the receiver picks.
    public var cipher: Cipher?
    /// Extra connections for the chunks of big files (`-P`); 1 keeps
    /// everything on the push's own connection. At most 16.
    public var streams = 1
    /// At most this many payload bytes per second (`--limit`); nil: as fast
    /// as the path allows.
    public var rateLimit: UInt64?
    /// Patch files the receiver may replace: only chunks that differ travel
    /// (`--sync`).
    public var sync = false
    /// Identical means the same content, not the same size and mtime
    /// (`--checksum`; implies ``sync``).
    public var checksum = false
    /// Remove what the pushed directories no longer hold at the receiver
    /// (`--delete`; the receiver must allow it).
    public var delete = false
    /// Say what would travel; write nothing (`--dry-run`).
    public var dryRun = false
    /// Which symlinks travel as links (`--links`).
    public var links = LinkPolicy.safe
    /// Keep uid and gid by number (`--owner`; applied by a receiver running as root).
    public var keepOwner = false
    /// Entries of pushed directories that stay home (`--exclude`, `--include`).
    public var filter = PathFilter()
    /// How file bytes reach the socket (`--io`).
    public var dataPath = SendPath.default
    /// Payload bytes per chunk (`--chunk`), 16 KiB to 64 MiB.
    public var chunkSize = 4 << 20
    /// Name under which stdin (`-` among the paths) arrives (`--name`).
    public var stdinName = "stdin"
    /// Give up connecting after this long.
    public var connectTimeout: Duration = .seconds(10)
    /// Fail after this long without progress (`--timeout`).
    public var idleTimeout: Duration = .seconds(60)
    /// The I/O engine (`--engine`): io_uring where the kernel allows it,
    /// else poll(2) with a warning.
    public var engine = IOEngine.auto

    public init() {}

    /// What is wrong with these options, worded for a person; nil if
    /// nothing is.
    func problem() -> String? {
        if let why = DataStreamRules.refusal(streams: streams, path: dataPath, encrypt: encrypt, chain: false) { return why }
        guard (16 << 10)...(64 << 20) ~= chunkSize else { return "the chunk size must be between 16K and 64M, not \(chunkSize) bytes" }
        guard idleTimeout > .zero, connectTimeout > .zero else { return "timeouts must be positive" }
        if let rateLimit, rateLimit < 1024 { return "a rate limit must be at least 1K per second" }
        if delete, !filter.isEmpty {
            return "--delete with --exclude would remove the excluded entries at the receiver; push without one of them"
        }
        return nil
    }
}

/// Which I/O engine drives the transfer.
public enum IOEngine: String, Sendable, CaseIterable {
    /// io_uring, or poll(2) with a warning where the kernel refuses io_uring.
    case auto
    /// io_uring only: fail where the kernel refuses it.
    case ioUring = "io_uring"
    /// poll(2) and plain system calls.
    case poll
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
