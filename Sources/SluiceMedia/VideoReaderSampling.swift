// VideoReader: sampling policies (which frames are handed out) over the decoder.

import CFFmpeg
import Foundation

extension VideoReader {
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

    func emit(_ slot: UnsafeMutablePointer<AVFrame>, _ held: HeldFrame) throws(VideoError) -> VideoFrame {
        VideoFrame(image: try convert(slot), index: held.index, pts: held.pts, duration: held.duration, isKeyframe: held.key)
    }

    func releaseHeld() {
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
