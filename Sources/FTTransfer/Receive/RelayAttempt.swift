import FTEngine

/// One connection to one host, with its own registration so that late
/// completions of a host given up on never reach the next one's channel.
final class RelayAttempt {
    let reg: Registration
    let socket: OwnedSocket
    let channel: FrameChannel
    var handshake: SenderHandshake
    var established = false
    /// The relay frame and what was pending went out.
    var headSent = false
    /// The host answered in ft's frames (a hello, or an error).
    var heardFT = false
    var ownInflight = 0
    init(reg: Registration, socket: OwnedSocket, channel: FrameChannel, handshake: SenderHandshake) {
        self.reg = reg
        self.socket = socket
        self.channel = channel
        self.handshake = handshake
    }
    var inflight: Int { ownInflight + channel.inflight }
}
