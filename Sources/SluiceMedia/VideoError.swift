// Typed errors for video reading and writing. Every case names the input (file path or URL) and, where
// FFmpeg reported something, carries its message (av_strerror); `description` is one line.

import CFFmpeg

public indirect enum VideoError: Error, CustomStringConvertible, Equatable, Sendable {
    /// FFmpeg could not open or recognise the input (missing file, unknown format, refused connection...).
    case cannotOpen(file: String, reason: String)
    /// The file has no bytes.
    case empty(file: String)
    /// The input opened but holds no video stream (audio only, or only an attached cover picture).
    case noVideoStream(file: String)
    /// No decoder (or encoder) for the codec in this FFmpeg build.
    case unsupportedCodec(file: String, codec: String)
    /// The stream is encrypted (CENC/DRM) and cannot be decoded without its key.
    case encrypted(file: String)
    /// A read blocked longer than the reader's deadline.
    case timeout(file: String, seconds: Double)
    /// Reading packets failed (I/O error, truncated or damaged container).
    case readFailed(file: String, reason: String)
    /// The data ends before the stream does (fewer packets than the container's index lists).
    case truncated(file: String, detail: String)
    /// The decoder rejected data (`count` times); the first message is kept.
    case corruptData(file: String, count: Int, firstMessage: String)
    /// Frames were decoded before `error` stopped or damaged the stream; they were delivered.
    case partial(decodedFrames: Int, error: VideoError)
    /// The frames are larger than the reader's pixel limit (`VideoReaderOptions.maxPixels`).
    case tooLarge(file: String, width: Int, height: Int, maxPixels: Int)
    /// A bad argument (sampling parameters, frame sizes, timestamps...).
    case invalidArgument(file: String, detail: String)
    /// Writing (encoding or muxing) failed.
    case writeFailed(file: String, reason: String)

    public var file: String {
        switch self {
        case .cannotOpen(let file, _), .empty(let file), .noVideoStream(let file), .unsupportedCodec(let file, _),
             .encrypted(let file), .timeout(let file, _), .readFailed(let file, _), .truncated(let file, _),
             .corruptData(let file, _, _), .tooLarge(let file, _, _, _), .invalidArgument(let file, _),
             .writeFailed(let file, _):
            return file
        case .partial(_, let error):
            return error.file
        }
    }

    /// The error without its `partial` wrapper.
    public var underlying: VideoError {
        if case .partial(_, let error) = self { return error.underlying }
        return self
    }

    public var description: String {
        let text: String
        switch self {
        case .cannotOpen(let file, let reason): text = "\(file): cannot open video: \(reason)"
        case .empty(let file): text = "\(file): file is empty"
        case .noVideoStream(let file): text = "\(file): no video stream (audio only or only an attached picture)"
        case .unsupportedCodec(let file, let codec): text = "\(file): no FFmpeg decoder/encoder for codec \(codec)"
        case .encrypted(let file): text = "\(file): the video stream is encrypted"
        case .timeout(let file, let seconds): text = "\(file): a read blocked for more than \(seconds) s"
        case .readFailed(let file, let reason): text = "\(file): read failed: \(reason)"
        case .truncated(let file, let detail): text = "\(file): truncated video: \(detail)"
        case .corruptData(let file, let count, let first):
            text = "\(file): corrupt video data (\(count) decode error\(count == 1 ? "" : "s"), first: \(first))"
        case .partial(let frames, let error):
            text = "\(error.description) (partial: \(frames) frame\(frames == 1 ? "" : "s") decoded before/around it)"
        case .tooLarge(let file, let width, let height, let maxPixels):
            text = "\(file): video frames are \(width)x\(height) pixels, more than the limit of \(maxPixels)"
        case .invalidArgument(let file, let detail): text = "\(file): invalid argument: \(detail)"
        case .writeFailed(let file, let reason): text = "\(file): cannot write video: \(reason)"
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// FFmpeg's message for an error code (av_strerror).
func ffmpegMessage(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    return buffer.withUnsafeMutableBufferPointer { pointer in
        av_strerror(code, pointer.baseAddress, pointer.count)
        return String(cString: pointer.baseAddress!)
    }
}
