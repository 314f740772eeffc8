import Foundation
import Glibc

/// A counter of files and bytes drawn on stderr five times a second, only when stderr is a terminal.
/// Workers add to it from any thread.
public final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private let prefix: String
    private let totalFiles: Int64
    private let totalBytes: Int64
    private var files: Int64 = 0
    private var bytes: Int64 = 0
    private var stopped = false
    private let finished = NSCondition()
    private var drawn = false

    /// nil when stderr is not a terminal: progress then costs nothing.
    public static func onTerminal(_ prefix: String, files: Int, bytes: Int64) -> Progress? {
        guard Console.stderrIsTerminal, files > 0 else { return nil }
        return Progress(prefix, files: files, bytes: bytes)
    }

    private init(_ prefix: String, files: Int, bytes: Int64) {
        self.prefix = prefix
        totalFiles = Int64(files)
        totalBytes = bytes
        Thread.detachNewThread { [self] in draw() }
    }

    public func add(files: Int = 1, bytes: Int64) {
        lock.lock()
        self.files += Int64(files)
        self.bytes += bytes
        lock.unlock()
    }

    /// Stops drawing and clears the line.
    public func finish() {
        finished.lock()
        stopped = true
        finished.broadcast()
        while !drawn { finished.wait() }
        finished.unlock()
    }

    private func draw() {
        var first = true
        while true {
            finished.lock()
            if !stopped { _ = finished.wait(until: Date().addingTimeInterval(first ? 0.3 : 0.2)) }
            let stop = stopped
            finished.unlock()
            first = false
            lock.lock()
            let (files, bytes) = (self.files, self.bytes)
            lock.unlock()
            let text = stop ? "\r\u{1B}[K"
                : "\r\u{1B}[K\(prefix) \(formatCount(files))/\(formatCount(totalFiles)) files, "
                    + "\(formatBytes(bytes)) of \(formatBytes(totalBytes))"
            Console.error(text)
            if stop { break }
        }
        finished.lock()
        drawn = true
        finished.broadcast()
        finished.unlock()
    }
}

/// `20,000`.
public func formatCount(_ value: Int64) -> String {
    let digits = String(value.magnitude)
    var out = ""
    for (index, digit) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
        out.append(digit)
    }
    return value < 0 ? "-" + out : out
}

/// `512 B`, `1.5 KB`, `200 MB`, `1.07 GB` (powers of 1000, as `df -H` and file managers show).
public func formatBytes(_ value: Int64) -> String {
    if value < 1000 { return "\(value) B" }
    let units = ["KB", "MB", "GB", "TB", "PB"]
    var scaled = Double(value) / 1000
    var unit = 0
    while scaled >= 1000 && unit < units.count - 1 {
        scaled /= 1000
        unit += 1
    }
    let text = scaled >= 100 ? String(Int(scaled.rounded())) : formatNumber((scaled * (scaled >= 10 ? 10 : 100)).rounded() / (scaled >= 10 ? 10 : 100))
    return "\(text) \(units[unit])"
}
