#if canImport(Glibc)
import Glibc
#endif

/// A test build's way to corrupt what a receiver gets: with
/// `FT_TEST_CORRUPT_AT=N` set, the byte at offset N of every file is
/// flipped where its bytes first sit on the receiver, before they are
/// hashed: in the buffer a copy-path recv filled, in the file a splice
/// filled, in an opened sealed record, in a small-files frame. Verification
/// must then refuse the file on every data path. It can also slow some of
/// the receiver's offload jobs (`slow`). Release builds compile them out.
enum ReceiveFault {
    #if DEBUG
    private static let offset: UInt64? = getenv("FT_TEST_CORRUPT_AT").flatMap { UInt64(String(cString: $0)) }
    #endif

    /// Flips the target byte if it is among `bytes`, which hold the file's
    /// bytes from `at`; and in `file` too, where a write of `bytes` is
    /// already running (it may have read the byte before the flip).
    @inline(__always)
    static func corrupt(_ bytes: UnsafeMutableRawBufferPointer, at: UInt64, file: CInt? = nil) {
        #if DEBUG
        guard let n = offset, n >= at, n - at < UInt64(bytes.count) else { return }
        bytes[Int(n - at)] ^= 0xFF
        if let file {
            var b = bytes[Int(n - at)]
            _ = pwrite(file, &b, 1, off_t(n))
        }
        #endif
    }

    /// The same, in file `fd` where the range `stored` just landed.
    @inline(__always)
    static func corrupt(fd: CInt, stored: Range<UInt64>) {
        #if DEBUG
        guard let n = offset, stored.contains(n) else { return }
        var b: UInt8 = 0
        guard pread(fd, &b, 1, off_t(n)) == 1 else { return }
        b ^= 0xFF
        _ = pwrite(fd, &b, 1, off_t(n))
        #endif
    }

    /// What a test build can slow, each by its environment variable's
    /// milliseconds (`FT_TEST_…_DELAY_MS=N`), on the thread that does it.
    enum Slowed: String, CaseIterable {
        /// A batch's directories are made late, on the ordered offload
        /// thread: how a loaded host's review falls behind the stream.
        case review = "FT_TEST_REVIEW_DELAY_MS"
        /// Reading the receiver's own copies for an offer: a prefix or a
        /// file of many gigabytes on a slow disk.
        case offer = "FT_TEST_OFFER_DELAY_MS"
        /// A `--delete` prune: a directory of millions of strays.
        case prune = "FT_TEST_PRUNE_DELAY_MS"
        /// Giving complete directories their modes and mtimes: a disk
        /// busy with its journal.
        case metadata = "FT_TEST_METADATA_DELAY_MS"
    }

    #if DEBUG
    private static let delays: [Slowed: UInt32] = Dictionary(uniqueKeysWithValues: Slowed.allCases.compactMap { what in
        getenv(what.rawValue).flatMap { UInt32(String(cString: $0)) }.map { (what, $0 * 1000) }
    })
    #endif

    @inline(__always)
    static func slow(_ what: Slowed) {
        #if DEBUG
        if let us = delays[what] { usleep(us) }
        #endif
    }
}
