// Overlays for annotated video output: text labels drawn with a tiny built-in 5x7 bitmap font, and mask
// blending. Pure Swift on RGBImage, no FFmpeg.

/// An 8-bit RGB colour.
public struct RGBColor: Sendable, Equatable, Hashable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
    public static let white = RGBColor(255, 255, 255)
    public static let black = RGBColor(0, 0, 0)
    public static let red = RGBColor(230, 25, 75)
    public static let green = RGBColor(60, 180, 75)
    public static let blue = RGBColor(0, 130, 200)
    public static let yellow = RGBColor(255, 225, 25)
}

/// A 5x7 bitmap font: ASCII digits, letters (lower case drawn as upper case) and common punctuation; other
/// characters draw as a hollow box. Each glyph is 7 rows of 5 bits, most significant bit leftmost.
enum BitmapFont {
    static let glyphWidth = 5, glyphHeight = 7
    static let advance = 6, lineHeight = 8

    static let glyphs: [Character: [UInt8]] = [
        "0": [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        "1": [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        "2": [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        "3": [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        "4": [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        "5": [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        "6": [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        "7": [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        "8": [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        "9": [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        "A": [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        "B": [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        "C": [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        "D": [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        "E": [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        "F": [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        "G": [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        "H": [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        "I": [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        "J": [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        "K": [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        "L": [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        "M": [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        "N": [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        "O": [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        "P": [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        "Q": [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        "R": [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        "S": [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        "T": [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        "U": [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        "V": [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        "W": [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        "X": [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        "Y": [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
        "Z": [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        " ": [0, 0, 0, 0, 0, 0, 0],
        ".": [0, 0, 0, 0, 0, 0b01100, 0b01100],
        ",": [0, 0, 0, 0, 0b01100, 0b00100, 0b01000],
        ":": [0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0],
        ";": [0, 0b01100, 0b01100, 0, 0b01100, 0b00100, 0b01000],
        "-": [0, 0, 0, 0b11111, 0, 0, 0],
        "_": [0, 0, 0, 0, 0, 0, 0b11111],
        "/": [0, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0],
        "%": [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
        "(": [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ")": [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        "[": [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110],
        "]": [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110],
        "=": [0, 0, 0b11111, 0, 0b11111, 0, 0],
        "+": [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0],
        "*": [0, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0],
        "!": [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0, 0b00100],
        "?": [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100],
        "#": [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010],
        "'": [0b00100, 0b00100, 0b01000, 0, 0, 0, 0],
        "\"": [0b01010, 0b01010, 0, 0, 0, 0, 0],
        "<": [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010],
        ">": [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000],
    ]
    static let unknown: [UInt8] = [0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111]

    static func glyph(_ character: Character) -> [UInt8] {
        if let glyph = glyphs[character] { return glyph }
        if let upper = character.uppercased().first, let glyph = glyphs[upper] { return glyph }
        return unknown
    }
}

extension RGBImage {
    /// Width and height in pixels of `text` drawn by `drawLabel` (padding included).
    public static func labelSize(_ text: String, scale: Int = 2) -> (width: Int, height: Int) {
        let count = max(text.count, 1)
        return ((count * BitmapFont.advance + 1) * scale, (BitmapFont.lineHeight + 1) * scale)
    }

    /// Draws `text` on one line with its top-left corner at (x, y): glyphs in `color`, each font pixel a
    /// `scale`×`scale` block, on a filled `background` box (nil: transparent). Clipped at the image edges.
    public mutating func drawLabel(_ text: String, x: Int, y: Int, scale: Int = 2, color: RGBColor = .white,
                                   background: RGBColor? = .black) {
        let scale = max(scale, 1)
        if let background {
            let (boxWidth, boxHeight) = RGBImage.labelSize(text, scale: scale)
            fillRectangle(x: x, y: y, width: boxWidth, height: boxHeight, color: background)
        }
        var originX = x + scale
        let originY = y + scale
        for character in text {
            let glyph = BitmapFont.glyph(character)
            for row in 0..<BitmapFont.glyphHeight {
                let bits = glyph[row]
                for column in 0..<BitmapFont.glyphWidth where bits & (1 << (4 - column)) != 0 {
                    fillRectangle(x: originX + column * scale, y: originY + row * scale, width: scale, height: scale,
                                  color: color)
                }
            }
            originX += BitmapFont.advance * scale
        }
    }

    /// Fills a rectangle, clipped to the image.
    public mutating func fillRectangle(x: Int, y: Int, width rectWidth: Int, height rectHeight: Int, color: RGBColor) {
        let x0 = max(x, 0), x1 = min(x + rectWidth, width)
        let y0 = max(y, 0), y1 = min(y + rectHeight, height)
        guard x0 < x1, y0 < y1 else { return }
        let rowLength = width
        pixels.withUnsafeMutableBufferPointer { buffer in
            for row in y0..<y1 {
                var offset = (row * rowLength + x0) * 3
                for _ in x0..<x1 {
                    buffer[offset] = color.r
                    buffer[offset + 1] = color.g
                    buffer[offset + 2] = color.b
                    offset += 3
                }
            }
        }
    }

    /// Draws a rectangle outline `thickness` pixels wide (boxes around detections).
    public mutating func strokeRectangle(x: Int, y: Int, width rectWidth: Int, height rectHeight: Int,
                                         color: RGBColor, thickness: Int = 2) {
        fillRectangle(x: x, y: y, width: rectWidth, height: thickness, color: color)
        fillRectangle(x: x, y: y + rectHeight - thickness, width: rectWidth, height: thickness, color: color)
        fillRectangle(x: x, y: y, width: thickness, height: rectHeight, color: color)
        fillRectangle(x: x + rectWidth - thickness, y: y, width: thickness, height: rectHeight, color: color)
    }

    /// Blends `color` over the pixels where `mask` (width·height coverage values, 0 = untouched,
    /// 255 = full) is set: out = in + (color − in) · opacity · mask/255, rounded.
    public mutating func blendMask(_ mask: [UInt8], color: RGBColor, opacity: Double = 0.5) {
        precondition(mask.count == width * height,
                     "a \(width)x\(height) mask needs \(width * height) values, got \(mask.count)")
        let weight = Int((min(max(opacity, 0), 1) * 256).rounded())  // 0...256
        let target = [Int(color.r), Int(color.g), Int(color.b)]
        pixels.withUnsafeMutableBufferPointer { buffer in
            for index in 0..<mask.count where mask[index] != 0 {
                let alpha = weight * Int(mask[index])  // 0...65280, scale 256·255
                for channel in 0..<3 {
                    let value = Int(buffer[index * 3 + channel])
                    let delta = (target[channel] - value) * alpha
                    let blended = value + (delta >= 0 ? (delta + 32640) / 65280 : -((32640 - delta) / 65280))
                    buffer[index * 3 + channel] = UInt8(clamping: blended)
                }
            }
        }
    }

    /// `blendMask` with a boolean mask.
    public mutating func blendMask(_ mask: [Bool], color: RGBColor, opacity: Double = 0.5) {
        blendMask(mask.map { $0 ? 255 : 0 }, color: color, opacity: opacity)
    }
}
