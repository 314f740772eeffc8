import Glibc

/// Wall-clock time as seconds since the Unix epoch, and RFC 3339 rendering of it.
public enum Clock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T10:21:40.123Z`.
    public static func rfc3339(_ seconds: Double) -> String {
        var whole = time_t(seconds.rounded(.down))
        var millis = Int((seconds - Double(whole)) * 1000 + 0.5)
        if millis >= 1000 { whole += 1; millis -= 1000 }
        var parts = tm()
        gmtime_r(&whole, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    /// `2026-11-27 10:21:40` (UTC), for table cells.
    public static func tableTime(_ seconds: Double) -> String {
        String(rfc3339(seconds).prefix(19)).replacingOccurrences(of: "T", with: " ")
    }

    /// Reads `2026-11-20`, `2026-11-20 08:30`, `2026-11-20T08:30:15.5` (local time) or the same ending
    /// in `Z` (UTC), as `rfc3339` writes it. Nil for anything else.
    public static func parseTime(_ text: String) -> Double? {
        var utc = false
        var body = Substring(text)
        if body.hasSuffix("Z") || body.hasSuffix("z") { utc = true; body.removeLast() }
        let dateAndTime = body.split(maxSplits: 1, whereSeparator: { $0 == "T" || $0 == " " })
        guard let datePart = dateAndTime.first else { return nil }
        let date = datePart.split(separator: "-", omittingEmptySubsequences: false).map { Int32($0) }
        guard date.count == 3, let year = date[0], let month = date[1], let day = date[2],
              datePart.count == 10, (1...12).contains(month), (1...31).contains(day) else { return nil }
        var hour: Int32 = 0, minute: Int32 = 0
        var second = 0.0
        if dateAndTime.count == 2 {
            let clock = dateAndTime[1].split(separator: ":", omittingEmptySubsequences: false)
            guard (2...3).contains(clock.count), let h = Int32(clock[0]), let m = Int32(clock[1]),
                  (0...23).contains(h), (0...59).contains(m) else { return nil }
            hour = h
            minute = m
            if clock.count == 3 {
                guard let s = Double(clock[2]), s >= 0, s < 61 else { return nil }
                second = s
            }
        }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_isdst = -1
        let whole = utc ? timegm(&parts) : mktime(&parts)
        return Double(whole) + second
    }
}
