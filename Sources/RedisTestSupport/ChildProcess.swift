import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process of a test (a `redis-server`, a `switchboard serve`, `openssl`), started with `posix_spawn`.
///
/// Why not Foundation's `Process`: on Linux its `run()` lists `/proc/self/fd` with a read past the end of each
/// directory entry (swift-corelibs-foundation#5472, fixed after Swift 6.3.1), and once the parallel suite had
/// a thousand sockets open it crashed the test process (SIGSEGV in `Process.run`, one CI run so far).
/// swift-subprocess spawns safely, but it ties a child's life to an async closure, while these tests hold a
/// child across a test (a Redis paused, killed and started again) and stop it from `defer` and `deinit`.
///
/// The child gets a default signal mask (a child spawned from a thread that blocks SIGTERM would otherwise
/// ignore it), its own process group, and no descriptor of the parent but the three it is given.
public final class ChildProcess: Sendable {
    /// Where one of the child's standard streams goes.
    public enum Stream: Sendable {
        /// `/dev/null`.
        case null
        /// The parent's own stream.
        case inherit
        /// The child's end of the pipe (reading for standard input, writing for the others); the parent's copy
        /// of that end is closed once the child has it, so the other end sees end of file when the child exits.
        case pipe(Pipe)
    }

    /// How the child ended.
    public enum Termination: Sendable, Equatable {
        case exit(Int32)
        case signal(Int32)
    }

    public let pid: pid_t
    private let ended = Mutex<Termination?>(nil)

    /// Starts `executable` with `arguments`; `environment` is added to (and overrides) the parent's.
    public init(
        executable: String, arguments: [String], environment: [String: String] = [:],
        standardInput: Stream = .null, standardOutput: Stream = .null, standardError: Stream = .null
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let streams = [(standardInput, STDIN_FILENO), (standardOutput, STDOUT_FILENO), (standardError, STDERR_FILENO)]
        for (stream, target) in streams {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
            case .inherit:
                break
            case .pipe(let pipe):
                let end = target == STDIN_FILENO ? pipe.fileHandleForReading : pipe.fileHandleForWriting
                posix_spawn_file_actions_adddup2(&actions, end.fileDescriptor, target)
            }
        }
        // Everything else stays with the parent (the suite holds thousands of sockets).
        guard let closeFrom = Self.addCloseFrom else { throw ChildProcessError.noCloseFrom }
        closeFrom(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let variables = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }.map { "\($0.key)=\($0.value)" }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child = pid_t()
        let failed = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard failed == 0 else { throw ChildProcessError.spawnFailed(executable, errno: failed) }
        pid = child
        for (stream, target) in streams {
            guard case .pipe(let pipe) = stream else { continue }
            try? (target == STDIN_FILENO ? pipe.fileHandleForReading : pipe.fileHandleForWriting).close()
        }
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which its Swift module does not show.
    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// How the child ended, or nil while it runs (reaps it once it has ended).
    public var termination: Termination? {
        ended.withLock { ended in
            if ended == nil {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    let signal = status & 0x7f
                    ended = signal == 0 ? .exit((status >> 8) & 0xff) : .signal(signal)
                }
            }
            return ended
        }
    }

    public var isRunning: Bool { termination == nil }

    /// Sends `signal` to the child if it still runs.
    public func send(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Blocks until the child has ended (call it off Swift's cooperative pool, or for a child that is ending).
    @discardableResult
    public func waitUntilExit() -> Termination {
        while true {
            if let ended = termination { return ended }
            usleep(5_000)
        }
    }

    /// Blocks until the child has ended or `timeout` has passed; nil if it still runs.
    public func waitUntilExit(within timeout: Duration) -> Termination? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let ended = termination { return ended }
            usleep(5_000)
        }
        return termination
    }
}

public enum ChildProcessError: Error, CustomStringConvertible {
    case spawnFailed(String, errno: Int32)
    case noCloseFrom

    public var description: String {
        switch self {
        case .spawnFailed(let executable, let errno): "could not start \(executable): \(String(cString: strerror(errno)))"
        case .noCloseFrom: "posix_spawn_file_actions_addclosefrom_np is missing (glibc 2.34 or later is needed)"
        }
    }
}
