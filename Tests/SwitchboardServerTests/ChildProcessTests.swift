import Foundation
import RedisTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The tests' own process spawner (``ChildProcess``), which replaced Foundation's `Process`.
@Suite struct ChildProcessTests {
    @Test func aChildGetsItsThreeStreamsAndNoneOfTheParentsDescriptors() async throws {
        // As the parallel suite does: many descriptors open in the parent (Foundation's `Process.run` listed them
        // with a read past each entry and crashed the suite once).
        let held = (0..<1_500).map { _ in open("/dev/null", O_RDONLY) }
        defer { held.forEach { close($0) } }
        #expect(held.allSatisfy { $0 >= 0 })
        let listing = try await ChildProcess.output(of: "/bin/ls", ["/proc/self/fd"])
        #expect(listing.status == 0)
        // 0-2, and the descriptor `ls` opened to list the directory.
        let descriptors = listing.standardOutput.split(whereSeparator: \.isNewline).compactMap { Int($0) }
        #expect(descriptors.count <= 4 && descriptors.allSatisfy { $0 <= 3 }, "\(descriptors.prefix(20))")
    }

    @Test func exitStatusInputAndSignalsReachTheChild() async throws {
        let echoed = try await ChildProcess.output(of: "/bin/sh", ["-c", "head -c 5; echo oops >&2; exit 3"], input: "hello")
        #expect(echoed.status == 3)
        #expect(echoed.standardOutput == "hello")
        #expect(echoed.standardError == "oops\n")
        // A default signal mask: SIGTERM ends it even when the spawning thread blocks SIGTERM.
        let sleeper = try await onOwnThread {
            var blocked = sigset_t()
            sigemptyset(&blocked)
            sigaddset(&blocked, SIGTERM)
            pthread_sigmask(SIG_BLOCK, &blocked, nil)
            return try ChildProcess(executable: "/bin/sleep", arguments: ["30"])
        }
        #expect(sleeper.isRunning)
        sleeper.send(SIGTERM)
        let ended = try await onOwnThread { () -> ChildProcess.Termination? in
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                if let ended = sleeper.termination { return ended }
                usleep(5_000)
            }
            sleeper.send(SIGKILL)  // SIGTERM was blocked: do not leave it behind
            return nil
        }
        #expect(ended == .signal(SIGTERM))
        #expect(!sleeper.isRunning)
    }
}
