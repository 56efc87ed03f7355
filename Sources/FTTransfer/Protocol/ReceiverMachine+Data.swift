import FTWire

/// The receiver machine's data path: chunks, holes, trailers and small
/// files of the entries of answered batches, each checked against what was
/// announced before any byte is stored.
extension ReceiverMachine {

    /// The active entry `id`, and its name for messages.
    func dataEntry(_ id: UInt32, _ what: String) -> (IncomingEntry, MessageName)? {
        guard let e = entry(id) else { return nil }
        return (e, MessageName(path: e.path))
    }

    mutating func data(_ h: DataHeader) -> Action {
        guard let (e, name) = dataEntry(h.fileID, "chunk") else { return fail(.protocolViolation, "chunk for unknown file id \(h.fileID)") }
        guard batches[e.batchID]?.stage == .receiving else {
            return fail(.protocolViolation, "chunk for '\(name)' before its batch was answered and planned")
        }
        guard e.isData else { return fail(.protocolViolation, "chunk for '\(name)', which is not a file") }
        guard e.decision != .skip else { return fail(.protocolViolation, "chunk for '\(name)', which the plan skips") }
        let (end, overflow) = h.offset.addingReportingOverflow(UInt64(h.length))
        guard !overflow else { return fail(.protocolViolation, "chunk at \(h.offset)+\(h.length) of '\(name)' is past any size") }
        if e.entry.kind == .file, end > e.entry.size {
            return fail(.protocolViolation, "chunk at \(h.offset)+\(h.length) is past the \(e.entry.size) bytes announced for '\(name)'")
        }
        // With parallel streams a chunk whose stream broke is sent again on
        // another, and may have arrived whole after all.
        if parallel, h.length > 0, e.received.contains(h.offset..<end) { return .discard(length: h.length) }
        guard e.trailer == nil || (parallel && !e.finishing) else {
            return fail(.protocolViolation, "chunk for '\(name)' after its trailer")
        }
        var inserted = false
        update(h.fileID) { inserted = $0.received.insert(h.offset..<end) }
        guard inserted else {
            return fail(.protocolViolation, "chunk at \(h.offset)+\(h.length) of '\(name)' overlaps bytes already received")
        }
        if let refusal = scattered(h.fileID, name) { return refusal }
        if parallel { update(h.fileID) { $0.pending += 1 } }
        return .store(id: h.fileID, offset: h.offset, length: h.length)
    }

    /// A file's pieces merge as they arrive: an honest sender sends each
    /// file in order on each stream, so only a few gaps are ever open. A
    /// peer scattering tiny pieces would grow the range lists (and this
    /// host's memory) without bound.
    mutating func scattered(_ id: UInt32, _ name: MessageName) -> Action? {
        guard let now = entry(id), now.received.ranges.count > Self.maxGaps else { return nil }
        return fail(.protocolViolation, "'\(name)' arrived in more than \(Self.maxGaps) separate pieces at once (a sender sends each file's extents in order)")
    }

    mutating func hole(_ h: Hole) -> Action {
        guard let (e, name) = dataEntry(h.fileID, "hole") else { return fail(.protocolViolation, "hole for unknown file id \(h.fileID)") }
        guard batches[e.batchID]?.stage == .receiving, e.entry.kind == .file, e.entry.flags.contains(.sparse), e.trailer == nil else {
            return fail(.protocolViolation, "hole for '\(name)', which is not a sparse file taking data")
        }
        let (end, overflow) = h.offset.addingReportingOverflow(h.length)
        guard !overflow, end <= e.entry.size else {
            return fail(.protocolViolation, "hole at \(h.offset)+\(h.length) is past the \(e.entry.size) bytes announced for '\(name)'")
        }
        guard h.length > 0 else { return .none }
        var inserted = false
        update(h.fileID) { inserted = $0.received.insert(h.offset..<end) }
        guard inserted else {
            return fail(.protocolViolation, "hole at \(h.offset)+\(h.length) of '\(name)' overlaps bytes already received")
        }
        if let refusal = scattered(h.fileID, name) { return refusal }
        return .hole(id: h.fileID, range: h.offset..<end)
    }

    /// A data frame that arrived on one of this push's extra streams.
    package mutating func dataStreamChunk(_ h: DataHeader) -> Action {
        guard parallel, phase == .receiving else {
            return fail(.protocolViolation, "a data stream sent a chunk while the push is \(phaseText)")
        }
        if let e = entry(h.fileID), e.entry.kind == .stdin {
            return fail(.protocolViolation, "stdin content came on an extra data stream")
        }
        return data(h)
    }

    /// A chunk's payload is in the file: `finish` if that was the last
    /// piece a trailer was waiting for.
    package mutating func chunkStored(id: UInt32) -> Action {
        guard parallel else { return .none }
        update(id) { $0.pending -= 1 }
        return finishIfWhole(id)
    }

    /// A chunk's stream broke before its payload was all in: its bytes are
    /// to come again, on another stream.
    package mutating func chunkLost(id: UInt32, range: Range<UInt64>) {
        guard parallel else { return }
        update(id) {
            $0.pending -= 1
            $0.received.remove(range)
        }
    }

    mutating func finishIfWhole(_ id: UInt32) -> Action {
        guard let e = entry(id), let t = e.trailer, !e.finishing, !e.finished, e.pending == 0,
              e.received.contiguous == t.size, e.received.total == t.size else { return .none }
        update(id) { $0.finishing = true }
        return .finish(id: id)
    }

    mutating func trailer(_ t: FileEnd) -> Action {
        guard let (e, name) = dataEntry(t.fileID, "trailer") else { return fail(.protocolViolation, "trailer for unknown file id \(t.fileID)") }
        guard batches[e.batchID]?.stage == .receiving else {
            return fail(.protocolViolation, "trailer for '\(name)' before its batch was answered and planned")
        }
        guard e.isData, e.decision != .skip else { return fail(.protocolViolation, "trailer for '\(name)', which takes no data") }
        guard e.trailer == nil else { return fail(.protocolViolation, "second trailer for '\(name)'") }
        if t.unreadable {
            // The sender could not read it after all: nothing lands.
            update(t.fileID) { $0.trailer = t }
            return .finish(id: t.fileID)
        }
        if e.entry.kind == .file, t.size != e.entry.size {
            return fail(.protocolViolation, "trailer says \(t.size) bytes for '\(name)' but the manifest said \(e.entry.size)")
        }
        if verify, t.digest == nil {
            return fail(.protocolViolation, "trailer for '\(name)' has no digest but verification is on")
        }
        if parallel {
            guard e.received.total <= t.size else {
                return fail(.protocolViolation, "'\(name)' has \(e.received.total) bytes but its trailer says \(t.size)")
            }
            update(t.fileID) { $0.trailer = t }
            return finishIfWhole(t.fileID)
        }
        guard e.received.contiguous == t.size, e.received.total == t.size else {
            return fail(.protocolViolation, "'\(name)' ended after \(e.received.total) of \(t.size) bytes")
        }
        update(t.fileID) {
            $0.trailer = t
            $0.finishing = true
        }
        return .finish(id: t.fileID)
    }

    mutating func small(_ batch: SmallFiles) -> Action {
        var out: [SmallArrival] = []
        out.reserveCapacity(batch.files.count)
        let verify = verify
        for f in batch.files {
            // Checked and marked in place: a copy of the entry per small
            // file was ~1% of the receiver on a tree of them.
            let problem: String?? = inPlace(f.fileID) { stage, e in
                let name = MessageName(path: e.path)
                guard stage == .receiving else { return "'\(name)' arrived before its batch was answered and planned" }
                guard e.entry.kind == .file, e.decision == .whole, !e.entry.flags.contains(.sparse) else {
                    return "small-files frame for '\(name)', which does not take it whole"
                }
                guard e.trailer == nil, e.received.total == 0 else { return "'\(name)' arrived whole after it had started" }
                guard UInt64(f.bytes.count) == e.entry.size else {
                    return "'\(name)' arrived with \(f.bytes.count) bytes but the manifest said \(e.entry.size)"
                }
                if verify, f.digest == nil { return "'\(name)' has no digest but verification is on" }
                _ = e.received.insert(0..<e.entry.size)
                e.trailer = FileEnd(fileID: f.fileID, size: e.entry.size, digest: f.digest)
                e.finishing = true
                return nil
            }
            guard let problem else { return fail(.protocolViolation, "small file for unknown file id \(f.fileID)") }
            if let problem { return fail(.protocolViolation, problem) }
            out.append(SmallArrival(id: f.fileID, file: f))
        }
        return .storeSmall(out)
    }
}
