import Foundation
import Glibc

/// One reading of a process from /proc/PID/stat.
struct ProcessStat: Equatable {
    var pid: Int32
    var parent: Int32
    /// User plus system CPU time, in clock ticks.
    var cpuTicks: Int64
    /// Resident set size, in pages.
    var rssPages: Int64

    /// Parses a /proc/PID/stat line. The command name (field 2) is in parentheses and may itself hold
    /// spaces and parentheses, so fields are counted from the last ')'.
    init?(_ line: String) {
        guard let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"),
              let pid = Int32(line[..<open].trimmingCharacters(in: .whitespaces)) else { return nil }
        let fields = line[line.index(after: close)...].split(separator: " ")
        // After the name: state(3) ppid(4) … utime(14) stime(15) … rss(24); fields[0] is field 3.
        guard fields.count > 21, let parent = Int32(fields[1]), let user = Int64(fields[11]),
              let system = Int64(fields[12]), let rss = Int64(fields[21]) else { return nil }
        self.pid = pid
        self.parent = parent
        cpuTicks = user + system
        rssPages = rss
    }
}

/// Samples the run's process tree (the child and all its descendants) every `interval` seconds: CPU use
/// in percent of one core and resident memory in bytes, and, where `nvidia-smi` exists, each GPU's
/// utilisation and memory. Points are named `sys/…` and numbered by sample. Where no `nvidia-smi` is
/// found there are simply no GPU points.
final class ResourceSampler: @unchecked Sendable {
    private let root: Int32
    private let deliver: @Sendable ([MetricPoint]) -> Void
    private let gpuQuery: String?
    private var ticker: Ticker?
    /// Used by the ticker's thread only.
    private var previous: (time: Double, ticks: [Int32: Int64])?
    private var sample: Int64 = 0
    private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private static let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))

    init(root: Int32, interval: Double, deliver: @escaping @Sendable ([MetricPoint]) -> Void) {
        self.root = root
        self.deliver = deliver
        gpuQuery = FileSystem.findOnPath("nvidia-smi")
        ticker = Ticker(interval: interval, finalTick: false) { [self] _ in self.takeSample() }
    }

    /// Stops sampling and waits for the sampler thread.
    func stop() {
        ticker?.stop()
    }

    private func takeSample() {
        let now = Clock.now()
        let tree = Self.processTree(root: root)
        let ticks = Dictionary(tree.map { ($0.pid, $0.cpuTicks) }, uniquingKeysWith: { $1 })
        var points = [MetricPoint(key: "sys/rss_bytes", step: sample,
                                  value: Double(tree.reduce(0) { $0 + $1.rssPages } * Self.pageSize), time: now)]
        if let previous {
            // Ticks of processes seen both times; a process that started since counts from zero.
            let used = ticks.reduce(Int64(0)) { $0 + max(0, $1.value - (previous.ticks[$1.key] ?? 0)) }
            let percent = Double(used) / Self.ticksPerSecond / (now - previous.time) * 100
            points.append(MetricPoint(key: "sys/cpu_percent", step: sample, value: percent, time: now))
        }
        points += gpuPoints(step: sample, time: now)
        deliver(points)
        previous = (now, ticks)
        sample += 1
    }

    /// The process `root` and its descendants, from one pass over /proc.
    static func processTree(root: Int32) -> [ProcessStat] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var all: [ProcessStat] = []
        for name in names where name.first?.isNumber == true {
            if let text = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8), let stat = ProcessStat(text) {
                all.append(stat)
            }
        }
        var children: [Int32: [ProcessStat]] = [:]
        for stat in all { children[stat.parent, default: []].append(stat) }
        var tree = all.filter { $0.pid == root }
        var index = 0
        while index < tree.count {
            tree += children[tree[index].pid] ?? []
            index += 1
        }
        return tree
    }

    private func gpuPoints(step: Int64, time: Double) -> [MetricPoint] {
        guard let gpuQuery,
              let output = Self.capture([gpuQuery, "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"])
        else { return [] }
        return Self.parseGPUQuery(output).flatMap { gpu in [
            MetricPoint(key: "sys/gpu\(gpu.index)/util_percent", step: step, value: gpu.utilization, time: time),
            MetricPoint(key: "sys/gpu\(gpu.index)/memory_bytes", step: step, value: gpu.memoryMiB * 1_048_576, time: time),
        ] }
    }

    /// Lines of `index, utilization %, memory MiB` as nvidia-smi prints them with csv,noheader,nounits;
    /// lines it cannot read ("[N/A]", errors) are skipped.
    static func parseGPUQuery(_ text: String) -> [(index: Int, utilization: Double, memoryMiB: Double)] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 3, let index = Int(fields[0]), let utilization = Double(fields[1]),
                  let memory = Double(fields[2]) else { return nil }
            return (index, utilization, memory)
        }
    }

    /// Runs a short command and returns its stdout, or nil when it fails.
    static func capture(_ argv: [String]) -> String? {
        guard let ran = try? ChildProcess.capture(argv, environment: RunEnvironment.current().map { "\($0.0)=\($0.1)" }),
              ran.exit.code == 0 else { return nil }
        return ran.stdout
    }
}
