// Reads an HdrHistogram interval log with hdr-histogram-js (HdrHistogram's own JavaScript port),
// adds every interval of one tag and prints its percentiles: the independent reference for
// tickscope's percentile rule. Usage: node hdr_js_percentiles.js LOG TAG P1 P2 ...
// (NODE_PATH must hold hdr-histogram-js.)
const fs = require("fs");
const hdr = require("hdr-histogram-js");

const [log, tag, ...pcts] = process.argv.slice(2);
const reader = new hdr.HistogramLogReader(fs.readFileSync(log, "utf8"), 64);
let total = null;
for (let h = reader.nextIntervalHistogram(); h !== null; h = reader.nextIntervalHistogram()) {
  if (h.tag !== tag) continue;
  if (total === null) total = h;
  else total.add(h);
}
const out = { count: total.totalCount, min: total.minNonZeroValue, max: total.maxValue, percentiles: {} };
for (const p of pcts) out.percentiles[p] = total.getValueAtPercentile(Number(p));
console.log(JSON.stringify(out));
