import FTTransfer

#if canImport(Glibc)
import Glibc
#endif

/// What `ft send` and `ft recv` exit with, so a script can tell failures
/// apart without reading the message. The same table is in each command's
/// --help, the man pages (made from it) and the README.
package enum ExitStatus {
    package static let success: Int32 = 0
    /// A failure none of the others names: the connection was lost, the
    /// peer broke the protocol, a chain host failed.
    package static let failed: Int32 = 1
    /// Bad arguments (the message says which).
    package static let usage: Int32 = 2
    /// The code: refused as wrong, missing, or the receiver could not
    /// prove it knows it.
    package static let code: Int32 = 3
    /// The receiver's rules turned the push down: a file that exists, a
    /// path or name it does not take, no space, too busy, another version.
    package static let refused: Int32 = 4
    /// Bytes arrived that do not hash to what the sender said.
    package static let verification: Int32 = 5
    /// A system call failed: a path that cannot be read or written, a host
    /// that does not resolve, nothing listening, an address in use.
    package static let io: Int32 = 6
    /// The peer made no progress for the timeout.
    package static let timeout: Int32 = 7
    /// Some entries could not be read and were left out (each is named);
    /// the rest arrived verified. rsync uses 23 for the same.
    package static let partial: Int32 = 23

    /// The status for a push or receiver that failed with `error`.
    package static func of(_ error: FTError) -> Int32 {
        switch error.refusal {
        case .wrongCode?: return code
        case .hashMismatch?: return verification
        case .timeout?: return timeout
        case .exists?, .noSpace?, .busy?, .refused?, .version?: return refused
        case .io?: return io
        case .protocolViolation?, .other?: return failed
        case nil: break
        }
        switch error.kind {
        case .verification: return verification
        case .timeout: return timeout
        case .system:
            switch error.errno {
            case ETIMEDOUT?: return timeout
            // A connection that was up and went: lost, not an I/O error here.
            case ECONNRESET?, EPIPE?, ECONNABORTED?: return failed
            default: return io
            }
        case .refusedByPeer, .refusedPeer: return refused
        case .invalidRequest, .protocolViolation, .disconnected, .cancelled: return failed
        }
    }

    /// The table for --help.
    package static let help = """
        EXIT STATUS
          0   every file arrived and was verified
          1   failed otherwise (connection lost, protocol error, a chain host failed)
          2   bad arguments
          3   the code was refused, missing, or the receiver could not prove it
          4   the receiver's rules refused the push (exists, name, space, busy)
          5   verification failed
          6   I/O error: a path, a host that does not resolve, nothing listening
          7   timed out
          23  some entries could not be read and were left out (named); the rest arrived
        """
}
