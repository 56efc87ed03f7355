import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// The sending side of a channel: control frames queued in place (tagged,
/// or sealed into records with `--encrypt`), sealed data records lent from
/// their owner's buffers, and one write at a time of all that queued up.
extension FrameChannel {
    /// Queues a control frame; it goes out with the next `flush`.
    func enqueue(_ frame: Frame) {
        let bytes = FrameCodec.encode(frame)
        if let mac, SessionMAC.tags(frame.type) {
            // Tagged where it is queued: no second copy of the frame.
            let room = queued.reserve(bytes.count + SessionMAC.tagSize)
            bytes.withUnsafeBytes { room.copyMemory(from: $0) }
            mac.seal(room, type: frame.type, bodyLength: bytes.count - FramePrefix.size)
            queued.commit(bytes.count + SessionMAC.tagSize)
        } else if let cipher {
            bytes.withUnsafeBytes { cipher.seal($0, appendingTo: queued) }
        } else {
            queued.append(bytes)
        }
    }

    /// Queues a frame whose body `build` writes in place (at most
    /// `bodyCapacity` bytes; it returns how many). Nothing is queued if it
    /// throws.
    func enqueue<E: Error>(_ type: FrameType, bodyCapacity: Int,
                           build: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) {
        // Sealed: built where its record will be sent from, sealed there.
        let at = cipher == nil ? 0 : SessionCipher.headerSize
        let tag = mac != nil && SessionMAC.tags(type) ? SessionMAC.tagSize
            : cipher != nil ? SessionCipher.tagSize : 0
        let room = queued.reserve(at + FramePrefix.size + bodyCapacity + tag)
        let frame = UnsafeMutableRawBufferPointer(rebasing: room[at...])
        let length = try build(UnsafeMutableRawBufferPointer(rebasing: frame[FramePrefix.size..<(FramePrefix.size + bodyCapacity)]))
        precondition(length <= bodyCapacity && UInt32(length) <= type.bodyCap)
        if let cipher {
            FramePrefix(type: type, length: UInt32(length)).encode(into: frame)
            queued.commit(cipher.seal(record: room, plaintextCount: FramePrefix.size + length))
        } else if tag > 0 {
            mac!.seal(frame, type: type, bodyLength: length)
            queued.commit(FramePrefix.size + length + tag)
        } else {
            FramePrefix(type: type, length: UInt32(length)).encode(into: frame)
            queued.commit(FramePrefix.size + length)
        }
    }

    /// Queues a data frame and its payload as one sealed record, sealed in
    /// the caller's buffer: `record` holds, from `SessionCipher.headerSize`,
    /// the 24-byte data header and the payload (`frameCount` bytes in all),
    /// with room for the tag after them. `look` sees each piece of the frame
    /// just before it is sealed. The sealed record is queued at once: the
    /// order records are sealed in is the order they are sent in.
    ///
    /// The record is sent from `record` itself: the caller keeps the buffer
    /// untouched until `loansOutstanding` no longer counts this loan (they
    /// come back in the order they were made, as the send that carried them
    /// completes); `canLend` says whether one more may be made.
    func enqueueSealed(lending record: UnsafeMutableRawBufferPointer, frameCount: Int,
                       look: (_ piece: UnsafeRawBufferPointer, _ at: Int) -> Void) {
        precondition(canLend)
        let n = cipher!.seal(record: record, plaintextCount: frameCount, look: look)
        loans.append(Loan(at: queued.count, bytes: UnsafeRawBufferPointer(rebasing: record[..<n])))
    }

    var canLend: Bool { loans.count < Self.maxLoans }
    /// Loans made and not yet returned.
    var loansOutstanding: Int { loans.count + loansOut.count }

    /// Queues a data frame and its payload as one sealed record, for a
    /// payload without room around it: copied once, sealed in the queue.
    func enqueueSealed(_ header: DataHeader, _ payload: UnsafeRawBufferPointer) {
        let frameCount = DataHeader.wireSize + payload.count
        let room = queued.reserve(frameCount + SessionCipher.overhead)
        header.encode(into: UnsafeMutableRawBufferPointer(rebasing: room[SessionCipher.headerSize...]))
        UnsafeMutableRawBufferPointer(rebasing: room[(SessionCipher.headerSize + DataHeader.wireSize)...]).copyMemory(from: payload)
        queued.commit(cipher!.seal(record: room, plaintextCount: frameCount))
    }

    var hasQueued: Bool { !queued.isEmpty || !loans.isEmpty }
    /// Bytes waiting for the next write, lent records included.
    var queuedCount: Int { loans.reduce(queued.count) { $0 + $1.bytes.count } }

    /// Sends everything queued as one write, if no write is in flight; with
    /// lent records, one sendmsg that gathers them between the queued bytes.
    func flush() {
        guard !writing, hasQueued else { return }
        swap(&queued, &out)
        queued.reset()
        swap(&loans, &loansOut)
        writing = true
        let flags = CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)
        guard !loansOut.isEmpty else {
            outCount = out.count
            queue(.send(fd: fd, buffer: out.base, length: out.count, flags: flags), .sendControl)
            return
        }
        var n = 0
        var from = 0
        outCount = 0
        func add(_ base: UnsafeRawPointer, _ count: Int) {
            guard count > 0 else { return }
            iov[n] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: count)
            n += 1
            outCount += count
        }
        for loan in loansOut {
            add(out.base + from, loan.at - from)
            add(loan.bytes.baseAddress!, loan.bytes.count)
            from = loan.at
        }
        add(out.base + from, out.count - from)
        message.pointee = msghdr()
        message.pointee.msg_iov = iov
        message.pointee.msg_iovlen = n
        queue(.sendmsg(fd: fd, message: message, flags: flags), .sendControl)
    }

    /// A completion tagged `sendControl`: nil when all of it went out.
    func onSent(_ c: Completion) -> TransferError? {
        inflight -= 1
        writing = false
        loansOut.removeAll(keepingCapacity: true)
        if c.result < 0 { return .io(IOError(result: c.result, "send to", peer)) }
        if Int(c.result) < outCount { return .disconnected("sent \(c.result) of \(outCount) bytes", peer: peer) }
        return nil
    }
}
