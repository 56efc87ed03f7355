import FTFrontEnd
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// A self-contained SVG of a report: throughput against chunk size (one line
/// per io path, peers as dashed reference lines) and the latency CDF.
package enum Chart {
    static let width = 760.0
    static let panelHeight = 360.0
    static let legendRow = 16.0
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

    package static func svg(_ report: BenchReport) -> String {
        // Each panel: its legend length (it sits under the plot) and drawing.
        var panels: [(Int, (Double) -> String)] = []
        let series = throughputSeries(report)
        if !series.isEmpty {
            panels.append((series.count + report.references.count, { y in throughputPanel(series, references: report.references, top: y) }))
        } else if !report.references.isEmpty {
            // No sweep (compare mode): one bar per tool.
            panels.append((0, { y in barPanel(report.references, top: y) }))
        }
        if !report.latency.isEmpty {
            panels.append((report.latency.count, { y in latencyPanel(report.latency, top: y) }))
        }
        if panels.isEmpty {
            panels.append((0, { y in "<text x=\"20\" y=\"\(y + 40)\">no results to chart</text>" }))
        }
        let heights = panels.map { panelHeight + Double($0.0) * legendRow }
        let height = heights.reduce(40, +)
        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <title>ftbench \(escape(report.mode)) on \(report.machine.cores) cores, kernel \(escape(report.machine.kernel))</title>
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">ftbench \(escape(report.mode)) — \(report.machine.cores) cores, \(escape(report.machine.cpuModel))</text>

            """
        var y = 30.0
        for (i, p) in panels.enumerated() {
            out += p.1(y)
            y += heights[i]
        }
        out += "</svg>\n"
        return out
    }

    /// (label, [(chunk bytes, GB/s)]) per io path of ft.
    static func throughputSeries(_ r: BenchReport) -> [(String, [(Double, Double)])] {
        var byIO: [String: [(Double, Double)]] = [:]
        var order: [String] = []
        for c in r.throughput {
            guard let chunk = c.chunk, let rate = c.trial.gigabytesPerSecond else { continue }
            let label = "\(c.tool) --io \(c.io) (\(c.sink))"
            if byIO[label] == nil { order.append(label) }
            byIO[label, default: []].append((Double(chunk), rate))
        }
        return order.map { ($0, byIO[$0]!.sorted { $0.0 < $1.0 }) }
    }

    static func throughputPanel(_ series: [(String, [(Double, Double)])], references: [(String, Double)], top: Double) -> String {
        let xs = series.flatMap { $0.1.map(\.0) }
        let ys = series.flatMap { $0.1.map(\.1) } + references.map(\.1)
        let xMin = (xs.min() ?? 65_536) / 1.5
        let xMax = (xs.max() ?? 4_194_304) * 1.5
        let yMax = niceCeiling((ys.max() ?? 1) * 1.1)
        let plot = Plot(top: top, xMin: xMin, xMax: xMax, yMin: 0, yMax: yMax, logX: true)
        var out = plot.frame(title: "Throughput against chunk size", xLabel: "chunk size (log scale)", yLabel: "GB/s")
        var x = 1024.0
        while x <= xMax {
            if x >= xMin { out += plot.xTick(x, label: Sizes.format(UInt64(x))) }
            x *= 4
        }
        for i in 0...4 { out += plot.yTick(yMax * Double(i) / 4, label: Sizes.fixed(yMax * Double(i) / 4, 2)) }
        var legend: [(String, String, Bool)] = []
        for (i, (label, points)) in series.enumerated() {
            let color = colors[i % colors.count]
            out += plot.polyline(points, color: color)
            legend.append((label, color, false))
        }
        for (i, (label, rate)) in references.enumerated() {
            let color = colors[(series.count + i) % colors.count]
            out += plot.horizontal(rate, color: color)
            legend.append(("\(label): \(Sizes.fixed(rate, 2)) GB/s", color, true))
        }
        out += plot.legend(legend)
        return out
    }

    static func barPanel(_ bars: [(String, Double)], top: Double) -> String {
        let maxRate = niceCeiling((bars.map(\.1).max() ?? 1) * 1.1)
        let left = 170.0
        let right = width - 60
        let rowHeight = min(40.0, (panelHeight - 90) / Double(max(bars.count, 1)))
        var out = "<text x=\"70\" y=\"\(top + 25)\" font-size=\"14\">Throughput, big file → memory (GB/s, median)</text>\n"
        for (i, (label, rate)) in bars.enumerated() {
            let y = top + 45 + Double(i) * rowHeight
            let w = rate / maxRate * (right - left)
            let color = colors[i % colors.count]
            out += "<text x=\"\(left - 8)\" y=\"\(y + rowHeight * 0.45)\" text-anchor=\"end\">\(escape(label))</text>"
            out += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(w)\" height=\"\(rowHeight * 0.7)\" fill=\"\(color)\"/>"
            out += "<text x=\"\(left + w + 5)\" y=\"\(y + rowHeight * 0.45)\">\(Sizes.fixed(rate, 2))</text>\n"
        }
        let axisY = top + 45 + Double(bars.count) * rowHeight + 5
        out += "<line x1=\"\(left)\" y1=\"\(axisY)\" x2=\"\(right)\" y2=\"\(axisY)\" stroke=\"black\"/>"
        out += "<line x1=\"\(left)\" y1=\"\(top + 40)\" x2=\"\(left)\" y2=\"\(axisY)\" stroke=\"black\"/>\n"
        for i in 0...4 {
            let v = maxRate * Double(i) / 4
            let x = left + Double(i) / 4 * (right - left)
            out += "<text x=\"\(x)\" y=\"\(axisY + 16)\" text-anchor=\"middle\">\(Sizes.fixed(v, 2))</text>\n"
        }
        return out
    }

    static func latencyPanel(_ results: [LatencyResult], top: Double) -> String {
        let values = results.flatMap { $0.cdf.map { Double($0.0) / 1000 } }.filter { $0 > 0 }
        let xMin = max(0.1, (values.min() ?? 1) / 1.5)
        let xMax = (values.max() ?? 1000) * 1.5
        let plot = Plot(top: top, xMin: xMin, xMax: xMax, yMin: 0, yMax: 1, logX: true)
        var out = plot.frame(title: "Latency CDF", xLabel: "latency µs (log scale)", yLabel: "fraction of samples")
        var decade = 0.1
        while decade <= xMax {
            for m in [1.0, 2, 5] {
                let x = decade * m
                if x >= xMin, x <= xMax { out += plot.xTick(x, label: x < 1 ? Sizes.fixed(x, 1) : "\(Int(x))") }
            }
            decade *= 10
        }
        for i in 0...4 { out += plot.yTick(Double(i) / 4, label: Sizes.fixed(Double(i) / 4, 2)) }
        var legend: [(String, String, Bool)] = []
        for (i, r) in results.enumerated() {
            let color = colors[i % colors.count]
            let points = r.cdf.filter { $0.0 > 0 }.map { (Double($0.0) / 1000, $0.1) }
            out += plot.polyline(points, color: color)
            legend.append(("\(r.name), \(r.messageBytes) B, \(r.measures): p50 \(Sizes.fixed(Double(r.p50) / 1000, 1)) µs", color, false))
        }
        out += plot.legend(legend)
        return out
    }

    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        var step = 1.0
        while step * 10 < v { step *= 10 }
        while step > v { step /= 10 }
        for m in [1.0, 2, 2.5, 5, 10] where step * m >= v { return step * m }
        return step * 10
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case _ where c.value < 0x20: out += " "
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

/// Coordinates of one panel.
struct Plot {
    let top: Double
    let xMin, xMax, yMin, yMax: Double
    let logX: Bool
    let left = 70.0
    let right = Chart.width - 30
    var plotTop: Double { top + 40 }
    var bottom: Double { top + Chart.panelHeight - 50 }

    func px(_ x: Double) -> Double {
        let f = logX ? (log10(x) - log10(xMin)) / (log10(xMax) - log10(xMin)) : (x - xMin) / (xMax - xMin)
        return left + f * (right - left)
    }

    func py(_ y: Double) -> Double { bottom - (y - yMin) / (yMax - yMin) * (bottom - plotTop) }

    func frame(title: String, xLabel: String, yLabel: String) -> String {
        """
        <text x="\(left)" y="\(top + 25)" font-size="14">\(Chart.escape(title))</text>
        <line x1="\(left)" y1="\(bottom)" x2="\(right)" y2="\(bottom)" stroke="black"/>
        <line x1="\(left)" y1="\(plotTop)" x2="\(left)" y2="\(bottom)" stroke="black"/>
        <text x="\((left + right) / 2)" y="\(bottom + 38)" text-anchor="middle">\(Chart.escape(xLabel))</text>
        <text x="18" y="\((plotTop + bottom) / 2)" text-anchor="middle" transform="rotate(-90 18 \((plotTop + bottom) / 2))">\(Chart.escape(yLabel))</text>

        """
    }

    func xTick(_ x: Double, label: String) -> String {
        let p = px(x)
        return "<line x1=\"\(p)\" y1=\"\(bottom)\" x2=\"\(p)\" y2=\"\(bottom + 5)\" stroke=\"black\"/><text x=\"\(p)\" y=\"\(bottom + 18)\" text-anchor=\"middle\">\(Chart.escape(label))</text>\n"
    }

    func yTick(_ y: Double, label: String) -> String {
        let p = py(y)
        return "<line x1=\"\(left - 5)\" y1=\"\(p)\" x2=\"\(right)\" y2=\"\(p)\" stroke=\"#ddd\"/><text x=\"\(left - 8)\" y=\"\(p + 4)\" text-anchor=\"end\">\(Chart.escape(label))</text>\n"
    }

    func polyline(_ points: [(Double, Double)], color: String) -> String {
        let coords = points.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
        var out = "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(coords)\"/>\n"
        for p in points { out += "<circle cx=\"\(px(p.0))\" cy=\"\(py(p.1))\" r=\"3\" fill=\"\(color)\"/>\n" }
        return out
    }

    func horizontal(_ y: Double, color: String) -> String {
        "<line x1=\"\(left)\" y1=\"\(py(y))\" x2=\"\(right)\" y2=\"\(py(y))\" stroke=\"\(color)\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n"
    }

    /// Under the plot, one row per item.
    func legend(_ items: [(String, String, Bool)]) -> String {
        var out = ""
        for (i, (label, color, dashed)) in items.enumerated() {
            let y = bottom + 60 + Double(i) * Chart.legendRow
            out += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + 24)\" y2=\"\(y)\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
            out += "<text x=\"\(left + 30)\" y=\"\(y + 4)\" font-size=\"11\">\(Chart.escape(label))</text>\n"
        }
        return out
    }
}
