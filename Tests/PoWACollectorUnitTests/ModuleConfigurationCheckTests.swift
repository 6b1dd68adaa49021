import PoWACollector
import Testing

/// The pieces of `check`'s module warnings that need no server.
@Suite("check: module configuration, without a server")
struct ModuleConfigurationCheckTests {
    @Test("PostgreSQL's versions as it names them", arguments: [(190000, "19"), (180002, "18"), (90624, "9.6")])
    func postgresVersions(number: Int, name: String) {
        #expect(ModuleConfigurationCheck.postgresVersion(number) == name)
    }
}
