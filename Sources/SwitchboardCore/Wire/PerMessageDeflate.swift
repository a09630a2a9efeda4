/// The permessage-deflate negotiation of RFC 7692 §5 and §7, as the server sees it (SPEC §12).
///
/// Switchboard compresses each publication once and shares the compressed frame between recipients, which
/// needs `server_no_context_takeover`: every message is compressed on its own, so its bytes do not depend on
/// what a connection received before. It also answers `client_no_context_takeover` (which RFC 7692 §7.1.1.2
/// lets a server add unasked), so a client's messages are independent too and a connection keeps no
/// decompression state between them. Offers that ask for a server window below 15 bits are declined (the
/// shared compressor uses the full window; the client then falls back to the next offer, or to plain frames).
public enum PerMessageDeflate {
    /// The extension's token.
    public static let name = "permessage-deflate"

    /// The `Sec-WebSocket-Extensions` response value accepting the first acceptable permessage-deflate offer in
    /// the request's header values, or nil to decline (the connection then uses plain frames).
    public static func response(toOffers headerValues: [String]) -> String? {
        for offer in headerValues.flatMap({ $0.split(separator: ",") }) {
            guard let accepted = accept(offer) else { continue }
            return accepted
        }
        return nil
    }

    /// The response to one offer (`permessage-deflate; param; param=value`), or nil if it cannot be accepted.
    static func accept(_ offer: Substring) -> String? {
        let parts = offer.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingASCIISpaces() }
        guard let extensionName = parts.first, extensionName.lowercased() == name else { return nil }
        var seen: Set<String> = []
        var echoServerWindow = false
        for parameter in parts.dropFirst() {
            guard !parameter.isEmpty else { return nil }
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingASCIISpaces() }
            guard let name = pair.first else { return nil }
            let key = name.lowercased()
            // RFC 7692 §7: a parameter given twice, or an unknown one, makes the offer unacceptable.
            guard seen.insert(key).inserted else { return nil }
            let value = pair.count == 2 ? unquoted(pair[1]) : nil
            switch key {
            case "server_no_context_takeover", "client_no_context_takeover":
                guard value == nil else { return nil }
            case "server_max_window_bits":
                guard let value, let bits = windowBits(value), bits == 15 else { return nil }
                echoServerWindow = true
            case "client_max_window_bits":
                // A hint that the client can take a smaller window for its own messages; ours inflates any.
                if let value { guard windowBits(value) != nil else { return nil } }
            default:
                return nil
            }
        }
        var response = "\(name); server_no_context_takeover; client_no_context_takeover"
        if echoServerWindow { response += "; server_max_window_bits=15" }
        return response
    }

    /// A window-bits value, 8 to 15 written without leading zeros (RFC 7692 §7.1.2.1).
    private static func windowBits(_ text: Substring) -> Int? {
        guard let first = text.first, first != "0", let bits = Int(text), (8...15).contains(bits) else { return nil }
        return bits
    }

    private static func unquoted(_ text: Substring) -> Substring {
        guard text.count >= 2, text.first == "\"", text.last == "\"" else { return text }
        return text.dropFirst().dropLast()
    }
}

extension Substring {
    fileprivate func trimmingASCIISpaces() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}
