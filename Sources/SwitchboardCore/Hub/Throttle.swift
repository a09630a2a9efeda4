/// SPEC §5's throttle and conflation for one channel, as a pure state machine: it decides, the caller
/// delivers and keeps the timers.
///
/// - For each `(channel, key)`, the first message in an idle window goes out at once and opens a window;
///   of the messages inside the window, only the latest goes out at its end, which opens the next window.
///   A window that ends with nothing held goes idle.
/// - Messages without a key (or every message, when the namespace does not conflate) are never dropped. They
///   share the channel's keyless window: the first one while it is idle goes out at once and opens it; the ones
///   inside it wait for its end and go out then, in order, as one batch.
struct Throttle {
    /// Which window a message belongs to: one per key, and one for the channel's keyless messages. A distinct
    /// case, not a reserved key string, so no key a publisher sends can ever be taken for "no key".
    enum Window: Hashable {
        case keyless
        case key(String)
    }

    /// What to do with an offered message.
    enum Decision: Equatable {
        /// Deliver now, and call ``windowEnded(_:)`` for the window after one interval.
        case deliverNow(startWindow: Window)
        /// Held for the end of an open window; `replaced` says whether it took the place of a held message,
        /// which is thereby dropped.
        case held(replaced: Bool)
    }

    let conflate: Bool
    /// Keyed windows that are open, with the latest message held for their end.
    private var openWindows: [String: Publication?] = [:]
    /// The keyless window: nil while idle, else the messages waiting for its end.
    private var keyless: [Publication]?

    init(conflate: Bool) {
        self.conflate = conflate
    }

    mutating func offer(_ publication: Publication) -> Decision {
        guard conflate, let key = publication.key else {
            guard keyless != nil else {
                keyless = []
                return .deliverNow(startWindow: .keyless)
            }
            keyless?.append(publication)
            return .held(replaced: false)
        }
        if let held = openWindows[key] {
            openWindows[key] = publication
            return .held(replaced: held != nil)
        }
        openWindows[key] = .some(nil)
        return .deliverNow(startWindow: .key(key))
    }

    /// A window's interval is over: returns what to deliver now, and whether the window stays open for
    /// another interval (it does when it delivered something).
    mutating func windowEnded(_ window: Window) -> (deliver: [Publication], keepOpen: Bool) {
        switch window {
        case .keyless:
            let batch = keyless ?? []
            keyless = batch.isEmpty ? nil : []
            return (batch, !batch.isEmpty)
        case .key(let key):
            guard let held = openWindows[key], let publication = held else {
                openWindows[key] = nil
                return ([], false)
            }
            openWindows[key] = .some(nil)
            return ([publication], true)
        }
    }

    /// Whether anything is held or any window is open.
    var isIdle: Bool { openWindows.isEmpty && keyless == nil }
}
