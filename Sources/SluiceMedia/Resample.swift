// Resizing that reproduces Pillow's Image.resize for 8-bit RGB (libImaging/Resample.c, unchanged in its
// essentials from Pillow 4 to 11): a separable convolution whose filter support is widened by the
// downscale factor (so shrinking antialiases), coefficients computed in double, normalised to sum 1, then
// rounded to 22-bit fixed point; a horizontal pass over just the source rows the vertical pass needs, with
// the intermediate rounded and clipped to uint8, then a vertical pass. Pillow's resize() only takes the
// `reduce()` shortcut when `reducing_gap` is given, which its default (None) is not, so neither does this.

import SluiceTensor

/// The resampling filters, as Pillow defines them.
public enum ResampleFilter: String, Sendable, CaseIterable {
    /// Triangle filter, support 1 (Pillow's BILINEAR; torchvision's default for PIL images).
    case bilinear
    /// Keys cubic with a = -0.5, support 2 (Pillow's BICUBIC; Image.resize's default).
    case bicubic

    var support: Double { self == .bilinear ? 1 : 2 }

    @inline(__always) func weight(_ distance: Double) -> Double {
        // Same expressions, in the same order, as Resample.c, so the doubles round identically.
        let x = distance < 0 ? -distance : distance
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

/// For each output position along one axis: the first input index, the number of taps, and the taps as
/// fixed-point weights (22 fractional bits), `kernelSize` slots per output position.
struct ResampleCoefficients: Sendable {
    static let precisionBits = 22  // Pillow: 32 - 8 - 2 (8-bit values, 2 bits of headroom for lobes)

    let kernelSize: Int
    let starts: [Int]
    let counts: [Int]
    let weights: [Int32]

    init(inputSize: Int, outputSize: Int, filter: ResampleFilter) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        let inverseFilterScale = 1 / filterScale
        var starts = [Int](repeating: 0, count: outputSize)
        var counts = [Int](repeating: 0, count: outputSize)
        var weights = [Int32](repeating: 0, count: outputSize * kernelSize)
        var taps = [Double](repeating: 0, count: kernelSize)
        let one = Double(1 << Self.precisionBits)
        for output in 0..<outputSize {
            let center = (Double(output) + 0.5) * scale
            // (int) casts in C truncate toward zero; so does Int(_: Double).
            let first = max(0, Int(center - support + 0.5))
            let count = min(inputSize, Int(center + support + 0.5)) - first
            var sum = 0.0
            for tap in 0..<count {
                let weight = filter.weight((Double(tap + first) - center + 0.5) * inverseFilterScale)
                taps[tap] = weight
                sum += weight
            }
            for tap in 0..<count {
                let normalised = sum != 0 ? taps[tap] / sum : taps[tap]
                weights[output * kernelSize + tap] = normalised < 0
                    ? Int32(-0.5 + normalised * one) : Int32(0.5 + normalised * one)
            }
            starts[output] = first
            counts[output] = max(0, count)
        }
        self.kernelSize = kernelSize
        self.starts = starts
        self.counts = counts
        self.weights = weights
    }
}

/// Pillow's clip8: drop the fraction bits (arithmetic shift, i.e. floor), clamp to 0...255.
@inline(__always) private func clip8(_ accumulator: Int32) -> UInt8 {
    let value = accumulator >> Int32(ResampleCoefficients.precisionBits)
    return value < 0 ? 0 : (value > 255 ? 255 : UInt8(truncatingIfNeeded: value))
}

private let roundingHalf = Int32(1) << Int32(ResampleCoefficients.precisionBits - 1)

extension RGBImage {
    /// Resized to `width` x `height` exactly as Pillow's `Image.resize((width, height), filter)` does for an
    /// RGB image. Rows are split across `Parallel.threads`.
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResampleFilter = .bicubic) -> RGBImage {
        precondition(newWidth > 0 && newHeight > 0, "resize to \(newWidth)x\(newHeight)")
        precondition(width > 0 && height > 0, "cannot resize an empty image")
        if newWidth == width && newHeight == height { return self }

        let vertical = ResampleCoefficients(inputSize: height, outputSize: newHeight, filter: filter)
        // The horizontal pass only produces the source rows the vertical pass reads.
        let firstRow = vertical.starts[0]
        let lastRow = vertical.starts[newHeight - 1] + vertical.counts[newHeight - 1]

        if newWidth == width {
            return Self.resampleVertically(pixels, rowLength: width * 3, rowOffset: 0,
                                           coefficients: vertical, outputWidth: width, outputHeight: newHeight)
        }
        let horizontal = ResampleCoefficients(inputSize: width, outputSize: newWidth, filter: filter)
        if newHeight == height {
            return Self.resampleHorizontally(pixels, inputWidth: width, rows: 0..<height, coefficients: horizontal)
        }
        let intermediate = Self.resampleHorizontally(pixels, inputWidth: width, rows: firstRow..<lastRow,
                                                     coefficients: horizontal)
        return Self.resampleVertically(intermediate.pixels, rowLength: newWidth * 3, rowOffset: firstRow,
                                       coefficients: vertical, outputWidth: newWidth, outputHeight: newHeight)
    }

    /// Horizontal pass over source `rows`: output width = coefficients' output count, height = rows.count.
    private static func resampleHorizontally(_ source: [UInt8], inputWidth: Int, rows: Range<Int>,
                                             coefficients: ResampleCoefficients) -> RGBImage {
        let outputWidth = coefficients.starts.count
        let kernelSize = coefficients.kernelSize
        return RGBImage(width: outputWidth, height: rows.count) { output in
            let target = UnsafeSendable(output.baseAddress!)
            source.withUnsafeBufferPointer { sourceBuffer in
                let input = UnsafeSendable(sourceBuffer.baseAddress!)
                coefficients.weights.withUnsafeBufferPointer { weightBuffer in
                    let weights = UnsafeSendable(weightBuffer.baseAddress!)
                    let starts = coefficients.starts, counts = coefficients.counts
                    Parallel.forEachChunk(rows.count, minChunk: max(1, 65_536 / max(1, outputWidth * kernelSize))) { chunk in
                        for row in chunk {
                            let inputRow = input.value + (rows.lowerBound + row) * inputWidth * 3
                            var out = target.value + row * outputWidth * 3
                            for column in 0..<outputWidth {
                                let k = weights.value + column * kernelSize
                                var p = inputRow + starts[column] * 3
                                var red = roundingHalf, green = roundingHalf, blue = roundingHalf
                                for tap in 0..<counts[column] {
                                    let weight = k[tap]
                                    red &+= Int32(p[0]) &* weight
                                    green &+= Int32(p[1]) &* weight
                                    blue &+= Int32(p[2]) &* weight
                                    p += 3
                                }
                                out[0] = clip8(red)
                                out[1] = clip8(green)
                                out[2] = clip8(blue)
                                out += 3
                            }
                        }
                    }
                }
            }
        }
    }

    /// Vertical pass: output row `r` mixes source rows `starts[r] - rowOffset ...` of `source`.
    private static func resampleVertically(_ source: [UInt8], rowLength: Int, rowOffset: Int,
                                           coefficients: ResampleCoefficients,
                                           outputWidth: Int, outputHeight: Int) -> RGBImage {
        let kernelSize = coefficients.kernelSize
        // Accumulate a block of a row at a time so the Int32 sums stay in L1 while the taps stream past.
        let blockLength = min(rowLength, 3 * 1024)
        return RGBImage(width: outputWidth, height: outputHeight) { output in
            let target = UnsafeSendable(output.baseAddress!)
            source.withUnsafeBufferPointer { sourceBuffer in
                let input = UnsafeSendable(sourceBuffer.baseAddress!)
                coefficients.weights.withUnsafeBufferPointer { weightBuffer in
                    let weights = UnsafeSendable(weightBuffer.baseAddress!)
                    let starts = coefficients.starts, counts = coefficients.counts
                    Parallel.forEachChunk(outputHeight, minChunk: max(1, 65_536 / max(1, rowLength * kernelSize))) { chunk in
                        let sums = UnsafeMutablePointer<Int32>.allocate(capacity: blockLength)
                        defer { sums.deallocate() }
                        for row in chunk {
                            let k = weights.value + row * kernelSize
                            let firstRow = input.value + (starts[row] - rowOffset) * rowLength
                            let out = target.value + row * rowLength
                            var blockStart = 0
                            while blockStart < rowLength {
                                let length = min(blockLength, rowLength - blockStart)
                                sums.initialize(repeating: roundingHalf, count: length)
                                for tap in 0..<counts[row] {
                                    let weight = k[tap]
                                    let line = firstRow + tap * rowLength + blockStart
                                    for i in 0..<length { sums[i] &+= Int32(line[i]) &* weight }
                                }
                                for i in 0..<length { out[blockStart + i] = clip8(sums[i]) }
                                blockStart += length
                            }
                        }
                    }
                }
            }
        }
    }
}
