// H.264 (libx264) MP4 writing for annotated output: yuv420p, +faststart, timestamps as given per frame.
// All FFmpeg objects live inside the non-Sendable writer and are freed in deinit.

import CFFmpeg
import Foundation

public struct VideoWriterOptions: Sendable {
    /// x264 constant rate factor (0 = lossless … 51).
    public var crf: Int
    /// x264 preset (ultrafast … veryslow).
    public var preset: String
    /// Nominal frame rate, a hint for rate control and players; timestamps come from `append`.
    public var fps: Double
    public var threads: Int
    /// Timestamp resolution: ticks per second of the stream's time base.
    public var timescale: Int32

    public init(crf: Int = 20, preset: String = "veryfast", fps: Double = 30, threads: Int = 2, timescale: Int32 = 90000) {
        self.crf = crf
        self.preset = preset
        self.fps = fps
        self.threads = threads
        self.timescale = timescale
    }
}

/// Writes RGB frames to an H.264 MP4 (or another container chosen by the file extension, e.g. .mkv/.mov).
/// Odd sizes are cropped by one pixel column/row to the even size yuv420p needs.
///
///     let writer = try VideoWriter(path: "out.mp4", width: 640, height: 360)
///     try writer.append(frame.image, pts: frame.pts)
///     try writer.finish()
public final class VideoWriter {
    public let path: String
    /// The encoded (even) size.
    public let width: Int
    public let height: Int
    public private(set) var framesWritten = 0

    private var format: UnsafeMutablePointer<AVFormatContext>?
    private var codec: UnsafeMutablePointer<AVCodecContext>?
    private var stream: UnsafeMutablePointer<AVStream>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var scaler: OpaquePointer?
    private var fileOpen = false
    private var headerWritten = false
    private var finished = false
    private var lastPTS = Int64.min
    private let sourceWidth: Int
    private let sourceHeight: Int
    private let timescale: Int32

    public init(path: String, width: Int, height: Int, options: VideoWriterOptions = VideoWriterOptions()) throws(VideoError) {
        self.path = path
        sourceWidth = width
        sourceHeight = height
        FFmpegLog.quietUnlessChosen()
        self.width = width & ~1
        self.height = height & ~1
        timescale = options.timescale
        guard self.width >= 2, self.height >= 2 else {
            throw .invalidArgument(file: path, detail: "frame size \(width)x\(height) is too small for yuv420p")
        }
        guard options.timescale > 0, options.fps > 0 else {
            throw .invalidArgument(file: path, detail: "timescale and fps must be positive")
        }
        try open(options)
    }

    deinit {
        if headerWritten && !finished { try? finish() }
        if fileOpen, let format { avio_closep(&format.pointee.pb) }
        av_frame_free(&frame)
        av_packet_free(&packet)
        avcodec_free_context(&codec)
        avformat_free_context(format)
        if let scaler { sws_freeContext(scaler) }
    }

    private func fail(_ what: String, _ status: Int32) -> VideoError {
        .writeFailed(file: path, reason: "\(what): \(ffmpegMessage(status))")
    }

    private func open(_ options: VideoWriterOptions) throws(VideoError) {
        var status = avformat_alloc_output_context2(&format, nil, nil, path)
        if status < 0 || format == nil { status = avformat_alloc_output_context2(&format, nil, "mp4", path) }
        guard status >= 0, let format else { throw fail("cannot create the output container", status) }
        guard let encoder = avcodec_find_encoder_by_name("libx264") else {
            throw .unsupportedCodec(file: path, codec: "h264 (libx264 encoder not in this FFmpeg build)")
        }
        guard let stream = avformat_new_stream(format, nil) else { throw .writeFailed(file: path, reason: "out of memory") }
        self.stream = stream
        codec = avcodec_alloc_context3(encoder)
        guard let codec else { throw .writeFailed(file: path, reason: "out of memory") }
        codec.pointee.width = Int32(width)
        codec.pointee.height = Int32(height)
        codec.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        codec.pointee.time_base = AVRational(num: 1, den: options.timescale)
        codec.pointee.framerate = av_d2q(options.fps, 1 << 20)
        codec.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
        codec.pointee.thread_count = Int32(max(options.threads, 1))
        if (format.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER) != 0 {
            codec.pointee.flags |= cff_codec_flag_global_header()
        }
        var encoderOptions: OpaquePointer? = nil
        defer { av_dict_free(&encoderOptions) }
        av_dict_set(&encoderOptions, "preset", options.preset, 0)
        av_dict_set(&encoderOptions, "crf", String(options.crf), 0)
        status = avcodec_open2(codec, encoder, &encoderOptions)
        if status < 0 { throw fail("cannot open libx264", status) }
        status = avcodec_parameters_from_context(stream.pointee.codecpar, codec)
        if status < 0 { throw fail("cannot set stream parameters", status) }
        stream.pointee.time_base = codec.pointee.time_base
        stream.pointee.avg_frame_rate = codec.pointee.framerate

        if (format.pointee.oformat.pointee.flags & AVFMT_NOFILE) == 0 {
            status = avio_open(&format.pointee.pb, path, AVIO_FLAG_WRITE)
            if status < 0 { throw fail("cannot create the file", status) }
            fileOpen = true
        }
        var muxerOptions: OpaquePointer? = nil
        defer { av_dict_free(&muxerOptions) }
        av_dict_set(&muxerOptions, "movflags", "+faststart", 0)
        status = avformat_write_header(format, &muxerOptions)
        if status < 0 { throw fail("cannot write the header", status) }
        headerWritten = true

        frame = av_frame_alloc()
        packet = av_packet_alloc()
        guard let frame, packet != nil else { throw .writeFailed(file: path, reason: "out of memory") }
        frame.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        frame.pointee.width = Int32(width)
        frame.pointee.height = Int32(height)
        status = av_frame_get_buffer(frame, 0)
        if status < 0 { throw fail("cannot allocate a frame", status) }
        scaler = sws_getContext(Int32(width), Int32(height), AV_PIX_FMT_RGB24, Int32(width), Int32(height),
                                AV_PIX_FMT_YUV420P, SWS_BICUBIC, nil, nil, nil)
        if scaler == nil { throw .writeFailed(file: path, reason: "no rgb24 → yuv420p conversion") }
    }

    /// Encodes one frame shown from `pts` seconds (strictly increasing). The image must have the size given
    /// at creation.
    public func append(_ image: RGBImage, pts: Double) throws(VideoError) {
        guard !finished, let codec, let frame, let scaler else {
            throw .invalidArgument(file: path, detail: "append after finish")
        }
        guard image.width == sourceWidth, image.height == sourceHeight else {
            throw .invalidArgument(file: path, detail: "frame is \(image.width)x\(image.height), the video \(sourceWidth)x\(sourceHeight)")
        }
        guard pts.isFinite else { throw .invalidArgument(file: path, detail: "timestamp \(pts)") }
        let ticks = Int64((pts * Double(timescale)).rounded())
        guard ticks > lastPTS else {
            throw .invalidArgument(file: path, detail: "timestamp \(pts) s is not after the previous frame's")
        }
        var status = av_frame_make_writable(frame)
        if status < 0 { throw fail("frame not writable", status) }
        image.pixels.withUnsafeBufferPointer { buffer in
            // Crop odd sizes: the source stride stays the full row, the width the even one.
            var source: [UnsafePointer<UInt8>?] = [buffer.baseAddress, nil, nil, nil]
            var sourceStrides: [Int32] = [Int32(image.rowStride), 0, 0, 0]
            var planes = frame.pointee.data
            var lines = frame.pointee.linesize
            withUnsafeMutablePointer(to: &planes) { dataTuple in
                withUnsafeMutablePointer(to: &lines) { lineTuple in
                    let destination = UnsafeMutableRawPointer(dataTuple).assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self)
                    let strides = UnsafeMutableRawPointer(lineTuple).assumingMemoryBound(to: Int32.self)
                    _ = sws_scale(scaler, &source, &sourceStrides, 0, Int32(height), destination, strides)
                }
            }
        }
        frame.pointee.pts = ticks
        lastPTS = ticks
        status = avcodec_send_frame(codec, frame)
        if status < 0 { throw fail("encoding failed", status) }
        try drain()
        framesWritten += 1
    }

    private func drain() throws(VideoError) {
        guard let codec, let packet, let format, let stream else { return }
        while true {
            let status = avcodec_receive_packet(codec, packet)
            if status == cff_averror_eagain() || status == cff_averror_eof() { return }
            if status < 0 { throw fail("encoding failed", status) }
            av_packet_rescale_ts(packet, codec.pointee.time_base, stream.pointee.time_base)
            packet.pointee.stream_index = stream.pointee.index
            let written = av_interleaved_write_frame(format, packet)  // takes the packet's reference
            if written < 0 { throw fail("writing failed", written) }
        }
    }

    /// Flushes the encoder and writes the trailer (moov moved to the front). Call once, at the end.
    public func finish() throws(VideoError) {
        guard !finished else { return }
        finished = true
        guard let codec, let format else { return }
        var status = avcodec_send_frame(codec, nil)
        if status < 0 && status != cff_averror_eof() { throw fail("flushing the encoder failed", status) }
        try drain()
        status = av_write_trailer(format)
        if status < 0 { throw fail("writing the trailer failed", status) }
        if fileOpen { avio_closep(&format.pointee.pb); fileOpen = false }
    }
}
