import Foundation

/// One input found on disk, or a path that could not be listed (which becomes an error record).
public struct InputItem: Sendable, Equatable {
    public var path: String
    public var listingError: String?
    public init(path: String, listingError: String? = nil) { self.path = path; self.listingError = listingError }
}

/// Expands files and folders into a stable, sorted list of inputs (images unless told otherwise). Folders are walked
/// recursively and contribute files with image extensions; files named explicitly are always taken,
/// whatever their extension, so a mislabelled file is reported rather than silently skipped.
public enum InputWalker {
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "jpe", "png"]
    public static let videoExtensions: Set<String> = ["mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "flv", "wmv"]

    /// `extensions`: what a file found in a folder must end with to be taken.
    public static func expand(_ paths: [String], recursive: Bool = true,
                              extensions: Set<String> = imageExtensions) -> [InputItem] {
        var items: [InputItem] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                items.append(InputItem(path: path, listingError: "no such file or directory"))
                continue
            }
            if isDirectory.boolValue {
                walk(directory: path, recursive: recursive, extensions: extensions, into: &items)
            } else {
                items.append(InputItem(path: path))
            }
        }
        return items
    }

    /// Inputs named one per line in a list file; blank lines and `#` comments are skipped, relative
    /// paths are taken from the list file's folder.
    public static func readList(_ path: String) throws -> [InputItem] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let folder = (path as NSString).deletingLastPathComponent
        // Each line is expanded as an `images:` source expands its paths: a folder gives all its images,
        // walked recursively in byte-wise order; a file is taken as it is.
        let paths = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { line in line.hasPrefix("/") ? line : (folder as NSString).appendingPathComponent(line) }
        return expand(paths)
    }

    private static func walk(directory: String, recursive: Bool, extensions: Set<String>, into items: inout [InputItem]) {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            items.append(InputItem(path: directory, listingError: "cannot list directory: \(describe(error))"))
            return
        }
        // Byte-wise order of names: stable across machines and locales.
        for name in entries.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) where !name.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            let isInput = extensions.contains((name as NSString).pathExtension.lowercased())
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                // Listed but not there: a symbolic link whose target is gone.
                if isInput { items.append(InputItem(path: path, listingError: "broken symbolic link")) }
                continue
            }
            if isDirectory.boolValue {
                if recursive { walk(directory: path, recursive: true, extensions: extensions, into: &items) }
            } else if isInput {
                items.append(InputItem(path: path))
            }
        }
    }

    static func describe(_ error: Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
           underlying.domain == NSPOSIXErrorDomain, let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        return nsError.localizedDescription
    }
}
