import Testing

@testable import CMLKit

/// How an answer that is not a success becomes a `CMLError`.
struct HTTPResponseTests {
    static let url = "http://127.0.0.1:8080/api/v1/runs/abc"

    static func answer(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(url: url, status: status, body: Array(body.utf8))
    }

    @Test func successesAreNoErrors() {
        for status in [200, 204, 206] { #expect(Self.answer(status, #"{"error": "x"}"#).cmlError == nil) }
    }

    @Test func cmlServeErrorsKeepMessageHintAndKind() throws {
        let error = try #require(Self.answer(404, #"{"error":"no run with id abc","hint":"nor one named so","kind":"not_found"}"#).cmlError)
        #expect(error.message == "no run with id abc" && error.hint == "nor one named so" && error.kind == .notFound && error.exitCode == 1)
        // Every kind makes the round trip, whatever status carried it.
        for kind in CMLError.Kind.allCases {
            let carried = try #require(Self.answer(500, #"{"error":"e","kind":"\#(kind.rawValue)"}"#).cmlError)
            #expect(carried.kind == kind && carried.hint == nil)
            #expect(carried.exitCode == (kind == .invalid ? 2 : 1), "\(kind)")
        }
        // A kind this client does not know yet: the status decides.
        #expect(Self.answer(409, #"{"error":"e","kind":"newer_kind"}"#).cmlError?.kind == .conflict)
    }

    @Test func otherBodiesGetTheKindTheirStatusImplies() throws {
        let expected: [(Int, CMLError.Kind)] = [
            (400, .invalid), (413, .invalid), (401, .unauthenticated), (403, .refused), (404, .notFound), (409, .conflict),
            (429, .busy), (502, .unavailable), (503, .unavailable), (504, .unavailable), (500, .failed), (302, .failed), (418, .failed),
        ]
        for (status, kind) in expected {
            let error = try #require(Self.answer(status, "").cmlError)
            #expect(error.kind == kind, "\(status)")
            #expect(error.message == "\(Self.url) answered HTTP \(status)", "\(error)")
        }
        let page = try #require(Self.answer(503, "  Service Unavailable  \n<html>…</html>").cmlError)
        #expect(page.message == "\(Self.url) answered HTTP 503: Service Unavailable")
        let json = try #require(Self.answer(500, #"{"message": "not cml-serve's shape"}"#).cmlError)
        #expect(json.kind == .failed && json.message.hasPrefix("\(Self.url) answered HTTP 500: {"))
    }

    @Test func printedURLsLeaveOutTheirPassword() {
        #expect(HTTPClient.printable("http://me:secret@host:1/a@b") == "http://host:1/a@b")
        #expect(HTTPClient.printable("https://host/x?user=a@b") == "https://host/x?user=a@b")
        #expect(HTTPClient.printable("http://host") == "http://host")
    }
}
