// libFuzzer target over every decoder that reads peer bytes. Built by
// tools/fuzz together with Sources/FTWire as one module; never part of the
// package build.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: count)

    // A stream of frames, as a receiver reads it: decode until it needs more.
    var rest = input
    while true {
        guard let decoded = try? FrameCodec.decode(rest) else { break }
        guard case .frame(let frame, let used) = decoded else { break }
        precondition(used > 0 && used <= rest.count, "decoder claimed \(used) of \(rest.count) bytes")
        checkRoundTrip(frame)
        rest = UnsafeRawBufferPointer(rebasing: rest[used...])
    }

    // Prefix and bodies on their own, the way FrameChannel calls them.
    if input.count >= FramePrefix.size, let prefix = try? FramePrefix.decode(input) {
        let body = UnsafeRawBufferPointer(rebasing: input[FramePrefix.size...].prefix(Int(prefix.length)))
        if body.count == Int(prefix.length) { _ = try? FrameCodec.decodeBody(prefix, body) }
    }

    // Everything else a peer's bytes reach.
    let bytes = Array(input)
    if let path = try? PeerPath.validate(bytes) {
        precondition(!path.components.contains("..") && !path.components.contains("."), "validated a dot component")
        precondition(path.components.allSatisfy { !$0.isEmpty && !$0.utf8.contains(0) && !$0.utf8.contains(0x2F) })
        _ = path.sensitiveComponent
    }
    let shown = Escape.forDisplay(bytes: bytes)
    precondition(!shown.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "escaping let a control through")
    _ = Escape.forChat(bytes: bytes)
    _ = Escape.forMessage(bytes: bytes)
    var lines = LineBuffer(cap: 256)
    for item in lines.append(bytes) {
        if case .line(let l) = item { precondition(l.count < 256 && !l.contains(0x0A)) }
        if case .truncated(let t) = item { precondition(t.count <= 256) }
    }
    _ = lines.finish()
    return 0
}

/// What decodes must encode back to itself (hello and error carry text
/// that is decoded lossily, so they are only re-decoded, not compared).
func checkRoundTrip(_ frame: Frame) {
    let again = FrameCodec.encode(frame)
    guard case .frame(let back, let used)? = try? FrameCodec.decode(again) else {
        preconditionFailure("re-encoded \(frame.type) does not decode")
    }
    precondition(used == again.count)
    switch frame {
    case .hello, .error: break
    default: precondition(back == frame, "\(frame.type) changed in a round trip")
    }
}
