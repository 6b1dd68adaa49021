import Foundation
import PoWACollector
import TestBed
import Testing

/// One version, said everywhere: the constant, `--version`, and the changelog's latest release
/// (the package and the image take theirs from `--version`).
@Suite("Release", .timeLimit(.minutes(1)))
struct ReleaseTests {
    @Test("CHANGELOG.md's latest release is Collector.version, dated, in Keep a Changelog's form")
    func changelog() throws {
        let path = TestBed.packageRoot.appendingPathComponent("CHANGELOG.md").path
        let headings = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            .filter { $0.hasPrefix("## [") }
        #expect(headings.first == "## [Unreleased]")
        let latest = try #require(headings.dropFirst().first)
        #expect(latest.hasPrefix("## [\(Collector.version)] - "), "\(latest)")
        let date = latest.split(separator: " ").last.map(String.init) ?? ""
        #expect(date.wholeMatch(of: /\d{4}-\d{2}-\d{2}/) != nil, "\(latest)")
    }

    @Test("powa-collector --version prints Collector.version alone")
    func versionFlag() async throws {
        let process = try DaemonProcess(DaemonProcess.collectorBinary, ["--version"])
        #expect(await process.wait() == 0)
        #expect(process.output == Collector.version + "\n")
    }
}
