// EXIF orientation (TIFF tag 0x0112) and the transpose that undoes it, matching Pillow's
// ImageOps.exif_transpose: JPEG takes the first APP1 segment starting "Exif\0" (as JpegImagePlugin does),
// PNG the eXIf chunk. Orientation values other than 2...8 (1, 0, 9+, or an unreadable block) leave the
// image as it is. Not read (Pillow 9.4 reads them, rarely present): PNG "Raw profile type exif" text
// chunks and XMP tiff:Orientation.

/// The EXIF orientation values. The case says how the stored pixels must be transformed for display;
/// Pillow's names for the same operations are in the comments.
public enum EXIFOrientation: Int, Sendable, CaseIterable {
    case up = 1                 // as stored
    case mirrored = 2           // FLIP_LEFT_RIGHT
    case rotated180 = 3         // ROTATE_180
    case flippedVertically = 4  // FLIP_TOP_BOTTOM
    case transposed = 5         // TRANSPOSE (mirror across the main diagonal)
    case rotatedClockwise = 6   // ROTATE_270 (Pillow rotates counter-clockwise)
    case transversed = 7        // TRANSVERSE (mirror across the anti-diagonal)
    case rotatedCounterClockwise = 8  // ROTATE_90

    /// Whether width and height trade places.
    public var swapsAxes: Bool { rawValue >= 5 }
}

enum EXIF {
    static let orientationTag: UInt16 = 0x0112

    /// Orientation from the first "Exif\0" APP1 segment before the first scan, or nil.
    static func jpegOrientation(_ bytes: UnsafeRawBufferPointer) -> EXIFOrientation? {
        var offset = 2  // after SOI
        while offset + 4 <= bytes.count {
            guard bytes[offset] == 0xFF else { return nil }
            let marker = bytes[offset + 1]
            if marker == 0xFF { offset += 1; continue }  // fill byte
            if marker == 0x01 || (0xD0...0xD8).contains(marker) { offset += 2; continue }  // no length
            if marker == 0xDA || marker == 0xD9 { return nil }  // scan data or end: no Exif before them
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let payload = offset + 4
            let end = offset + 2 + length
            guard length >= 2, end <= bytes.count else { return nil }
            if marker == 0xE1, end - payload >= 6,
               bytes[payload] == 0x45, bytes[payload + 1] == 0x78, bytes[payload + 2] == 0x69,
               bytes[payload + 3] == 0x66, bytes[payload + 4] == 0 {  // "Exif\0"
                // Pillow reads only the first such segment, whatever it holds.
                return orientation(tiff: UnsafeRawBufferPointer(rebasing: bytes[(payload + 6)..<end]))
            }
            offset = end
        }
        return nil
    }

    /// Orientation tag of IFD0 in a TIFF block ("II"/"MM" header), or nil. Every read is bounds-checked.
    static func orientation(tiff: UnsafeRawBufferPointer) -> EXIFOrientation? {
        guard tiff.count >= 8 else { return nil }
        let bigEndian: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): bigEndian = false
        case (0x4D, 0x4D): bigEndian = true
        default: return nil
        }
        func read16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= tiff.count else { return nil }
            let a = Int(tiff[at]), b = Int(tiff[at + 1])
            return bigEndian ? a << 8 | b : b << 8 | a
        }
        func read32(_ at: Int) -> Int? {
            guard let high = read16(bigEndian ? at : at + 2), let low = read16(bigEndian ? at + 2 : at) else {
                return nil
            }
            return high << 16 | low
        }
        guard read16(2) == 42, let ifd = read32(4), let entryCount = read16(ifd) else { return nil }
        for entry in 0..<entryCount {
            let at = ifd + 2 + entry * 12
            guard let tag = read16(at), let type = read16(at + 2), let count = read32(at + 4) else { return nil }
            guard tag == Int(orientationTag) else { continue }
            // Pillow yields a tuple for count != 1, which matches no orientation.
            guard count == 1 else { return nil }
            let value: Int?
            switch type {
            case 1, 6, 7: value = at + 8 < tiff.count ? Int(tiff[at + 8]) : nil  // BYTE, SBYTE, UNDEFINED
            case 3, 8: value = read16(at + 8)                                      // SHORT, SSHORT
            case 4, 9: value = read32(at + 8)                                      // LONG, SLONG
            default: value = nil
            }
            return value.flatMap(EXIFOrientation.init(rawValue:))
        }
        return nil
    }
}

extension RGBImage {
    /// The image transformed for display under `orientation` (Pillow's exif_transpose operations).
    public func oriented(_ orientation: EXIFOrientation) -> RGBImage {
        if orientation == .up { return self }
        let w = width, h = height
        // Output pixel (x, y) reads source pixel start + x * stepX + y * stepY (in pixels).
        let start: Int, stepX: Int, stepY: Int
        switch orientation {
        case .up: (start, stepX, stepY) = (0, 1, w)
        case .mirrored: (start, stepX, stepY) = (w - 1, -1, w)
        case .rotated180: (start, stepX, stepY) = ((h - 1) * w + w - 1, -1, -w)
        case .flippedVertically: (start, stepX, stepY) = ((h - 1) * w, 1, -w)
        case .transposed: (start, stepX, stepY) = (0, w, 1)
        case .rotatedClockwise: (start, stepX, stepY) = ((h - 1) * w, -w, 1)
        case .transversed: (start, stepX, stepY) = ((h - 1) * w + w - 1, -w, -1)
        case .rotatedCounterClockwise: (start, stepX, stepY) = (w - 1, w, -1)
        }
        let outWidth = orientation.swapsAxes ? h : w, outHeight = orientation.swapsAxes ? w : h
        return RGBImage(width: outWidth, height: outHeight) { out in
            pixels.withUnsafeBufferPointer { source in
                var target = 0
                for y in 0..<outHeight {
                    var from = (start + y * stepY) * 3
                    for _ in 0..<outWidth {
                        out[target] = source[from]
                        out[target + 1] = source[from + 1]
                        out[target + 2] = source[from + 2]
                        target += 3
                        from += stepX * 3
                    }
                }
            }
        }
    }
}
