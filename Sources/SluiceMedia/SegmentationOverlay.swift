// Pictures a person can check a segmentation with: the image blended with its class colours, and a
// legend naming the classes that cover the most of it.

extension RGBImage {
    /// mmseg `show_result`: every pixel becomes img·(1 − opacity) + colour·opacity, truncated to 8 bits,
    /// with the colour of its class (`classes` row-major, one per pixel). With `keepClass`, pixels of
    /// that class (a background) keep the image, as Cutie draws video object masks.
    public mutating func blendClasses(_ classes: [UInt16], colors: (Int) -> RGBColor, opacity: Double = 0.5,
                                      keepClass: UInt16? = nil) {
        precondition(classes.count == width * height, "a \(width)x\(height) class map needs \(width * height) values")
        var table: [Int: RGBColor] = [:]
        let keep = 1 - opacity
        pixels.withUnsafeMutableBufferPointer { buffer in
            for (index, value) in classes.enumerated() where value != keepClass {
                let color: RGBColor
                if let known = table[Int(value)] { color = known } else { color = colors(Int(value)); table[Int(value)] = color }
                let base = index * 3
                buffer[base] = UInt8(Double(buffer[base]) * keep + Double(color.r) * opacity)
                buffer[base + 1] = UInt8(Double(buffer[base + 1]) * keep + Double(color.g) * opacity)
                buffer[base + 2] = UInt8(Double(buffer[base + 2]) * keep + Double(color.b) * opacity)
            }
        }
    }

    /// A legend in the top-left corner: one line per entry, a colour swatch then the text, on black.
    public mutating func drawLegend(_ entries: [(text: String, color: RGBColor)], scale: Int = 2) {
        let line = RGBImage.labelSize("x", scale: scale).height
        for (row, entry) in entries.enumerated() {
            let y = row * (line + scale)
            fillRectangle(x: 0, y: y, width: line, height: line, color: .black)
            fillRectangle(x: scale, y: y + scale, width: line - 2 * scale, height: line - 2 * scale, color: entry.color)
            drawLabel(entry.text, x: line, y: y, scale: scale)
        }
    }
}
