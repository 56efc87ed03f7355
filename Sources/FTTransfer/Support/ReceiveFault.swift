#if canImport(Glibc)
import Glibc
#endif

/// A test build's way to corrupt what a receiver gets: with
/// `FT_TEST_CORRUPT_AT=N` set, the byte at offset N of every file is
/// flipped where its bytes first sit on the receiver, before they are
/// hashed: in the buffer a copy-path recv filled, in the file a splice
/// filled, in an opened sealed record, in a small-files frame. Verification
/// must then refuse the file on every data path. It can also slow the
/// receiver's review (`slowReview`) and its offers (`slowOffer`). Release
/// builds compile them out.
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

    #if DEBUG
    private static let reviewDelayMicroseconds: UInt32? = getenv("FT_TEST_REVIEW_DELAY_MS").flatMap { UInt32(String(cString: $0)) }.map { $0 * 1000 }
    #endif

    /// With `FT_TEST_REVIEW_DELAY_MS=N` (test builds), a batch's
    /// directories are made N ms late, on the offload thread: how a loaded
    /// host's review falls behind the stream it is given.
    @inline(__always)
    static func slowReview() {
        #if DEBUG
        if let us = reviewDelayMicroseconds { usleep(us) }
        #endif
    }

    #if DEBUG
    private static let offerDelayMicroseconds: UInt32? = getenv("FT_TEST_OFFER_DELAY_MS").flatMap { UInt32(String(cString: $0)) }.map { $0 * 1000 }
    #endif

    /// With `FT_TEST_OFFER_DELAY_MS=N` (test builds), reading the
    /// receiver's own copies for an offer takes N ms longer: a prefix or
    /// file of many gigabytes on a slow disk.
    @inline(__always)
    static func slowOffer() {
        #if DEBUG
        if let us = offerDelayMicroseconds { usleep(us) }
        #endif
    }
}
