/// How a receiver serves. The defaults are `ft recv`'s: many pushes at
/// once, nothing existing replaced, credential names refused, symlinks
/// kept only inside their tree.
public struct ReceiveOptions: Sendable {
    /// Serve one push, then end (`--once`).
    public var once = false
    /// Replace existing files (`--overwrite`; never by default).
    public var overwrite = false
    /// Let a push remove what its directories no longer hold (`--allow-delete`).
    public var allowDelete = false
    /// Accept credential and start-up names such as `.ssh/` or `.bashrc`
    /// (`--allow-sensitive`).
    public var allowSensitive = false
    /// Refuse pushes that are not encrypted (`--encrypt`).
    public var requireEncryption = false
    /// The one cipher an encrypted push may use (`--cipher`); nil takes
    /// either, AES-256-GCM first where this CPU has AES-NI.
    public var cipher: Cipher?
    /// Which symlinks a push may make (`--links`). No link is ever
    /// followed when writing.
    public var links = LinkPolicy.safe
    /// How payload bytes reach the file (`--io`).
    public var dataPath = ReceivePath.auto
    /// Pushes served at once; more are turned away (`--max-sessions`).
    public var maxSessions = 128
    /// Connections held that have not proved the code yet (`--max-pending`).
    public var maxPending = 4096
    /// End a push after this long without progress (`--timeout`).
    public var idleTimeout: Duration = .seconds(60)
    /// Partials of interrupted pushes older than this are removed when a
    /// push next writes into their directory (`--keep-partial`).
    public var keepPartials: Duration = .seconds(24 * 3600)
    /// The I/O engine (`--engine`).
    public var engine = IOEngine.auto
    /// Write the one incoming file or stream to stdout instead of the
    /// directory (`--stdout`; implies ``once``).
    public var toStdout = false

    /// The networks this receiver dials as the next host of a chain push,
    /// as `10.0.0.0/8,192.168.1.7` (`--relay-to`); nil: any.
    public var relayTo: String?

    public init() {}

    func problem() -> String? {
        if let r = relayTo, case .failure(let why) = RelayScope.parse(r) { return why.description }
        guard maxSessions > 0 else { return "at most 0 sessions at once would serve no one; allow at least 1" }
        guard maxPending >= 8 else { return "allow at least 8 connections that have not proved the code yet" }
        guard idleTimeout > .zero, keepPartials > .zero else { return "the timeout and the partials' age must be positive" }
        return nil
    }
}
