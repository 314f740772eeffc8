import Foundation
import Testing

struct OutputTests {
    /// With SIGPIPE ignored (as a parent may leave it), a write to a reader that went away is an error the
    /// command's edge turns into a quiet exit 0: long output, and `log --follow`, stop there.
    @Test func aReaderThatWentAwayEndsTheCommandQuietly() throws {
        let box = try Sandbox()
        let record = try box.run("cml-run", ["--monitor-interval", "0", "--", "python3", "-c",
                                             "for i in range(20000): print(f'step: {i} loss: {i / 1000}')"])
        #expect(record.status == 0, "\(record.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        for command in ["metrics \(id)", "log \(id)", "log --follow \(id)"] {
            let result = try box.run("/bin/bash", ["-c", "trap '' PIPE; set -o pipefail; '\(binDirectory)/cml-run' \(command) 2>err | head -c 10 >/dev/null"])
            #expect(result.status == 0, "\(command): \(result.stderr)")
            #expect(try String(contentsOfFile: box.work + "/err", encoding: .utf8).isEmpty, "\(command)")
        }
    }
}
