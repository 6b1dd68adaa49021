import PoWACollector
import Testing

/// The control protocol's messages, without a server.
@Suite("Control requests and replies")
struct ControlRequestTests {
    @Test("requests are split as data; answers stay under 8000 bytes")
    func parsing() {
        #expect(ControlRequest(payload: "RELOAD r4242 ") == ControlRequest(payload: "RELOAD   r4242"))
        let request = ControlRequest(payload: "WORKERS_STATUS r1 3")
        #expect(request.command == "WORKERS_STATUS" && request.channel == "r1" && request.arguments == ["3"])
        #expect(ControlRequest(payload: "RELOAD").channel == "-")
        #expect(!ControlRequest(payload: "RELOAD -").wantsReply)
        #expect(ControlRequest(payload: "").command == "")
        let long = ControlReply(command: "X", status: .ok, data: String(repeating: "é", count: 5000))
        #expect(long.payload == "X KO answer too long")
        let hostile = ControlReply(command: String(repeating: "A", count: 9000), status: .unknown, data: "")
        #expect(hostile.payload.utf8.count < 100)
    }
}
