import Foundation

/// Checks a zip's directory records before ZIPFoundation reads them: every offset and size they give must
/// lie inside the file. ZIPFoundation converts offsets to `off_t` and adds sizes without checking, so a
/// ZIP64 field claiming an offset past 2^63 trapped the process (found by scripts/fuzz checkpoint). The
/// records are read here with checked arithmetic from the mapped bytes; the files themselves are still
/// read by ZIPFoundation.
enum ZipDirectoryCheck {
    static func check(_ data: Data, file: String) throws {
        let bytes = [UInt8](data.suffix(min(data.count, 65_557)))  // the end record and its comment
        let size = UInt64(data.count)
        func refuse(_ detail: String) -> CheckpointError { .malformed(file: file, detail: "zip directory: \(detail)") }
        func u16(_ b: [UInt8], _ at: Int) -> UInt64 { UInt64(b[at]) | UInt64(b[at + 1]) << 8 }
        func u32(_ b: [UInt8], _ at: Int) -> UInt64 { u16(b, at) | u16(b, at + 2) << 16 }
        func u64(_ b: [UInt8], _ at: Int) -> UInt64 { u32(b, at) | u32(b, at + 4) << 32 }
        func read(_ offset: UInt64, _ count: Int) -> [UInt8]? {
            guard offset <= size, UInt64(count) <= size - offset else { return nil }
            return [UInt8](data[data.startIndex + Int(offset) ..< data.startIndex + Int(offset) + count])
        }

        // The end-of-central-directory record, last in the file (ZIPFoundation reports a zip without one).
        guard bytes.count >= 22,
              let end = stride(from: bytes.count - 22, through: 0, by: -1).first(where: { u32(bytes, $0) == 0x0605_4b50 })
        else { return }
        let endOffset = size - UInt64(bytes.count - end)
        var entries = u16(bytes, end + 10), directoryOffset = u32(bytes, end + 16)
        // ZIP64: a locator right before it points at the ZIP64 end record, which holds the real values.
        if end >= 20, u32(bytes, end - 20) == 0x0706_4b50 {
            let recordOffset = u64(bytes, end - 12)
            guard let record = read(recordOffset, 56), u32(record, 0) == 0x0606_4b50 else {
                throw refuse("the ZIP64 end record is said to be at offset \(recordOffset), which is not one in a file of \(size) bytes")
            }
            entries = u64(record, 32)
            directoryOffset = u64(record, 48)
        }
        guard directoryOffset <= endOffset else {
            throw refuse("the central directory is said to start at offset \(directoryOffset), past its end at \(endOffset)")
        }
        guard entries <= (endOffset - directoryOffset) / 46 else {
            throw refuse("\(entries) entries cannot fit in \(endOffset - directoryOffset) bytes of central directory")
        }
        var at = directoryOffset
        for index in 0..<Int(entries) {
            guard let header = read(at, 46), u32(header, 0) == 0x0201_4b50 else {
                throw refuse("entry \(index) at offset \(at) is not a central directory header")
            }
            let nameLength = Int(u16(header, 28)), extraLength = Int(u16(header, 30)), commentLength = Int(u16(header, 32))
            guard let extra = read(at + 46 + UInt64(nameLength), extraLength) else {
                throw refuse("entry \(index)'s name and extra field run past the end of the file")
            }
            // Offsets and stored bytes lie in the file; a deflated entry expands at most 1032:1. (The 32-bit
            // uncompressed size is left to `CheckpointZip.contents`, which says it in terms of deflate.)
            let stored = u16(header, 10) == 0
            let expanded = stored ? size : size.multipliedReportingOverflow(by: 1032).partialValue + 64
            var values = [("compressed size", u32(header, 20), size), ("local header offset", u32(header, 42), size)]
            // ZIP64 extended information (id 1): 8-byte values replacing the 32-bit fields set to 0xFFFFFFFF;
            // whichever they replace, none may exceed what the entry can hold.
            var field = 0
            while field + 4 <= extra.count {
                let id = u16(extra, field), length = Int(u16(extra, field + 2))
                guard field + 4 + length <= extra.count else { break }
                if id == 1 {
                    for value in stride(from: field + 4, through: field + 4 + length - 8, by: 8) {
                        values.append(("ZIP64 size or offset", u64(extra, value), expanded))
                    }
                }
                field += 4 + length
            }
            if let (name, value, _) = values.first(where: { $0.1 > $0.2 && $0.1 != 0xFFFF_FFFF }) {
                throw refuse("entry \(index) gives a \(name) of \(value), more than a file of \(size) bytes can hold")
            }
            at += 46 + UInt64(nameLength + extraLength + commentLength)
        }
    }
}
