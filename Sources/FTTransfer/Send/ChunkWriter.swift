import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Sends file chunks on the push's own connection by one data path, one
/// chunk at a time (zc: one per free registered buffer), so frames never
/// interleave on the socket. Each path's buffers live here and nowhere else.
final class ChunkWriter {
    enum Event {
        /// Still in flight.
        case none
        /// A chunk is all in the socket (sealed: in the channel's queue).
        case sent(FileChunk)
        /// A zero-copy buffer is free again.
        case bufferFree
        /// The push fails. `waitForReason`: a send failed, and the receiver
        /// may have said why just before it closed.
        case failed(TransferError, waitForReason: Bool)
    }

    private enum Path {
        case sendfile
        case splice(Pipe)
        case copy
        case zc
        /// `--encrypt`: read behind room for the record and data headers,
        /// hashed and sealed in place, queued in the channel.
        case sealed
    }

    private struct InFlight {
        var chunk: FileChunk
        var name: String
        /// The file's size, for messages.
        var size: UInt64
        var pending: Int
        var slot = 0
        var failed = false
        var splice: SpliceChunk?
    }

    private let path: Path
    private let socket: CInt
    private unowned let loop: EventLoop
    private let reg: Registration
    private let channel: FrameChannel
    private let peer: String
    private let idleTimeoutSeconds: Double
    private let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DataHeader.wireSize, alignment: 8)
    private var buffers: [UnsafeMutableRawBufferPointer] = []
    /// zc: a header per registered buffer, and which buffers the kernel
    /// still holds (until their notification).
    private var zcHeaders = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var zcBusy: [Bool] = []
    private var current: InFlight?
    private var ownInflight = 0
    /// Operations of ours still in flight.
    var inflight: Int { ownInflight + (current?.splice?.opsInFlight ?? 0) }

    static let bufferSize = 1 << 20
    /// A sealed record's size, about one core's L2 (512 KiB here): each
    /// 64 KiB piece is hashed and sealed while hot, the other side opens
    /// and hashes it likewise. Measured 1 GiB into memory, AES-256-GCM,
    /// three runs each: 256 KiB 1.39-1.49 s, 512 KiB 1.11-1.12 s, 1 MiB
    /// 1.21-1.57 s (smaller records cost more syscalls, larger ones spill).
    static let sealedRecord = 512 << 10
    /// Where a sealed chunk's bytes are read to.
    private static let sealedPayloadAt = SessionCipher.headerSize + DataHeader.wireSize
    /// Sealed records in their buffers, lent to the channel until sent: the
    /// next chunk is read and sealed while earlier ones are on the wire.
    static let sealedSlots = 4
    private var sealedStarted = 0
    private var inlineReads = InlineReads()
    static let pipeSize = 1 << 20
    /// Registered buffers for the zc path, so reads run ahead of sends.
    static let zcSlots = 4

    init(path: SendPath, encrypt: Bool, socket: CInt, channel: FrameChannel, peer: String, idleTimeoutSeconds: Double,
         loop: EventLoop, reg: Registration) throws(IOError) {
        self.socket = socket
        self.channel = channel
        self.peer = peer
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.loop = loop
        self.reg = reg
        if encrypt {
            self.path = .sealed
        } else {
            switch path {
            case .sendfile, .auto: self.path = .sendfile  // auto is resolved before
            case .splice: self.path = .splice(try Pipe(size: Self.pipeSize))
            case .copy: self.path = .copy
            case .zc: self.path = .zc
            }
        }
        if case .sealed = self.path {
            for _ in 0..<Self.sealedSlots { buffers.append(.allocate(byteCount: Self.sealedRecord, alignment: 4096)) }
        }
        if case .zc = self.path {
            for _ in 0..<Self.zcSlots { buffers.append(.allocate(byteCount: Self.bufferSize, alignment: 4096)) }
            try loop.backend.registerBuffers(buffers)
            zcHeaders = .allocate(byteCount: DataHeader.wireSize * Self.zcSlots, alignment: 8)
            zcBusy = [Bool](repeating: false, count: Self.zcSlots)
        }
    }

    deinit {
        header.deallocate()
        zcHeaders.deallocate()
        for b in buffers { b.deallocate() }
    }

    /// The largest chunk this path carries whole.
    func chunkLimit(_ asked: Int) -> Int {
        switch path {
        case .sealed: return min(asked, Self.sealedRecord - Self.sealedPayloadAt - SessionCipher.tagSize)
        case .splice(let pipe): return min(asked, pipe.capacity)
        case .copy, .zc: return min(asked, Self.bufferSize)
        case .sendfile: return asked
        }
    }

    /// A chunk is on its way, or no zero-copy buffer is free.
    var busy: Bool {
        if current != nil { return true }
        if case .zc = path { return !zcBusy.contains(false) }
        return false
    }

    /// Sealed: every record buffer is lent to the channel. No chunk may
    /// start, but this is not `busy`: the channel has to flush what it
    /// holds to give them back, and a flush waits while a write is busy
    /// (chunks were sealed while a control frame was being sent, and the
    /// push hung there for good).
    var recordsLent: Bool {
        guard case .sealed = path else { return false }
        return channel.loansOutstanding >= Self.sealedSlots || !channel.canLend
    }

    private func buffer(_ i: Int) -> UnsafeMutableRawBufferPointer {
        while buffers.count <= i { buffers.append(.allocate(byteCount: Self.bufferSize, alignment: 4096)) }
        return buffers[i]
    }

    private func queue(_ op: Op, _ tag: OpTag, link: Bool = false) {
        ownInflight += 1
        loop.backend.queue(op, reg.userData(tag), link: link)
    }

    /// Starts chunk `c`; `.sent` if it went out at once (a sealed chunk
    /// read without waiting is sealed and handed to the channel here),
    /// else `.none` and its completions tell.
    func start(_ c: FileChunk, from source: SourceFile, fileID: UInt32, name: String, size: UInt64) -> Event {
        precondition(!busy)
        let h = DataHeader(fileID: fileID, length: UInt32(c.length), offset: c.offset)
        h.encode(into: header)
        let hdr = UnsafeRawPointer(header.baseAddress!)
        let more = CInt(MSG_MORE) | CInt(MSG_NOSIGNAL) | CInt(MSG_WAITALL)
        let all = CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)
        var f = InFlight(chunk: c, name: name, size: size, pending: 1)
        switch path {
        case .sealed:
            // The completion hashes, seals and lends it to the channel; the
            // slots go round in the order the channel gives them back.
            f.slot = sealedStarted % Self.sealedSlots
            sealedStarted += 1
            let payload = buffers[f.slot].baseAddress! + Self.sealedPayloadAt
            if readInline(source, into: payload, c) {
                self.source = source  // what sealChunk hashes through
                sealChunk(in: buffers[f.slot], c.offset, c.length)
                self.source = nil
                return .sent(c)
            }
            queue(.read(fd: source.fd, buffer: payload, length: c.length, offset: Int64(c.offset)), OpTag(.chunkRead))
        case .sendfile:
            queue(.sendfile(socket: socket, file: source.fd, offset: Int64(c.offset), length: c.length,
                            header: hdr, headerLength: DataHeader.wireSize), OpTag(.sendChunk))
        case .splice(let pipe):
            f.splice = SpliceChunk.start(header: hdr, file: source.fd, offset: c.offset, length: c.length, pipe: pipe,
                                         socket: socket, loop: loop, reg: reg)
        case .zc:
            let slot = zcBusy.firstIndex(of: false)!
            zcBusy[slot] = true
            let buf = buffers[slot]
            let hdrSlot = UnsafeMutableRawBufferPointer(rebasing: zcHeaders[slot * DataHeader.wireSize..<(slot + 1) * DataHeader.wireSize])
            hdrSlot.copyMemory(from: UnsafeRawBufferPointer(header))
            f.pending = 3
            f.slot = slot
            queue(.readFixed(fd: source.fd, buffer: buf.baseAddress!, length: c.length, offset: Int64(c.offset), index: UInt16(slot)),
                  OpTag(.chunkRead), link: true)
            queue(.send(fd: socket, buffer: hdrSlot.baseAddress!, length: DataHeader.wireSize, flags: more), OpTag(.chunkHeader), link: true)
            queue(.sendZC(fd: socket, buffer: buf.baseAddress!, length: c.length, flags: all, index: UInt16(slot)), OpTag(.zcSend, slot))
        case .copy:
            let buf = buffer(0)
            if readInline(source, into: buf.baseAddress!, c) {
                source.hasher?.update(UnsafeRawBufferPointer(start: buf.baseAddress!, count: c.length))
                f.pending = 2
            } else {
                f.pending = 3
                queue(.read(fd: source.fd, buffer: buf.baseAddress!, length: c.length, offset: Int64(c.offset)), OpTag(.chunkRead), link: true)
            }
            queue(.send(fd: socket, buffer: hdr, length: DataHeader.wireSize, flags: more), OpTag(.chunkHeader), link: true)
            queue(.send(fd: socket, buffer: buf.baseAddress!, length: c.length, flags: all), OpTag(.sendChunk))
        }
        current = f
        self.source = source
        return .none
    }

    /// Whether all of chunk `c` was read without waiting; if not, the
    /// ring reads it whole (and reports a short read or an error).
    private func readInline(_ source: SourceFile, into to: UnsafeMutableRawPointer, _ c: FileChunk) -> Bool {
        var done = 0
        return inlineReads.read(source.fd, device: source.device, into: to, count: c.length, at: Int64(c.offset),
                                done: &done) == .complete
    }

    /// Keeps the chunk's file open while its operations run.
    private var source: SourceFile?

    func complete(_ c: Completion) -> Event {
        guard let tag = c.tag else { return .none }
        if current?.splice != nil { return spliceCompleted(tag.op, c.result) }
        ownInflight -= 1
        if tag.op == .zcSend {
            if c.flags & Completion.notification != 0 {
                zcBusy[tag.index] = false
                return .bufferFree
            }
            if c.flags & Completion.more != 0 {
                ownInflight += 1  // the notification is still to come
            } else {
                zcBusy[tag.index] = false
            }
            return chunkCompleted(.sendChunk, c.result)
        }
        return chunkCompleted(tag.op, c.result)
    }

    private func chunkCompleted(_ op: OpTag.Op, _ result: Int32) -> Event {
        guard var f = current else { return .none }
        f.pending -= 1
        var event = Event.none
        switch op {
        case .chunkHeader where result >= 0 && Int(result) < DataHeader.wireSize:
            f.failed = true
        case .chunkRead where result >= 0 && Int(result) < f.chunk.length:
            f.failed = true
            event = shrank(f, read: Int(result))
        case .chunkRead where result > 0:
            let base = buffers[f.slot].baseAddress!
            if case .sealed = path {
                sealChunk(in: buffers[f.slot], f.chunk.offset, Int(result))
            } else {
                source?.hasher?.update(UnsafeRawBufferPointer(start: base, count: Int(result)))
            }
        case .sendChunk where result >= 0 && Int(result) < f.chunk.length:
            f.failed = true
        default:
            break
        }
        if result < 0, result != -ECANCELED, !f.failed {
            f.failed = true
            event = .failed(op == .chunkRead ? .io(IOError(result: result, "read", f.name)) : sendError(result), waitForReason: op != .chunkRead)
        }
        current = f
        guard f.pending == 0 else { return event }
        current = nil
        source = nil
        if f.failed {
            if case .failed = event { return event }
            return .failed(.disconnected("a chunk of '\(f.name)' went out short", peer: peer), waitForReason: true)
        }
        return .sent(f.chunk)
    }

    private func spliceCompleted(_ op: OpTag.Op, _ result: Int32) -> Event {
        guard var f = current, var sc = f.splice, case .splice(let pipe) = path else { return .none }
        let outcome = sc.complete(op, result, pipe: pipe, socket: socket, loop: loop, reg: reg)
        f.splice = sc
        current = f
        switch outcome {
        case .inFlight: return .none
        case .sent: return finished()
        case .failed(let why): return lost(why)
        }
    }

    /// Hashes the chunk read into `buffer` piece by piece as each is
    /// sealed, so the bytes are hot for both passes.
    private func sealChunk(in buffer: UnsafeMutableRawBufferPointer, _ offset: UInt64, _ count: Int) {
        let at = SessionCipher.headerSize
        DataHeader(fileID: currentFileID, length: UInt32(count), offset: offset)
            .encode(into: UnsafeMutableRawBufferPointer(rebasing: buffer[at...]))
        let hasher = source?.hasher
        channel.enqueueSealed(lending: buffer, frameCount: DataHeader.wireSize + count) { piece, from in
            guard let hasher else { return }
            // The frame's first bytes are its header, not the file's.
            let skip = max(0, DataHeader.wireSize - from)
            if skip < piece.count { hasher.update(UnsafeRawBufferPointer(rebasing: piece[skip...])) }
        }
    }

    /// The file id of the chunk in flight (its header holds it).
    private var currentFileID: UInt32 {
        UInt32(bigEndian: header.load(fromByteOffset: 8, as: UInt32.self))
    }

    private func finished() -> Event {
        let f = current!
        current = nil
        source = nil
        return .sent(f.chunk)
    }

    private func lost(_ why: SpliceChunk.Failure) -> Event {
        let f = current!
        current = nil
        source = nil
        switch why {
        case .shrank(let read):
            return shrank(f, read: read)
        case .error(let op, let result):
            return .failed(op == .spliceIn ? .io(IOError(result: result, "read", f.name)) : sendError(result), waitForReason: op != .spliceIn)
        case .shortHeader, .stalled:
            return .failed(.disconnected("a chunk of '\(f.name)' went out short", peer: peer), waitForReason: true)
        }
    }

    private func shrank(_ f: InFlight, read: Int) -> Event {
        .failed(.source("'\(f.name)' shrank while being sent (read \(f.chunk.offset + UInt64(read)) of \(f.size) bytes)"), waitForReason: false)
    }

    private func sendError(_ result: Int32) -> TransferError {
        if result == -EAGAIN || result == -ETIMEDOUT {
            return .timeout("it stopped reading; nothing could be sent for \(Int(idleTimeoutSeconds)) s", peer: peer)
        }
        return .io(IOError(result: result, "send to", peer))
    }
}
