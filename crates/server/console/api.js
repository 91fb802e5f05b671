// The SES v2 API, signed in the browser with the signed-in credential.
import { encodeSegment, sign } from "./sigv4.js";

const KEY = "ses-export-credential";

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/** The credential of this tab, or null. */
export function credential() {
  const stored = sessionStorage.getItem(KEY);
  return stored ? JSON.parse(stored) : null;
}

export function signIn(accessKey, secret, region) {
  sessionStorage.setItem(KEY, JSON.stringify({ accessKey, secret, region }));
}

/** Signs this tab's calls for `region` from now on: the region's data. */
export function setRegion(region) {
  const who = credential();
  if (who) sessionStorage.setItem(KEY, JSON.stringify({ ...who, region }));
}

/** The server's `--default-region`, for a tab that has chosen none. */
export async function defaultRegion() {
  try {
    const answer = await fetch("defaults.json", { credentials: "omit", cache: "no-store" });
    return (await answer.json()).region || "us-east-1";
  } catch {
    return "us-east-1";
  }
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

async function call(method, path, input) {
  const who = credential();
  if (!who) throw new ApiError(401, "NotSignedIn", "Sign in first.");
  const body = input === undefined ? "" : JSON.stringify(input);
  const headers = await sign({ method, path, body, host: location.host, ...who });
  const response = await fetch(path, {
    method,
    headers: { ...headers, "content-type": "application/json" },
    body: method === "GET" || body === "" ? undefined : body,
    credentials: "omit",
    cache: "no-store",
  });
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { message: text };
  }
  if (!response.ok) {
    throw new ApiError(response.status, response.headers.get("x-amzn-ErrorType") || "", json.message || text);
  }
  return json;
}

export const api = {
  listExportJobs: (input) => call("POST", "/v2/email/list-export-jobs", input),
  getExportJob: (id) => call("GET", `/v2/email/export-jobs/${encodeSegment(id)}`),
  cancelExportJob: (id) => call("PUT", `/v2/email/export-jobs/${encodeSegment(id)}/cancel`),
  createExportJob: (input) => call("POST", "/v2/email/export-jobs", input),
  getMessageInsights: (id) => call("GET", `/v2/email/insights/${encodeSegment(id)}/`),
  batchGetMetricData: (input) => call("POST", "/v2/email/metrics/batch", input),
  // Not an SES operation: the server's own, for the dashboard (signed alike).
  reputation: () => call("GET", "/_ses-export/v1/reputation"),
};

/** `call` again after a pause while the service says TooManyRequests. */
export async function patiently(work) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 429 || attempt > 20) throw e;
      await new Promise((resolve) => setTimeout(resolve, 1100));
    }
  }
}
