// Writing class masks as PNG through libpng's simplified API (png_image_write_to_file), which keeps
// libpng's setjmp error handling inside libpng. A mask with at most 256 classes is a palette PNG (one
// index per pixel, colours from the palette), which viewers show in colour and tools read as indices;
// more classes give 16-bit greyscale.

import CPNG
import Foundation
import SluiceTensor

public enum PNGEncoding {
    public enum Failure: Error, CustomStringConvertible {
        case write(path: String, reason: String)
        public var description: String {
            switch self { case .write(let path, let reason): return "\(path): cannot write PNG: \(reason)" }
        }
    }

    /// Writes `indices` (row-major, width·height values) as a PNG at `path`, replacing it atomically
    /// (a temporary file in the same folder, then rename).
    public static func writeIndexed(path: String, width: Int, height: Int, indices: [UInt16],
                                    palette: [RGBColor] = Palette.voc) throws {
        precondition(indices.count == width * height, "\(width)x\(height) mask with \(indices.count) values")
        let file = AtomicFile(replacing: URL(fileURLWithPath: path))
        let temporary = file.temporary.path
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        let ok: Int32
        if (indices.max() ?? 0) < 256 {
            let bytes = indices.map { UInt8($0) }
            var colours = [UInt8](repeating: 0, count: 256 * 3)
            for (i, colour) in palette.prefix(256).enumerated() {
                colours[3 * i] = colour.r; colours[3 * i + 1] = colour.g; colours[3 * i + 2] = colour.b
            }
            image.format = png_uint_32(PNG_FORMAT_RGB | PNG_FORMAT_FLAG_COLORMAP)
            image.colormap_entries = png_uint_32(min(256, max(palette.count, 1)))
            ok = png_image_write_to_file(&image, temporary, 0, bytes, png_int_32(width), colours)
        } else {
            // 16-bit "linear" grey: libpng stores the samples unchanged (big-endian on disk).
            image.format = png_uint_32(PNG_FORMAT_LINEAR_Y)
            ok = png_image_write_to_file(&image, temporary, 0, indices, png_int_32(width), nil)
        }
        if ok == 0 {
            let reason = withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            png_image_free(&image)
            file.discard()
            throw Failure.write(path: path, reason: reason)
        }
        try file.commit()
    }

    /// Writes an RGB image as an 8-bit PNG at `path`, replacing it atomically.
    public static func writeRGB(_ picture: RGBImage, path: String) throws {
        let file = AtomicFile(replacing: URL(fileURLWithPath: path))
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(picture.width)
        image.height = png_uint_32(picture.height)
        image.format = png_uint_32(PNG_FORMAT_RGB)
        let ok = png_image_write_to_file(&image, file.temporary.path, 0, picture.pixels, png_int_32(picture.rowStride), nil)
        if ok == 0 {
            let reason = withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            png_image_free(&image)
            file.discard()
            throw Failure.write(path: path, reason: reason)
        }
        try file.commit()
    }
}

public enum Palette {
    /// The PASCAL VOC colour map (also DAVIS's): 256 colours, 0 black.
    public static let voc: [RGBColor] = (0..<256).map { index in
        var r: UInt8 = 0, g: UInt8 = 0, b: UInt8 = 0
        var c = index
        for bit in 0..<8 {
            r |= UInt8((c >> 0) & 1) << (7 - bit)
            g |= UInt8((c >> 1) & 1) << (7 - bit)
            b |= UInt8((c >> 2) & 1) << (7 - bit)
            c >>= 3
        }
        return RGBColor(r, g, b)
    }
}
