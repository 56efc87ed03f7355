/// The receiver's answer to a manifest: go ahead, and (with resume) what it
/// already holds of each file, so the sender can skip it.
public struct Accept: Equatable, Sendable {
    public struct Have: Equatable, Sendable {
        public var fileID: UInt32
        /// Bytes from offset 0 the receiver holds from an earlier push.
        public var bytes: UInt64
        /// xxh3-128 of those bytes, for the sender to compare with its own.
        public var digest: Digest128
        public init(fileID: UInt32, bytes: UInt64, digest: Digest128) {
            self.fileID = fileID
            self.bytes = bytes
            self.digest = digest
        }

        static let encodedSize = 4 + 8 + 16
    }

    public static let frameCap: UInt32 = 4 + 4 + UInt32(Have.encodedSize) * 65_536

    public var have: [Have]
    public init(have: [Have] = []) { self.have = have }
}

/// Last frame of a push from the sender; the receiver answers `done`.
public struct Done: Equatable, Sendable {
    public var files: UInt64
    public var bytes: UInt64
    public init(files: UInt64, bytes: UInt64) {
        self.files = files
        self.bytes = bytes
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
        case unknown = 0xFFFF
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
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

/// The sender's answer to `accept.have`: the prefixes it will not send
/// again because they hash the same on both sides. A held prefix left out
/// is discarded by the receiver.
public struct Resume: Equatable, Sendable {
    public struct Skip: Equatable, Sendable {
        public var fileID: UInt32
        public var bytes: UInt64
        public init(fileID: UInt32, bytes: UInt64) {
            self.fileID = fileID
            self.bytes = bytes
        }
    }

    public static let frameCap: UInt32 = 4 + 12 * 65_536

    public var skips: [Skip]
    public init(skips: [Skip] = []) { self.skips = skips }
}
