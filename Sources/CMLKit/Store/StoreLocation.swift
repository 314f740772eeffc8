import Glibc

/// Where the store is: `--store`, else `$CML_STORE`, else `~/.cml`.
public enum StoreLocation {
    public static func resolve(_ option: String?) -> String {
        if let option, !option.isEmpty { return option }
        if let env = getenv("CML_STORE"), env.pointee != 0 { return String(cString: env) }
        return FileSystem.homeDirectory + "/.cml"
    }

    /// How long a write waits for another writer: `$CML_BUSY_TIMEOUT` seconds, default 10.
    public static var busyTimeout: Double {
        if let env = getenv("CML_BUSY_TIMEOUT"), let value = Double(String(cString: env)), value >= 0 { return value }
        return 10
    }

    public static func open(_ option: String?) throws(CMLError) -> any Store {
        let location = resolve(option)
        if location.hasPrefix("http://") || location.hasPrefix("https://") {
            throw CMLError("remote stores (\(location)) are not supported yet", hint: "use a local directory")
        }
        return try SQLiteStore(directory: location, busyTimeout: busyTimeout)
    }
}
