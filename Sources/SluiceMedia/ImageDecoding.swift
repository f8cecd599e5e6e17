// Image decoding entry point: reads a file or takes bytes, recognises the format by its magic bytes (never
// by the file name), hands JPEG to turbojpeg and PNG to libpng, and applies the EXIF orientation, so the
// result equals Pillow's `ImageOps.exif_transpose(Image.open(p)).convert("RGB")`.

#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Foundation

/// Why an image could not be decoded. Every case names the file; `description` is one line.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened or read (missing, permission denied, a directory, ...).
    case unreadable(file: String, reason: String)
    /// The file has no bytes.
    case empty(file: String)
    /// The leading bytes match no image format known to Sluice (shown in hex).
    case unknownFormat(file: String, leadingBytes: String)
    /// A recognised format or feature Sluice does not decode (GIF, 12-bit JPEG, ...).
    case unsupported(file: String, reason: String)
    /// The data ends before the image does.
    case truncated(file: String, detail: String)
    /// The data is damaged (bad checksum, invalid structure).
    case corrupt(file: String, detail: String)
    /// The image is larger than the decoder's pixel limit (decompression-bomb guard).
    case tooLarge(file: String, width: Int, height: Int, maxPixels: Int)

    public var file: String {
        switch self {
        case .unreadable(let file, _), .empty(let file), .unknownFormat(let file, _),
             .unsupported(let file, _), .truncated(let file, _), .corrupt(let file, _),
             .tooLarge(let file, _, _, _):
            return file
        }
    }

    public var description: String {
        let text: String
        switch self {
        case .unreadable(let file, let reason): text = "\(file): cannot read file: \(reason)"
        case .empty(let file): text = "\(file): file is empty"
        case .unknownFormat(let file, let bytes): text = "\(file): not a JPEG or PNG image (starts with \(bytes))"
        case .unsupported(let file, let reason): text = "\(file): unsupported image: \(reason)"
        case .truncated(let file, let detail): text = "\(file): truncated image: \(detail)"
        case .corrupt(let file, let detail): text = "\(file): corrupt image: \(detail)"
        case .tooLarge(let file, let width, let height, let maxPixels):
            text = "\(file): image is \(width)x\(height) pixels, more than the limit of \(maxPixels)"
        }
        // Library messages may carry line breaks; a report line must not.
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// The formats Sluice recognises by their magic bytes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case jpeg = "JPEG", png = "PNG"
    // Recognised only to say "unsupported" instead of "unknown".
    case gif = "GIF", bmp = "BMP", webp = "WebP", tiff = "TIFF", heif = "HEIF/AVIF", jpeg2000 = "JPEG 2000"

    public var isDecodable: Bool { self == .jpeg || self == .png }

    /// The format whose signature `bytes` starts with, or nil.
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        func starts(with signature: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + signature.count else { return false }
            for (index, byte) in signature.enumerated() where bytes[offset + index] != byte { return false }
            return true
        }
        if starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if starts(with: Array("GIF87a".utf8)) || starts(with: Array("GIF89a".utf8)) { return .gif }
        if starts(with: Array("BM".utf8)) && bytes.count >= 26 { return .bmp }
        if starts(with: Array("RIFF".utf8)) && starts(with: Array("WEBP".utf8), at: 8) { return .webp }
        if starts(with: [0x49, 0x49, 0x2A, 0x00]) || starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return .tiff }
        if starts(with: Array("ftyp".utf8), at: 4), bytes.count >= 12 {
            // ISO media files share "ftyp"; only the HEIF/AVIF brands are images (an MP4 is not).
            let brand = String(decoding: bytes[8..<12], as: UTF8.self)
            if ["heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1", "avif", "avis"].contains(brand) {
                return .heif
            }
        }
        if starts(with: [0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]) || starts(with: [0xFF, 0x4F, 0xFF, 0x51]) {
            return .jpeg2000
        }
        return nil
    }

    public static func sniff(_ data: Data) -> ImageFormat? {
        data.withUnsafeBytes { sniff($0) }
    }
}

/// Decodes JPEG and PNG files to 8-bit RGB. A value type with no shared state: use one from any thread.
public struct ImageDecoder: Sendable {
    /// Rotate/flip by the EXIF orientation tag (JPEG APP1 Exif, PNG eXIf), as Pillow's exif_transpose.
    public var appliesEXIFOrientation: Bool
    /// Images with more pixels are refused before any pixel memory is allocated.
    public var maxPixels: Int
    /// Files larger than this are refused before they are read.
    public var maxFileBytes: Int

    public init(appliesEXIFOrientation: Bool = true, maxPixels: Int = 1 << 28, maxFileBytes: Int = 1 << 30) {
        self.appliesEXIFOrientation = appliesEXIFOrientation
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
    }

    /// Reads and decodes the file at `url`; errors name `url.path`.
    public func decode(contentsOf url: URL) throws(ImageError) -> RGBImage {
        let name = url.path
        let bytes = try readFile(atPath: name, limit: maxFileBytes)
        return try bytes.withUnsafeBytes { buffer in
            Result { () throws(ImageError) in try decode(buffer, name: name) }
        }.get()
    }

    /// Decodes an in-memory file; `name` is what errors call it.
    public func decode(_ data: Data, name: String = "<memory>") throws(ImageError) -> RGBImage {
        try data.withUnsafeBytes { buffer in
            Result { () throws(ImageError) in try decode(buffer, name: name) }
        }.get()
    }

    /// Decodes the bytes of a whole image file.
    public func decode(_ bytes: UnsafeRawBufferPointer, name: String) throws(ImageError) -> RGBImage {
        if bytes.isEmpty { throw .empty(file: name) }
        guard let format = ImageFormat.sniff(bytes) else {
            let shown = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw .unknownFormat(file: name, leadingBytes: shown)
        }
        var orientation = EXIFOrientation.up
        var image: RGBImage
        switch format {
        case .jpeg:
            image = try JPEGDecoding.decode(bytes, name: name, maxPixels: maxPixels)
            if appliesEXIFOrientation { orientation = EXIF.jpegOrientation(bytes) ?? .up }
        case .png:
            let decoded = try PNGDecoding.decode(bytes, name: name, maxPixels: maxPixels)
            image = decoded.image
            if appliesEXIFOrientation, let exif = decoded.exifRange {
                orientation = EXIF.orientation(tiff: UnsafeRawBufferPointer(rebasing: bytes[exif])) ?? .up
            }
        default:
            throw .unsupported(file: name, reason: "\(format.rawValue) files are not decoded (only JPEG and PNG)")
        }
        if orientation != .up { image = image.oriented(orientation) }
        return image
    }
}

/// Reads a whole regular file with POSIX calls, so the error says exactly why it failed (errno), a FIFO or
/// device cannot block the reader, and a huge file is refused before allocation.
func readFile(atPath path: String, limit: Int) throws(ImageError) -> [UInt8] {
    func failure(_ code: Int32) -> ImageError {
        .unreadable(file: path, reason: String(cString: strerror(code)))
    }
    let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    if descriptor < 0 { throw failure(errno) }
    defer { close(descriptor) }
    var info = stat()
    if fstat(descriptor, &info) != 0 { throw failure(errno) }
    let kind = info.st_mode & S_IFMT
    if kind == S_IFDIR { throw .unreadable(file: path, reason: "is a directory") }
    if kind != S_IFREG { throw .unreadable(file: path, reason: "not a regular file") }
    let size = Int(info.st_size)
    if size == 0 { throw .empty(file: path) }
    if size > limit { throw .unsupported(file: path, reason: "file is \(size) bytes, more than the limit of \(limit)") }

    var bytes = [UInt8](repeating: 0, count: size)
    var filled = 0
    var readError: Int32 = 0
    bytes.withUnsafeMutableBytes { buffer in
        while filled < size {
            let count = read(descriptor, buffer.baseAddress! + filled, size - filled)
            if count < 0 {
                if errno == EINTR { continue }
                readError = errno
                return
            }
            if count == 0 { break }  // the file shrank while we read it
            filled += count
        }
    }
    if readError != 0 { throw failure(readError) }
    if filled == 0 { throw .empty(file: path) }
    if filled < size { bytes.removeSubrange(filled...) }
    return bytes
}
