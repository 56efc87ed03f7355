/// Wire layouts of the batch-protocol frames. Every count is checked
/// against what is left of the body before anything is reserved for it.
extension PushInfo {
    func encode(into w: inout WireWriter) {
        w.u32(flags.rawValue)
        w.u32(0)
        w.u64(entries)
        w.u64(bytes)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> PushInfo {
        let flags = Flags(rawValue: try r.u32("flags"))
        guard Flags.known.isSuperset(of: flags) else {
            throw .invalidField(.pushInfo, field: "flags", reason: "unknown bits 0x\(String(flags.rawValue, radix: 16))")
        }
        try r.skip(4, "reserved")
        return PushInfo(flags: flags, entries: try r.u64("entries"), bytes: try r.u64("bytes"))
    }
}

extension Batch {
    func encode(into w: inout WireWriter) {
        w.u32(batchID)
        w.u32(UInt32(entries.count))
        for e in entries { e.encode(into: &w) }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> Batch {
        let id = try r.u32("batch id")
        let entries = try r.records("entry count", minSize: ManifestEntry.fixedSize) { r throws(WireError) in
            try ManifestEntry.decode(&r)
        }
        guard entries.count <= maxEntries else {
            throw .invalidField(.batch, field: "entry count", reason: "\(entries.count) is over \(maxEntries)")
        }
        return Batch(batchID: id, entries: entries)
    }
}

extension BatchAnswer {
    func encode(into w: inout WireWriter) {
        w.u32(batchID)
        w.u8(last ? 1 : 0)
        w.u8(0)
        w.u16(0)
        w.u32(UInt32(items.count))
        for i in items {
            w.u32(i.fileID)
            w.u8(i.offer.tag)
            w.u8(0)
            w.u16(0)
            switch i.offer {
            case .identical:
                break
            case .prefix(let bytes, let digest):
                w.u64(bytes)
                digest.write(to: &w)
            case .digest(let d):
                d.write(to: &w)
            case .chunks(let size, let digests):
                w.u32(size)
                w.u32(UInt32(digests.count))
                for d in digests { d.write(to: &w) }
            }
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> BatchAnswer {
        let id = try r.u32("batch id")
        let flags = try r.u8("flags")
        guard flags & ~1 == 0 else { throw .invalidField(.answer, field: "flags", reason: "unknown bits 0x\(String(flags, radix: 16))") }
        try r.skip(3, "reserved")
        let items = try r.records("item count", minSize: 8) { r throws(WireError) -> Item in
            let fileID = try r.u32("file id")
            let tag = try r.u8("offer")
            try r.skip(3, "reserved")
            switch tag {
            case 1:
                return Item(fileID: fileID, offer: .identical)
            case 2:
                let bytes = try r.u64("prefix bytes")
                return Item(fileID: fileID, offer: .prefix(bytes: bytes, digest: try Digest128.read(from: &r, "digest")))
            case 3:
                return Item(fileID: fileID, offer: .digest(try Digest128.read(from: &r, "digest")))
            case 4:
                let size = try r.u32("chunk size")
                guard size >= 4096 else { throw .invalidField(.answer, field: "chunk size", reason: "\(size) is below 4096") }
                let digests = try r.records("chunk count", minSize: 16) { r throws(WireError) in
                    try Digest128.read(from: &r, "chunk digest")
                }
                guard digests.count <= maxChunks else {
                    throw .invalidField(.answer, field: "chunk count", reason: "\(digests.count) is over \(maxChunks)")
                }
                return Item(fileID: fileID, offer: .chunks(chunkSize: size, digests: digests))
            default:
                throw .invalidField(.answer, field: "offer", reason: "unknown offer \(tag)")
            }
        }
        return BatchAnswer(batchID: id, last: flags & 1 == 1, items: items)
    }
}

extension BatchPlan {
    func encode(into w: inout WireWriter) {
        w.u32(batchID)
        w.u32(UInt32(items.count))
        for i in items {
            w.u32(i.fileID)
            w.u8(i.decision.tag)
            w.u8(0)
            w.u16(0)
            switch i.decision {
            case .whole, .skip:
                break
            case .resumeAfter(let n):
                w.u64(n)
            case .patch(let reuse):
                w.u32(UInt32(reuse.count))
                var byte: UInt8 = 0
                for (k, b) in reuse.enumerated() {
                    if b { byte |= 1 << UInt8(k % 8) }
                    if k % 8 == 7 {
                        w.u8(byte)
                        byte = 0
                    }
                }
                if reuse.count % 8 != 0 { w.u8(byte) }
            }
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> BatchPlan {
        let id = try r.u32("batch id")
        let items = try r.records("item count", minSize: 8) { r throws(WireError) -> Item in
            let fileID = try r.u32("file id")
            let tag = try r.u8("decision")
            try r.skip(3, "reserved")
            switch tag {
            case 0: return Item(fileID: fileID, decision: .whole)
            case 1: return Item(fileID: fileID, decision: .resumeAfter(try r.u64("prefix bytes")))
            case 2: return Item(fileID: fileID, decision: .skip)
            case 3:
                let n = Int(try r.u32("chunk count"))
                guard n <= BatchAnswer.maxChunks, (n + 7) / 8 <= r.remaining else {
                    throw .invalidField(.plan, field: "chunk count", reason: "\(n) chunks do not fit")
                }
                let bits = try r.bytes((n + 7) / 8, "reuse bitmap")
                return Item(fileID: fileID, decision: .patch(reuse: (0..<n).map { bits[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }))
            default:
                throw .invalidField(.plan, field: "decision", reason: "unknown decision \(tag)")
            }
        }
        return BatchPlan(batchID: id, items: items)
    }
}

extension BatchAck {
    func encode(into w: inout WireWriter) {
        w.u32(batchID)
        w.u32(UInt32(results.count))
        for x in results {
            w.u32(x.fileID)
            w.u8(x.status.rawValue)
            w.u8(0)
            w.u16(0)
            x.digest.write(to: &w)
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> BatchAck {
        let id = try r.u32("batch id")
        let results = try r.records("result count", minSize: Result.encodedSize) { r throws(WireError) -> Result in
            let fileID = try r.u32("file id")
            let s = try r.u8("status")
            guard let status = Status(rawValue: s) else { throw .invalidField(.batchAck, field: "status", reason: "unknown status \(s)") }
            try r.skip(3, "reserved")
            return Result(fileID: fileID, status: status, digest: try Digest128.read(from: &r, "digest"))
        }
        return BatchAck(batchID: id, results: results)
    }
}

extension Hole {
    func encode(into w: inout WireWriter) {
        w.u32(fileID)
        w.u32(0)
        w.u64(offset)
        w.u64(length)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> Hole {
        let id = try r.u32("file id")
        try r.skip(4, "reserved")
        let off = try r.u64("offset")
        let len = try r.u64("length")
        guard off <= UInt64(Int64.max), len <= UInt64(Int64.max) - off else {
            throw .invalidField(.hole, field: "offset", reason: "\(off) + \(len) overflows")
        }
        return Hole(fileID: id, offset: off, length: len)
    }
}

extension Done {
    func encode(into w: inout WireWriter) {
        for v in [files, bytes, skippedFiles, skippedBytes, patchedFiles, deleted, symlinks, hardLinks] { w.u64(v) }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> Done {
        Done(files: try r.u64("files"), bytes: try r.u64("bytes"), skippedFiles: try r.u64("skipped files"),
             skippedBytes: try r.u64("skipped bytes"), patchedFiles: try r.u64("patched files"), deleted: try r.u64("deleted"),
             symlinks: try r.u64("symlinks"), hardLinks: try r.u64("hard links"))
    }
}
