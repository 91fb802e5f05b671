// Line charts and sparklines, drawn as SVG by hand.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

const format = (v, rate) => (v === null ? "no value" : rate ? `${(v * 100).toFixed(1)} %` : String(Math.round(v)));
const day = (t) => new Date(t * 1000).toISOString().slice(0, 10);

/**
 * A line chart of `points` ({t: epoch seconds, v}), labelled for screen
 * readers. A point whose `v` is null (a rate whose denominator is 0) is a
 * gap in the line, not 0. Each point says its day and value on hover and
 * on keyboard focus.
 */
export function lineChart(points, { rate = false, label = "" } = {}) {
  const width = 320, height = 160, left = 44, bottom = 18, top = 8;
  const values = points.filter((p) => p.v !== null);
  const max = Math.max(rate ? 0.01 : 1, ...values.map((p) => p.v));
  const x = (i) => left + (points.length > 1 ? (i * (width - left - 6)) / (points.length - 1) : 0);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  // A new segment after each gap.
  const path = points
    .map((p, i) => (p.v === null ? "" : `${i && points[i - 1].v !== null ? "L" : "M"}${x(i).toFixed(1)},${y(p.v).toFixed(1)}`))
    .filter(Boolean)
    .join(" ");
  const first = points[0], last = points[points.length - 1];
  const spoken = points.map((p) => `${day(p.t)} ${format(p.v, rate)}`).join(", ");
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "group", "aria-label": `${label}: ${spoken}` },
    svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    svg("text", { x: 2, y: top + 8 }, format(max, rate)),
    svg("text", { x: 2, y: height - bottom }, format(0, rate)),
    first ? svg("text", { x: left, y: height - 4 }, day(first.t).slice(5)) : "",
    last ? svg("text", { x: width - 34, y: height - 4 }, day(last.t).slice(5)) : "",
    svg("path", { class: "line", d: path }));
  const tip = svg("text", { class: "tip", x: left + 4, y: top + 8, "aria-hidden": "true" });
  points.forEach((p, i) => {
    if (p.v === null) return;
    const said = `${day(p.t)}: ${format(p.v, rate)}`;
    const dot = svg("circle", { class: "dot", cx: x(i), cy: y(p.v), r: 3, tabindex: 0, role: "img", "aria-label": said, "data-t": p.t, "data-v": p.v },
      svg("title", {}, said));
    const show = () => {
      tip.textContent = said;
      tip.setAttribute("x", String(Math.min(x(i), width - 110)));
    };
    dot.addEventListener("mouseenter", show);
    dot.addEventListener("focus", show);
    dot.addEventListener("blur", () => { tip.textContent = ""; });
    chart.append(dot);
  });
  chart.append(tip);
  return chart;
}

/** A small line of `points`, for a table row. */
export function sparkline(points) {
  const width = 120, height = 24;
  const max = Math.max(1, ...points.map((p) => p.v));
  const x = (i) => (points.length > 1 ? (i * (width - 2)) / (points.length - 1) + 1 : 1);
  const y = (v) => 2 + (height - 4) * (1 - v / max);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  return svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": points.map((p) => p.v).join(", ") }, svg("path", { class: "line", d: path }));
}

/**
 * A rate on a bar with AWS's two thresholds drawn on it (review, pause),
 * labelled for screen readers; `rate` null when there were no sends.
 */
export function thresholdBar(rate, { review, pause, label = "" }) {
  const width = 320, height = 44, left = 4, right = 8;
  const max = Math.max(pause * 1.5, rate || 0);
  const x = (v) => left + ((width - left - right) * v) / max;
  const pct = (v) => `${(v * 100).toFixed(v < 0.01 ? 2 : 1)} %`;
  const said = rate === null ? `${label}: no sends yet` : `${label}: ${pct(rate)} (review at ${pct(review)}, pause at ${pct(pause)})`;
  const state = rate === null ? "none" : rate >= pause ? "pause" : rate >= review ? "review" : "ok";
  return svg("svg", { class: `bar ${state}`, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": said, "data-rate": rate === null ? "" : rate },
    svg("title", {}, said),
    svg("rect", { class: "track", x: left, y: 8, width: width - left - right, height: 12, rx: 3 }),
    rate === null ? "" : svg("rect", { class: "value", x: left, y: 8, width: Math.max(1, x(rate) - left), height: 12, rx: 3 }),
    svg("line", { class: "review", x1: x(review), y1: 4, x2: x(review), y2: 24 }),
    svg("line", { class: "pause", x1: x(pause), y1: 4, x2: x(pause), y2: 24 }),
    // Near the left edge the review label reads rightwards, else leftwards.
    x(review) < 90
      ? svg("text", { x: x(review) + 2, y: 38 }, `review ${pct(review)}`)
      : svg("text", { x: x(review) - 2, y: 38, "text-anchor": "end" }, `review ${pct(review)}`),
    svg("text", { x: x(pause) + 2, y: 38 }, `pause ${pct(pause)}`));
}
