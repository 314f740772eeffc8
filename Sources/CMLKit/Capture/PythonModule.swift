import Glibc

/// Where `python/cml.py` is: installed beside the executable (`PREFIX/share/cml/python`), or in the
/// source tree the executable was built in (`.build/<triple>/<configuration>/` is three folders down).
enum PythonModule {
    static let directory: String? = {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        let executable = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var folder = executable
        if let slash = folder.lastIndex(of: "/") { folder = String(folder[..<slash]) }
        for candidate in ["\(folder)/../share/cml/python", "\(folder)/../../../python"] {
            if access(candidate + "/cml.py", R_OK) == 0 { return candidate }
        }
        return nil
    }()
}
