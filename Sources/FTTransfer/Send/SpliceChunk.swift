import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// One chunk on the splice path as linked ring operations:
///
///     send(header, MSG_MORE) → splice(file → pipe) → splice(pipe → socket)
///
/// The header and the payload leave as one segment train, and the bytes
/// never enter user space. A short splice into the socket leaves the rest
/// in the pipe; it is queued again on its own. The push's own connection
/// and every extra data stream send their chunks through this one type.
struct SpliceChunk {
    let offset: UInt64
    let length: Int
    /// Operations of this chunk still in flight.
    private(set) var opsInFlight = 3
    private var spliced = 0
    /// The first thing that went wrong; the chunk is lost once pending ops end.
    private(set) var failure: Failure?

    enum Failure: Equatable {
        /// The header went out short.
        case shortHeader
        /// The file had fewer bytes than the chunk (it shrank).
        case shrank(read: Int)
        /// The socket took nothing more.
        case stalled
        /// An operation failed with -errno.
        case error(OpTag.Op, Int32)
    }

    enum Outcome: Equatable {
        /// Operations are still in flight.
        case inFlight
        /// Every byte is in the socket.
        case sent
        /// Nothing is in flight any more and the chunk did not make it.
        case failed(Failure)
    }

    /// Queues the three linked operations for `length` bytes of `file` at
    /// `offset`; `header` (24 bytes) stays valid until the chunk ends.
    static func start(header: UnsafeRawPointer, file: CInt, offset: UInt64, length: Int, pipe: Pipe, socket: CInt,
                      loop: EventLoop, reg: Registration) -> SpliceChunk {
        let more = CInt(MSG_MORE) | CInt(MSG_NOSIGNAL) | CInt(MSG_WAITALL)
        loop.backend.queue(.send(fd: socket, buffer: header, length: DataHeader.wireSize, flags: more),
                           reg.userData(OpTag(.chunkHeader)), link: true)
        loop.backend.queue(.splice(input: file, inputOffset: Int64(offset), output: pipe.writeEnd,
                                   outputOffset: Op.noOffset, length: length, flags: 0),
                           reg.userData(OpTag(.spliceIn)), link: true)
        loop.backend.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: socket,
                                   outputOffset: Op.noOffset, length: length, flags: 0),
                           reg.userData(OpTag(.spliceOut)))
        return SpliceChunk(offset: offset, length: length)
    }

    /// One of the chunk's operations completed. When the socket took only
    /// part of the payload, the rest is queued here again.
    mutating func complete(_ op: OpTag.Op, _ result: Int32, pipe: Pipe, socket: CInt,
                           loop: EventLoop, reg: Registration) -> Outcome {
        opsInFlight -= 1
        switch op {
        case .chunkHeader where result >= 0 && Int(result) < DataHeader.wireSize:
            note(.shortHeader)
        case .spliceIn where result >= 0 && Int(result) < length:
            note(.shrank(read: Int(result)))
        case .spliceOut where result > 0:
            spliced += Int(result)
            if spliced < length, failure == nil {
                opsInFlight += 1
                loop.backend.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: socket,
                                           outputOffset: Op.noOffset, length: length - spliced, flags: 0),
                                   reg.userData(OpTag(.spliceOut)))
            }
        case .spliceOut where result == 0:
            note(.stalled)
        default:
            break
        }
        // A link cut short cancels the rest of the chain: not a cause.
        if result < 0, result != -ECANCELED { note(.error(op, result)) }
        guard opsInFlight == 0 else { return .inFlight }
        if let failure { return .failed(failure) }
        return .sent
    }

    /// Bytes already in the socket: what a progress check watches.
    var bytesOut: Int { spliced }

    private mutating func note(_ f: Failure) {
        if failure == nil { failure = f }
    }
}
