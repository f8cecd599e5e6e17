import Foundation
import SluiceMedia

/// Which server-side files a request may name: only those under the configured roots (and the
/// uploads), judged on the real path, so neither `..` nor a symbolic link leads outside.
struct InputPolicy: Sendable {
    let roots: [String]

    init(roots: [URL]) {
        self.roots = roots.map { Self.realPath($0.path) ?? $0.standardizedFileURL.path }
    }

    /// The path with every symbolic link and `..` resolved; nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Throws `APIError.forbidden` unless `path` (which must exist) lies under a root.
    func check(_ path: String) throws {
        guard let real = Self.realPath(path) else {
            if roots.contains(where: { Self.isInside(URL(fileURLWithPath: path).standardizedFileURL.path, $0) }) {
                throw APIError.notFound("no such file: \(path)")
            }
            throw APIError.forbidden("\(path) is not under an input root of this server")
        }
        guard roots.contains(where: { Self.isInside(real, $0) }) else {
            throw APIError.forbidden(real == path || real == URL(fileURLWithPath: path).standardizedFileURL.path
                                     ? "\(path) is not under an input root of this server"
                                     : "\(path) leads to \(real), which is not under an input root of this server")
        }
    }

    static func isInside(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }
}

/// What an uploaded file is, from its first bytes rather than its name.
enum UploadKind: String, Sendable {
    case jpeg, png, mp4, webm, avi

    var fileExtension: String {
        switch self {
        case .jpeg: "jpg"
        case .png: "png"
        case .mp4: "mp4"
        case .webm: "webm"
        case .avi: "avi"
        }
    }

    var isVideo: Bool { self != .jpeg && self != .png }

    static func sniff(_ bytes: some Collection<UInt8>) -> UploadKind? {
        let head = Array(bytes.prefix(12))
        if let image = ImageFormat.sniff(Data(head)) {
            switch image {
            case .jpeg: return .jpeg
            case .png: return .png
            default: return nil
            }
        }
        if head.count >= 12, Array(head[4..<8]) == Array("ftyp".utf8) { return .mp4 }
        if head.starts(with: [0x1A, 0x45, 0xDF, 0xA3]) { return .webm }
        if head.count >= 12, head.starts(with: Array("RIFF".utf8)), Array(head[8..<12]) == Array("AVI ".utf8) { return .avi }
        return nil
    }

    static let accepted = "JPEG, PNG, MP4/MOV, WebM/Matroska or AVI"
}

/// A file name safe to keep: its last component, with anything but letters, digits, '.', '-' and '_'
/// replaced, never empty or hidden.
func safeFileName(_ name: String, kind: UploadKind) -> String {
    let last = name.split(separator: "/").last.map(String.init) ?? ""
    var cleaned = String(last.unicodeScalars.map { scalar -> Character in
        CharacterSet.alphanumerics.contains(scalar) && scalar.isASCII || "._-".unicodeScalars.contains(scalar) ? Character(scalar) : "_"
    })
    while cleaned.hasPrefix(".") { cleaned.removeFirst() }
    if cleaned.isEmpty { cleaned = "upload" }
    let known = [kind.fileExtension, "jpeg", "mov", "mkv", "m4v"]
    if !known.contains((cleaned as NSString).pathExtension.lowercased()) { cleaned += "." + kind.fileExtension }
    return String(cleaned.prefix(120))
}
