import FTEngine
import FTWire

/// How the receiver moves payload bytes from the socket to the file.
public enum ReceivePath: String, Sendable, CaseIterable {
    /// `copy` for a verified push, `splice` for one that is not: a
    /// verified payload is hashed in the buffer it arrives in, instead of
    /// read back from the page cache after it was spliced (README,
    /// "Performance").
    case auto
    /// socket → pipe → file with linked splice operations on the ring.
    case splice
    /// recv into a buffer, hash it there, write it to the file.
    case copy
}

package struct ReceiverConfig: Sendable {
    package var listen: Endpoint
    package var directory: String
    /// Serve one session, then return.
    package var once: Bool
    /// Replace existing files (never by default).
    package var overwrite: Bool
    /// Write the single incoming stream to stdout instead of a file.
    package var toStdout: Bool
    package var path: ReceivePath
    package var engine: EnginePreference
    /// Sessions past the handshake served at once; more are turned away
    /// with a clear error.
    package var maxSessions: Int
    /// Connections still in the handshake (each times out after
    /// `handshakeTimeoutSeconds`), so idle connections cannot crowd out real
    /// senders.
    package var maxPending = 4096
    /// A session that makes no progress for this long is ended.
    package var idleTimeoutSeconds: Double
    /// A connection must complete its hello within this time.
    package var handshakeTimeoutSeconds: Double
    /// The one-time code senders must prove they know; nil accepts anyone
    /// (`--no-auth`, said explicitly).
    package var code: String?
    /// Partials of interrupted pushes older than this are deleted when a
    /// push next writes into their directory.
    package var keepPartialHours: Double = 24
    /// Accept names like `.ssh/authorized_keys` or `.bashrc`.
    package var allowSensitive = false
    /// Refuse pushes that are not sealed with `--encrypt`.
    package var requireEncryption = false
    /// What an encrypted push may use, the preferred first.
    package var ciphers = CipherSuite.preference
    /// The networks a chain push may have this host dial (nil: any).
    package var relayTo: RelayScope?
    /// Which symlinks of a push are made (the others are skipped, each named).
    package var links = LinkPolicy.safe
    /// Let a push (`ft send --delete`) remove what its pushed directories
    /// no longer hold.
    package var allowDelete = false

    package init(
        listen: Endpoint = Endpoint(host: nil, port: Endpoint.ftPort), directory: String = ".", once: Bool = false,
        overwrite: Bool = false, toStdout: Bool = false, path: ReceivePath = .auto,
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
