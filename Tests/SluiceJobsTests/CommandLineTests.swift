import Foundation
import XCTest
import SluiceTestSupport
import SluiceJobs

/// Commands a user runs that no other test drives: Ctrl-C during a run, `models list`, `benchmark`,
/// `probe`, and a pipeline file with a repeated key or nothing in it.
extension PipelineRunTests {
    /// Ctrl-C: no new item starts, the items in flight are committed, the sinks are written, exit 130;
    /// running the same command again finishes the job with every record once.
    func testCtrlCStopsARunWithExit130AndKeepsWhatItCommitted() throws {
        let root = try scratch()
        let (run, pipeline, home, store, id) = try startRunAndWaitForItsFirstCommit("interrupt", in: root)
        run.interrupt()   // SIGINT, as Ctrl-C sends it
        run.waitUntilExit()
        let log = try String(contentsOf: root.appendingPathComponent("run.log"), encoding: .utf8)
        XCTAssertEqual(run.terminationStatus, 130, log)
        XCTAssertTrue(log.contains("interrupted: job \(id) stopped after"), log)
        let partial = try store.status(job: id)
        XCTAssertLessThan(partial.done, 300, "interrupted before the end")
        XCTAssertEqual(partial.claimed, 0, "claims given back")
        let written = try JobsCLI.records(root.appendingPathComponent("out/interrupt.jsonl"))
        XCTAssertEqual(written.count, partial.done, "the sink holds exactly the committed records")

        let again = try SluiceCLI.run(["run", pipeline.path], home: home)
        XCTAssertEqual(again.status, 0, again.output)
        let final = try JobsCLI.records(root.appendingPathComponent("out/interrupt.jsonl"))
        XCTAssertEqual(final.count, 300)
        XCTAssertEqual(Set(final.map(\.source)).count, 300)
        XCTAssertEqual(Array(final.prefix(written.count)), written, "committed results are kept as they were")
    }
}

final class CommandLineTests: XCTestCase {
    func temporaryHome() throws -> URL {
        let home = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: home) }
        return home
    }

    /// `--help` prints the help and exits 0, for the root and for a command (it printed
    /// "sluice: error: CommandError(…helpRequested…)" and exited 1).
    func testHelpPrintsTheHelpAndExitsZero() throws {
        let root = try SluiceCLI.run(["--help"])
        XCTAssertEqual(root.status, 0, root.output)
        XCTAssertTrue(root.stdout.contains("USAGE: sluice <subcommand>"), root.output)
        XCTAssertTrue(root.stdout.contains("worker"), root.output)
        let worker = try SluiceCLI.run(["worker", "--help"])
        XCTAssertEqual(worker.status, 0, worker.output)
        XCTAssertTrue(worker.stdout.contains("--max-attempts"), worker.output)
        XCTAssertTrue(worker.stdout.contains("--queue <url>"), worker.output)
        XCTAssertEqual(worker.stderr, "")
    }

    func testModelsListNamesEveryModelWithItsTaskAndWhetherItIsImported() throws {
        let home = try temporaryHome()
        let before = try SluiceCLI.run(["models", "list"], home: home)
        XCTAssertEqual(before.status, 0, before.output)
        let lines = before.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("efficientnet_lite0\tefficientnet_lite\tnot imported") }, before.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("upernet_hornet_tiny_gf\tupernet_hornet\tnot imported") }, before.stdout)
        XCTAssertEqual(lines.filter { $0.hasPrefix("hornet_") || $0.hasPrefix("vig_") || $0.hasPrefix("upernet_") }.count, 22)

        let weights = try TestResources.lite0Weights().path
        let imported = try SluiceCLI.run(["models", "import", weights, "--model", "efficientnet_lite0"], home: home)
        XCTAssertEqual(imported.status, 0, imported.output)
        let after = try SluiceCLI.run(["models", "list"], home: home)
        let lite0 = try XCTUnwrap(after.stdout.split(separator: "\n").first { $0.hasPrefix("efficientnet_lite0\t") })
        XCTAssertFalse(lite0.contains("not imported"), String(lite0))
    }

    func testBenchmarkPrintsOneJSONLineAndRefusesABadSize() throws {
        let weights = try TestResources.lite0Weights().path
        let result = try SluiceCLI.run(["benchmark", "--model", "efficientnet_lite0", "--weights", weights, "--batch", "2",
                                        "--threads", "1", "--seconds", "0", "--passes", "1"], home: try temporaryHome())
        XCTAssertEqual(result.status, 0, result.output)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, result.stdout)
        let row = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(row["engine"] as? String, "sluice")
        XCTAssertEqual(row["threads"] as? Int, 1)
        XCTAssertEqual(row["batch"] as? Int, 2)
        XCTAssertEqual(row["size"] as? Int, 224)
        XCTAssertGreaterThan(row["images_per_s"] as? Double ?? 0, 0)

        let bad = try SluiceCLI.run(["benchmark", "--model", "efficientnet_lite0", "--weights", weights, "--size", "0x3"],
                                    home: try temporaryHome())
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("--size 0x3: expected N or HxW"), bad.stderr)
    }

    /// `probe` against ffprobe's own count of the bundled clip, and a missing file as one JSON error.
    func testProbeReportsWhatFFprobeCounts() throws {
        let video = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4").path
        let result = try SluiceCLI.run(["probe", video, "--decode"], home: try temporaryHome())
        XCTAssertEqual(result.status, 0, result.output)
        let facts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let ffprobe = Process()
        ffprobe.executableURL = URL(fileURLWithPath: "/usr/bin/ffprobe")
        guard FileManager.default.isExecutableFile(atPath: ffprobe.executableURL!.path) else {
            throw TestResources.missing("ffprobe is not installed (scripts/setup installs ffmpeg)")
        }
        ffprobe.arguments = ["-v", "error", "-count_frames", "-select_streams", "v:0",
                             "-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", video]
        let pipe = Pipe()
        ffprobe.standardOutput = pipe
        try ffprobe.run()
        ffprobe.waitUntilExit()
        let expected = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").compactMap { Int($0) }
        XCTAssertEqual(expected.count, 3)
        XCTAssertEqual(facts["width"] as? Int, expected[0])
        XCTAssertEqual(facts["height"] as? Int, expected[1])
        XCTAssertEqual(facts["decoded_frames"] as? Int, expected[2])
        XCTAssertEqual(facts["frames"] as? Int, expected[2])
        XCTAssertTrue(facts["error"] is NSNull)

        let missing = try SluiceCLI.run(["probe", "/nonexistent/clip.mp4"], home: try temporaryHome())
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stdout.contains("\"error\": \"/nonexistent/clip.mp4: cannot open video"), missing.stdout)
    }

    /// A pipeline file with a repeated key, or nothing in it: one line naming file:line:column, exit 1.
    func testRepeatedKeysAndEmptyPipelinesAreOneLineErrors() throws {
        let home = try temporaryHome()
        let repeated = home.appendingPathComponent("repeated.yaml"), empty = home.appendingPathComponent("empty.yaml")
        try "name: a\nsource: { images: x }\nname: b\nstages: [{model: efficientnet_lite0}]\nsink: {jsonl: o.jsonl}\n"
            .write(to: repeated, atomically: true, encoding: .utf8)
        try "".write(to: empty, atomically: true, encoding: .utf8)
        let first = try SluiceCLI.run(["run", repeated.path], home: home)
        XCTAssertEqual(first.status, 1)
        XCTAssertTrue(first.stderr.contains("\(repeated.path):3:1: duplicate key 'name' (first at line 1)"), first.stderr)
        XCTAssertEqual(first.stderr.split(separator: "\n").count, 2, "the problem, then the summary: \(first.stderr)")
        let second = try SluiceCLI.run(["run", empty.path], home: home)
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains("\(empty.path):1:1: a pipeline is a mapping with keys source, stages, sink"), second.stderr)
    }
}
