import FTEngine
import FTWire

/// Why a push or a receiver failed, worded as `ft` words it.
///
/// ``description`` is the text the command-line tool prints after `ft:`.
/// The other properties are for programs: what kind of failure it was, the
/// errno of a failed system call, the path or address it failed on, and the
/// peer.
public struct FTError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// What was asked cannot be done from this side: a path that
        /// cannot be read, a malformed code or address, options that
        /// contradict each other.
        case invalidRequest
        /// A system call failed on this host; ``FTError/errno`` and
        /// ``FTError/path`` say which and where. A host that does not
        /// resolve and nothing listening on the port are of this kind.
        case system
        /// The peer turned the push down and said why: a wrong code, a
        /// file that exists, no space, too busy. ``FTError/refusal`` names it.
        case refusedByPeer
        /// This side turned the peer down (a receiver refusing a sender).
        case refusedPeer
        /// The peer sent something that is not ft's protocol.
        case protocolViolation
        /// The connection ended before the push was complete.
        case disconnected
        /// The peer made no progress for too long.
        case timeout
        /// Bytes arrived that do not hash to what the sender said.
        case verification
        /// The task was cancelled. What arrived stays as partials, and the
        /// next push of the same files resumes.
        case cancelled
    }

    /// The peer's reason for a refusal, as ft's protocol names it.
    public enum Refusal: String, Sendable, Equatable {
        case wrongCode, exists, noSpace, busy, refused, hashMismatch, timeout, version, io, protocolViolation, other
    }

    public let kind: Kind
    /// The same words `ft` prints for this failure.
    public let description: String
    /// The errno of the failed system call (``Kind/system``).
    public let errno: Int32?
    /// The path or address the system call failed on, when there is one.
    public let path: String?
    /// The peer's address, once one was reached.
    public let peer: String?
    /// Why the peer refused (``Kind/refusedByPeer``, ``Kind/refusedPeer``).
    public let refusal: Refusal?

    init(kind: Kind, description: String, errno: Int32? = nil, path: String? = nil, peer: String? = nil,
         refusal: Refusal? = nil) {
        self.kind = kind
        self.description = description
        self.errno = errno
        self.path = path
        self.peer = peer
        self.refusal = refusal
    }

    package init(_ e: TransferError) {
        let text = e.description
        switch e {
        case .io(let io):
            self.init(kind: .system, description: text, errno: io.errno.rawValue, path: io.target)
        case .source:
            self.init(kind: .invalidRequest, description: text)
        case .peer(let f, let peer):
            self.init(kind: .refusedByPeer, description: text, peer: peer, refusal: Refusal(f.code))
        case .refused(let f, let peer):
            self.init(kind: .refusedPeer, description: text, peer: peer, refusal: Refusal(f.code))
        case .protocolViolation(_, let peer):
            self.init(kind: .protocolViolation, description: text, peer: peer)
        case .disconnected(_, let peer):
            self.init(kind: .disconnected, description: text, peer: peer)
        case .timeout(_, let peer):
            self.init(kind: .timeout, description: text, peer: peer)
        case .verification:
            self.init(kind: .verification, description: text)
        case .cancelled(let peer):
            self.init(kind: .cancelled, description: text, peer: peer)
        }
    }

    static func invalid(_ text: String) -> FTError { FTError(kind: .invalidRequest, description: text) }
}

extension FTError.Refusal {
    init(_ code: ErrorFrame.Code) {
        switch code {
        case .auth: self = .wrongCode
        case .exists: self = .exists
        case .noSpace: self = .noSpace
        case .busy: self = .busy
        case .refused: self = .refused
        case .hashMismatch: self = .hashMismatch
        case .timeout: self = .timeout
        case .version: self = .version
        case .io: self = .io
        case .protocolViolation: self = .protocolViolation
        // A banner is never a refusal; one where a refusal goes is a peer's confusion.
        case .internal, .unknown, .banner: self = .other
        }
    }
}
