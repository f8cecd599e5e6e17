import Foundation
import XCTest
import SluiceTestSupport
import SluiceTensor

/// The output disk fills up while a run writes its sink files (RLIMIT_FSIZE through `prlimit`: every
/// write past the limit fails with EFBIG, as on a full disk): the run says which file and why in one
/// line, the sink files keep their old contents with no temporary left beside them, the committed
/// results stay in the job store, and the same command with room to write produces the whole files.
final class DiskFaultTests: XCTestCase {
    struct Job {
        let root, out, home, pipeline: URL
        var jsonl: URL { out.appendingPathComponent("r.jsonl") }
        var csv: URL { out.appendingPathComponent("r.csv") }
    }

    /// 48 photos (copies of the bundled six, readable by anyone), a pipeline with both sinks and top-100
    /// records (a JSONL sink of ~300 KB), and a job store folder anyone may write.
    func makeJob() throws -> Job {
        let root = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-disk-\(UUID().uuidString)")
        addTeardownBlock {
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.appendingPathComponent("out").path)
            try? FileManager.default.removeItem(at: root)
        }
        let images = root.appendingPathComponent("images")
        let job = Job(root: root, out: root.appendingPathComponent("out"), home: root.appendingPathComponent("home"),
                      pipeline: root.appendingPathComponent("p.yaml"))
        for folder in [images, job.out, job.home] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: job.home.path)
        let bundled = TestResources.repository.appendingPathComponent("assets/images")
        for photo in try FileManager.default.contentsOfDirectory(atPath: bundled.path).sorted() {
            for copy in 0..<8 {
                try FileManager.default.copyItem(at: bundled.appendingPathComponent(photo),
                                                 to: images.appendingPathComponent("\(copy)_\(photo)"))
            }
        }
        try """
            name: disk-faults
            source: { images: images }
            stages:
              - model: efficientnet_lite0
                weights: \(try TestResources.lite0Weights(readableByAnyoneIn: root).path)
              - topk: 100
            sink: { jsonl: out/r.jsonl, csv: out/r.csv }
            """.write(to: job.pipeline, atomically: true, encoding: .utf8)
        return job
    }

    func testAFullDiskDuringSinkExportLeavesTheFilesAsTheyWereAndKeepsTheResults() throws {
        let job = try makeJob()
        let (out, home, pipeline) = (job.out, job.home, job.pipeline)
        let (jsonl, csv) = (job.jsonl, job.csv)

        let first = try SluiceCLI.run(["run", pipeline.path], home: home)
        XCTAssertEqual(first.status, 0, first.output)
        let whole = (try Data(contentsOf: jsonl), try Data(contentsOf: csv))
        XCTAssertGreaterThan(whole.0.count, 200_000, "the JSONL sink must outgrow the limit below")
        for file in [jsonl, csv] { try Data("old\n".utf8).write(to: file) }

        let full = try SluiceCLI.run(["run", pipeline.path], home: home, fileSizeLimit: 100 * 1024)
        XCTAssertEqual(full.status, 1, full.output)
        let last = full.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.hasPrefix("sluice: error: \(out.path)/r."), last)
        XCTAssertTrue(last.hasSuffix(": cannot write: File too large; the file was left as it was"), last)
        XCTAssertEqual(try String(contentsOf: jsonl, encoding: .utf8), "old\n")
        XCTAssertEqual(try String(contentsOf: csv, encoding: .utf8), "old\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(), ["r.csv", "r.jsonl"],
                       "no temporary left behind")

        let shown = try SluiceCLI.run(["jobs", "list"], home: home)
        XCTAssertTrue(shown.output.contains("48 done"), shown.output)
        let again = try SluiceCLI.run(["run", pipeline.path], home: home)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertEqual(try Data(contentsOf: jsonl), whole.0, "the committed records, whole and once")
        XCTAssertEqual(try Data(contentsOf: csv), whole.1)
    }

    /// The output folder is read-only (a run as the unprivileged `nobody`, since root writes anywhere):
    /// the export fails with the reason, the results stay committed, and with write access restored the
    /// same command writes the files.
    func testAReadOnlyOutputFolderFailsTheExportAndKeepsTheResults() throws {
        let job = try makeJob()
        let user: String? = getuid() == 0 ? "65534" : nil
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: job.out.path)
        let refused = try SluiceCLI.run(["run", job.pipeline.path], home: job.home, as: user)
        XCTAssertEqual(refused.status, 1, refused.output)
        let last = refused.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertEqual(last, "sluice: error: \(job.jsonl.path): cannot create the output file: Permission denied")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job.out.path), [])
        let shown = try SluiceCLI.run(["jobs", "list"], home: job.home, as: user)
        XCTAssertTrue(shown.output.contains("48 done"), shown.output)

        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: job.out.path)
        let again = try SluiceCLI.run(["run", job.pipeline.path], home: job.home, as: user)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("48 of 48 items already done"), again.output)
        XCTAssertEqual(try JobsCLI.records(job.jsonl).count, 48)
    }

    /// Another process holds the job store's write lock longer than the store waits (10 s): the run
    /// fails with one line naming the store and the lock, commits nothing twice, and the same command
    /// finishes the job once the lock is gone.
    func testAJobStoreLockedByAnotherProcessIsOneLineAndLosesNothing() throws {
        let job = try makeJob()
        let first = try SluiceCLI.run(["run", job.pipeline.path], home: job.home)
        XCTAssertEqual(first.status, 0, first.output)
        let store = job.home.appendingPathComponent("jobs.sqlite")
        try FileManager.default.removeItem(at: job.jsonl)

        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = ["-c", """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            time.sleep(30)
            """, store.path]
        let pipe = Pipe()
        holder.standardOutput = pipe
        try holder.run()
        defer { if holder.isRunning { holder.terminate() }; holder.waitUntilExit() }
        XCTAssertEqual(String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self)
                           .trimmingCharacters(in: .whitespacesAndNewlines), "locked")

        let locked = try SluiceCLI.run(["run", job.pipeline.path, "--fresh"], home: job.home)
        XCTAssertEqual(locked.status, 1, locked.output)
        let last = locked.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertEqual(last, "sluice: error: job store \(store.path) is locked by another process (waited 10 s): "
                       + "database is locked; try again when it is done")
        holder.terminate()
        holder.waitUntilExit()

        let again = try SluiceCLI.run(["run", job.pipeline.path], home: job.home)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("48 of 48 items already done"), "--fresh deleted nothing: \(again.output)")
        let records = try JobsCLI.records(job.jsonl)
        XCTAssertEqual(records.count, 48)
        XCTAssertEqual(Set(records.map(\.source)).count, 48)
    }
}

extension DiskFaultTests {
    /// SIGTERM and SIGKILL at random moments of runs that only export (every item done): each sink file
    /// is always the whole file, never a part of one, the store keeps every result, and the temporaries
    /// of killed writers are cleared by the next export.
    func testKillsDuringSinkExportNeverLeaveHalfAFile() throws {
        let job = try makeJob()
        let first = try SluiceCLI.run(["run", job.pipeline.path], home: job.home)
        XCTAssertEqual(first.status, 0, first.output)
        let whole = (try Data(contentsOf: job.jsonl), try Data(contentsOf: job.csv))
        let started = Date()
        XCTAssertEqual(try SluiceCLI.run(["run", job.pipeline.path], home: job.home).status, 0)
        let exportRun = Date().timeIntervalSince(started)
        var generator = SplitMix64(seed: 20261128)
        var killed = 0
        for round in 0..<16 {
            let run = try SluiceCLI.start(["run", job.pipeline.path], home: job.home)
            let delay = Double(generator.next() % 1000) / 1000 * exportRun
            Thread.sleep(forTimeInterval: delay)
            let signal = round % 2 == 0 ? SIGKILL : SIGTERM
            if run.isRunning { kill(run.processIdentifier, signal); killed += 1 }
            run.waitUntilExit()
            XCTAssertEqual(try Data(contentsOf: job.jsonl), whole.0, "round \(round): the JSONL file is whole")
            XCTAssertEqual(try Data(contentsOf: job.csv), whole.1, "round \(round): the CSV file is whole")
        }
        print("KILLS \(killed) of 16 runs killed, export-only run \(exportRun) s")
        XCTAssertGreaterThan(killed, 8)
        let last = try SluiceCLI.run(["run", job.pipeline.path], home: job.home)
        XCTAssertEqual(last.status, 0, last.output)
        XCTAssertEqual(try Data(contentsOf: job.jsonl), whole.0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: job.out.path).sorted(), ["r.csv", "r.jsonl"],
                       "the killed writers' temporaries are gone")
    }
}
