import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import SwitchboardCore

/// `POST /api/v1/websocket/broadcast` and `/broadcast/batch` (SPEC §6, §11).
extension ManagementAPI {
    func broadcast(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        let body = try await Self.jsonBody(of: request)
        let broadcast: BroadcastRequest
        do {
            broadcast = try BroadcastRequest(body, publisher: node.publisher)
        } catch {
            throw APIError(status: .badRequest, code: error.code, message: error.message)
        }
        let result = try await send(broadcast)
        await Self.letDeliveriesGoFirst()
        node.gatekeeper.audit.recordBroadcast(
            by: admin.userId, namespace: broadcast.auditNamespace,
            detail: "\(broadcast.target.description) event \(broadcast.publication.event)")
        return Self.json(result)
    }

    /// SPEC §6: up to 1000 messages, validated as a whole first; one bad item rejects the batch, listing every bad index.
    func broadcastBatch(_ request: Request, _ context: APIContext) async throws -> Response {
        let admin = try await requireAdmin(request, context)
        guard case .array(let items)? = try await Self.jsonBody(of: request)["messages"] else {
            throw APIError.badRequest("messages: required, an array of broadcast bodies")
        }
        guard (1...BroadcastRequest.maxBatch).contains(items.count) else {
            throw APIError.badRequest("messages: between 1 and \(BroadcastRequest.maxBatch) items, got \(items.count)")
        }
        var broadcasts: [BroadcastRequest] = []
        var problems: [ErrorBody.Detail] = []
        for (index, item) in items.enumerated() {
            do {
                broadcasts.append(try BroadcastRequest(item, publisher: node.publisher))
            } catch {
                problems.append(ErrorBody.Detail(index: index, message: error.message))
            }
        }
        guard problems.isEmpty else {
            throw APIError.badRequest("\(problems.count) of \(items.count) messages are invalid; nothing was sent", details: problems)
        }
        // One call for the whole batch: a cluster node sends it to Redis in one pipelined write.
        let published = await node.publisher.publishBatch(broadcasts.map(\.resolved))
        await Self.letDeliveriesGoFirst()
        let results = try zip(published, broadcasts).map { result, broadcast in try Self.describe(result, of: broadcast) }
        for (namespace, items) in Dictionary(grouping: broadcasts, by: \.auditNamespace).sorted(by: { $0.key < $1.key }) {
            node.gatekeeper.audit.recordBroadcast(
                by: admin.userId, namespace: namespace, messages: items.count,
                detail: "batch: \(items.count) of \(results.count) messages to namespace \(namespace)")
        }
        return Self.json(.object(["published": .int(Int64(results.count)), "results": .array(results)]))
    }

    /// Lets the subscribers' writes that a publish queued on this loop go out before the publisher's answer is
    /// encoded and written: the handler runs on its connection's loop, and without a yield the delivery to that
    /// loop's subscribers waited for the whole response.
    static func letDeliveriesGoFirst() async {
        await Task.yield()
    }

    /// Publishes one validated broadcast and describes the result as SPEC's `{"channel","seq","recipients"}`.
    func send(_ broadcast: BroadcastRequest) async throws -> JSONValue {
        let result: Result<Hub.PublishResult, Publisher.PublishError>
        do {
            result = .success(try await node.publisher.publish(broadcast.resolved))
        } catch {
            result = .failure(error)
        }
        return try Self.describe(result, of: broadcast)
    }

    /// SPEC's `{"channel","seq","recipients"}` for a publish, or the API error for its refusal.
    static func describe(_ result: Result<Hub.PublishResult, Publisher.PublishError>, of broadcast: BroadcastRequest) throws -> JSONValue {
        let published: Hub.PublishResult
        switch result {
        case .success(let result): published = result
        case .failure(let error):
            switch error {
            case .target:
                // The request resolved its target when it was validated; the broker refuses nothing by target.
                throw APIError(status: .badRequest, code: error.code, message: error.message)
            case .broker:
                throw APIError(status: .serviceUnavailable, code: error.code, message: error.message)
            }
        }
        let channel: JSONValue = switch broadcast.target {
        case .channel(let name): .string(name)
        case .user(let userId): .string("user:\(userId)")
        case .all: .null
        }
        var fields: [String: JSONValue] = [
            "channel": channel, "seq": published.seq.map { .int(Int64($0)) } ?? .null, "recipients": .int(Int64(published.recipients)),
        ]
        if published.held { fields["held"] = .bool(true) }
        return .object(fields)
    }
}
