import Foundation
import SluiceMedia
import SluiceModels
import SluiceTensor

/// Where artefact files go, named after their input: the file's name, then a short hash of its whole
/// path, so two inputs with the same name in different folders never share an artefact, and running
/// the same input again names it the same.
public enum OverlaySink {
    /// `FOLDER/NAME.HASH.overlay.mp4` for a video `…/NAME.EXT`.
    public static func path(for source: String, in folder: String) -> String {
        (folder as NSString).appendingPathComponent(baseName(source) + ".overlay.mp4")
    }

    /// `FOLDER/NAME.HASH.overlay.png` for an image `…/NAME.EXT`.
    public static func imagePath(for source: String, in folder: String) -> String {
        (folder as NSString).appendingPathComponent(baseName(source) + ".overlay.png")
    }

    /// `FOLDER/NAME.HASH.png` for an image, `FOLDER/NAME.HASH.fINDEX.png` for frame INDEX of a video.
    public static func maskPath(for source: String, frameIndex: Int?, in folder: String) -> String {
        let frame = frameIndex.map { String(format: ".f%06d", $0) } ?? ""
        return (folder as NSString).appendingPathComponent(baseName(source) + frame + ".png")
    }

    /// The input's file name without extension, and 8 hex digits of FNV-1a over its absolute path.
    static func baseName(_ source: String) -> String {
        let absolute = source.hasPrefix("/") ? source
            : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(source)
        let path = (absolute as NSString).standardizingPath
        var hash: UInt32 = 0x811c_9dc5
        for byte in path.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        let name = ((source as NSString).lastPathComponent as NSString).deletingPathExtension
        return name + "." + String(format: "%08x", hash)
    }
}

/// Writes the artefacts of each frame as it leaves the model, on the writer thread: mask PNGs, and
/// overlay videos drawn from the frames already decoded (the frame at the size the reader scaled it to,
/// with its top-1 label or its mask), streamed frame by frame so no video is held in memory. An overlay
/// goes to a temporary name and is renamed when its video ends, so a killed run never leaves half a file;
/// a stopped run deletes the overlays it had not finished. Failures become the record's error.
final class ArtefactWriter {
    private struct OpenOverlay {
        var writer: VideoWriter?
        let file: AtomicFile
        var temporary: String { file.temporary.path }
        var target: String { file.target.path }
        var lastPTS = -Double.infinity
        var error: String?
    }

    let plan: PipelinePlan
    let items: [InputItem]
    private var overlays: [Int: OpenOverlay] = [:]

    init(plan: PipelinePlan, items: [InputItem]) { self.plan = plan; self.items = items }

    func frame(item: Int, result: FrameResult, record: inout ResultRecord) {
        if let folder = plan.maskFolder, let mask = result.mask {
            let path = OverlaySink.maskPath(for: items[item].path, frameIndex: record.frameIndex, in: folder)
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try PNGEncoding.writeIndexed(path: path, width: mask.width, height: mask.height, indices: mask.classes,
                                             palette: plan.model.labels.palette ?? Palette.voc)
                record.mask?.file = path
            } catch {
                record.error = "\(error)"
            }
        }
        if let folder = plan.overlayFolder, var image = result.image, record.pts == nil {
            // An image source: one overlay picture per image.
            draw(record, mask: result.mask, on: &image)
            let path = OverlaySink.imagePath(for: items[item].path, in: folder)
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try PNGEncoding.writeRGB(image, path: path)
            } catch {
                record.error = "overlay \(path): \(error)"
            }
        }
        if let folder = plan.overlayFolder, var image = result.image, let pts = record.pts {
            var overlay = overlays[item] ?? open(item: item, folder: folder)
            defer { overlays[item] = overlay }
            // A frame nearest to several sampling ticks comes once per tick; a video shows it once.
            guard overlay.error == nil, pts > overlay.lastPTS else { return }
            draw(record, mask: result.mask, on: &image)
            do {
                if overlay.writer == nil {
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                    overlay.writer = try VideoWriter(path: overlay.temporary, width: image.width, height: image.height)
                }
                try overlay.writer!.append(image, pts: pts)
                overlay.lastPTS = pts
            } catch {
                overlay.error = "overlay \(overlay.target): \(error)"
                record.error = overlay.error
            }
        }
    }

    /// The item's video ended: a completed overlay is renamed into place, an unfinished one deleted.
    func end(item: Int, completed: Bool) {
        guard let overlay = overlays.removeValue(forKey: item), let writer = overlay.writer else { return }
        do {
            try writer.finish()
            if completed && overlay.error == nil {
                try overlay.file.commit()
                return
            }
        } catch {}
        overlay.file.discard()
    }

    /// Overlays still open when the run ends (it stopped): deleted, never left half-written.
    func abandonOpen() {
        for item in Array(overlays.keys) { end(item: item, completed: false) }
    }

    private func open(item: Int, folder: String) -> OpenOverlay {
        OpenOverlay(writer: nil, file: AtomicFile(replacing: URL(fileURLWithPath: OverlaySink.path(for: items[item].path, in: folder))))
    }

    /// A mask blended over the picture (semantic segmentation colours every pixel, as mmseg's
    /// `show_result`; video object masks leave the background, class 0, as it is) with a legend of the
    /// classes covering the most of it; a video classifier's top 3; or a classifier's top-1 label.
    private func draw(_ record: ResultRecord, mask: ClassMap?, on image: inout RGBImage) {
        let scale = max(1, min(image.width, image.height) / 180)
        let labels = plan.model.labels
        if let mask, mask.width == image.width, mask.height == image.height {
            var background: UInt16? = nil
            if case .streamingVideo = plan.model.loaded { background = 0 }
            image.blendClasses(mask.classes, colors: labels.color, opacity: 0.5, keepClass: background)
            let shown = (record.mask?.classes ?? []).filter { background == nil || $0.index != 0 }.prefix(Self.legendEntries)
            image.drawLegend(shown.map { (String(format: "%@ %.0f%%", $0.label, 100 * $0.fraction), labels.color($0.index)) },
                             scale: scale)
        } else if case .streamingVideo = plan.model.loaded, let top = record.topK, !top.isEmpty {
            // A video classifier's current top 3, one line each.
            let line = RGBImage.labelSize("x", scale: scale).height + scale
            for (row, prediction) in top.prefix(3).enumerated() {
                image.drawLabel(String(format: "%@ %.0f%%", prediction.label, 100 * prediction.score), x: 0, y: row * line,
                                scale: scale)
            }
        } else if let best = record.topK?.first {
            image.drawLabel(String(format: "%@ %.0f%%", best.label, 100 * best.score), x: 0, y: 0, scale: scale)
        } else if let top = record.mask?.classes.first {
            image.drawLabel(String(format: "%@ %.0f%%", top.label, 100 * top.fraction), x: 0, y: 0, scale: scale)
        }
    }

    /// Classes named in an overlay's legend.
    static let legendEntries = 5
}
