import Foundation
import XCTest
import SluiceTestSupport

/// The binary starts for a user who can read neither its build folder nor anything beside it: nothing
/// it needs at start-up is looked up on disk (a resource bundle lookup traps inside Foundation).
final class StartupTests: XCTestCase {
    func testStartsWhenTheBuildFolderIsUnreadable() throws {
        guard getuid() == 0 else { throw XCTSkip("runs the binary as nobody, which needs root") }
        guard run("/usr/bin/unshare", ["--mount", "true"]) == 0 else {
            throw XCTSkip("needs a private mount namespace (unshare --mount) to hide the build folder")
        }
        // A copy of the binary alone in a readable folder, and the build folder behind a 0700 root-owned
        // mount in a namespace of its own, so that nothing else sees the change.
        let products = SluiceCLI.executable.resolvingSymlinksInPath().deletingLastPathComponent()
        let folder = URL(fileURLWithPath: "/tmp/sluice-startup-\(UUID().uuidString)")
        let fm = FileManager.default
        try fm.createDirectory(at: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        defer { try? fm.removeItem(at: folder) }
        let binary = folder.appendingPathComponent("sluice")
        try fm.copyItem(at: SluiceCLI.executable, to: binary)
        let output = folder.appendingPathComponent("out.txt")
        let script = """
            mount -t tmpfs -o mode=0700 tmpfs "$1" || exit 77
            exec /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups env SLUICE_HOME="$2" "$3" models list >"$4" 2>&1
            """
        let status = run("/usr/bin/unshare", ["--mount", "/bin/sh", "-c", script, "sh", products.path,
                                              folder.appendingPathComponent("home").path, binary.path, output.path])
        if status == 77 { throw XCTSkip("cannot mount over the build folder here") }
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.hasPrefix("efficientnet_lite0\tefficientnet_lite\t"), text)
    }

    private func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
