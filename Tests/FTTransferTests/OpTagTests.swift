import Testing
@testable import FTTransfer

@Suite struct OpTagTests {
    @Test func everyOpAndIndexRoundTripsThroughEightBits() {
        var seen = Set<UInt8>()
        for op in OpTag.Op.allCases {
            for index in 0...OpTag.maxIndex {
                let tag = OpTag(op, index)
                #expect(OpTag(raw: tag.raw) == tag)
                #expect(seen.insert(tag.raw).inserted, "\(tag) shares its byte with another tag")
            }
        }
        #expect(OpTag(raw: 0) == nil, "0 is no tag")
    }
}
