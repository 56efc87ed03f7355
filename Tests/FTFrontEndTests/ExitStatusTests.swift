import Testing
import FTEngine
import FTFrontEnd
import FTTransfer
import FTWire

/// The exit-status table: which failure exits with what.
struct ExitStatusTests {
    func status(_ e: TransferError) -> Int32 { ExitStatus.of(FTError(e)) }

    @Test func eachKindOfFailureHasItsStatus() {
        let peer = "10.0.0.5:7878"
        #expect(status(.peer(ErrorFrame(.auth, "wrong code"), peer: peer)) == 3)
        #expect(status(.peer(ErrorFrame(.exists, "a.txt exists"), peer: peer)) == 4)
        #expect(status(.peer(ErrorFrame(.refused, "refusing .bashrc"), peer: peer)) == 4)
        #expect(status(.peer(ErrorFrame(.noSpace, "no space"), peer: peer)) == 4)
        #expect(status(.peer(ErrorFrame(.busy, "full"), peer: peer)) == 4)
        #expect(status(.peer(ErrorFrame(.version, "speaks 3"), peer: peer)) == 4)
        #expect(status(.peer(ErrorFrame(.hashMismatch, "a.txt failed verification"), peer: peer)) == 5)
        #expect(status(.verification("a.txt failed verification")) == 5)
        #expect(status(.io(IOError(.connectionRefused, "connect to", peer))) == 6)
        #expect(status(.io(IOError(.noSuchFileOrDirectory, "open", "/nope"))) == 6)
        #expect(status(.peer(ErrorFrame(.io, "write: EIO"), peer: peer)) == 6)
        #expect(status(.io(IOError(.timedOut, "connect to", peer))) == 7)
        #expect(status(.timeout("no progress for 60 s", peer: peer)) == 7)
        #expect(status(.peer(ErrorFrame(.timeout, "no progress"), peer: peer)) == 7)
        #expect(status(.disconnected("closed", peer: peer)) == 1)
        #expect(status(.io(IOError(.connectionReset, "receive from", peer))) == 1)
        #expect(status(.protocolViolation("garbage", peer: peer)) == 1)
        #expect(status(.cancelled(peer: peer)) == 1)
    }

    @Test func theHelpTableListsEveryStatus() {
        for code: Int32 in [0, 1, 2, 3, 4, 5, 6, 7, 23] {
            #expect(ExitStatus.help.contains("\n  \(code) "), "status \(code) is not in the table")
        }
    }
}
