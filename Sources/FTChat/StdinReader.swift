import FTEngine

/// Reads stdin on the ring (an operation like any other, no thread) and
/// hands the bytes to the console, which turns them into input events.
final class StdinReader: LoopHandler {
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    private var reg: Registration!
    private let deliver: ([InputEvent]) -> Void
    private let console: ChatConsole
    private(set) var finished = false
    private var reading = false

    init(loop: EventLoop, console: ChatConsole, deliver: @escaping ([InputEvent]) -> Void) {
        self.console = console
        self.deliver = deliver
        reg = loop.register(self)
    }

    deinit { buffer.deallocate() }

    func start(_ loop: EventLoop) {
        guard !finished, !reading else { return }
        reading = true
        loop.backend.queue(.read(fd: 0, buffer: buffer.baseAddress!, length: buffer.count, offset: Op.noOffset), reg.userData(1))
    }

    func complete(_ c: Completion, on loop: EventLoop) {
        reading = false
        let n = max(0, Int(c.result))
        // An error reading stdin ends input like EOF does.
        if n == 0 { finished = true }
        deliver(console.feed(UnsafeRawBufferPointer(start: buffer.baseAddress, count: n)))
        if !finished { start(loop) }
    }
}
