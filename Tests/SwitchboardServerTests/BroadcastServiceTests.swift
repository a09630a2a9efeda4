import Foundation
import NIOCore
import SwitchboardCore
import Testing
import WebSocketTestClient

@testable import SwitchboardServer

/// SPEC §5 on a live node: throttle and conflation, batch frames, targets, batches and slow consumers.
@Suite struct BroadcastServiceTests {
    private func quote(_ n: Int, key: String? = "AAPL") -> Publication {
        Publication(channel: "market_data:AAPL", event: "quote", data: #"{"n":\#(n)}"#, key: key)
    }

    @Test func fiftySameKeyQuotesInOneWindowArriveAsFirstAndLast() async throws {
        try await TestNode.with({ $0.namespaces[0].throttleMs = 300 }) { node in
            let client = try await node.client()
            try await client.subscribe("market_data:AAPL")
            for n in 1...50 { _ = try await node.node.publisher.publish(quote(n)) }
            let first = try await client.next()
            let last = try await client.next()
            #expect((first["data"] as? [String: Any])?["n"] as? Int == 1)
            #expect((last["data"] as? [String: Any])?["n"] as? Int == 50)
            #expect([first["seq"] as? Int, last["seq"] as? Int] == [1, 2])
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong", "nothing else was sent")
            // The last value kept for new subscribers is the latest quote.
            let late = try await node.client()
            try await late.subscribe("market_data:AAPL")
            #expect((try await late.next()["data"] as? [String: Any])?["n"] as? Int == 50)
            await client.close()
            await late.close()
        }
    }

    @Test func keylessMessagesAllArriveInOrder() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("market_data:AAPL")
            for n in 1...200 { _ = try await node.node.publisher.publish(quote(n, key: nil)) }
            for n in 1...200 {
                let message = try await client.next()
                #expect((message["data"] as? [String: Any])?["n"] as? Int == n)
                #expect(message["seq"] as? Int == n)
            }
            await client.close()
        }
    }

    @Test func heldPublishIsReportedAsHeld() async throws {
        try await TestNode.with({ $0.namespaces[0].throttleMs = 10_000 }) { node in
            let admin = try await node.token("ops", role: .admin)
            let body = #"{"channel":"market_data:AAPL","event":"quote","data":1,"key":"AAPL"}"#
            let first = try await node.request("POST", "/api/v1/websocket/broadcast", token: admin, body: body)
            #expect(first.json["seq"] as? Int == 1)
            let second = try await node.request("POST", "/api/v1/websocket/broadcast", token: admin, body: body)
            #expect(second.json["seq"] is NSNull)
            #expect(second.json["held"] as? Bool == true)
        }
    }

    @Test func firstKeylessBroadcastOnAFreshNodeGoesOutAtOnce() async throws {
        try await TestNode.with { node in
            let admin = try await node.token("ops", role: .admin)
            let client = try await node.client()
            try await client.subscribe("market_data:AAPL")
            let body = #"{"channel":"market_data:AAPL","event":"quote","data":{"n":1}}"#
            let reply = try await node.request("POST", "/api/v1/websocket/broadcast", token: admin, body: body)
            #expect(reply.json["seq"] as? Int == 1, "SPEC §5: a keyless message on a channel with no open window is not held: \(reply.body)")
            #expect(reply.json["held"] == nil || reply.json["held"] as? Bool == false)
            let message = try await client.next()
            #expect(message["seq"] as? Int == 1)
            await client.close()
        }
    }

    @Test func batchClientsReceiveBatchFrames() async throws {
        try await TestNode.with { node in
            let client = try await node.client(query: "batch=true")
            try await client.subscribe("market_data:AAPL")
            for n in 1...30 { _ = try await node.node.publisher.publish(quote(n, key: nil)) }
            var seen: [Int] = []
            var batches = 0
            while seen.count < 30 {
                let frame = try await client.next()
                if frame["type"] as? String == "batch" {
                    batches += 1
                    seen += (frame["messages"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
                } else {
                    seen.append(frame["seq"] as? Int ?? -1)
                }
            }
            #expect(seen == Array(1...30))
            #expect(batches >= 1, "messages leaving together share a batch frame")
            await client.close()
        }
    }

    @Test func userIdTargetReachesEveryConnectionOfThatUserOnly() async throws {
        try await TestNode.with { node in
            let aliceToken = try await node.token("alice")
            let subscribed = try await node.client(token: aliceToken)
            try await subscribed.subscribe("user:alice")
            let unsubscribed = try await node.client(token: aliceToken)
            let bob = try await node.client(token: try await node.token("bob"))
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: try await node.token("ops", role: .admin),
                body: #"{"userId":"alice","event":"fill","data":{"qty":5}}"#)
            #expect(response.status == 200)
            #expect(response.json["channel"] as? String == "user:alice")
            #expect(response.json["recipients"] as? Int == 2)
            for client in [subscribed, unsubscribed] {
                let message = try await client.next()
                #expect(message["channel"] as? String == "user:alice")
                #expect(message["event"] as? String == "fill")
            }
            #expect(try await bob.request(["type": "ping"])["type"] as? String == "pong")
            for client in [subscribed, unsubscribed, bob] { await client.close() }
        }
    }

    @Test func allTargetReachesEveryConnectionWithNullChannel() async throws {
        try await TestNode.with { node in
            let clients = [try await node.client(), try await node.client(token: try await node.token("u"))]
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast", token: try await node.token("ops", role: .admin),
                body: #"{"all":true,"event":"maintenance","data":"in 5 minutes"}"#)
            #expect(response.json["recipients"] as? Int == 2)
            #expect(response.json["channel"] is NSNull)
            for client in clients {
                let message = try await client.next()
                #expect(message["channel"] is NSNull)
                #expect(message["data"] as? String == "in 5 minutes")
                await client.close()
            }
        }
    }

    @Test func batchEndpointPublishesEveryMessage() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            let items = (1...3).map { #"{"channel":"system_status","event":"s","data":\#($0)}"# }.joined(separator: ",")
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast/batch", token: try await node.token("ops", role: .admin),
                body: #"{"messages":[\#(items)]}"#)
            #expect(response.status == 200)
            #expect(response.json["published"] as? Int == 3)
            for n in 1...3 { #expect(try await client.next()["data"] as? Int == n) }
            await client.close()
        }
    }

    @Test func badBatchSendsNothingAndListsEveryBadIndex() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            let good = #"{"channel":"system_status","event":"s","data":1}"#
            let body =
                #"{"messages":[\#(good),{"channel":"system_status","data":1},\#(good),{"event":"e","data":1},{"channel":"nope:x","event":"e","data":1}]}"#
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast/batch", token: try await node.token("ops", role: .admin), body: body)
            #expect(response.status == 400)
            #expect(response.errorCode == "BAD_REQUEST")
            let details = (response.json["error"] as? [String: Any])?["details"] as? [[String: Any]] ?? []
            #expect(details.compactMap { $0["index"] as? Int } == [1, 3, 4])
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong", "nothing was sent")
        }
    }

    @Test func batchOverTheLimitIsRefused() async throws {
        try await TestNode.with { node in
            let item = #"{"channel":"system_status","event":"s","data":1}"#
            let body = #"{"messages":[\#(Array(repeating: item, count: 1001).joined(separator: ","))]}"#
            let response = try await node.request(
                "POST", "/api/v1/websocket/broadcast/batch", token: try await node.token("ops", role: .admin), body: body)
            #expect(response.status == 400)
        }
    }

    /// Channel messages reach clients through their event loop's lane (batch clients through a batch lane),
    /// while a subscribe's reply and replay go through the connection's outbox: a client joining mid-stream must
    /// get each message once, in order, right after what it was replayed.
    @Test(arguments: ["", "batch=true"])
    func subscribersJoiningMidStreamGetEveryMessageOnceInOrder(query: String) async throws {
        let total = 400
        try await TestNode.with { node in
            let token = try await node.token("alice")
            let early = try await node.client(token: token, query: query)
            try await early.subscribe("user:alice")
            func publish(_ range: ClosedRange<Int>) async throws {
                for n in range { _ = try await node.node.publisher.publish(Publication(channel: "user:alice", event: "e", data: "\(n)")) }
            }
            let recovering = try await node.client(token: token, query: query)
            let joining = try await node.client(token: token, query: query)
            try await publish(1...50)
            // Both subscribes land while messages flow; publishing pauses at 90 until they are answered, so the
            // history (100 messages) still holds message 1 for the recovering one however slow the machine.
            let (subscribed, answered) = AsyncStream<Void>.makeStream()
            let publishing = Task {
                for n in 51...total {
                    if n == 91 { for await _ in subscribed { break } }
                    try await publish(n...n)
                    try await Task.sleep(for: .microseconds(500))
                }
            }
            try await recovering.send(["type": "subscribe", "channel": "user:alice", "since": 0])
            try await joining.send(["type": "subscribe", "channel": "user:alice"])
            let reply = try await recovering.next()
            #expect(reply["type"] as? String == "subscribed" && reply["recovered"] as? Bool == true, "\(reply)")
            #expect(try await joining.next()["type"] as? String == "subscribed", "the reply comes before any message")
            answered.yield()
            try await publishing.value

            func seqs(of client: TestClient) async throws -> [Int] {
                var seqs: [Int] = []
                while seqs.last != total { seqs += messageSeqs(in: try await client.next()) }
                return seqs
            }
            #expect(try await seqs(of: early) == Array(1...total))
            #expect(try await seqs(of: recovering) == Array(1...total), "replay, then the lane's messages, each once")
            let joined = try await seqs(of: joining)
            let first = try #require(joined.first)
            #expect(first > 50 && joined == Array(first...total), "from its join on, without gaps or repeats")
        }
    }

    /// A frame the loop queues in the outbox (here a reply) holds the connection's lanes back until a drain has
    /// written it, so a channel's messages never overtake its `subscribed` reply or replay.
    @Test func framesQueuedByTheLoopHoldLanesBackUntilDrained() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            let connection = try #require(node.node.connections.connection(id: client.welcome["connectionId"] as? String ?? "") as? WebSocketConnection)
            let (before, queued) = try await connection.eventLoop.submit {
                let before = connection.lanesMayWriteDirectly
                connection.send(Delivery(payload: ByteBuffer(string: #"{"type":"pong"}"#)))
                return (before, connection.lanesMayWriteDirectly)
            }.get()
            #expect(before && !queued)
            #expect(try await client.next()["type"] as? String == "pong")
            #expect(try await connection.eventLoop.submit { connection.lanesMayWriteDirectly }.get())
        }
    }

    /// The admin API's `messagesOut` counts what lanes wrote to the connection as well as its own writes.
    @Test func messagesWrittenByLanesCountInMessagesOut() async throws {
        try await TestNode.with { node in
            let client = try await node.client()
            try await client.subscribe("system_status")
            for n in 1...20 { _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "e", data: "\(n)")) }
            for _ in 1...20 { #expect(try await client.next()["type"] as? String == "message") }
            let connection = try #require(node.node.connections.connection(id: client.welcome["connectionId"] as? String ?? "") as? WebSocketConnection)
            // welcome, subscribed and the 20 messages.
            #expect(try await connection.describe().messagesOut == 22)
        }
    }

    @Test(arguments: ["", "batch=true"])
    func clientThatFallsBehindCatchesUpWithEverythingInOrder(query: String) async throws {
        let total = 1_500
        try await TestNode.with { node in
            let client = try await node.client(query: query, receiveBufferBytes: 4096)
            try await client.subscribe("system_status")
            let connection = try #require(node.node.connections.connection(id: client.welcome["connectionId"] as? String ?? "") as? WebSocketConnection)
            #expect(try await connection.eventLoop.submit { connection.directWrites.enabled }.get(), "frames go straight to the socket")
            // Small kernel buffers and a client that stops reading: the socket takes part of a write, NIO the rest,
            // and later frames must wait behind it.
            try await connection.channel.setOption(.socketOption(.so_sndbuf), value: 8192)
            try await client.socket.pauseReading()
            let padding = String(repeating: "x", count: 300)
            for n in 1...total {
                _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: #"{"n":\#(n),"pad":"\#(padding)"}"#))
            }
            // Wait for the event itself: the drains running into the full socket (a short write) before reading again.
            var shortWrites = 0
            let deadline = ContinuousClock.now + .seconds(10)
            while shortWrites == 0 && ContinuousClock.now < deadline {
                shortWrites = try await connection.eventLoop.submit { connection.directWrites.shortWrites }.get()
                if shortWrites == 0 { try await Task.sleep(for: .milliseconds(5)) }
            }
            #expect(shortWrites > 0, "the socket filled up")
            // Publishing goes on while the client catches up: the socket keeps freeing room while NIO still
            // holds older bytes, and newer frames must not slip in ahead of them.
            try await client.socket.resumeReading()
            let publishing = Task {
                for n in (total + 1)...(2 * total) {
                    _ = try await node.node.publisher.publish(Publication(channel: "system_status", event: "tick", data: #"{"n":\#(n),"pad":"\#(padding)"}"#))
                    if n % 20 == 0 { try await Task.sleep(for: .microseconds(200)) }
                }
            }
            var seqs: [Int] = []
            while seqs.count < 2 * total { seqs += messageSeqs(in: try await client.next(timeout: .seconds(20))) }
            try await publishing.value
            #expect(seqs == Array(1...(2 * total)))
            #expect(try await client.request(["type": "ping"])["type"] as? String == "pong", "replies queue behind the backlog")
        }
    }

    /// The stalled client is a plain one, then a `?batch=true` one (reached through a batch lane).
    @Test(arguments: ["", "batch=true"])
    func stalledClientIsClosedWith4009WhileHealthySubscriberGetsEverything(stalledQuery: String) async throws {
        let limit = 256 * 1024
        let total = 10_000
        try await TestNode.with({ $0.outboundBufferBytes = limit }) { node in
            let stalled = try await node.client(query: stalledQuery, receiveBufferBytes: 4096)
            try await stalled.subscribe("system_status")
            let stalledConnection = try #require(node.node.connections.connection(id: stalled.welcome["connectionId"] as? String ?? "") as? WebSocketConnection)
            // A closed TCP window: small kernel buffers on both ends, and the client stops reading.
            try await stalledConnection.channel.setOption(.socketOption(.so_sndbuf), value: 8192)
            try await stalled.socket.pauseReading()
            // The server gives a closed client `closeGrace` (5 s) to read its close frame, so the client reads
            // again as soon as the server gives up on it, not when the publishing loop next looks.
            let clock = ContinuousClock()
            let giveUp = Task { () -> ContinuousClock.Instant? in
                let deadline = clock.now + .seconds(60)
                while clock.now < deadline {
                    if stalledConnection.outboxStatistics.closed {
                        let seen = clock.now
                        // A full-sized buffer again, so the backlog drains in tens of reads, not hundreds: under the
                        // parallel suite the 4 KiB one took longer than `closeGrace`, about one run in four.
                        try? await stalled.socket.channel.setOption(.socketOption(.so_rcvbuf), value: 262_144)
                        try await stalled.socket.resumeReading()
                        return seen
                    }
                    try await Task.sleep(for: .milliseconds(2))
                }
                return nil
            }
            let healthy = try await node.client()
            try await healthy.subscribe("system_status")
            let padding = String(repeating: "x", count: 500)
            // In lockstep: each chunk is published, then read by the healthy client, so it is never more than
            // one chunk (about 60 KB) behind, while the stalled client's queue only grows.
            var seqs: [Int] = []
            let chunkSize = 100
            for chunk in 0..<(total / chunkSize) {
                for n in 0..<chunkSize {
                    _ = try await node.node.publisher.publish(
                        Publication(channel: "system_status", event: "tick", data: #"{"n":\#(chunk * chunkSize + n),"pad":"\#(padding)"}"#))
                }
                for _ in 0..<chunkSize { seqs.append(try await healthy.next(timeout: .seconds(20))["seq"] as? Int ?? -1) }
            }
            #expect(seqs == Array(1...total))
            let gaveUpAt = try await giveUp.value
            #expect(gaveUpAt != nil, "the stalled client was given up on")
            if gaveUpAt == nil { try await stalled.socket.resumeReading() }
            let peak = stalledConnection.outboxStatistics.peakBytes
            #expect(peak <= limit, "outbound buffer bound respected: peak \(peak) of \(limit) bytes")
            #expect(peak > limit / 2, "the stalled client did fill its buffer")
            let close = try await stalled.socket.closeFrame(timeout: .seconds(10))
            let after = gaveUpAt.map { clock.now - $0 }.map { "\($0)" } ?? "-"
            #expect(close?.closeCode == 4009, "close frame \(close.map { "\($0.closeCode.map(String.init) ?? "without code") \($0.closeReason)" } ?? "missing: TCP ended first"), \(after) after the server gave up")
            await healthy.close()
        }
    }
}

/// The outbound queue's policy when full (SPEC §5), without sockets.
@Suite struct OutboxTests {
    /// A message whose native text is `size` bytes (seq below 10): 67 bytes of fields around a number as `data`.
    private func message(_ seq: UInt64, key: String?, size: Int = 100) -> Delivery {
        let data = ByteBuffer(string: String(repeating: "1", count: size - 67))
        return Delivery.message(Message(channel: "c", event: "e", data: data, seq: seq, timestampMs: 0), conflationKey: key)
    }

    @Test func theTestMessagesHaveTheSizeTheyName() {
        #expect(message(9, key: nil).payload.readableBytes == 100)
    }

    @Test func fullQueueReplacesTheQueuedValueOfTheSameKey() {
        let outbox = Outbox(limit: 350)
        #expect(outbox.push(message(1, key: "a")) == .needsDrain)
        #expect(outbox.push(message(2, key: "b")) == .queued)
        #expect(outbox.push(message(3, key: "c")) == .queued)
        #expect(outbox.push(message(4, key: "a")) == .replaced(namespace: ""), "replaces seq 1 instead of overflowing")
        var taken: [Delivery] = []
        outbox.takeAll(into: &taken)
        #expect(taken.map(\.seq) == [2, 3, 4], "the replacement goes to the back, keeping seq order")
        #expect(outbox.statistics.replaced == 1)
        #expect(outbox.push(message(5, key: nil)) == .needsDrain, "a drain took everything: the next push schedules another")
    }

    @Test func fullQueueWithoutConflationOverflows() {
        let outbox = Outbox(limit: 250)
        _ = outbox.push(message(1, key: nil))
        _ = outbox.push(message(2, key: nil))
        #expect(outbox.push(message(3, key: nil)) == .overflow(discarded: ["": 3]))
        #expect(outbox.push(message(4, key: nil)) == .closed)
    }

    @Test func gatheredFramesLeaveWholeAndInOrder() {
        let frames = (1...3).map { ByteBuffer(string: "frame \($0);") }
        var lone = GatherBuffer(storage: ByteBuffer())
        lone.append(frames[0])
        #expect(lone.output == frames[0])
        var three = GatherBuffer(storage: ByteBuffer(string: "stale bytes"))
        for frame in frames { three.append(frame) }
        #expect(String(buffer: three.output) == "frame 1;frame 2;frame 3;")
        #expect(three.bytes == three.output.readableBytes)
        // A slice still held (by NIO, after a short write) keeps its bytes when the storage is reused.
        let held = three.output.getSlice(at: 2, length: 5)
        var reused = GatherBuffer(storage: three.storage)
        reused.append(frames[2])
        reused.append(frames[1])
        #expect(String(buffer: reused.output) == "frame 3;frame 2;")
        #expect(held.map { String(buffer: $0) } == "ame 1")
    }
}

/// The `seq`s of the channel messages in one frame: a `message`, or each message of a `batch`.
private func messageSeqs(in frame: [String: Any]) -> [Int] {
    let messages = frame["type"] as? String == "batch" ? frame["messages"] as? [[String: Any]] ?? [] : [frame]
    return messages.filter { $0["type"] as? String == "message" }.map { $0["seq"] as? Int ?? -1 }
}
