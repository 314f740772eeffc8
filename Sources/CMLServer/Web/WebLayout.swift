import CMLKit

/// The one layout of every page: a skip link, the top bar (the nav and who is logged in), the page's
/// own content in `<main>`, and the stylesheet and script (`StaticAssets`). Nothing inline: the pages'
/// Content-Security-Policy runs only `/static/` scripts.
enum WebLayout {
    /// The sections of the nav, in order. One without a path is not built yet, and shown as text.
    enum Section: String, CaseIterable, Sendable {
        case runs, compare, datasets, queues

        var title: String { rawValue.prefix(1).uppercased() + rawValue.dropFirst() }

        var href: Href? {
            switch self {
            case .runs: Href()
            case .compare: Href("compare")
            case .datasets: Href("datasets")
            case .queues: Href("queues")
            }
        }
    }

    /// What the layout shows besides the page: the session's CSRF token (for the log-out form), the
    /// token's name when logged in, and a one-time notice.
    struct Chrome: Sendable {
        var csrf: String
        var tokenName: String?
        var loggedIn: Bool
        var notice: String?

        static let none = Chrome(csrf: "", tokenName: nil, loggedIn: false, notice: nil)
    }

    /// `scripts`: what the page needs besides the layout's own script (the charts').
    static func page(title: String, section: Section?, chrome: Chrome, scripts: [StaticAsset] = [], main: HTML) -> HTML {
        let nav = Section.allCases.map { item -> HTML in
            guard let href = item.href else {
                return "<li><span class=\"muted\" title=\"not built yet\">\(item.title)</span></li>"
            }
            let current: HTML = item == section ? " aria-current=\"page\"" : ""
            return "<li><a href=\"\(href)\"\(current)>\(item.title)</a></li>"
        }
        var who = HTML.empty
        if chrome.loggedIn {
            who = """
                <div class="who"><span>\(chrome.tokenName.map { "token " + $0 } ?? "logged in")</span>\
                <form method="post" action="/logout"><input type="hidden" name="csrf" value="\(chrome.csrf)">\
                <button type="submit">Log out</button></form></div>
                """
        }
        let notice: HTML = chrome.notice.map { (text: String) -> HTML in "<div class=\"notice\" role=\"status\">\(text)</div>" } ?? .empty
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(title) · cml</title>
            <link rel="icon" href="data:,">
            <link rel="stylesheet" href="\(StaticAssets.stylesheet.href)">
            <script src="\(StaticAssets.script.href)" defer></script>
            \(scripts.map { (asset: StaticAsset) -> HTML in "<script src=\"\(asset.href)\" defer></script>" })
            </head>
            <body>
            <a class="skip" href="#main">Skip to content</a>
            <header class="top">
            <a class="brand" href="/">cml</a>
            <nav class="main" aria-label="Sections"><ul>\(nav)</ul></nav>
            \(who)
            </header>
            <main id="main" tabindex="-1">
            \(notice)\(main)
            </main>
            </body>
            </html>

            """
    }

    /// A page that says what went wrong (a run that does not exist, a token without the scope).
    static func errorPage(_ error: CMLError, chrome: Chrome) -> HTML {
        page(title: "Error", section: nil, chrome: chrome, main: """
            <h1>\(error.kind == .notFound ? "Not found" : "Error")</h1>
            <div class="notice error" role="alert"><p>\(error.message)</p>\(error.hint.map { (hint: String) -> HTML in "<p class=\"muted\">\(hint)</p>" } ?? .empty)</div>
            <p><a href="/">Back to the runs</a></p>
            """)
    }
}
