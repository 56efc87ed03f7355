import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Sends stdin as one entry of unknown length: two buffers, one filling
/// from stdin while the other goes out as a data frame. Its size and
/// digest are known at EOF and go in its trailer.
final class StdinPump {
    enum Event {
        case none
        /// EOF and everything sent: the trailer may follow.
        case finished(size: UInt64, digest: Digest128?)
        case failed(TransferError, waitForReason: Bool)
    }

    private let fileID: UInt32
    private let sealed: Bool
    private let socket: CInt
    private let channel: FrameChannel
    private let peer: String
    private unowned let loop: EventLoop
    private let reg: Registration
    private let hasher: StreamHasher?
    private let buffers: [UnsafeMutableRawBufferPointer]
    private let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DataHeader.wireSize, alignment: 8)
    private var filled: [(buffer: Int, count: Int)] = []
    private var reading: Int?
    private var sending: Int?
    private var eof = false
    private var offset: UInt64 = 0
    private(set) var inflight = 0
    private var over = false
    /// Payload bytes out so far (sealed: queued in the channel).
    private(set) var bytesOut: UInt64 = 0

    static let bufferSize = 1 << 20
    /// Sealed records queued in the channel before stdin reads pause.
    static let sealedBacklog = 4 << 20

    init(fileID: UInt32, verify: Bool, sealed: Bool, socket: CInt, channel: FrameChannel, peer: String,
         loop: EventLoop, reg: Registration) {
        self.fileID = fileID
        self.sealed = sealed
        self.socket = socket
        self.channel = channel
        self.peer = peer
        self.loop = loop
        self.reg = reg
        hasher = verify ? StreamHasher() : nil
        buffers = (0..<2).map { _ in .allocate(byteCount: Self.bufferSize, alignment: 4096) }
    }

    deinit {
        header.deallocate()
        for b in buffers { b.deallocate() }
    }

    private func queue(_ op: Op, _ tag: OpTag.Op, link: Bool = false) {
        inflight += 1
        loop.backend.queue(op, reg.userData(OpTag(tag)), link: link)
    }

    /// Queues what can go now. Called after each completion and after the
    /// channel's control sends; in the clear, the channel's sends and
    /// stdin's chunks take turns on the socket.
    func step() -> Event {
        guard !over else { return .none }
        if sealed {
            // Each filled buffer becomes a sealed record in the channel's
            // queue at once; reads wait while much is queued.
            while !filled.isEmpty {
                let (b, count) = filled.removeFirst()
                channel.enqueueSealed(DataHeader(fileID: fileID, length: UInt32(count), offset: offset),
                                      UnsafeRawBufferPointer(start: buffers[b].baseAddress, count: count))
                offset += UInt64(count)
                bytesOut += UInt64(count)
            }
            channel.flush()
        } else if sending == nil, !channel.writing {
            // Control frames queued meanwhile (the scan's totals can come
            // after stdin started) go between two chunks, never beside
            // one; left queued, they held back the end for good.
            if channel.hasQueued {
                channel.flush()
            } else if !filled.isEmpty {
                let (b, n) = filled.removeFirst()
                sending = b
                DataHeader(fileID: fileID, length: UInt32(n), offset: offset).encode(into: header)
                offset += UInt64(n)
                queue(.send(fd: socket, buffer: header.baseAddress!, length: DataHeader.wireSize,
                            flags: CInt(MSG_MORE) | CInt(MSG_NOSIGNAL) | CInt(MSG_WAITALL)), .chunkHeader, link: true)
                queue(.send(fd: socket, buffer: buffers[b].baseAddress!, length: n, flags: CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)),
                      .sendChunk)
            }
        }
        if reading == nil, !eof, !sealed || channel.queuedCount < Self.sealedBacklog {
            let busy = Set(filled.map(\.buffer) + (sending.map { [$0] } ?? []))
            if let free = (0..<buffers.count).first(where: { !busy.contains($0) }) {
                reading = free
                queue(.read(fd: 0, buffer: buffers[free].baseAddress!, length: Self.bufferSize, offset: Op.noOffset), .stdinRead)
            }
        }
        if eof, filled.isEmpty, sending == nil, reading == nil, !channel.writing, !channel.hasQueued {
            over = true
            return .finished(size: offset, digest: hasher?.digest())
        }
        return .none
    }

    func complete(_ c: Completion) -> Event {
        inflight -= 1
        guard !over, let op = c.tag?.op else { return .none }
        switch op {
        case .stdinRead:
            let b = reading!
            reading = nil
            if c.result < 0 {
                over = true
                return .failed(.io(IOError(result: c.result, "read", "stdin")), waitForReason: false)
            }
            if c.result == 0 {
                eof = true
            } else {
                hasher?.update(UnsafeRawBufferPointer(start: buffers[b].baseAddress, count: Int(c.result)))
                filled.append((b, Int(c.result)))
            }
            return step()
        case .chunkHeader, .sendChunk:
            if c.result < 0, c.result != -ECANCELED {
                over = true
                return .failed(.io(IOError(result: c.result, "send to", peer)), waitForReason: true)
            }
            guard op == .sendChunk else { return .none }
            sending = nil
            bytesOut += UInt64(max(c.result, 0))
            return step()
        default:
            return .none
        }
    }
}
