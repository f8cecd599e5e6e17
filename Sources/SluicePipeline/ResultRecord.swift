import Foundation
import SluiceTensor

/// One prediction: class index, label and softmax probability.
public struct Prediction: Codable, Sendable, Equatable {
    public var index: Int
    public var label: String
    public var score: Float
    public init(index: Int, label: String, score: Float) { self.index = index; self.label = label; self.score = score }
}

/// A segmentation mask's summary: its size and the pixels of each class present, most first. The mask
/// itself goes to mask sinks (files); the record says where when one was written.
public struct MaskSummary: Codable, Sendable, Equatable {
    public struct ClassArea: Codable, Sendable, Equatable {
        public var index: Int
        public var label: String
        public var pixels: Int
        public var fraction: Double
        /// The class's pixels as COCO RLE (`{"size": [h, w], "counts": "…"}`), when asked for.
        public var rle: CocoRLE?
        public init(index: Int, label: String, pixels: Int, fraction: Double, rle: CocoRLE? = nil) {
            self.index = index; self.label = label; self.pixels = pixels; self.fraction = fraction; self.rle = rle
        }
    }
    public var width: Int
    public var height: Int
    public var classes: [ClassArea]
    /// The mask file a mask sink wrote, if any.
    public var file: String?
    public init(width: Int, height: Int, classes: [ClassArea], file: String? = nil) {
        self.width = width; self.height = height; self.classes = classes; self.file = file
    }
}

/// The clip a video classifier's clip record covers: its number in the video (from 0), its frame count,
/// and its first and last frames (index and timestamp).
public struct ClipSpan: Codable, Sendable, Equatable {
    public var index: Int
    public var frames: Int
    public var firstFrame: Int?
    public var lastFrame: Int?
    public var firstPTS: Double?
    public var lastPTS: Double?

    enum CodingKeys: String, CodingKey {
        case index, frames, firstFrame = "first_frame", lastFrame = "last_frame", firstPTS = "first_pts", lastPTS = "last_pts"
    }

    public init(index: Int, frames: Int, firstFrame: Int?, lastFrame: Int?, firstPTS: Double?, lastPTS: Double?) {
        self.index = index; self.frames = frames; self.firstFrame = firstFrame; self.lastFrame = lastFrame
        self.firstPTS = firstPTS; self.lastPTS = lastPTS
    }
}

/// The result of one item (an image, or a frame of a video): what was run on what, and either the
/// outputs or the error. A job's output is complete even when some inputs were bad. Outputs are typed by
/// task: `top_k` (classification), `mask` (segmentation), `answers` (question answering); only the
/// ones a task produces appear in the JSON. A video classifier also writes one record per clip: `clip`
/// (its span) and the clip's `top_k`, without `frame_index`.
public struct ResultRecord: Codable, Sendable, Equatable {
    public var source: String
    public var frameIndex: Int?
    public var pts: Double?
    public var clip: ClipSpan?
    public var model: String
    public var topK: [Prediction]?
    public var mask: MaskSummary?
    public var answers: [Prediction]?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case source, frameIndex = "frame_index", pts, clip, model, topK = "top_k", mask, answers, error
    }

    public init(source: String, frameIndex: Int? = nil, pts: Double? = nil, clip: ClipSpan? = nil, model: String,
                topK: [Prediction]? = nil, mask: MaskSummary? = nil, answers: [Prediction]? = nil,
                error: String? = nil) {
        self.source = source; self.frameIndex = frameIndex; self.pts = pts; self.clip = clip; self.model = model
        self.topK = topK; self.mask = mask; self.answers = answers; self.error = error
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encodeIfPresent(frameIndex, forKey: .frameIndex)
        try c.encodeIfPresent(pts, forKey: .pts)
        try c.encodeIfPresent(clip, forKey: .clip)
        try c.encode(model, forKey: .model)
        try c.encodeIfPresent(topK, forKey: .topK)
        try c.encodeIfPresent(mask, forKey: .mask)
        try c.encodeIfPresent(answers, forKey: .answers)
        // `error` is always present (null on success) so consumers can filter on it.
        try c.encode(error, forKey: .error)
    }
}

/// Where records go: JSON Lines, or CSV as a flat view of the same records.
public protocol RecordSink: AnyObject {
    func write(_ record: ResultRecord) throws
    func close() throws
    /// Abandons the output after a failure: a file sink leaves its target as it was and no temporary.
    func discard()
}

extension RecordSink {
    public func discard() {}
}

public final class JSONLinesSink: RecordSink {
    private let handle: FileHandle
    private let ownsHandle: Bool
    private let encoder: JSONEncoder

    public init(handle: FileHandle, ownsHandle: Bool) {
        self.handle = handle
        self.ownsHandle = ownsHandle
        encoder = JSONEncoder()
        // Sorted keys: Foundation on Linux does not keep declaration order, and diffs of outputs should be stable.
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    public func write(_ record: ResultRecord) throws {
        var line = try encoder.encode(record)
        line.append(0x0a)
        try handle.write(contentsOf: line)
    }

    public func close() throws { if ownsHandle { try handle.close() } }
}

/// CSV: one row per record. Classification rows hold the top-k predictions (index, label, score);
/// with `masks`, rows hold the mask's size and file, then its k largest classes (index, label, fraction);
/// with `clips` (video classifiers), rows say which clip a clip record covers (clip_index, clip_frames;
/// empty on frame rows).
public final class CSVSink: RecordSink {
    private let output: (Data) throws -> Void
    private let closeOutput: () throws -> Void
    private let topK: Int
    private let masks: Bool
    private let clips: Bool
    private var wroteHeader = false

    public convenience init(handle: FileHandle, topK: Int, masks: Bool = false, clips: Bool = false) {
        self.init(topK: topK, masks: masks, clips: clips, output: { try handle.write(contentsOf: $0) }, close: { try handle.close() })
    }

    /// Rows go to `output` (a response being streamed), one call per row.
    public init(topK: Int, masks: Bool = false, clips: Bool = false, output: @escaping (Data) throws -> Void,
                close: @escaping () throws -> Void = {}) {
        self.output = output; self.closeOutput = close; self.topK = topK; self.masks = masks; self.clips = clips
    }

    public func write(_ record: ResultRecord) throws {
        if !wroteHeader {
            var header = ["source", "frame_index", "pts", "model", "error"]
            if clips { header += ["clip_index", "clip_frames"] }
            if masks {
                header += ["width", "height", "mask_file"]
                for rank in 1...max(topK, 1) { header += ["class_\(rank)", "label_\(rank)", "fraction_\(rank)"] }
            } else {
                for rank in 1...max(topK, 1) { header += ["index_\(rank)", "label_\(rank)", "score_\(rank)"] }
            }
            try emit(header)
            wroteHeader = true
        }
        var fields = [record.source, record.frameIndex.map(String.init) ?? "", record.pts.map { "\($0)" } ?? "",
                      record.model, record.error ?? ""]
        if clips { fields += [record.clip.map { String($0.index) } ?? "", record.clip.map { String($0.frames) } ?? ""] }
        if masks {
            let mask = record.mask
            fields += [mask.map { String($0.width) } ?? "", mask.map { String($0.height) } ?? "", mask?.file ?? ""]
            for rank in 0..<max(topK, 1) {
                if let classes = mask?.classes, rank < classes.count {
                    fields += [String(classes[rank].index), classes[rank].label, String(classes[rank].fraction)]
                } else {
                    fields += ["", "", ""]
                }
            }
            try emit(fields)
            return
        }
        for rank in 0..<max(topK, 1) {
            if let p = record.topK, rank < p.count {
                fields += [String(p[rank].index), p[rank].label, String(p[rank].score)]
            } else {
                fields += ["", "", ""]
            }
        }
        try emit(fields)
    }

    private func emit(_ fields: [String]) throws {
        let line = fields.map(Self.quote).joined(separator: ",") + "\n"
        try output(Data(line.utf8))
    }

    /// RFC 4180 quoting: fields with commas, quotes or line breaks are quoted, quotes doubled.
    static func quote(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public func close() throws { try closeOutput() }
}

/// Writes every record to several sinks (a pipeline's JSONL and CSV outputs).
public final class TeeSink: RecordSink {
    let sinks: [RecordSink]
    public init(_ sinks: [RecordSink]) { self.sinks = sinks }
    public func write(_ record: ResultRecord) throws { for sink in sinks { try sink.write(record) } }
    public func close() throws { for sink in sinks { try sink.close() } }
}

public enum Sinks {
    /// A sink for `path` chosen by extension (.jsonl/.json/.ndjson or .csv); nil path means stdout JSONL.
    public static func open(path: String?, topK: Int, masks: Bool = false, clips: Bool = false) throws -> RecordSink {
        guard let path else { return JSONLinesSink(handle: .standardOutput, ownsHandle: false) }
        let url = URL(fileURLWithPath: path)
        let csv: Bool
        switch url.pathExtension.lowercased() {
        case "csv": csv = true
        case "jsonl", "json", "ndjson": csv = false
        default: throw PipelineError.unsupportedOutput(path)
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        // Written under a temporary name and renamed over `path` when the sink closes.
        AtomicFile.removeStaleTemporaries(of: url)
        let file = AtomicFile(replacing: url)
        let descriptor = Foundation.open(file.temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw PipelineError.cannotWrite(path, reason: String(cString: strerror(errno))) }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        return ReplacingSink(csv ? CSVSink(handle: handle, topK: topK, masks: masks, clips: clips) : JSONLinesSink(handle: handle, ownsHandle: true),
                             file: file)
    }
}

/// A file sink whose output replaces its target only once it is closed.
final class ReplacingSink: RecordSink {
    let sink: RecordSink
    let file: AtomicFile
    init(_ sink: RecordSink, file: AtomicFile) { self.sink = sink; self.file = file }
    func write(_ record: ResultRecord) throws {
        do { try sink.write(record) } catch { throw PipelineError.writeFailed(file.target.path, reason: Self.reason(error)) }
    }
    func close() throws {
        do { try sink.close() } catch {
            file.discard()
            throw PipelineError.writeFailed(file.target.path, reason: Self.reason(error))
        }
        try file.commit()
    }
    func discard() {
        try? sink.close()
        file.discard()
    }

    /// The operating system's words for a failed write (Foundation wraps them: "File too large", "No
    /// space left on device").
    static func reason(_ error: any Error) -> String {
        var error = error as NSError
        while let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError { error = underlying }
        if error.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(error.code))) }
        return "\(error.localizedDescription)"
    }
}

public enum PipelineError: Error, CustomStringConvertible {
    case cannotWrite(String, reason: String)
    case writeFailed(String, reason: String)
    case unsupportedOutput(String)
    public var description: String {
        switch self {
        case .cannotWrite(let path, let reason): return "\(path): cannot create the output file: \(reason)"
        case .writeFailed(let path, let reason): return "\(path): cannot write: \(reason); the file was left as it was"
        case .unsupportedOutput(let path): return "\(path): output must end in .jsonl or .csv"
        }
    }
}
