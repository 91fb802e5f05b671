// The console: plain ES modules, no framework; every action is a signed
// call to the SES v2 API with the signed-in credential's rights.
import { api, ApiError, credential, defaultRegion, patiently, setRegion, signIn, signOut } from "./api.js";
import { lineChart, sparkline, thresholdBar } from "./charts.js";

const main = document.getElementById("main");
const DAY = 86400;

/** An element: `h("td", { class: "num" }, "12")`; text is never parsed as HTML. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const time = (seconds) => (seconds ? new Date(seconds * 1000).toISOString().replace(".000Z", "Z") : "");
const dayOf = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 10);
const epoch = (date) => Math.floor(Date.parse(date + "T00:00:00Z") / 1000);
const today = () => new Date().toISOString().slice(0, 10);
const daysAgo = (n) => dayOf(Date.now() / 1000 - n * DAY);

function show(...content) {
  main.replaceChildren(...content);
  main.focus();
}

function problem(error) {
  return h("p", { class: "error", role: "alert" }, error instanceof ApiError ? `${error.type || error.status}: ${error.message}` : String(error));
}

// ---------------------------------------------------------------- sign in

function signInPage(message) {
  const form = h(
    "form",
    { class: "stack", "aria-labelledby": "sign-in-title" },
    h("h2", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "muted" }, "With an access key of this server. The secret stays in this browser tab: it signs each request and is forgotten when the tab closes or you sign out."),
    h("label", {}, "Access key ID", h("input", { name: "accessKey", required: true, autocomplete: "username", autofocus: true })),
    h("label", {}, "Secret access key", h("input", { name: "secret", type: "password", required: true, autocomplete: "current-password" })),
    h("label", {}, "Region", h("input", { name: "region", id: "sign-in-region", list: "regions", required: true })),
    regionList(),
    message ? h("p", { class: "error", role: "alert", id: "sign-in-error" }, message) : null,
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Sign in")),
  );
  const region = form.querySelector("#sign-in-region");
  defaultRegion().then((r) => { if (!region.value) region.value = r; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    signIn(data.get("accessKey").trim(), data.get("secret"), data.get("region").trim());
    try {
      // The credential's first call is the sign-in: a refused one is forgotten.
      await patiently(() => api.listExportJobs({ PageSize: 1 }));
      location.hash = "#/jobs";
      route();
    } catch (e) {
      signOut();
      signInPage(e instanceof ApiError && e.status === 403 ? `The server refused these credentials (${e.type}).` : String(e.message || e));
    }
  });
  document.getElementById("nav").hidden = true;
  show(form);
}

// ---------------------------------------------------------------- jobs

let refresh = null;

async function jobsPage() {
  const status = h("select", { id: "filter-status", "aria-label": "Status" },
    ["", "CREATED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"].map((s) => h("option", { value: s }, s || "any status")));
  const type = h("select", { id: "filter-type", "aria-label": "Type" },
    ["", "METRICS_DATA", "MESSAGE_INSIGHTS"].map((s) => h("option", { value: s }, s || "any type")));
  const body = h("tbody");
  const details = h("div", { id: "job-details" });
  const note = h("p", { class: "muted", "aria-live": "polite" });
  const table = h("table", { id: "jobs" },
    h("thead", {}, h("tr", {}, ["Job", "Type", "Status", "Created", "Completed", ""].map((c) => h("th", { scope: "col" }, c)))),
    body);

  async function load() {
    try {
      const input = { PageSize: 100 };
      if (status.value) input.JobStatus = status.value;
      if (type.value) input.ExportSourceType = type.value;
      const jobs = [];
      let token;
      do {
        const page = await patiently(() => api.listExportJobs({ ...input, NextToken: token }));
        jobs.push(...(page.ExportJobs || []));
        token = page.NextToken;
      } while (token && jobs.length < 500);
      body.replaceChildren(...jobs.map(row));
      const active = jobs.some((j) => j.JobStatus === "CREATED" || j.JobStatus === "PROCESSING");
      const count = jobs.length === 1 ? "1 job" : `${jobs.length} jobs`;
      note.textContent = jobs.length ? `${count}${active ? ", refreshing while some are active" : ""}` : "No export jobs yet.";
      clearTimeout(refresh);
      if (active) refresh = setTimeout(load, 2000);
    } catch (e) {
      note.replaceChildren(problem(e));
    }
  }

  function row(job) {
    const actions = h("td", {});
    if (job.JobStatus === "CREATED" || job.JobStatus === "PROCESSING") {
      actions.append(h("button", { type: "button", onclick: async () => {
        try { await api.cancelExportJob(job.JobId); } catch (e) { note.replaceChildren(problem(e)); }
        load();
      } }, "Cancel"));
    }
    if (job.JobStatus === "COMPLETED") {
      actions.append(h("button", { type: "button", class: "download", onclick: async () => {
        try {
          const full = await patiently(() => api.getExportJob(job.JobId));
          const url = full.ExportDestination && full.ExportDestination.S3Url;
          if (url && url.startsWith("http")) {
            // A link the browser downloads (the URL is signed and short-lived).
            const link = h("a", { href: url, download: "", id: "download-link" }, "download");
            note.replaceChildren("Downloading ", link, ".");
            link.click();
          } else {
            note.textContent = `The file is at ${url}`;
          }
        } catch (e) { note.replaceChildren(problem(e)); }
      } }, "Download"));
    }
    return h("tr", { "data-job": job.JobId },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => detailsOf(job.JobId) }, job.JobId)),
      h("td", {}, job.ExportSourceType),
      h("td", { class: `status-${job.JobStatus}` }, job.JobStatus),
      h("td", {}, time(job.CreatedTimestamp)),
      h("td", {}, time(job.CompletedTimestamp)),
      actions);
  }

  async function detailsOf(id) {
    try {
      const job = await patiently(() => api.getExportJob(id));
      details.replaceChildren(h("h3", {}, `Job ${id}`), h("pre", {}, JSON.stringify(job, null, 2)));
      details.scrollIntoView();
    } catch (e) {
      details.replaceChildren(problem(e));
    }
  }

  status.addEventListener("change", load);
  type.addEventListener("change", load);
  show(h("h2", {}, "Export jobs"), h("div", { class: "row" }, status, type, h("button", { type: "button", onclick: load }, "Refresh")), note, table, details);
  await load();
}

// ---------------------------------------------------------------- new export

/** The metrics and dimensions an export may name (the model's enums). */
const METRICS = ["SEND", "DELIVERY", "OPEN", "CLICK", "PERMANENT_BOUNCE", "TRANSIENT_BOUNCE", "COMPLAINT", "DELIVERY_OPEN", "DELIVERY_CLICK", "DELIVERY_COMPLAINT"];
const DIMENSIONS = ["ISP", "EMAIL_IDENTITY", "CONFIGURATION_SET", "TENANT_NAME"];

// Most specific first: "metricsDataSource.startDate" is about StartDate.
const FIELDS = ["StartDate", "EndDate", "MaxResults", "Dimensions", "Include", "Exclude", "DataFormat", "S3Url", "Metrics"];

function newExportPage() {
  const field = (name, label, input) => h("label", { id: `field-${name}` }, label, input, h("span", { class: "field-error", id: `error-${name}`, role: "alert" }));
  const source = h("select", { name: "source", id: "source" },
    h("option", { value: "metrics" }, "Metrics (VDM)"), h("option", { value: "insights" }, "Message insights"));
  const checked = (name, value, on) => h("input", { type: "checkbox", name, value, checked: on });
  const metricsPart = h("fieldset", { id: "metrics-part" }, h("legend", {}, "Metrics"),
    h("div", { id: "field-Dimensions" },
      h("fieldset", { class: "choices", id: "dimension-choices" }, h("legend", {}, "Dimensions (one to three)"),
        DIMENSIONS.map((d) => h("label", {}, checked("dimension", d, d === "ISP"), d))),
      h("span", { class: "field-error", id: "error-Dimensions", role: "alert" })),
    h("div", { id: "field-Metrics" },
      h("fieldset", { class: "choices", id: "metric-choices" }, h("legend", {}, "Metrics and how each is aggregated"),
        METRICS.flatMap((m) => [
          h("span", {}, m),
          h("label", {}, checked("metric", `${m}:VOLUME`, m === "SEND"), "Volume"),
          h("label", {}, checked("metric", `${m}:RATE`, m === "DELIVERY" || m === "OPEN"), "Rate"),
        ])),
      h("span", { class: "field-error", id: "error-Metrics", role: "alert" })));
  const insightsPart = h("fieldset", { id: "insights-part", hidden: true }, h("legend", {}, "Message insights"),
    field("Include", "Only ISPs (comma-separated; empty for all)", h("input", { name: "isp", placeholder: "Gmail, Yahoo" })),
    field("Exclude", "Leave out subjects (comma-separated patterns)", h("input", { name: "excludeSubject" })),
    field("MaxResults", "At most this many records", h("input", { name: "maxResults", type: "number", min: 1, value: 10000 })));
  source.addEventListener("change", () => {
    metricsPart.hidden = source.value !== "metrics";
    insightsPart.hidden = source.value !== "insights";
  });
  const result = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack", id: "new-export" },
    h("h2", {}, "New export"),
    h("label", {}, "Data", source),
    h("div", { class: "row" },
      field("StartDate", "From (UTC day)", h("input", { name: "start", type: "date", value: daysAgo(7) })),
      field("EndDate", "To (UTC day, not included)", h("input", { name: "end", type: "date", value: daysAgo(-1) }))),
    metricsPart, insightsPart,
    field("DataFormat", "Format", h("select", { name: "format" }, h("option", {}, "CSV"), h("option", {}, "JSON"))),
    h("div", {}, h("button", { class: "primary", type: "submit" }, "Create export")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const name of FIELDS) { const e = document.getElementById(`error-${name}`); if (e) e.textContent = ""; }
    result.replaceChildren();
    const data = new FormData(form);
    const start = data.get("start") ? epoch(data.get("start")) : undefined;
    const end = data.get("end") ? epoch(data.get("end")) : undefined;
    let dataSource;
    if (data.get("source") === "metrics") {
      const metrics = data.getAll("metric").map((m) => {
        const [Name, Aggregation] = String(m).split(":");
        return { Name, Aggregation };
      });
      const dimensions = Object.fromEntries(data.getAll("dimension").map((d) => [String(d), ["*"]]));
      dataSource = { MetricsDataSource: { Namespace: "VDM", Dimensions: dimensions, Metrics: metrics, StartDate: start, EndDate: end } };
    } else {
      const list = (name) => String(data.get(name) || "").split(",").map((v) => v.trim()).filter(Boolean);
      const insights = { StartDate: start, EndDate: end, MaxResults: Number(data.get("maxResults")) };
      if (list("isp").length) insights.Include = { Isp: list("isp") };
      if (list("excludeSubject").length) insights.Exclude = { Subject: list("excludeSubject") };
      dataSource = { MessageInsightsDataSource: insights };
    }
    try {
      const created = await patiently(() => api.createExportJob({ ExportDataSource: dataSource, ExportDestination: { DataFormat: data.get("format") } }));
      result.replaceChildren(h("p", {}, "Created ", h("a", { href: "#/jobs", id: "created-job" }, created.JobId), "."));
    } catch (e) {
      // The server's message, beside the field it names.
      const message = String(e.message || "").toLowerCase();
      const named = FIELDS.find((name) => message.includes(name.toLowerCase()));
      const target = named && document.getElementById(`error-${named}`);
      if (target && !target.closest("[hidden]")) target.textContent = e.message;
      else result.replaceChildren(problem(e));
    }
  });
  show(form);
}

// ---------------------------------------------------------------- dashboard

// Rates as VDM defines them: each over the deliveries that could have been
// opened, clicked or complained about (the DELIVERY_* metrics exist to be
// these denominators); delivery and bounce rates over sends.
const SERIES = [
  { id: "send", label: "Send volume", metric: "SEND" },
  { id: "delivery", label: "Delivery rate", metric: "DELIVERY", over: "SEND" },
  { id: "open", label: "Open rate", metric: "OPEN", over: "DELIVERY_OPEN" },
  { id: "click", label: "Click rate", metric: "CLICK", over: "DELIVERY_CLICK" },
  { id: "bounce", label: "Bounce rate", metric: "PERMANENT_BOUNCE", over: "SEND" },
  { id: "complaint", label: "Complaint rate", metric: "COMPLAINT", over: "DELIVERY_COMPLAINT" },
];
/** Every metric the series need, numerators and denominators, once each. */
const NEEDED = [...new Set(SERIES.flatMap((s) => [s.metric, s.over].filter(Boolean)))];
const formula = (s) => `${s.label} = ${s.metric} / ${s.over}`;

/**
 * Daily counts of every metric the series need for `dimensions` (one value
 * each), by BatchGetMetricData, and each series' daily points: a rate is
 * null (a gap) on a day whose denominator is 0.
 */
async function daily(start, end, dimensions) {
  const queries = NEEDED.map((metric) => ({ Id: metric.toLowerCase(), Namespace: "VDM", Metric: metric, StartDate: start, EndDate: end, ...(dimensions ? { Dimensions: dimensions } : {}) }));
  const answer = await patiently(() => api.batchGetMetricData({ Queries: queries }));
  const counts = {};
  for (const metric of NEEDED) {
    const r = (answer.Results || []).find((r) => r.Id === metric.toLowerCase()) || { Timestamps: [], Values: [] };
    counts[metric] = r.Timestamps.map((t, i) => ({ t, v: r.Values[i] }));
  }
  const out = { counts };
  for (const s of SERIES) {
    out[s.id] = counts[s.metric].map((p, i) => {
      if (!s.over) return p;
      const denominator = counts[s.over][i] ? counts[s.over][i].v : 0;
      return { t: p.t, v: denominator ? p.v / denominator : null };
    });
  }
  return out;
}

async function dashboardPage() {
  const start = h("input", { type: "date", id: "dash-start", value: daysAgo(30), "aria-label": "From" });
  const end = h("input", { type: "date", id: "dash-end", value: daysAgo(-1), "aria-label": "To" });
  const dimension = h("select", { id: "dash-dimension", "aria-label": "Break down by" },
    DIMENSIONS.map((d) => h("option", {}, d)));
  const charts = h("div", { class: "charts", id: "charts" });
  const reputation = h("div", { class: "reputation", id: "reputation" });
  const breakdown = h("div", { id: "breakdown" });
  const note = h("p", { class: "muted", "aria-live": "polite" });

  async function load() {
    const from = epoch(start.value), to = epoch(end.value);
    note.textContent = "Loading…";
    try {
      await loadReputation();
      const all = await daily(from, to);
      charts.replaceChildren(...SERIES.map((s) => h("figure", { "data-series": s.id },
        h("figcaption", s.over ? { title: formula(s) } : {}, s.label),
        lineChart(all[s.id], { rate: Boolean(s.over), label: s.label }))));
      note.textContent = `Daily, ${start.value} to ${end.value} (UTC).`;
      await loadBreakdown(from, to);
    } catch (e) {
      note.replaceChildren(problem(e));
    }
  }

  // AWS's reputation page: bounce and complaint rates over the latest
  // eligible sends (not the dates above), with its review and pause lines.
  async function loadReputation() {
    const r = await patiently(() => api.reputation());
    const t = r.Thresholds;
    const figure = (id, label, rate, review, pause) => h("figure", { "data-reputation": id },
      h("figcaption", {}, label), thresholdBar(rate, { review, pause, label }));
    reputation.replaceChildren(
      figure("bounce", "Bounce rate (reputation)", r.BounceRate, t.BounceReview, t.BouncePause),
      figure("complaint", "Complaint rate (reputation)", r.ComplaintRate, t.ComplaintReview, t.ComplaintPause),
      h("p", { class: "muted" }, `Over the latest ${r.Sends} of up to ${r.Volume} eligible sends in ${r.Region}, as AWS's reputation page measures them; AWS reviews an account past the first line and may pause it past the second.`));
  }

  async function loadBreakdown(from, to) {
    // The dimension's values: a metrics export over the interval lists them.
    breakdown.replaceChildren(h("p", { class: "muted" }, `Finding the ${dimension.value} values…`));
    const created = await patiently(() => api.createExportJob({
      ExportDataSource: { MetricsDataSource: { Namespace: "VDM", Dimensions: { [dimension.value]: ["*"] }, Metrics: [{ Name: "SEND", Aggregation: "VOLUME" }], StartDate: from, EndDate: to } },
      ExportDestination: { DataFormat: "JSON" },
    }));
    let job;
    for (;;) {
      job = await patiently(() => api.getExportJob(created.JobId));
      if (!["CREATED", "PROCESSING"].includes(job.JobStatus)) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const url = job.ExportDestination && job.ExportDestination.S3Url;
    if (job.JobStatus !== "COMPLETED" || !url || !url.startsWith("http")) {
      breakdown.replaceChildren(h("p", { class: "error" }, `The values could not be listed (${job.JobStatus}).`));
      return;
    }
    const text = await (await fetch(url, { credentials: "omit" })).text();
    const values = text.split("\n").filter(Boolean).map((l) => JSON.parse(l)[dimension.value]).filter((v) => v !== undefined && v !== "");
    const rows = [];
    for (const value of values.slice(0, 25)) {
      const series = await daily(from, to, { [dimension.value]: value });
      const total = series.send.reduce((a, p) => a + p.v, 0);
      const sum = (metric) => series.counts[metric].reduce((a, p) => a + p.v, 0);
      // Over the interval, as each day: the metric over its own denominator.
      const rate = (id) => {
        const s = SERIES.find((s) => s.id === id);
        const denominator = sum(s.over);
        return denominator ? (100 * sum(s.metric) / denominator).toFixed(1) + " %" : "–";
      };
      rows.push(h("tr", { "data-value": value },
        h("th", { scope: "row" }, value),
        h("td", { class: "num" }, total),
        h("td", {}, sparkline(series.send)),
        ...["delivery", "open", "click", "bounce", "complaint"].map((id) => h("td", { class: "num" }, rate(id)))));
    }
    const headings = [[dimension.value], ["Sent"], ["Daily sends"], ...["delivery", "open", "click", "bounce", "complaint"].map((id) => {
      const s = SERIES.find((s) => s.id === id);
      return [s.label, formula(s)];
    })];
    breakdown.replaceChildren(h("h3", {}, `By ${dimension.value}`), h("table", { id: "breakdown-table" },
      h("thead", {}, h("tr", {}, headings.map(([c, title]) => h("th", title ? { scope: "col", title } : { scope: "col" }, c)))),
      h("tbody", {}, rows)));
  }

  show(h("h2", {}, "Deliverability dashboard"),
    h("div", { class: "row" }, h("label", {}, "From ", start), h("label", {}, "To ", end), h("label", {}, "Break down by ", dimension), h("button", { type: "button", class: "primary", id: "dash-load", onclick: load }, "Show")),
    reputation, note, charts,
    h("ul", { class: "formulas", id: "formulas" }, SERIES.filter((s) => s.over).map((s) => h("li", {}, formula(s)))),
    h("p", { class: "muted" }, "A day whose denominator is 0 has no rate: a gap in its line, not 0 %."),
    breakdown);
  await load();
}

// ---------------------------------------------------------------- lookup

function lookupPage() {
  const input = h("input", { name: "messageId", id: "message-id", required: true, "aria-label": "Message ID", size: 50 });
  const out = h("div", { id: "lookup-result", "aria-live": "polite" });
  const form = h("form", { class: "row" }, input, h("button", { class: "primary", type: "submit" }, "Look up"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const found = await patiently(() => api.getMessageInsights(input.value.trim()));
      const heading = h("div", {},
        h("p", {}, h("strong", {}, found.Subject || "(no subject)"), " from ", found.FromEmailAddress || "?"));
      const recipients = (found.Insights || []).map((insight) => h("section", { class: "recipient" },
        h("h3", {}, insight.Destination, h("span", { class: "muted" }, ` (${insight.Isp || "unknown ISP"})`)),
        h("ol", { class: "timeline" }, (insight.Events || []).map((e) => h("li", {},
          h("time", { datetime: time(e.Timestamp) }, time(e.Timestamp)), " ", h("strong", {}, e.Type),
          e.Details ? h("span", { class: "muted" }, " ", JSON.stringify(e.Details)) : null)))));
      out.replaceChildren(heading, ...recipients);
    } catch (e) {
      out.replaceChildren(problem(e));
    }
  });
  show(h("h2", {}, "Message lookup"), form, out);
}

// ---------------------------------------------------------------- regions

/** SES's regions, offered by the pickers (any other name can be typed). */
const REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1", "eu-west-1", "eu-west-2", "eu-west-3",
  "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "il-central-1", "me-south-1", "me-central-1", "af-south-1", "ap-south-1",
  "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "us-gov-west-1", "us-gov-east-1"];

function regionList() {
  return h("datalist", { id: "regions" }, REGIONS.map((r) => h("option", { value: r })));
}

// ---------------------------------------------------------------- routing

const PAGES = { "#/jobs": jobsPage, "#/new": newExportPage, "#/dashboard": dashboardPage, "#/lookup": lookupPage };

function route() {
  clearTimeout(refresh);
  const who = credential();
  if (!who) return signInPage();
  const nav = document.getElementById("nav");
  nav.hidden = false;
  document.getElementById("who").textContent = who.accessKey;
  // Everything an account has is kept per region, as AWS keeps SES: the
  // picker chooses the region this tab's calls are signed for, and so the
  // data they see.
  const picker = document.getElementById("region");
  const choices = REGIONS.includes(who.region) ? REGIONS : [who.region, ...REGIONS];
  picker.replaceChildren(...choices.map((r) => h("option", { value: r, selected: r === who.region }, r)));
  const page = PAGES[location.hash] ? location.hash : "#/jobs";
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  PAGES[page]();
}

document.getElementById("region").addEventListener("change", (event) => {
  setRegion(event.target.value);
  route();
});

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
