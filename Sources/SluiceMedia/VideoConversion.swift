// VideoReader: decoded AVFrames to upright RGB images through libswscale (one cached scaler).

import CFFmpeg
import Foundation

extension VideoReader {
    /// Converts an AVFrame to an upright RGB image of the requested size.
    func convert(_ framePointer: UnsafeMutablePointer<AVFrame>) throws(VideoError) -> RGBImage {
        let frame = framePointer.pointee
        let sourceWidth = Int(frame.width), sourceHeight = Int(frame.height)
        try checkFrameSize(width: sourceWidth, height: sourceHeight)
        let rotation = info.rotation
        let turned = rotation == 90 || rotation == 270
        var outWidth: Int, outHeight: Int
        switch options.size {
        case .none: return RGBImage(width: 0, height: 0, pixels: [])
        case .native: (outWidth, outHeight) = turned ? (sourceHeight, sourceWidth) : (sourceWidth, sourceHeight)
        case .shorterSide(let side):
            (outWidth, outHeight) = RGBImage.shorterSideSize(width: turned ? sourceHeight : sourceWidth,
                                                             height: turned ? sourceWidth : sourceHeight, side)
        case .size(let w, let h): (outWidth, outHeight) = (w, h)
        }
        // Scale to the pre-rotation size, then turn.
        let (scaledWidth, scaledHeight) = turned ? (outHeight, outWidth) : (outWidth, outHeight)
        let sourceFormat = AVPixelFormat(rawValue: frame.format)
        // One context per (geometry, format, colour matrix, range), made here rather than through
        // sws_getCachedContext: that compares against the context's own flags, which swscale changes at
        // init for odd output widths, so it would rebuild the context on every frame, sometimes at the
        // same address, where a pointer check then skipped the colour details (seen as frames off by up
        // to 11 grey levels when two readers ran at once).
        let fullRange: Int32 = frame.color_range == AVCOL_RANGE_JPEG ? 1 : 0
        let scalerKey = [sourceWidth, sourceHeight, Int(frame.format), scaledWidth, scaledHeight,
                         Int(frame.colorspace.rawValue), Int(fullRange)]
        if scaler == nil || scalerKey != self.scalerKey {
            if let scaler { sws_freeContext(scaler) }
            scaler = sws_getContext(Int32(sourceWidth), Int32(sourceHeight), sourceFormat,
                                    Int32(scaledWidth), Int32(scaledHeight), AV_PIX_FMT_RGB24,
                                    options.scaling.flags, nil, nil, nil)
            self.scalerKey = scalerKey
            guard let scaler else {
                let name = av_get_pix_fmt_name(sourceFormat).map { String(cString: $0) } ?? "\(frame.format)"
                throw .unsupportedCodec(file: path, codec: "pixel format \(name) (no swscale conversion to rgb24)")
            }
            // Colour matrix and range from the frame, as ffmpeg's scale filter does.
            _ = sws_setColorspaceDetails(scaler, sws_getCoefficients(Int32(frame.colorspace.rawValue)), fullRange,
                                         sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16)
        }
        let context = scaler!
        // libswscale's SIMD output may store a little past the last row: give the array spare capacity.
        let count = scaledWidth * scaledHeight * 3
        let pixels = [UInt8](unsafeUninitializedCapacity: count + 256) { buffer, initialized in
            var destination: [UnsafeMutablePointer<UInt8>?] = [buffer.baseAddress, nil, nil, nil]
            var strides: [Int32] = [Int32(scaledWidth * 3), 0, 0, 0]
            var source = framePointer.pointee.data
            var lines = framePointer.pointee.linesize
            withUnsafePointer(to: &source) { dataTuple in
                withUnsafePointer(to: &lines) { lineTuple in
                    let planes = UnsafeRawPointer(dataTuple).assumingMemoryBound(to: UnsafePointer<UInt8>?.self)
                    let lineSizes = UnsafeRawPointer(lineTuple).assumingMemoryBound(to: Int32.self)
                    _ = sws_scale(context, planes, lineSizes, 0, Int32(sourceHeight), &destination, &strides)
                }
            }
            initialized = count
        }
        var image = RGBImage(width: scaledWidth, height: scaledHeight, pixels: pixels)
        switch rotation {
        case 90: image = image.oriented(.rotatedClockwise)
        case 180: image = image.oriented(.rotated180)
        case 270: image = image.oriented(.rotatedCounterClockwise)
        default: break
        }
        return image
    }
}
