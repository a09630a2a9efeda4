/// SPEC §5's throttle and conflation for one channel, as a pure state machine: it decides, the caller
/// delivers and keeps the timers.
///
/// - For each `(channel, key)`, the first message in an idle window goes out at once and opens a window;
///   of the messages inside the window, only the latest goes out at its end, which opens the next window.
///   A window that ends with nothing held goes idle.
/// - Messages without a key (or every message, when the namespace does not conflate) are never dropped:
///   they wait for the end of the channel's window and go out then, in order, as one batch.
struct Throttle {
    /// What to do with an offered message.
    enum Decision: Equatable {
        /// Deliver now, and call ``windowEnded(key:)`` for `key` after one interval.
        case deliverNow(startWindowFor: String)
        /// Held. When `startWindow` is set, call ``windowEnded(key:)`` for it after one interval; `replaced` says
        /// whether it took the place of a held message, which is thereby dropped.
        case held(startWindow: String?, replaced: Bool)
    }

    /// Window id of the channel's keyless messages (keys are channel-scoped strings; this one cannot collide
    /// because it is not valid UTF-8 text a client could send).
    static let keylessWindow = "\u{0}keyless"

    let conflate: Bool
    /// Keys whose window is open, with the latest message held for its end.
    private var openWindows: [String: Publication?] = [:]
    private var keyless: [Publication] = []

    init(conflate: Bool) {
        self.conflate = conflate
    }

    mutating func offer(_ publication: Publication) -> Decision {
        guard conflate, let key = publication.key else {
            keyless.append(publication)
            if openWindows[Self.keylessWindow] != nil { return .held(startWindow: nil, replaced: false) }
            openWindows[Self.keylessWindow] = .some(nil)
            return .held(startWindow: Self.keylessWindow, replaced: false)
        }
        if let held = openWindows[key] {
            openWindows[key] = publication
            return .held(startWindow: nil, replaced: held != nil)
        }
        openWindows[key] = .some(nil)
        return .deliverNow(startWindowFor: key)
    }

    /// A window's interval is over: returns what to deliver now, and whether the window stays open for
    /// another interval (it does when it delivered something).
    mutating func windowEnded(key: String) -> (deliver: [Publication], keepOpen: Bool) {
        if key == Self.keylessWindow {
            let batch = keyless
            keyless.removeAll()
            if batch.isEmpty { openWindows[key] = nil }
            return (batch, !batch.isEmpty)
        }
        guard let held = openWindows[key], let publication = held else {
            openWindows[key] = nil
            return ([], false)
        }
        openWindows[key] = .some(nil)
        return ([publication], true)
    }

    /// Whether anything is held or any window is open.
    var isIdle: Bool { openWindows.isEmpty }
}
