import Foundation

/// A GET through curl, as a monitoring system would scrape: the status and the body.
public func httpGet(_ url: String) async throws -> (status: Int, body: String) {
    let bodyPath = "/tmp/powa-http-\(UUID().uuidString)"
    defer { unlink(bodyPath) }
    let client = try DaemonProcess("/usr/bin/curl", ["-sS", "--max-time", "10", "-o", bodyPath, "-w", "%{http_code}", url])
    let code = await client.wait()
    guard code == 0, let status = Int(client.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw TestBedError(message: "curl \(url) failed (\(code)): \(client.output)")
    }
    return (status, (try? String(contentsOfFile: bodyPath, encoding: .utf8)) ?? "")
}
