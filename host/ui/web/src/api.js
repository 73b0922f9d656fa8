// The public API (/v1), and nothing else: every page reads and acts through these calls.

/** An error answer: its status and problem+json body (`title`, `detail`, `errors`). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** Calls the API: JSON in and out; a problem answer throws an ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    throw new ApiError(
      res.status,
      typeof data === "object" ? data : { title: res.statusText, detail: String(data) },
    );
  }
  return data;
}

/** A query string of the non-empty values. */
export function query(values) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** What to show for an error: the problem's title and detail. */
export function describe(error) {
  if (error instanceof ApiError) {
    const p = error.problem;
    return `${p.title || "error"} (${error.status})${p.detail ? `: ${p.detail}` : ""}`;
  }
  return String(error && error.message ? error.message : error);
}
