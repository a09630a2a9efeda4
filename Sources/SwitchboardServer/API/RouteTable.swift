import HTTPTypes

/// The API's routes by method and path template, to tell a wrong method (405) from an unknown path (404).
struct RouteTable: Sendable {
    private var routes: [(method: HTTPRequest.Method, segments: [Substring])] = []

    mutating func add(_ method: HTTPRequest.Method, _ path: String) {
        routes.append((method, path.split(separator: "/")))
    }

    /// Methods served on `path`; empty when no route matches it at all.
    func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "?").first.map { $0.split(separator: "/") } ?? []
        return routes.filter { route in
            route.segments.count == segments.count
                && zip(route.segments, segments).allSatisfy { template, segment in template.hasPrefix(":") || template == segment }
        }.map(\.method)
    }
}
