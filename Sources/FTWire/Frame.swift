/// One decoded protocol frame. `data` carries only the chunk header; the
/// payload bytes that follow it never pass through the codec.
public enum Frame: Equatable, Sendable {
    case hello(Hello)
    case pushInfo(PushInfo)
    case batch(Batch)
    case totals(Totals)
    case answer(BatchAnswer)
    case plan(BatchPlan)
    case data(DataHeader)
    case hole(Hole)
    case fileEnd(FileEnd)
    case batchAck(BatchAck)
    case end
    case done(Done)
    case error(ErrorFrame)
    case auth(AuthProof)
    case smallFiles(SmallFiles)
    case relay(Relay)
    case report(HopReport)

    public var type: FrameType {
        switch self {
        case .hello: return .hello
        case .pushInfo: return .pushInfo
        case .batch: return .batch
        case .totals: return .totals
        case .answer: return .answer
        case .plan: return .plan
        case .data: return .data
        case .hole: return .hole
        case .fileEnd: return .fileEnd
        case .batchAck: return .batchAck
        case .end: return .end
        case .done: return .done
        case .error: return .error
        case .auth: return .auth
        case .smallFiles: return .smallFiles
        case .relay: return .relay
        case .report: return .report
        }
    }
}

/// Result of looking at the front of a byte stream.
public enum Decoded: Equatable, Sendable {
    /// At least this many more bytes are needed before anything can be said.
    case needMore(Int)
    /// A whole frame, and how many bytes of the input it used.
    case frame(Frame, consumed: Int)
}

public enum FrameCodec {
    /// Encodes a frame with its prefix.
    public static func encode(_ frame: Frame) -> [UInt8] {
        var w = WireWriter(capacity: 64)
        w.raw(repeatElement(0, count: FramePrefix.size))
        encodeBody(frame, into: &w)
        var bytes = w.bytes
        let bodyLength = UInt32(bytes.count - FramePrefix.size)
        precondition(bodyLength <= frame.type.bodyCap, "\(frame.type) body of \(bodyLength) bytes is over its cap")
        bytes.withUnsafeMutableBytes {
            FramePrefix(type: frame.type, length: bodyLength).encode(into: $0)
        }
        return bytes
    }

    static func encodeBody(_ frame: Frame, into w: inout WireWriter) {
        switch frame {
        case .hello(let h): h.encode(into: &w)
        case .pushInfo(let p): p.encode(into: &w)
        case .batch(let b): b.encode(into: &w)
        case .totals(let t):
            w.u64(t.entries)
            w.u64(t.bytes)
        case .answer(let a): a.encode(into: &w)
        case .plan(let p): p.encode(into: &w)
        case .data(let d):
            w.u32(d.fileID)
            w.u32(d.length)
            w.u64(d.offset)
        case .hole(let h): h.encode(into: &w)
        case .fileEnd(let f): f.encode(into: &w)
        case .batchAck(let a): a.encode(into: &w)
        case .end: break
        case .done(let d): d.encode(into: &w)
        case .error(let e):
            let msg = Array(e.message.utf8.prefix(Int(ErrorFrame.messageCap)))
            w.u16(e.code.rawValue)
            w.u16(UInt16(msg.count))
            w.raw(msg)
        case .auth(let a): w.raw(a.mac)
        case .smallFiles(let batch):
            w.u32(UInt32(batch.files.count))
            for f in batch.files {
                w.u32(f.fileID)
                w.u32(UInt32(f.bytes.count))
                w.u32(f.digest == nil ? 0 : 1)
                (f.digest ?? .zero).write(to: &w)
                w.raw(f.bytes)
            }
        case .relay(let r): r.encode(into: &w)
        case .report(let r): r.encode(into: &w)
        }
    }

    /// Decodes a body of exactly `prefix.length` bytes. Trailing bytes are
    /// an error except in `hello`, which later versions may extend.
    public static func decodeBody(_ prefix: FramePrefix, _ body: UnsafeRawBufferPointer) throws(WireError) -> Frame {
        precondition(body.count == Int(prefix.length))
        var r = WireReader(body, type: prefix.type)
        let frame: Frame
        switch prefix.type {
        case .hello:
            return .hello(try Hello.decode(&r))
        case .pushInfo: frame = .pushInfo(try PushInfo.decode(&r))
        case .batch: frame = .batch(try Batch.decode(&r))
        case .totals: frame = .totals(Totals(entries: try r.u64("entries"), bytes: try r.u64("bytes")))
        case .answer: frame = .answer(try BatchAnswer.decode(&r))
        case .plan: frame = .plan(try BatchPlan.decode(&r))
        case .data: frame = .data(try DataHeader.decode(&r))
        case .hole: frame = .hole(try Hole.decode(&r))
        case .fileEnd: frame = .fileEnd(try FileEnd.decode(&r))
        case .batchAck: frame = .batchAck(try BatchAck.decode(&r))
        case .end: frame = .end
        case .done: frame = .done(try Done.decode(&r))
        case .error:
            let raw = try r.u16("code")
            let len = Int(try r.u16("message length"))
            let msg = try r.bytes(len, "message")
            frame = .error(ErrorFrame(ErrorFrame.Code(rawValue: raw) ?? .unknown, String(decoding: msg, as: UTF8.self)))
        case .auth:
            frame = .auth(AuthProof(mac: try r.bytes(Int(AuthProof.bodySize), "mac")))
        case .smallFiles:
            let files = try r.records("file count", minSize: SmallFiles.File.headerSize) { r throws(WireError) in
                let id = try r.u32("file id")
                let length = Int(try r.u32("length"))
                let flags = try r.u32("flags")
                guard flags & ~1 == 0 else {
                    throw .invalidField(.smallFiles, field: "flags", reason: "unknown bits 0x\(String(flags, radix: 16))")
                }
                let digest = try Digest128.read(from: &r, "digest")
                let bytes = try r.bytes(length, "file bytes")
                return SmallFiles.File(fileID: id, digest: flags & 1 == 1 ? digest : nil, bytes: bytes)
            }
            frame = .smallFiles(SmallFiles(files: files))
        case .relay: frame = .relay(try Relay.decode(&r))
        case .report: frame = .report(try HopReport.decode(&r))
        }
        guard r.remaining == 0 else {
            throw .invalidField(prefix.type, field: "length", reason: "\(r.remaining) bytes left after the last field")
        }
        return frame
    }

    /// Looks at the front of a byte stream: a whole frame, or how many more
    /// bytes are needed, or a typed error. Never reads past the frame it
    /// returns, so the caller can hand the rest (a chunk payload) elsewhere.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Decoded {
        guard bytes.count >= FramePrefix.size else { return .needMore(FramePrefix.size - bytes.count) }
        let prefix = try FramePrefix.decode(bytes)
        let total = FramePrefix.size + Int(prefix.length)
        guard bytes.count >= total else { return .needMore(total - bytes.count) }
        let body = UnsafeRawBufferPointer(rebasing: bytes[FramePrefix.size..<total])
        return .frame(try decodeBody(prefix, body), consumed: total)
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Decoded {
        let result = bytes.withUnsafeBytes { buf in
            Result { () throws(WireError) in try decode(buf) }
        }
        return try result.get()
    }
}
