// PNG decoding through libpng's simplified API (png_image_*). libpng reports errors by longjmp, which must
// never cross Swift frames; the simplified API keeps its setjmp inside libpng and returns an error code
// plus `image.message` instead, so it is the only libpng API used here.
//
// Parity with Pillow's `Image.open(p).convert("RGB")` (alpha dropped, not composited; gAMA ignored):
// - The simplified API converts gamma (gAMA/sRGB/iCCP) and composites alpha onto a background when the
//   output has no alpha channel. Pillow does neither. So before decoding, the chunks that steer that
//   (gAMA, sRGB, iCCP, cHRM, tRNS) are dropped from the byte stream. Chunks are self-contained (their CRC
//   covers only themselves), so dropping whole chunks leaves a valid file. tRNS only ever adds alpha,
//   which convert("RGB") discards anyway.
// - Files with an alpha channel are read as 8-bit RGBA (8-bit outputs are not premultiplied) and the
//   alpha byte is dropped.
// - 16-bit files without alpha are read in a "linear" 16-bit format: with the gamma chunks gone libpng
//   assumes 16-bit data is linear, converts nothing and hands over the raw samples; keeping the high
//   byte is exactly Pillow's "RGB;16B" unpacking.
// - 16-bit files with alpha cannot get raw samples out of the simplified API (its 16-bit formats
//   premultiply alpha), so they are read as 8-bit RGBA with PNG_IMAGE_FLAG_16BIT_sRGB (no gamma
//   conversion); libpng then rounds (v * 255 / 65535) where Pillow truncates (v >> 8): within 1.
// - 16-bit grayscale: Pillow opens it as mode "I" and convert("RGB") clips 0...65535 at 255, which turns
//   nearly every pixel white. Sluice deliberately keeps the high byte instead, like 16-bit RGB.
// - Palette, 1/2/4-bit gray and Adam7-interlaced files: libpng expands them exactly as Pillow does.

import CPNG

enum PNGDecoding {
    struct Decoded {
        var image: RGBImage
        /// Byte range of the eXIf chunk's payload (a TIFF block), if any.
        var exifRange: Range<Int>?
    }

    private static let signatureLength = 8

    static func decode(_ bytes: UnsafeRawBufferPointer, name: String, maxPixels: Int) throws(ImageError) -> Decoded {
        let layout = ChunkLayout(bytes)
        guard let header = layout.header else {
            if layout.reachedEnd { throw .corrupt(file: name, detail: "PNG has no valid IHDR chunk") }
            throw .truncated(file: name, detail: "PNG ends inside its header")
        }
        guard header.width > 0, header.height > 0 else {
            throw .corrupt(file: name, detail: "PNG has size \(header.width)x\(header.height)")
        }
        let (pixelCount, overflow) = header.width.multipliedReportingOverflow(by: header.height)
        if overflow || pixelCount > maxPixels {
            throw .tooLarge(file: name, width: header.width, height: header.height, maxPixels: maxPixels)
        }

        let image: RGBImage
        if layout.dropRanges.isEmpty {
            image = try decodeWithLibpng(bytes, header: header, layout: layout, name: name)
        } else {
            let kept = layout.bytesWithoutDroppedChunks(bytes)
            image = try kept.withUnsafeBytes { buffer in
                Result { () throws(ImageError) in
                    try decodeWithLibpng(buffer, header: header, layout: layout, name: name)
                }
            }.get()
        }
        return Decoded(image: image, exifRange: layout.exifRange)
    }

    private static func decodeWithLibpng(_ bytes: UnsafeRawBufferPointer, header: ChunkLayout.Header,
                                         layout: ChunkLayout, name: String) throws(ImageError) -> RGBImage {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&png) }  // safe after failures too: libpng clears `opaque` when it frees

        if png_image_begin_read_from_memory(&png, bytes.baseAddress, bytes.count) == 0 {
            throw failure(png, layout: layout, name: name)
        }
        let width = Int(png.width), height = Int(png.height)
        guard width == header.width, height == header.height else {
            throw .corrupt(file: name, detail: "PNG header read inconsistently")
        }

        let formatAlpha = UInt32(PNG_FORMAT_FLAG_ALPHA), formatColor = UInt32(PNG_FORMAT_FLAG_COLOR)
        let formatLinear = UInt32(PNG_FORMAT_FLAG_LINEAR)
        let pixelCount = width * height
        if header.hasAlphaChannel {
            // 8-bit RGBA out: never premultiplied; 16BIT_sRGB stops a linear->sRGB conversion of 16-bit data.
            png.format = formatColor | formatAlpha
            png.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
            var rgba = [UInt8](repeating: 0, count: pixelCount * 4)
            let ok = rgba.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, 0, nil) }
            if ok == 0 || png.warning_or_error & 2 != 0 { throw failure(png, layout: layout, name: name) }
            return RGBImage(width: width, height: height) { rgb in
                for pixel in 0..<pixelCount {
                    rgb[pixel * 3] = rgba[pixel * 4]
                    rgb[pixel * 3 + 1] = rgba[pixel * 4 + 1]
                    rgb[pixel * 3 + 2] = rgba[pixel * 4 + 2]
                }
            }
        }
        if header.bitDepth == 16 {
            // Linear 16-bit out of an (assumed) linear file: raw samples, no conversion.
            png.format = formatColor | formatLinear
            var samples = [UInt16](repeating: 0, count: pixelCount * 3)
            let ok = samples.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, 0, nil) }
            if ok == 0 || png.warning_or_error & 2 != 0 { throw failure(png, layout: layout, name: name) }
            return RGBImage(width: width, height: height) { rgb in
                for index in 0..<pixelCount * 3 { rgb[index] = UInt8(truncatingIfNeeded: samples[index] >> 8) }
            }
        }
        png.format = formatColor
        var ok: Int32 = 0
        let image = RGBImage(width: width, height: height) { rgb in
            rgb.initialize(repeating: 0)  // libpng may stop part-way on an error
            ok = png_image_finish_read(&png, nil, rgb.baseAddress, 0, nil)
        }
        if ok == 0 || png.warning_or_error & 2 != 0 { throw failure(png, layout: layout, name: name) }
        return image
    }

    private static func failure(_ png: png_image, layout: ChunkLayout, name: String) -> ImageError {
        var message = png
        let text = withUnsafeBytes(of: &message.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let detail = "PNG: " + (text.isEmpty ? "libpng failed without a message" : text)
        if text.contains("CRC") { return .corrupt(file: name, detail: detail) }
        // Our own chunk walk knows whether the stream was cut short, whatever libpng tripped over first.
        if !layout.reachedEnd { return .truncated(file: name, detail: detail) }
        if text.contains("unsupported") || text.contains("not supported") {
            return .unsupported(file: name, reason: detail)
        }
        return .corrupt(file: name, detail: detail)
    }
}

/// One pass over the PNG chunk stream: the header fields, the eXIf payload, the chunks to drop, and
/// whether the stream reaches IEND. Reads lengths defensively; never trusts them to be in bounds.
struct ChunkLayout {
    struct Header {
        var width: Int, height: Int, bitDepth: Int, colorType: Int
        var hasAlphaChannel: Bool { colorType == 4 || colorType == 6 }
    }

    private static let ihdr = fourCC("IHDR"), exif = fourCC("eXIf"), iend = fourCC("IEND")
    /// Chunks that make the simplified API convert gamma or composite alpha (see the file comment).
    private static let droppedKinds = Set(["gAMA", "sRGB", "iCCP", "cHRM", "tRNS"].map(fourCC))

    var header: Header?
    var exifRange: Range<Int>?
    var dropRanges: [Range<Int>] = []
    var reachedEnd = false

    init(_ bytes: UnsafeRawBufferPointer) {
        var offset = 8  // signature, already checked by the sniffer
        while offset + 12 <= bytes.count {
            let length = Int(Self.bigEndian32(bytes, offset))
            let kind = Self.bigEndian32(bytes, offset + 4)
            let dataStart = offset + 8
            guard length <= 0x7FFF_FFFF, dataStart + length + 4 <= bytes.count else { return }
            let next = dataStart + length + 4
            switch kind {
            case Self.ihdr where length >= 13 && offset == 8:
                header = Header(width: Int(Self.bigEndian32(bytes, dataStart)),
                                height: Int(Self.bigEndian32(bytes, dataStart + 4)),
                                bitDepth: Int(bytes[dataStart + 8]), colorType: Int(bytes[dataStart + 9]))
            case Self.exif:
                exifRange = dataStart..<(dataStart + length)  // Pillow keeps the last one
            case Self.iend:
                reachedEnd = true
                return
            case _ where Self.droppedKinds.contains(kind):
                dropRanges.append(offset..<next)
            default:
                break
            }
            offset = next
        }
    }

    func bytesWithoutDroppedChunks(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var kept = [UInt8]()
        kept.reserveCapacity(bytes.count)
        var position = 0
        for range in dropRanges {
            kept.append(contentsOf: bytes[position..<range.lowerBound])
            position = range.upperBound
        }
        kept.append(contentsOf: bytes[position...])
        return kept
    }

    static func bigEndian32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
            | UInt32(bytes[offset + 3])
    }

    static func fourCC(_ text: String) -> UInt32 {
        text.utf8.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
