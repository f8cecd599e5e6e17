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

    public init(size: VideoOutputSize = .native, threads: Int = 2, appliesRotation: Bool = true,
                readTimeout: Double = 30, scaling: VideoScaling = .bicubic) {
        self.size = size
        self.threads = threads
        self.appliesRotation = appliesRotation
        self.readTimeout = readTimeout
        self.scaling = scaling
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
    public private(set) var info: VideoInfo = .unknown
    /// Why the last `frames(_:)` iteration ended early or was damaged; nil after a clean end.
    public private(set) var finalError: VideoError?
    /// Decode errors met so far (the decoder went on after each).
    public private(set) var decodeErrorCount = 0
    public private(set) var firstDecodeError: String?
    /// Frames the decoder has output since opening (seeks included).
    public private(set) var decodedFrameCount = 0

    // FFmpeg state: owned here, freed in deinit.
    private var format: UnsafeMutablePointer<AVFormatContext>?
    private var codec: UnsafeMutablePointer<AVCodecContext>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var decoded: UnsafeMutablePointer<AVFrame>?   // avcodec_receive_frame target
    private var slotA: UnsafeMutablePointer<AVFrame>?     // held frames for nearest-timestamp sampling
    private var slotB: UnsafeMutablePointer<AVFrame>?
    private var scaler: OpaquePointer?
    private var scalerKey: [Int] = []
    private let deadline = UnsafeMutablePointer<Int64>.allocate(capacity: 1)

    private var stream: UnsafeMutablePointer<AVStream>?
    private var streamIndex: Int32 = -1
    private var timeBase = 0.0
    private var startTS: Int64 = 0
    private var defaultDuration = 0.0

    // Decoding position.
    private var inputEnded = false        // flush packet sent
    private var decoderDrained = false
    private var fatal: VideoError?        // stops reading (I/O error, timeout, encryption, truncation)
    private var packetsRead = 0
    private var lastPacketEnd = -1.0      // seconds, end of the latest packet read
    private var readFromStart = true      // no seek since open: packet counts are comparable to nb_frames
    private var nextIndex = 0
    private var indexFromTable = false    // the next frame's index comes from ptsTable (after a seek)
    private var lastTS: Int64 = Int64.min
    private var ptsTable: [Int64]?        // sorted packet PTS of the stream (lazily, by a packet scan)
    private var scannedEnd: Double?

    // Sampling.
    private var plan = Plan.all
    private var tick = 0
    private var previous: HeldFrame?      // in slotA/slotB
    private var current: HeldFrame?
    private var planStarted = false
    private var planDone = false

    private enum Plan {
        case all
        case every(Int)
        case ticks(step: Double?, list: [Double])   // step: k*step ticks (fps); else the list
        case range(start: Double, end: Double)
        case seek(Double)
    }

    private struct HeldFrame {
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
        _ = Self.ffmpegLogLevel
        try open()
    }

    /// FFmpeg's own log lines (decoder complaints about a damaged file) would interleave with progress
    /// output; the reader reports every failure itself as a typed error, so FFmpeg only prints fatal
    /// messages unless SLUICE_FFMPEG_LOG names a level (quiet, error, warning, info, verbose, debug).
    static let ffmpegLogLevel: Int32 = {
        let levels: [String: Int32] = ["quiet": AV_LOG_QUIET, "fatal": AV_LOG_FATAL, "error": AV_LOG_ERROR,
                                       "warning": AV_LOG_WARNING, "info": AV_LOG_INFO, "verbose": AV_LOG_VERBOSE,
                                       "debug": AV_LOG_DEBUG]
        let level = ProcessInfo.processInfo.environment["SLUICE_FFMPEG_LOG"].flatMap { levels[$0.lowercased()] } ?? AV_LOG_FATAL
        av_log_set_level(level)
        return level
    }()

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

    private func open() throws(VideoError) {
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

    private func armDeadline() {
        deadline.pointee = options.readTimeout > 0 ? cff_monotonic_us() + Int64(options.readTimeout * 1_000_000) : 0
    }
    private func disarmDeadline() { deadline.pointee = 0 }

    // MARK: Decoding (one frame at a time into `decoded`)

    /// Decodes the next frame into `decoded`; false at the end of the stream (or after a fatal error).
    private func decodeNext() -> Bool {
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
    private func stampDecoded() -> (index: Int, pts: Double, duration: Double, key: Bool) {
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

    private func lowerBound(_ table: [Int64], _ value: Int64) -> Int {
        var low = 0, high = table.count
        while low < high {
            let mid = (low + high) / 2
            if table[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    // MARK: Conversion

    /// Converts an AVFrame to an upright RGB image of the requested size.
    private func convert(_ framePointer: UnsafeMutablePointer<AVFrame>) throws(VideoError) -> RGBImage {
        let frame = framePointer.pointee
        let sourceWidth = Int(frame.width), sourceHeight = Int(frame.height)
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

    // MARK: Packet scan (durations without a header, indices after a seek)

    /// Sorted PTS of every packet of the stream, read without decoding. Leaves the demuxer at an arbitrary
    /// position: callers seek afterwards.
    private func scanPacketTimestamps() throws(VideoError) -> [Int64] {
        if let ptsTable { return ptsTable }
        guard let format, let packet else { return [] }
        try rewindDemuxer(to: Int64.min)
        var table: [Int64] = []
        var end = Int64.min
        while true {
            armDeadline()
            let status = av_read_frame(format, packet)
            disarmDeadline()
            if status < 0 {
                if status == cff_averror_exit() { throw .timeout(file: path, seconds: options.readTimeout) }
                break  // EOF or damage: the timestamps read so far are what the file has
            }
            if packet.pointee.stream_index == streamIndex {
                let ts = packet.pointee.pts != cff_nopts_value() ? packet.pointee.pts : packet.pointee.dts
                if ts != cff_nopts_value() {
                    table.append(ts)
                    end = max(end, ts + max(packet.pointee.duration, 0))
                }
            }
            av_packet_unref(packet)
        }
        table.sort()
        ptsTable = table
        if end > Int64.min {
            var seconds = Double(end - startTS) * timeBase
            if let last = table.last, end == last { seconds += defaultDuration }
            scannedEnd = seconds
        }
        try rewindDemuxer(to: Int64.min)
        return table
    }

    /// Seeks the demuxer to the keyframe at or before `ts` (stream time base; Int64.min = start) and resets
    /// the decoder.
    private func rewindDemuxer(to ts: Int64) throws(VideoError) {
        guard let format else { return }
        armDeadline()
        var status: Int32
        if ts == Int64.min {
            status = av_seek_frame(format, streamIndex, startTS, AVSEEK_FLAG_BACKWARD)
            if status < 0 { status = avformat_seek_file(format, -1, Int64.min, 0, 0, 0) }
            if status < 0 { status = av_seek_frame(format, -1, 0, AVSEEK_FLAG_BYTE) }
        } else {
            status = av_seek_frame(format, streamIndex, ts, AVSEEK_FLAG_BACKWARD)
            if status < 0 { status = avformat_seek_file(format, streamIndex, Int64.min, ts, ts, 0) }
        }
        disarmDeadline()
        if status < 0 {
            if status == cff_averror_exit() { throw .timeout(file: path, seconds: options.readTimeout) }
            throw .readFailed(file: path, reason: "cannot seek: \(ffmpegMessage(status))")
        }
        avcodec_flush_buffers(codec)
        inputEnded = false
        decoderDrained = false
        readFromStart = false
        lastPacketEnd = -1
        lastTS = Int64.min
        releaseHeld()
    }

    /// Duration in seconds: the header's, else from a packet scan.
    public func measuredDuration() throws(VideoError) -> Double? {
        if let duration = info.duration { return duration }
        _ = try scanPacketTimestamps()
        return scannedEnd
    }

    // MARK: Seeking

    /// The first frame whose PTS is ≥ `seconds` (exact, not the keyframe): seeks to the keyframe before,
    /// decodes forward. nil when the stream ends before `seconds`. Reading continues from there.
    public func frame(at seconds: Double) throws(VideoError) -> VideoFrame? {
        plan = .all
        planStarted = true
        planDone = false
        finalError = nil
        guard let held = try seekDecode(to: seconds) else { return nil }
        return try emit(held.slot, held)
    }

    /// Positions the decoder so that `decoded` holds the first frame with PTS ≥ seconds; returns its stamp.
    private func seekDecode(to seconds: Double) throws(VideoError) -> HeldFrame? {
        guard seconds.isFinite else { throw .invalidArgument(file: path, detail: "seek time \(seconds)") }
        fatal = nil
        let epsilon = 1e-6
        _ = try scanPacketTimestamps()
        let target = startTS + Int64((max(seconds, 0) / timeBase).rounded(.down))
        var backoff: Int64 = 0
        let second = max(Int64((1 / timeBase).rounded()), 1)
        for attempt in 0..<12 {
            let seekTS = attempt == 11 ? Int64.min : target - backoff
            try rewindDemuxer(to: seekTS <= startTS ? Int64.min : seekTS)
            indexFromTable = true
            guard decodeNext() else {
                if seekTS <= startTS || attempt == 11 { return nil }
                backoff = max(backoff * 2, second)
                continue
            }
            let first = stampDecoded()
            if first.pts > seconds + epsilon && seekTS > startTS && attempt < 11 {
                // The keyframe found starts after the target (DTS/PTS offset, open GOP): go further back.
                backoff = max(backoff * 2, second)
                continue
            }
            var stamp = first
            while stamp.pts < seconds - epsilon {
                guard decodeNext() else { return nil }
                stamp = stampDecoded()
            }
            return HeldFrame(slot: decoded!, index: stamp.index, pts: stamp.pts, duration: stamp.duration, key: stamp.key)
        }
        return nil
    }

    // MARK: Sampling

    /// Streams frames chosen by `sampling`. Iteration ends at the end of the stream or at a fatal error;
    /// `finalError` then says whether (and how) the stream was damaged. Starting a new `frames` call resumes
    /// from the current position, except for policies that seek (`.timeRange`, `.seek`, `.uniform`).
    public func frames(_ sampling: VideoSampling = .all) -> VideoFrames {
        VideoFrames(reader: self, sampling: sampling)
    }

    /// Sets the policy used by `nextFrame()`.
    public func start(_ sampling: VideoSampling) throws(VideoError) {
        releaseHeld()
        planStarted = false
        planDone = false
        finalError = nil
        tick = 0
        switch sampling {
        case .all: plan = .all
        case .everyNth(let n):
            guard n >= 1 else { throw .invalidArgument(file: path, detail: "every Nth frame needs N ≥ 1, got \(n)") }
            plan = .every(n)
        case .fps(let fps):
            guard fps > 0, fps.isFinite else { throw .invalidArgument(file: path, detail: "fps must be positive, got \(fps)") }
            plan = .ticks(step: 1 / fps, list: [])
        case .uniform(let count):
            guard count >= 1 else { throw .invalidArgument(file: path, detail: "uniform sampling needs a count ≥ 1") }
            guard let duration = try measuredDuration(), duration > 0 else {
                throw .invalidArgument(file: path, detail: "the duration is unknown, cannot spread \(count) frames")
            }
            if !readFromStart || decodedFrameCount > 0 { try rewindDemuxer(to: Int64.min); nextIndex = 0; indexFromTable = false }
            plan = .ticks(step: nil, list: (0..<count).map { (Double($0) + 0.5) * duration / Double(count) })
        case .timeRange(let start, let end):
            guard start.isFinite, end > start else {
                throw .invalidArgument(file: path, detail: "time range [\(start), \(end)) is empty")
            }
            plan = .range(start: start, end: end)
        case .seek(let t): plan = .seek(t)
        }
    }

    /// The next frame of the current policy (`.all` unless `start(_:)` set another). Returns nil at the end
    /// of a clean stream; throws `.partial(decodedFrames:error:)` (or the bare error when no frame was
    /// decoded) once the frames before a failure have all been returned.
    public func nextFrame() throws(VideoError) -> VideoFrame? {
        if planDone { return nil }
        if let frame = try nextPlanned() { return frame }
        planDone = true
        releaseHeld()
        if let error = endError() { finalError = error; throw error }
        return nil
    }

    private func endError() -> VideoError? {
        var error = fatal
        if error == nil, decodeErrorCount > 0 {
            error = .corruptData(file: path, count: decodeErrorCount, firstMessage: firstDecodeError ?? "")
        }
        guard let error else { return nil }
        return decodedFrameCount > 0 ? .partial(decodedFrames: decodedFrameCount, error: error) : error
    }

    fileprivate func nextOrRecord() -> VideoFrame? {
        do {
            return try nextFrame()
        } catch {
            finalError = error
            return nil
        }
    }

    private func nextPlanned() throws(VideoError) -> VideoFrame? {
        switch plan {
        case .all:
            guard decodeNext() else { return nil }
            let stamp = stampDecoded()
            return try emit(decoded!, HeldFrame(slot: decoded!, index: stamp.index, pts: stamp.pts,
                                                duration: stamp.duration, key: stamp.key))
        case .every(let n):
            while decodeNext() {
                let stamp = stampDecoded()
                if stamp.index % n == 0 {
                    return try emit(decoded!, HeldFrame(slot: decoded!, index: stamp.index, pts: stamp.pts,
                                                        duration: stamp.duration, key: stamp.key))
                }
            }
            return nil
        case .seek(let t):
            planDone = true
            guard let held = try seekDecode(to: t) else { return nil }
            return try emit(held.slot, held)
        case .range(let start, let end):
            if !planStarted {
                planStarted = true
                let first: HeldFrame?
                if start > 0 {
                    first = try seekDecode(to: start)
                } else {
                    if decodeNext() {
                        let s = stampDecoded()
                        first = HeldFrame(slot: decoded!, index: s.index, pts: s.pts, duration: s.duration, key: s.key)
                    } else { first = nil }
                }
                guard let first else { return nil }
                if first.pts >= start - 1e-6 && first.pts < end { return try emit(first.slot, first) }
                if first.pts >= end { return nil }
            }
            while decodeNext() {
                let s = stampDecoded()
                if s.pts >= end { return nil }
                if s.pts >= start - 1e-6 {
                    return try emit(decoded!, HeldFrame(slot: decoded!, index: s.index, pts: s.pts, duration: s.duration, key: s.key))
                }
            }
            return nil
        case .ticks(let step, let list):
            let t: Double
            if let step { t = Double(tick) * step } else {
                guard tick < list.count else { return nil }
                t = list[tick]
            }
            // Hold the last frame before t (previous) and the first at or after t (current).
            while current == nil || current!.pts < t {
                if let moved = current { previous = moved }
                current = nil
                guard decodeNext() else { break }
                let s = stampDecoded()
                let slot = (previous?.slot == slotA) ? slotB! : slotA!
                av_frame_unref(slot)
                av_frame_move_ref(slot, decoded!)
                current = HeldFrame(slot: slot, index: s.index, pts: s.pts, duration: s.duration, key: s.key)
            }
            let chosen: HeldFrame
            if let current, let previous {
                chosen = (current.pts - t) < (t - previous.pts) ? current : previous
            } else if let current {
                chosen = current
            } else if let previous {
                // Past the last frame: only ticks inside its display time still count.
                guard t < previous.pts + max(previous.duration, 1e-9) else { return nil }
                chosen = previous
            } else {
                return nil
            }
            tick += 1
            return try emit(chosen.slot, chosen)
        }
    }

    private func emit(_ slot: UnsafeMutablePointer<AVFrame>, _ held: HeldFrame) throws(VideoError) -> VideoFrame {
        VideoFrame(image: try convert(slot), index: held.index, pts: held.pts, duration: held.duration, isKeyframe: held.key)
    }

    private func releaseHeld() {
        if let slotA { av_frame_unref(slotA) }
        if let slotB { av_frame_unref(slotB) }
        previous = nil
        current = nil
    }
}

/// Which frames a reader hands out.
public enum VideoSampling: Sendable, Equatable {
    /// Every decoded frame.
    case all
    /// Frames whose decoded index is a multiple of N (0, N, 2N, ...).
    case everyNth(Int)
    /// One frame per tick t = k/fps (k = 0, 1, ...): the frame whose PTS is nearest t (the earlier one on a
    /// tie), while t lies before the end of the last frame. A frame nearest to several ticks comes once per tick.
    /// Correct on variable frame rate: chosen by timestamp, not index.
    case fps(Double)
    /// N frames at the centres of N equal slices of the duration, ticks (i + 0.5)·D/N (nearest PTS); D from
    /// the header, else a packet scan.
    case uniform(count: Int)
    /// Frames with start ≤ PTS < end (seconds), seeking to the start.
    case timeRange(start: Double, end: Double)
    /// The single first frame with PTS ≥ t (exact seek).
    case seek(Double)
}

/// A streaming sequence over a reader's frames; holds at most three decoded frames whatever the video's length.
public struct VideoFrames: Sequence, IteratorProtocol {
    let reader: VideoReader
    private var started = false
    private let sampling: VideoSampling

    init(reader: VideoReader, sampling: VideoSampling) {
        self.reader = reader
        self.sampling = sampling
    }

    public mutating func next() -> VideoFrame? {
        if !started {
            started = true
            do { try reader.start(sampling) } catch {
                reader.recordStartFailure(error)
                return nil
            }
        }
        return reader.nextOrRecord()
    }
}

extension VideoReader {
    fileprivate func recordStartFailure(_ error: VideoError) {
        finalError = error
    }
}
