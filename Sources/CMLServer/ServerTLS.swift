import CMLKit
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// The certificate and key `cml-serve` serves https with (`--tls-cert`, `--tls-key`), read and checked
/// before it listens, so that a wrong file is one line naming it rather than a failed handshake later.
public struct ServerTLS: Sendable {
    let configuration: TLSConfiguration

    /// `certificateFile`: PEM, the server's certificate first, then the chain up to its CA if any;
    /// `keyFile`: its unencrypted PEM private key.
    public init(certificateFile: String, keyFile: String) throws(CMLError) {
        let certificateBytes = try Self.read(certificateFile, option: "--tls-cert")
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(certificateBytes), !chain.isEmpty else {
            throw CMLError("--tls-cert: \(certificateFile) holds no PEM certificate", hint: "a file that begins -----BEGIN CERTIFICATE-----")
        }
        let keyBytes = try Self.read(keyFile, option: "--tls-key")
        guard let key = try? NIOSSLPrivateKey(bytes: keyBytes, format: .pem) else {
            throw CMLError("--tls-key: \(keyFile) holds no PEM private key, or an encrypted one",
                           hint: "a file that begins -----BEGIN PRIVATE KEY-----, without a passphrase")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        // BoringSSL refuses a key that does not match the certificate when the context is made; the
        // server makes its own from the same configuration.
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw CMLError("--tls-key: \(keyFile) is not the key of the certificate in \(certificateFile)")
        }
        self.configuration = configuration
    }

    private static func read(_ path: String, option: String) throws(CMLError) -> [UInt8] {
        do {
            return try FileSystem.readAll(path)
        } catch {
            throw CMLError("\(option): \(error.message)")
        }
    }
}

/// A child channel that answers a plain-HTTP request to the https port with a 400 saying so, in the
/// JSON of every error, instead of a connection dropped by a failed handshake. What begins like an HTTP
/// method (an uppercase letter; a TLS handshake begins with byte 0x16) is plain HTTP.
struct PlainHTTPRefusingChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(PlainHTTPRefuser(), position: .first)
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension PlainHTTPRefusingChannel: HTTPChannelHandler where Base: HTTPChannelHandler {
    var responder: HTTPChannelHandler.Responder { base.responder }
}

/// Looks at a connection's first byte only, then steps out of the way.
final class PlainHTTPRefuser: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let answer: String = {
        let body = JSON.object([
            ("error", .string("this server speaks https only")),
            ("hint", .string("use https:// in the URL")),
            ("kind", .string(CMLError.Kind.invalid.rawValue)),
        ]).serialized + "\n"
        return "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n" + body
    }()

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The rest of a refused request, read before the connection closes.
        if answered { return }
        let first = unwrapInboundIn(data).readableBytesView.first
        guard let first, (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first) else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        answered = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: Self.answer))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
