import NIOCore
import NIOPosix
import Testing

@testable import SwitchboardServer

/// HTTP connections' tasks prefer their channel's event loop (`GatewayChannel`): the adapter must run them there.
@Suite struct LoopTaskExecutorTests {
    @Test func aTaskPreferringALoopRunsOnThatLoopAcrossSuspensions() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loop = group.next()
        let executor = LoopTaskExecutor(eventLoop: loop)
        let observed = try await withTaskExecutorPreference(executor) {
            var onLoop = [loop.inEventLoop]
            try await Task.sleep(for: .milliseconds(1))
            onLoop.append(loop.inEventLoop)
            // A hand-over from another loop resumes here too.
            try await group.next().submit {}.get()
            onLoop.append(loop.inEventLoop)
            return onLoop
        }
        #expect(observed == [true, true, true])
        try await group.shutdownGracefully()
    }
}
