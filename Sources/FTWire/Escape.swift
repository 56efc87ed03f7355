/// Makes peer text safe to print: a file name or a chat line from a peer can
/// hold ANSI sequences that would rewrite the screen, or bidi overrides that
/// would disguise a name. Printable text passes through unchanged.
public enum Escape {
    /// Escapes a string for a terminal or a log line.
    public static func forDisplay(_ text: String) -> String {
        // Most names are printable ASCII without a backslash: nothing to do
        // (one pass over the bytes instead of a scalar-by-scalar rebuild).
        if text.utf8.withContiguousStorageIfAvailable(plain) ?? text.utf8.allSatisfy(plainByte) { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars { append(scalar, to: &out) }
        return out
    }

    /// Printable ASCII other than the backslash: shown as it is. The
    /// buffer loop is what every file event of a push runs through.
    private static func plain(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        for byte in b where !plainByte(byte) { return false }
        return true
    }

    private static func plainByte(_ b: UInt8) -> Bool { b &- 0x20 < 0x5F && b != 0x5C }

    /// Escaped, and shortened in the middle past `limit` characters, so a
    /// hostile 4 KiB name cannot crowd the reason out of a message.
    public static func forMessage<C: Collection>(bytes: C, limit: Int = 120) -> String where C.Element == UInt8 {
        let full = forDisplay(bytes: bytes)
        guard full.count > limit else { return full }
        return String(full.prefix(limit / 2)) + "…" + String(full.suffix(limit / 2 - 1))
    }

    /// Escapes raw bytes: valid UTF-8 as above, each invalid byte as `\\xNN`.
    public static func forDisplay<C: Collection>(bytes: C) -> String where C.Element == UInt8 {
        // The common case, as in `forDisplay(_:)`: nothing to escape.
        if bytes.withContiguousStorageIfAvailable(plain) ?? bytes.allSatisfy(plainByte) {
            return String(decoding: bytes, as: UTF8.self)
        }
        return escape(Array(bytes), keepBackslash: false)
    }

    /// Escapes peer chat text: controls, ANSI, bidi overrides and invalid
    /// bytes are shown, not obeyed. Backslashes pass through, so text that
    /// a room server already escaped is shown as it is, not escaped twice.
    public static func forChat<C: Collection>(bytes: C) -> String where C.Element == UInt8 {
        escape(Array(bytes), keepBackslash: true)
    }

    static func escape(_ b: [UInt8], keepBackslash: Bool) -> String {
        var out = ""
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if let (scalar, length) = UTF8Scan.scalar(in: b, at: i) {
                if keepBackslash, scalar == "\\" { out += "\\" } else { append(scalar, to: &out) }
                i += length
            } else {
                out += "\\x" + hex2(b[i])
                i += 1
            }
        }
        return out
    }

    static func append(_ scalar: Unicode.Scalar, to out: inout String) {
        let v = scalar.value
        switch v {
        case 0x5C: out += "\\\\"
        case 0x09: out += "\\t"
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x1B: out += "\\e"
        case 0..<0x20, 0x7F: out += "\\x" + hex2(UInt8(v))
        case 0x80...0x9F, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
            out += "\\u{" + hex4(v) + "}"
        default: out.unicodeScalars.append(scalar)
        }
    }

    static func hex2(_ b: UInt8) -> String {
        let s = String(b, radix: 16, uppercase: true)
        return s.count == 1 ? "0" + s : s
    }
}

/// Strict UTF-8 decoding of one scalar: no overlongs, no surrogates, nothing
/// above U+10FFFF. Used where invalid bytes must be shown, not replaced.
public enum UTF8Scan {
    public static func scalar(in b: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
        let lead = b[i]
        let length: Int
        var value: UInt32
        var lowest: UInt32
        switch lead {
        case 0x00...0x7F: return (Unicode.Scalar(lead), 1)
        case 0xC2...0xDF: length = 2; value = UInt32(lead & 0x1F); lowest = 0x80
        case 0xE0...0xEF: length = 3; value = UInt32(lead & 0x0F); lowest = 0x800
        case 0xF0...0xF4: length = 4; value = UInt32(lead & 0x07); lowest = 0x10000
        default: return nil
        }
        guard i + length <= b.count else { return nil }
        for k in 1..<length {
            let c = b[i + k]
            guard c & 0xC0 == 0x80 else { return nil }
            value = value << 6 | UInt32(c & 0x3F)
        }
        guard value >= lowest, let s = Unicode.Scalar(value) else { return nil }
        return (s, length)
    }

    /// Length of the longest prefix of `b[..<end]` that ends on a scalar
    /// boundary, for splitting text without cutting a character.
    public static func boundary(in b: [UInt8], end: Int) -> Int {
        var i = end
        var back = 0
        while i > 0, back < 4, b[i - 1] & 0xC0 == 0x80 {
            i -= 1
            back += 1
        }
        guard i > 0 else { return end }
        let lead = b[i - 1]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return end
        }
        return back + 1 >= need ? end : i - 1
    }
}
