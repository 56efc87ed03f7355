/// The 12-byte nonce of record or frame number `counter` in one direction:
/// four zero bytes, then the counter big-endian. Keys are per direction
/// (and per cipher or tag algorithm), so the counter alone never repeats
/// under one key. What `--encrypt`'s records and the Poly1305 frame tags
/// are sealed under.
final class CounterNonce {
    private let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 12, alignment: 8)

    init() { bytes.initializeMemory(as: UInt8.self, repeating: 0) }

    deinit { bytes.deallocate() }

    /// Valid until the next call.
    func of(_ counter: UInt64) -> UnsafePointer<UInt8> {
        bytes.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
        return UnsafePointer(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
}
