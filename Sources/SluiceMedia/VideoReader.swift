// Frame-accurate video reading over libavformat/libavcodec/libswscale.
//
// Every FFmpeg object lives inside one non-Sendable `VideoReader` and is freed in its deinit (also when its
// initializer throws: all stored properties have defaults, so deinit runs). What leaves the reader is
// Swift-owned: `VideoFrame` (an RGBImage plus decoded index, PTS in seconds, keyframe flag) and `VideoInfo`.
//
// Video time (../shared/docs/design.md): a frame's index is the 0-based count of frames the decoder output,
// in presentation order; its PTS is best_effort_timestamp minus the stream's start_time, in seconds.

#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import CFFmpeg
import Foundation

/// One decoded frame, upright (display-matrix rotation applied) and converted to 8-bit RGB.
public struct VideoFrame: Sendable, Equatable {
    /// The pixels; 0x0 when the reader's output size is `.none`.
    public var image: RGBImage
    /// 0-based count of frames the decoder output before this one (presentation order). After a seek it is the
    /// rank of this frame's PTS among the stream's packet timestamps (equal when every packet yields a frame).
    public let index: Int
    /// Presentation time in seconds from the stream's start.
    public let pts: Double
    /// How long the frame is shown, in seconds (the packet duration, else 1/avg fps, else 0).
    public let duration: Double
    public let isKeyframe: Bool

    public init(image: RGBImage, index: Int, pts: Double, duration: Double, isKeyframe: Bool) {
        self.image = image
        self.index = index
        self.pts = pts
        self.duration = duration
        self.isKeyframe = isKeyframe
    }
}

public struct AudioStreamInfo: Sendable, Equatable {
    public let codec: String
    public let sampleRate: Int
    public let channels: Int
}

/// What the container and codec headers say about the chosen video stream.
public struct VideoInfo: Sendable, Equatable {
    /// The demuxer's name, e.g. "mov,mp4,m4a,3gp,3g2,mj2".
    public var container: String
    public var codec: String
    public var pixelFormat: String
    /// Stored (coded) size, before rotation.
    public var width: Int
    public var height: Int
    /// Clockwise degrees (0, 90, 180, 270) the stored frames are turned to display upright
    /// (ffprobe shows the display matrix's counter-clockwise angle: rotation -90 here is 90).
    public var rotation: Int
    /// avg_frame_rate, nil when unknown (0/0).
    public var fps: Double?
    /// Seconds, from the stream header else the container header; nil when neither says.
    public var duration: Double?
    /// nb_frames from the header, nil when unknown.
    public var frameCount: Int?
    public var audioStreams: [AudioStreamInfo]
    /// Index of the chosen stream in the container.
    public var streamIndex: Int

    /// Size of the upright (rotated) frames.
    public var displayWidth: Int { rotation % 180 == 0 ? width : height }
    public var displayHeight: Int { rotation % 180 == 0 ? height : width }

    static let unknown = VideoInfo(container: "", codec: "", pixelFormat: "", width: 0, height: 0, rotation: 0,
                                   fps: nil, duration: nil, frameCount: nil, audioStreams: [], streamIndex: -1)
}

/// Size of the frames a reader hands out.
public enum VideoOutputSize: Sendable, Equatable {
    /// The stream's own size (after rotation).
    case native
    /// Scaled straight to this size by libswscale (the size of the upright frame).
    case size(width: Int, height: Int)
    /// Scaled by libswscale so that the upright frame's shorter side is this long, the longer side as
    /// torchvision's `Resize(size)` computes it (`RGBImage.shorterSideSize`).
    case shorterSide(Int)
    /// Decode only: frames carry index/pts/keyframe and a 0x0 image (counting, timing, benchmarks of decode).
    case none
}

/// libswscale's scaling algorithm.
public enum VideoScaling: String, Sendable, CaseIterable {
    case fastBilinear, bilinear, bicubic, area, point
    var flags: Int32 {
        switch self {
        case .fastBilinear: return SWS_FAST_BILINEAR
        case .bilinear: return SWS_BILINEAR
        case .bicubic: return SWS_BICUBIC
        case .area: return SWS_AREA
        case .point: return SWS_POINT
        }
    }
}

public struct VideoReaderOptions: Sendable {
    public var size: VideoOutputSize
    /// Decoder threads (frame + slice threading).
    public var threads: Int
    /// Turn frames upright by the display matrix.
    public var appliesRotation: Bool
    /// Longest time any single open/read/seek may block, in seconds (interrupt callback); 0 = no limit.
    public var readTimeout: Double
    public var scaling: VideoScaling
    /// Largest decoded frame accepted, in pixels (2^26: 8192 x 8192). A header claiming more is refused
    /// when the file opens, a frame growing past it mid-stream when it arrives, before any RGB buffer exists.
    public var maxPixels: Int

    public init(size: VideoOutputSize = .native, threads: Int = 2, appliesRotation: Bool = true,
                readTimeout: Double = 30, scaling: VideoScaling = .bicubic, maxPixels: Int = 1 << 26) {
        self.size = size
        self.threads = threads
        self.appliesRotation = appliesRotation
        self.readTimeout = readTimeout
        self.scaling = scaling
        self.maxPixels = maxPixels
    }
}

/// Reads one video stream frame by frame. Not Sendable: use it from one task/thread.
///
///     let reader = try VideoReader(path: "clip.mp4", options: .init(size: .size(width: 224, height: 224)))
///     for frame in reader.frames(.fps(5)) { ... }
///     if let error = reader.finalError { print(error) }   // e.g. partial(decodedFrames: 49, error: ...)
public final class VideoReader {
    public let path: String
    public let options: VideoReaderOptions
    public internal(set) var info: VideoInfo = .unknown
    /// Why the last `frames(_:)` iteration ended early or was damaged; nil after a clean end.
    public internal(set) var finalError: VideoError?
    /// Decode errors met so far (the decoder went on after each).
    public internal(set) var decodeErrorCount = 0
    public internal(set) var firstDecodeError: String?
    /// Frames the decoder has output since opening (seeks included).
    public internal(set) var decodedFrameCount = 0

    // FFmpeg state: owned here, freed in deinit.
    var format: UnsafeMutablePointer<AVFormatContext>?
    var codec: UnsafeMutablePointer<AVCodecContext>?
    var packet: UnsafeMutablePointer<AVPacket>?
    var decoded: UnsafeMutablePointer<AVFrame>?   // avcodec_receive_frame target
    var slotA: UnsafeMutablePointer<AVFrame>?     // held frames for nearest-timestamp sampling
    var slotB: UnsafeMutablePointer<AVFrame>?
    var scaler: OpaquePointer?
    var scalerKey: [Int] = []
    let deadline = UnsafeMutablePointer<Int64>.allocate(capacity: 1)

    var stream: UnsafeMutablePointer<AVStream>?
    var streamIndex: Int32 = -1
    var timeBase = 0.0
    var startTS: Int64 = 0
    var defaultDuration = 0.0

    // Decoding position.
    var inputEnded = false        // flush packet sent
    var decoderDrained = false
    var fatal: VideoError?        // stops reading (I/O error, timeout, encryption, truncation)
    var packetsRead = 0
    var lastPacketEnd = -1.0      // seconds, end of the latest packet read
    var readFromStart = true      // no seek since open: packet counts are comparable to nb_frames
    var nextIndex = 0
    var indexFromTable = false    // the next frame's index comes from ptsTable (after a seek)
    var lastTS: Int64 = Int64.min
    var ptsTable: [Int64]?        // sorted packet PTS of the stream (lazily, by a packet scan)
    var scannedEnd: Double?

    // Sampling.
    var plan = Plan.all
    var tick = 0
    var previous: HeldFrame?      // in slotA/slotB
    var current: HeldFrame?
    var planStarted = false
    var planDone = false

    enum Plan {
        case all
        case every(Int)
        case ticks(step: Double?, list: [Double])   // step: k*step ticks (fps); else the list
        case range(start: Double, end: Double)
        case seek(Double)
    }

    struct HeldFrame {
        var slot: UnsafeMutablePointer<AVFrame>
        var index: Int
        var pts: Double
        var duration: Double
        var key: Bool
    }

    /// Opens `path` (a file path or any URL FFmpeg opens) and its best video stream's decoder.
    public init(path: String, options: VideoReaderOptions = VideoReaderOptions()) throws(VideoError) {
        self.path = path
        self.options = options
        deadline.initialize(to: 0)
        FFmpegLog.quietUnlessChosen()
        try open()
    }

    /// Convenience for file URLs.
    public convenience init(url: URL, options: VideoReaderOptions = VideoReaderOptions()) throws(VideoError) {
        try self.init(path: url.isFileURL ? url.path : url.absoluteString, options: options)
    }

    deinit {
        av_frame_free(&decoded)
        av_frame_free(&slotA)
        av_frame_free(&slotB)
        av_packet_free(&packet)
        avcodec_free_context(&codec)
        avformat_close_input(&format)
        if let scaler { sws_freeContext(scaler) }
        deadline.deallocate()
    }

    // MARK: Opening

    func open() throws(VideoError) {
        if options.threads < 1 { throw .invalidArgument(file: path, detail: "threads must be ≥ 1, got \(options.threads)") }
        if case .size(let w, let h) = options.size, w < 1 || h < 1 {
            throw .invalidArgument(file: path, detail: "output size must be positive, got \(w)x\(h)")
        }
        if case .shorterSide(let side) = options.size, side < 1 {
            throw .invalidArgument(file: path, detail: "shorter side must be positive, got \(side)")
        }
        if !path.contains("://") {
            var info = stat()
            if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && info.st_size == 0 {
                throw .empty(file: path)
            }
        }
        guard let context = avformat_alloc_context() else { throw .cannotOpen(file: path, reason: "out of memory") }
        cff_install_deadline(context, deadline)
        format = context
        armDeadline()
        var status = avformat_open_input(&format, path, nil, nil)  // frees the context and nils it on failure
        if status < 0 { disarmDeadline(); throw openError(status) }
        status = avformat_find_stream_info(format, nil)
        disarmDeadline()
        if status < 0 { throw openError(status) }
        guard let format else { throw .cannotOpen(file: path, reason: "no context") }

        var decoder: UnsafePointer<AVCodec>? = nil
        var best = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0)
        let attached = cff_disposition_attached_pic()
        if best >= 0, (format.pointee.streams[Int(best)]!.pointee.disposition & attached) != 0 {
            // A cover picture: prefer any real video stream.
            best = -1
            for i in 0..<Int(format.pointee.nb_streams) {
                let candidate = format.pointee.streams[i]!
                if candidate.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO,
                   (candidate.pointee.disposition & attached) == 0 {
                    best = Int32(i)
                    decoder = avcodec_find_decoder(candidate.pointee.codecpar.pointee.codec_id)
                    break
                }
            }
        }
        if best == cff_averror_decoder_not_found() {
            var codecName = "unknown"
            for i in 0..<Int(format.pointee.nb_streams) {
                let candidate = format.pointee.streams[i]!.pointee.codecpar.pointee
                if candidate.codec_type == AVMEDIA_TYPE_VIDEO { codecName = String(cString: avcodec_get_name(candidate.codec_id)); break }
            }
            throw .unsupportedCodec(file: path, codec: codecName)
        }
        guard best >= 0 else { throw .noVideoStream(file: path) }
        let stream = format.pointee.streams[Int(best)]!
        let parameters = stream.pointee.codecpar!
        guard let decoder else {
            throw .unsupportedCodec(file: path, codec: String(cString: avcodec_get_name(parameters.pointee.codec_id)))
        }
        self.stream = stream
        streamIndex = best
        // Skip the other streams' packets in the demuxer.
        for i in 0..<Int(format.pointee.nb_streams) where Int32(i) != best {
            format.pointee.streams[i]!.pointee.discard = AVDISCARD_ALL
        }
        if av_stream_get_side_data(stream, AV_PKT_DATA_ENCRYPTION_INIT_INFO, nil) != nil {
            throw .encrypted(file: path)
        }
        try checkFrameSize(width: Int(parameters.pointee.width), height: Int(parameters.pointee.height))

        codec = avcodec_alloc_context3(decoder)
        guard let codec else { throw .cannotOpen(file: path, reason: "out of memory") }
        status = avcodec_parameters_to_context(codec, parameters)
        if status < 0 { throw .cannotOpen(file: path, reason: ffmpegMessage(status)) }
        codec.pointee.pkt_timebase = stream.pointee.time_base
        codec.pointee.thread_count = Int32(options.threads)
        codec.pointee.thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE
        status = avcodec_open2(codec, decoder, nil)
        if status < 0 { throw .cannotOpen(file: path, reason: "cannot open \(String(cString: decoder.pointee.name)) decoder: \(ffmpegMessage(status))") }

        packet = av_packet_alloc()
        decoded = av_frame_alloc()
        slotA = av_frame_alloc()
        slotB = av_frame_alloc()
        if packet == nil || decoded == nil || slotA == nil || slotB == nil {
            throw .cannotOpen(file: path, reason: "out of memory")
        }

        timeBase = av_q2d(stream.pointee.time_base)
        startTS = stream.pointee.start_time == cff_nopts_value() ? 0 : stream.pointee.start_time
        info = describe(format: format, stream: stream, decoder: decoder)
        if let fps = info.fps, fps > 0 { defaultDuration = 1 / fps }
    }

    /// Refuses frames over `options.maxPixels` (sizes come from headers, so they can be anything).
    func checkFrameSize(width: Int, height: Int) throws(VideoError) {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        if overflow || pixels > options.maxPixels {
            throw .tooLarge(file: path, width: width, height: height, maxPixels: options.maxPixels)
        }
    }

    private func openError(_ status: Int32) -> VideoError {
        if status == cff_averror_exit() { return .timeout(file: path, seconds: options.readTimeout) }
        return .cannotOpen(file: path, reason: ffmpegMessage(status))
    }

    private func describe(format: UnsafeMutablePointer<AVFormatContext>, stream: UnsafeMutablePointer<AVStream>,
                          decoder: UnsafePointer<AVCodec>) -> VideoInfo {
        let parameters = stream.pointee.codecpar.pointee
        var rotation = 0
        if let matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, nil) {
            let counterClockwise = matrix.withMemoryRebound(to: Int32.self, capacity: 9) { av_display_rotation_get($0) }
            if counterClockwise.isFinite {
                // The display matrix angle is counter-clockwise; frames are turned clockwise by its negation.
                let clockwise = Int((-counterClockwise / 90).rounded()) * 90
                rotation = ((clockwise % 360) + 360) % 360
            }
        }
        let rate = stream.pointee.avg_frame_rate
        let fps: Double? = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : nil
        var duration: Double?
        if stream.pointee.duration != cff_nopts_value() && stream.pointee.duration > 0 {
            duration = Double(stream.pointee.duration) * av_q2d(stream.pointee.time_base)
        } else if format.pointee.duration != cff_nopts_value() && format.pointee.duration > 0 {
            duration = Double(format.pointee.duration) / Double(AV_TIME_BASE)
        }
        var audio: [AudioStreamInfo] = []
        for i in 0..<Int(format.pointee.nb_streams) {
            let p = format.pointee.streams[i]!.pointee.codecpar.pointee
            if p.codec_type == AVMEDIA_TYPE_AUDIO {
                audio.append(AudioStreamInfo(codec: String(cString: avcodec_get_name(p.codec_id)),
                                             sampleRate: Int(p.sample_rate), channels: Int(p.ch_layout.nb_channels)))
            }
        }
        let pixelName = av_get_pix_fmt_name(AVPixelFormat(rawValue: parameters.format)).map { String(cString: $0) } ?? "unknown"
        return VideoInfo(
            container: format.pointee.iformat.map { String(cString: $0.pointee.name) } ?? "",
            codec: String(cString: avcodec_get_name(parameters.codec_id)),
            pixelFormat: pixelName,
            width: Int(parameters.width), height: Int(parameters.height),
            rotation: options.appliesRotation ? rotation : 0,
            fps: fps, duration: duration,
            frameCount: stream.pointee.nb_frames > 0 ? Int(stream.pointee.nb_frames) : nil,
            audioStreams: audio, streamIndex: Int(streamIndex))
    }

    /// The display-matrix rotation whether or not the reader applies it.
    public var storedRotation: Int {
        guard let stream, let matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, nil) else { return 0 }
        let angle = matrix.withMemoryRebound(to: Int32.self, capacity: 9) { av_display_rotation_get($0) }
        guard angle.isFinite else { return 0 }
        return ((Int((-angle / 90).rounded()) * 90 % 360) + 360) % 360
    }

    func armDeadline() {
        deadline.pointee = options.readTimeout > 0 ? cff_monotonic_us() + Int64(options.readTimeout * 1_000_000) : 0
    }
    func disarmDeadline() { deadline.pointee = 0 }

    // MARK: Decoding (one frame at a time into `decoded`)

    /// Decodes the next frame into `decoded`; false at the end of the stream (or after a fatal error).
    func decodeNext() -> Bool {
        guard let codec, let format, let packet, let decoded else { return false }
        while true {
            if decoderDrained { return false }
            let status = avcodec_receive_frame(codec, decoded)
            if status == 0 { return true }
            if status == cff_averror_eof() { decoderDrained = true; return false }
            if status != cff_averror_eagain() {
                recordDecodeError(status)
                if inputEnded { continue }
            } else if inputEnded {
                decoderDrained = true
                return false
            }
            // The decoder wants input.
            armDeadline()
            let read = av_read_frame(format, packet)
            disarmDeadline()
            if read < 0 {
                if read == cff_averror_eof() {
                    checkTruncation()
                } else if read == cff_averror_exit() {
                    fatal = fatal ?? .timeout(file: path, seconds: options.readTimeout)
                } else {
                    fatal = fatal ?? .readFailed(file: path, reason: ffmpegMessage(read))
                }
                endInput()
                continue
            }
            defer { av_packet_unref(packet) }
            if packet.pointee.stream_index != streamIndex { continue }
            packetsRead += 1
            let ts = packet.pointee.pts != cff_nopts_value() ? packet.pointee.pts : packet.pointee.dts
            if ts != cff_nopts_value() {
                lastPacketEnd = max(lastPacketEnd, Double(ts - startTS + max(packet.pointee.duration, 0)) * timeBase)
            }
            if av_packet_get_side_data(packet, AV_PKT_DATA_ENCRYPTION_INFO, nil) != nil {
                fatal = fatal ?? .encrypted(file: path)
                endInput()
                continue
            }
            let sent = avcodec_send_packet(codec, packet)
            if sent < 0 && sent != cff_averror_eagain() && sent != cff_averror_eof() { recordDecodeError(sent) }
        }
    }

    private func endInput() {
        guard !inputEnded else { return }
        inputEnded = true
        avcodec_send_packet(codec, nil)
    }

    private func checkTruncation() {
        guard readFromStart else { return }
        // The container's index (e.g. MP4 stsz) lists more samples than the file holds.
        if let expected = info.frameCount, packetsRead < expected, info.container.hasPrefix("mov,") {
            fatal = fatal ?? .truncated(file: path,
                                        detail: "the index lists \(expected) video packets, the file ends after \(packetsRead)")
            return
        }
        // No index (Matroska, ...): the packets stop well before the duration the header announced.
        if let duration = info.duration, lastPacketEnd >= 0, lastPacketEnd < 0.9 * duration - 0.5 {
            fatal = fatal ?? .truncated(file: path, detail: String(format: "the packets end at %.2f s, the header says %.2f s",
                                                                   lastPacketEnd, duration))
        }
    }

    private func recordDecodeError(_ status: Int32) {
        decodeErrorCount += 1
        if firstDecodeError == nil { firstDecodeError = ffmpegMessage(status) }
    }

    /// Index, PTS (seconds), duration and keyframe flag of the frame in `decoded`; advances the index.
    func stampDecoded() -> (index: Int, pts: Double, duration: Double, key: Bool) {
        let frame = decoded!.pointee
        var ts = frame.best_effort_timestamp
        if ts == cff_nopts_value() { ts = frame.pts }
        var seconds: Double
        if ts == cff_nopts_value() {
            // No timestamp at all: continue from the previous frame.
            seconds = lastTS == Int64.min ? 0 : Double(lastTS - startTS) * timeBase + max(defaultDuration, 0)
            ts = startTS + Int64((seconds / max(timeBase, 1e-12)).rounded())
        } else {
            seconds = Double(ts - startTS) * timeBase
        }
        lastTS = ts
        if indexFromTable, let table = ptsTable {
            nextIndex = lowerBound(table, ts)
            indexFromTable = false
        }
        let index = nextIndex
        nextIndex += 1
        decodedFrameCount += 1
        let duration = frame.pkt_duration > 0 ? Double(frame.pkt_duration) * timeBase : defaultDuration
        return (index, seconds, duration, frame.key_frame != 0)
    }
}
