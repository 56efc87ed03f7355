import FTEngine
import FTWire

/// How the receiver moves payload bytes from the socket to the file.
public enum ReceivePath: String, Sendable, CaseIterable {
    /// socket → pipe → file with linked splice operations on the ring.
    case splice
    /// recv into a buffer, hash it there, write it to the file.
    case copy
}

public struct ReceiverConfig: Sendable {
    public var listen: Endpoint
    public var directory: String
    /// Serve one session, then return.
    public var once: Bool
    /// Replace existing files (never by default).
    public var overwrite: Bool
    /// Write the single incoming stream to stdout instead of a file.
    public var toStdout: Bool
    public var path: ReceivePath
    public var engine: EnginePreference
    /// Sessions past the handshake served at once; more are turned away
    /// with a clear error.
    public var maxSessions: Int
    /// Connections still in the handshake (each times out after
    /// `handshakeTimeoutSeconds`), so idle connections cannot crowd out real
    /// senders.
    public var maxPending = 4096
    /// A session that makes no progress for this long is ended.
    public var idleTimeoutSeconds: Double
    /// A connection must complete its hello within this time.
    public var handshakeTimeoutSeconds: Double
    /// The one-time code senders must prove they know; nil accepts anyone
    /// (`--no-auth`, said explicitly).
    public var code: String?
    /// Partials of interrupted pushes older than this are deleted when a
    /// push next writes into their directory.
    public var keepPartialHours: Double = 24
    /// Accept names like `.ssh/authorized_keys` or `.bashrc`.
    public var allowSensitive = false
    /// Refuse pushes that are not sealed with `--encrypt`.
    public var requireEncryption = false
    /// Which symlinks of a push are made (the others are skipped, each named).
    public var links = LinkPolicy.safe
    /// Let a push (`ft send --delete`) remove what its pushed directories
    /// no longer hold.
    public var allowDelete = false

    public init(
        listen: Endpoint = Endpoint(host: nil, port: Endpoint.ftPort), directory: String = ".", once: Bool = false,
        overwrite: Bool = false, toStdout: Bool = false, path: ReceivePath = .splice,
        engine: EnginePreference = .auto, maxSessions: Int = 128, idleTimeoutSeconds: Double = 60,
        handshakeTimeoutSeconds: Double = 10, code: String? = nil
    ) {
        self.code = code
        self.listen = listen
        self.directory = directory
        self.once = once
        self.overwrite = overwrite
        self.toStdout = toStdout
        self.path = path
        self.engine = engine
        self.maxSessions = maxSessions
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.handshakeTimeoutSeconds = handshakeTimeoutSeconds
    }
}
