// VideoReader: the packet-timestamp index (durations without a header, frame indices after a seek)
// and exact seeking.

import CFFmpeg
import Foundation

extension VideoReader {
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
    func rewindDemuxer(to ts: Int64) throws(VideoError) {
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
    func seekDecode(to seconds: Double) throws(VideoError) -> HeldFrame? {
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


    func lowerBound(_ table: [Int64], _ value: Int64) -> Int {
        var low = 0, high = table.count
        while low < high {
            let mid = (low + high) / 2
            if table[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
