import FTEngine
import FTWire

/// Why a push failed, worded for the person who ran it.
package enum TransferError: Error, CustomStringConvertible, Sendable {
    /// A system call failed; the IOError names the path or address.
    case io(IOError)
    /// Something on this side cannot be sent as asked.
    case source(String)
    /// The peer refused or failed, and said why.
    case peer(ErrorFrame, peer: String)
    /// We refuse what the peer asked (receiver side), and tell it why.
    case refused(ErrorFrame, peer: String)
    /// The peer broke the protocol (garbage, a frame out of place).
    case protocolViolation(String, peer: String)
    /// The connection ended before the push was complete.
    case disconnected(String, peer: String)
    /// The peer went quiet for too long.
    case timeout(String, peer: String)
    /// Bytes arrived but do not hash to what the sender said.
    case verification(String)
    /// The caller cancelled the push (the receiver keeps what arrived).
    case cancelled(peer: String)

    package var description: String {
        switch self {
        case .io(let e): return e.description
        case .source(let s): return s
        case .peer(let e, let peer): return "\(peer) refused: \(Escape.forDisplay(e.message))"
        case .refused(let e, let peer): return "refused the push from \(peer): \(Escape.forDisplay(e.message))"
        case .protocolViolation(let s, let peer): return "protocol error from \(peer): \(s)"
        case .disconnected(let s, let peer): return "connection to \(peer) lost: \(s)"
        case .timeout(let s, let peer): return "\(peer) timed out: \(s)"
        case .verification(let s): return s
        case .cancelled(let peer): return "the push to \(peer) was cancelled; what arrived is kept there, and pushing again resumes"
        }
    }

    /// The error frame to send the peer for this failure.
    var frame: ErrorFrame {
        switch self {
        case .io(let e):
            let code: ErrorFrame.Code = e.errno == .noSpace || e.errno == .diskQuotaExceeded ? .noSpace : .io
            return ErrorFrame(code, e.description)
        case .source(let s): return ErrorFrame(.io, s)
        case .peer(let e, _), .refused(let e, _): return e
        case .protocolViolation(let s, _): return ErrorFrame(.protocolViolation, s)
        case .disconnected(let s, _): return ErrorFrame(.io, s)
        case .timeout(let s, _): return ErrorFrame(.timeout, s)
        case .verification(let s): return ErrorFrame(.hashMismatch, s)
        case .cancelled: return ErrorFrame(.io, "the sender cancelled the push")
        }
    }
}
