import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Which of the prefixes a receiver offers (`accept.have`) hash the same
/// here, so they are not sent again. It reads every offered prefix, which
/// may be gigabytes: it runs on the offload thread, never on the loop.
enum ResumeCheck {
    struct Result {
        /// File id → bytes to skip.
        var skips: [UInt32: UInt64] = [:]
        /// File id → a hasher that read the skipped prefix, for the paths
        /// that hash what they send.
        var hashers: [UInt32: StreamHasher] = [:]
        /// Files whose receiver copy differs from ours, for the log.
        var differing: [String] = []
    }

    static func decide(_ have: [Accept.Have], items: [SourceItem]) -> Result {
        var out = Result()
        var byID: [UInt32: Int] = [:]
        for (i, item) in items.enumerated() { byID[item.entry.fileID] = i }
        for h in have {
            guard let i = byID[h.fileID], items[i].entry.kind == .file, h.bytes <= items[i].entry.size,
                  case .file(let path) = items[i].origin else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            let hasher = StreamHasher()
            guard (try? hasher.update(fd: fd, offset: 0, length: h.bytes)) != nil else { continue }
            if hasher.digest() == h.digest {
                out.skips[h.fileID] = h.bytes
                out.hashers[h.fileID] = hasher
            } else {
                out.differing.append(items[i].displayPath)
            }
        }
        return out
    }
}
