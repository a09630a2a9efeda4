import Logging

/// swift-log's `StreamLogHandler`, with the logger's own metadata kept as it is until something is logged.
///
/// `StreamLogHandler` formats its metadata into text whenever metadata is set. Hummingbird sets a request id on
/// every request's logger, so every API request paid for formatting text that, at the usual levels, is never
/// written (about 5% of a small request's CPU). Here the metadata is merged into each event that is logged.
struct DeferredMetadataLogHandler: LogHandler {
    private var stream: StreamLogHandler
    var metadata: Logger.Metadata = [:]

    init(_ stream: StreamLogHandler) {
        self.stream = stream
    }

    var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty { event.metadata = metadata.merging(event.metadata ?? [:]) { _, explicit in explicit } }
        stream.log(event: event)
    }
}
