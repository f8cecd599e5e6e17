// An 8-bit RGB image: what every decoder produces and every preprocessing step consumes.

/// Interleaved 8-bit RGB, rows top to bottom, no padding: `pixels[(y * width + x) * 3 + channel]`.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "negative size \(width)x\(height)")
        precondition(pixels.count == width * height * 3,
                     "a \(width)x\(height) RGB image needs \(width * height * 3) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image whose bytes the caller writes completely through `fill` (no zeroing pass).
    init(width: Int, height: Int, fill: (UnsafeMutableBufferPointer<UInt8>) throws -> Void) rethrows {
        let count = width * height * 3
        self.width = width
        self.height = height
        self.pixels = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try fill(buffer)
            initialized = count
        }
    }

    /// Bytes per row.
    public var rowStride: Int { width * 3 }

    /// The (r, g, b) value at column `x`, row `y`.
    public subscript(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        let offset = (y * width + x) * 3
        return (pixels[offset], pixels[offset + 1], pixels[offset + 2])
    }
}
