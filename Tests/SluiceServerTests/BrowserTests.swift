import Foundation
import XCTest
import SluiceTestSupport

/// The web page in a real browser: headless Chromium, driven through its DevTools protocol by
/// `scripts/browser/drive_page.py`, uploads photos, watches the job's progress bar, opens the results
/// and saves a screenshot (`.work/browser/page.png`).
final class BrowserTests: XCTestCase {
    func testThePageUploadsWatchesAndShowsResults() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else {
            throw TestResources.missing("chromium is not installed (scripts/setup installs it)")
        }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        probe.arguments = ["-c", "import websocket"]
        try probe.run()
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else {
            throw TestResources.missing("python3-websocket is not installed (scripts/setup installs it)")
        }
        let server = try await TestServer.shared()
        let images = ["astronaut.png", "chelsea.png", "orange.jpg", "squirrel_cls.jpg"].map {
            TestResources.repository.appendingPathComponent("assets/images/\($0)").path
        }
        let screenshot = TestResources.repository.appendingPathComponent(".work/browser/page.png")
        try? FileManager.default.removeItem(at: screenshot)
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-browser-\(UUID().uuidString.prefix(8)).log")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let driver = Process()
        driver.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        driver.arguments = [TestResources.repository.appendingPathComponent("scripts/browser/drive_page.py").path,
                            "--url", server.base + "/", "--token", TestServer.token, "--screenshot", screenshot.path] + images
        let log = try FileHandle(forWritingTo: output)
        driver.standardOutput = log
        driver.standardError = log
        try driver.run()
        while driver.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        XCTAssertEqual(driver.terminationStatus, 0, text)
        let summary = (try? JSONSerialization.jsonObject(with: Data((text.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
        let cards = summary["cards"] as? [[String: Any]] ?? []
        XCTAssertEqual(Set(cards.compactMap { $0["name"] as? String }), ["astronaut.png", "chelsea.png", "orange.jpg", "squirrel_cls.jpg"])
        XCTAssertTrue(cards.allSatisfy { ($0["images"] as? Int) == 1 && ($0["top"] as? String) != nil }, "\(cards)")
        XCTAssertTrue(cards.contains { ($0["top"] as? String ?? "").hasPrefix("orange") }, "\(cards)")
        let progress = summary["progress"] as? [[Any]] ?? []
        XCTAssertEqual(progress.last?.first as? String, "done", "the bar reached the end: \(progress)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot.path))
    }
}
