import Glibc

/// Where the helpers a run's program uses are: `python/cml.py`, installed beside the executable
/// (`PREFIX/share/cml/python`) or in the source tree the executable was built in
/// (`.build/<triple>/<configuration>/` is three folders down), and the `cml-log` built or installed with it.
enum PythonModule {
    private static let executableFolder: String? = {
        guard let executable = try? FileSystem.readLink("/proc/self/exe") else { return nil }
        return FileSystem.directoryName(executable)
    }()

    /// The `cml-log` beside this executable, which `cml.artifact` runs (it need not be on `PATH`).
    static let cmlLog: String? = executableFolder.map { $0 + "/cml-log" }.flatMap { access($0, X_OK) == 0 ? $0 : nil }

    static let directory: String? = {
        guard let folder = executableFolder else { return nil }
        for candidate in ["\(folder)/../share/cml/python", "\(folder)/../../../python"] {
            if access(candidate + "/cml.py", R_OK) == 0 { return candidate }
        }
        return nil
    }()
}
