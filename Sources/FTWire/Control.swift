/// The receiver's word that the push is complete, after the sender's
/// `end`: what it holds now, by outcome.
public struct Done: Equatable, Sendable {
    /// Files committed (written, patched or resumed).
    public var files: UInt64
    /// Payload bytes that arrived for them.
    public var bytes: UInt64
    /// Entries the receiver already had, identical, and their bytes; with
    /// resumed and reused bytes.
    public var skippedFiles: UInt64
    public var skippedBytes: UInt64
    /// Files assembled from the receiver's old copy and changed chunks.
    public var patchedFiles: UInt64
    /// Entries removed because the source no longer has them (`--delete`).
    public var deleted: UInt64
    public var symlinks: UInt64
    public var hardLinks: UInt64

    static let bodySize = 64

    public init(files: UInt64, bytes: UInt64, skippedFiles: UInt64 = 0, skippedBytes: UInt64 = 0, patchedFiles: UInt64 = 0,
                deleted: UInt64 = 0, symlinks: UInt64 = 0, hardLinks: UInt64 = 0) {
        self.files = files
        self.bytes = bytes
        self.skippedFiles = skippedFiles
        self.skippedBytes = skippedBytes
        self.patchedFiles = patchedFiles
        self.deleted = deleted
        self.symlinks = symlinks
        self.hardLinks = hardLinks
    }
}

/// A refusal or failure, with a reason meant for a person.
public struct ErrorFrame: Error, Equatable, Sendable, CustomStringConvertible {
    public static let messageCap: UInt32 = 1024

    public enum Code: UInt16, Sendable {
        case protocolViolation = 1
        case version = 2
        case refused = 3
        case exists = 4
        case noSpace = 5
        case io = 6
        case hashMismatch = 7
        case auth = 8
        case busy = 9
        case timeout = 10
        case `internal` = 11
        /// Not an error: the receiver's opening (`ErrorFrame.banner`).
        case banner = 12
        case unknown = 0xFFFF
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// What a receiver sends first, on accept, before it has read a byte
    /// (protocol 3): a sender (or a chain host dialling its next hop)
    /// writes nothing until it has heard it, so ft never writes into a
    /// service that is not ft. It is framed as an error on purpose: a
    /// sender of protocol 2, which speaks first and then reads, shows this
    /// message, which tells it who should upgrade.
    public static let banner = ErrorFrame(.banner, "this ft receiver speaks protocol v\(ProtocolVersion.min) or later, where the receiver opens the connection; this sender speaks an older one: upgrade ft on the sending host")

    /// The receiver's opening, not a failure.
    public var isBanner: Bool { code == .banner }
}

/// HMAC-SHA256 over both nonces and the session id, keyed by the one-time
/// code: it proves knowledge of the code without sending it.
public struct AuthProof: Equatable, Sendable {
    public static let bodySize: UInt32 = 32

    public var mac: [UInt8]

    public init(mac: [UInt8]) {
        precondition(mac.count == Int(Self.bodySize))
        self.mac = mac
    }
}
