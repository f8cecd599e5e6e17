// Model-input preprocessing as torchvision does it on PIL images: Resize(shorter side), CenterCrop, and
// per-channel normalisation into an NHWC float32 tensor (Sluice is channels-last throughout).

import SluiceTensor

/// Per-channel `(pixel - mean[c]) / std[c]`, with pixels in 0...255.
public struct PixelNormalization: Sendable, Equatable {
    public let mean: [Float]
    public let std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == 3 && std.count == 3, "normalisation needs 3 means and 3 stds")
        precondition(std.allSatisfy { $0 != 0 }, "std must not be 0")
        self.mean = mean
        self.std = std
    }

    /// torchvision's ImageNet constants, scaled to 0...255 pixels.
    public static let imageNet = PixelNormalization(
        mean: [0.485 * 255, 0.456 * 255, 0.406 * 255], std: [0.229 * 255, 0.224 * 255, 0.225 * 255])
    /// EfficientNet-Lite (TF): (pixel - 127) / 128.
    public static let efficientNetLite = PixelNormalization(mean: [127, 127, 127], std: [128, 128, 128])
    /// Plain 0...255 floats.
    public static let none = PixelNormalization(mean: [0, 0, 0], std: [1, 1, 1])

    /// All 3 x 256 possible outputs, computed with the same float ops as the formula, so a lookup is exact.
    func lookupTable() -> [Float] {
        var table = [Float](repeating: 0, count: 3 * 256)
        for channel in 0..<3 {
            for value in 0..<256 { table[channel * 256 + value] = (Float(value) - mean[channel]) / std[channel] }
        }
        return table
    }
}

extension RGBImage {
    /// The size torchvision's `Resize(size)` gives this image: the shorter side becomes `size`, the longer
    /// `int(size * long / short)` (truncated).
    public func shorterSideSize(_ size: Int) -> (width: Int, height: Int) {
        Self.shorterSideSize(width: width, height: height, size)
    }

    /// The same for any width × height (a video frame before it is decoded).
    public static func shorterSideSize(width: Int, height: Int, _ size: Int) -> (width: Int, height: Int) {
        precondition(size > 0, "resize target \(size)")
        let short = min(width, height), long = max(width, height)
        let newLong = Int(Double(size * long) / Double(short))
        return width <= height ? (size, newLong) : (newLong, size)
    }

    /// torchvision `transforms.Resize(size, interpolation)` on a PIL image. torchvision's default
    /// interpolation is bilinear; timm/EfficientNet recipes often use bicubic.
    public func resizeShorterSide(to size: Int, filter: ResampleFilter = .bilinear) -> RGBImage {
        let target = shorterSideSize(size)
        return resized(width: target.width, height: target.height, filter: filter)
    }

    /// torchvision `transforms.CenterCrop((height, width))`: offsets `int(round((h - th) / 2.0))` with
    /// Python's round-half-to-even; a crop larger than the image pads with black like torchvision does.
    public func centerCrop(height cropHeight: Int, width cropWidth: Int) -> RGBImage {
        precondition(cropHeight > 0 && cropWidth > 0, "crop to \(cropWidth)x\(cropHeight)")
        // torchvision pads (left/top get the smaller half), then crops the padded image.
        let padLeft = cropWidth > width ? (cropWidth - width) / 2 : 0
        let padTop = cropHeight > height ? (cropHeight - height) / 2 : 0
        let padRight = cropWidth > width ? (cropWidth - width + 1) / 2 : 0
        let padBottom = cropHeight > height ? (cropHeight - height + 1) / 2 : 0
        let paddedWidth = width + padLeft + padRight, paddedHeight = height + padTop + padBottom
        func offset(_ excess: Int) -> Int { Int((Double(excess) / 2.0).rounded(.toNearestOrEven)) }
        let left = offset(paddedWidth - cropWidth) - padLeft
        let top = offset(paddedHeight - cropHeight) - padTop
        return cropped(x: left, y: top, width: cropWidth, height: cropHeight)
    }

    /// Square `CenterCrop(size)`.
    public func centerCrop(_ size: Int) -> RGBImage { centerCrop(height: size, width: size) }

    /// The `width` x `height` region whose top-left corner is (x, y); parts outside the image are black
    /// (as Pillow's crop does).
    public func cropped(x: Int, y: Int, width cropWidth: Int, height cropHeight: Int) -> RGBImage {
        precondition(cropWidth >= 0 && cropHeight >= 0, "crop to \(cropWidth)x\(cropHeight)")
        if x == 0 && y == 0 && cropWidth == width && cropHeight == height { return self }
        let firstColumn = max(0, x), lastColumn = min(width, x + cropWidth)
        return RGBImage(width: cropWidth, height: cropHeight) { out in
            out.initialize(repeating: 0)
            guard firstColumn < lastColumn else { return }
            let length = (lastColumn - firstColumn) * 3
            pixels.withUnsafeBufferPointer { source in
                for row in 0..<cropHeight where (0..<height).contains(y + row) {
                    let from = ((y + row) * width + firstColumn) * 3
                    let to = (row * cropWidth + firstColumn - x) * 3
                    UnsafeMutableRawPointer(out.baseAddress! + to)
                        .copyMemory(from: source.baseAddress! + from, byteCount: length)
                }
            }
        }
    }

    /// A [1, height, width, 3] float32 tensor of `(pixel - mean[c]) / std[c]` (pixels 0...255).
    public func toTensor(mean: [Float], std: [Float]) -> Tensor {
        toTensor(PixelNormalization(mean: mean, std: std))
    }

    /// A [1, height, width, 3] float32 tensor normalised with `normalization`.
    public func toTensor(_ normalization: PixelNormalization) -> Tensor {
        Tensor(uninitialized: [1, height, width, 3]) { values in
            writeNormalized(into: values, normalization)
        }
    }

    /// Writes the normalised pixels into `batch[index]` of an [N, height, width, 3] tensor, in place (a
    /// uniquely referenced tensor's storage is not copied).
    public func write(into batch: inout Tensor, at index: Int, _ normalization: PixelNormalization) {
        precondition(batch.rank == 4 && Array(batch.shape[1...]) == [height, width, 3],
                     "batch of shape \(batch.shape) cannot hold a \(width)x\(height) RGB image")
        precondition((0..<batch.shape[0]).contains(index), "batch index \(index) outside 0..<\(batch.shape[0])")
        let slotSize = height * width * 3
        batch.data.withUnsafeMutableBufferPointer { all in
            writeNormalized(into: UnsafeMutableBufferPointer(rebasing: all[(index * slotSize)..<((index + 1) * slotSize)]),
                            normalization)
        }
    }

    /// Writes height * width * 3 normalised values (HWC order) to `destination`, e.g. one slot of a batch
    /// buffer that several threads fill at once.
    public func writeNormalized(into destination: UnsafeMutableBufferPointer<Float>, _ normalization: PixelNormalization) {
        precondition(destination.count == pixels.count,
                     "destination holds \(destination.count) values, the image has \(pixels.count)")
        let table = normalization.lookupTable()
        table.withUnsafeBufferPointer { lookup in
            pixels.withUnsafeBufferPointer { source in
                var index = 0
                let count = source.count
                while index < count {
                    destination[index] = lookup[Int(source[index])]
                    destination[index + 1] = lookup[256 + Int(source[index + 1])]
                    destination[index + 2] = lookup[512 + Int(source[index + 2])]
                    index += 3
                }
            }
        }
    }
}
