// JPEG decoding through the TurboJPEG API (libjpeg-turbo 2.1.5, the same library Pillow 9.4 uses here).
//
// Parity with Pillow (checked against the fixtures from scripts/reference/images.py):
// - Pillow's JpegDecode.c leaves libjpeg's defaults alone unless draft() is used: JDCT_ISLOW and
//   do_fancy_upsampling = TRUE. TurboJPEG's defaults are the same (no TJFLAG_FASTDCT, no
//   TJFLAG_FASTUPSAMPLE); TJFLAG_ACCURATEDCT says so explicitly. Colour and grayscale files decode straight
//   to TJPF_RGB (libjpeg replicates gray into R=G=B, as Pillow's L->RGB does), and the pixels are
//   identical to Pillow's for baseline, progressive, 4:2:0, 4:2:2 and 4:4:4 files.
// - CMYK and YCCK files decode to TJPF_CMYK (libjpeg turns YCCK into CMYK) and are then converted the way
//   Pillow does: it always assumes Adobe's inverted CMYK ("CMYK;I", inverting every sample), then
//   cmyk2rgb computes R = (255 - K) - (C * (255 - K)) / 255 with its MULDIV255 rounding.
// - Warnings: libjpeg's "Premature end of JPEG file" (data ends before the image) is an error here, like
//   Pillow's "image file is truncated". Other warnings (e.g. extraneous bytes before a marker) are
//   accepted, as Pillow accepts them.

import CTurboJPEG

enum JPEGDecoding {
    static func decode(_ bytes: UnsafeRawBufferPointer, name: String, maxPixels: Int) throws(ImageError) -> RGBImage {
        guard let handle = tjInitDecompress() else {
            throw .unsupported(file: name, reason: "TurboJPEG could not start: \(lastMessage(nil))")
        }
        defer { tjDestroy(handle) }
        let source = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let size = UInt(bytes.count)

        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        if tjDecompressHeader3(handle, source, size, &width, &height, &subsampling, &colorspace) != 0 {
            throw failure(handle, bytes, name: name)
        }
        let pixelCount = Int(width) * Int(height)
        guard width > 0, height > 0 else {
            // libjpeg supplies a fake EOI at the end of the data, so a file cut inside its headers reads as
            // "tables only" with no frame.
            let detail = "JPEG has no image frame (size \(width)x\(height))"
            throw endsWithEOI(bytes) ? .corrupt(file: name, detail: detail) : .truncated(file: name, detail: detail)
        }
        if pixelCount > maxPixels {
            throw .tooLarge(file: name, width: Int(width), height: Int(height), maxPixels: maxPixels)
        }

        // LIMITSCANS refuses progressive files with absurd scan counts, which would otherwise take minutes.
        let flags = TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS
        let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        if isCMYK {
            var cmyk = [UInt8](repeating: 0, count: pixelCount * 4)
            let status = cmyk.withUnsafeMutableBufferPointer { buffer in
                tjDecompress2(handle, source, size, buffer.baseAddress, width, 0, height,
                              Int32(TJPF_CMYK.rawValue), flags)
            }
            if status != 0 { try acceptOnlyHarmlessWarning(handle, bytes, name: name) }
            return RGBImage(width: Int(width), height: Int(height)) { rgb in
                cmyk.withUnsafeBufferPointer { convertInvertedCMYKToRGB($0, into: rgb, pixelCount: pixelCount) }
            }
        }

        var status: Int32 = 0
        let image = RGBImage(width: Int(width), height: Int(height)) { rgb in
            status = tjDecompress2(handle, source, size, rgb.baseAddress, width, 0, height,
                                   Int32(TJPF_RGB.rawValue), flags)
            if status != 0 && tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) {
                rgb.initialize(repeating: 0)  // the buffer must be initialised even when we then throw
            }
        }
        if status != 0 { try acceptOnlyHarmlessWarning(handle, bytes, name: name) }
        return image
    }

    /// After a non-zero return: returns for harmless warnings, throws for errors and for truncation.
    private static func acceptOnlyHarmlessWarning(_ handle: tjhandle, _ bytes: UnsafeRawBufferPointer,
                                                  name: String) throws(ImageError) {
        let message = lastMessage(handle)
        if tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) && !message.contains("Premature end") {
            return
        }
        throw failure(handle, bytes, name: name, message: message)
    }

    private static func failure(_ handle: tjhandle, _ bytes: UnsafeRawBufferPointer, name: String,
                                message: String? = nil) -> ImageError {
        let message = message ?? lastMessage(handle)
        if message.contains("Unsupported") || message.contains("Bogus input colorspace")
            || message.contains("precision") {
            return .unsupported(file: name, reason: "JPEG: \(message)")
        }
        // A file cut short lacks the final EOI marker; libjpeg then reports either "Premature end" or
        // whatever it tripped over first, so both count as truncation.
        if message.contains("Premature end") || !endsWithEOI(bytes) {
            return .truncated(file: name, detail: "JPEG: \(message)")
        }
        return .corrupt(file: name, detail: "JPEG: \(message)")
    }

    private static func lastMessage(_ handle: tjhandle?) -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown TurboJPEG error" }
        return String(cString: text)
    }

    /// Whether the data ends with the EOI marker (ignoring zero padding some writers append).
    static func endsWithEOI(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var end = bytes.count
        while end > 0 && bytes[end - 1] == 0 { end -= 1 }
        return end >= 2 && bytes[end - 2] == 0xFF && bytes[end - 1] == 0xD9
    }

    /// Pillow: "CMYK;I" unpacking inverts every sample, then cmyk2rgb with MULDIV255 rounding.
    static func convertInvertedCMYKToRGB(_ cmyk: UnsafeBufferPointer<UInt8>, into rgb: UnsafeMutableBufferPointer<UInt8>,
                                         pixelCount: Int) {
        @inline(__always) func mulDiv255(_ a: Int32, _ b: Int32) -> Int32 {
            let t = a &* b &+ 128
            return ((t >> 8) &+ t) >> 8
        }
        for pixel in 0..<pixelCount {
            let source = pixel * 4, target = pixel * 3
            let notK = Int32(cmyk[source + 3])  // Pillow's nk = 255 - K, with K = 255 - stored
            for channel in 0..<3 {
                let ink = 255 &- Int32(cmyk[source + channel])
                rgb[target + channel] = UInt8(truncatingIfNeeded: max(0, min(255, notK &- mulDiv255(ink, notK))))
            }
        }
    }
}
