@testable import CMLKit
import Testing

struct ReadOnlyOpenTests {
    /// A database without its write-ahead log is opened through a `file:` URI (`immutable=1`): characters
    /// a URI gives meaning to must not cut the path short.
    @Test func theDatabasePathIsEscapedForItsURI() {
        #expect(SQLiteStore.uriPath("/srv/runs 2026/a?b#c%d/é/cml.db") == "/srv/runs%202026/a%3Fb%23c%25d/%C3%A9/cml.db")
        #expect(SQLiteStore.uriPath("/tmp/cml-cli.x_y~z/cml.db") == "/tmp/cml-cli.x_y~z/cml.db")
    }
}
