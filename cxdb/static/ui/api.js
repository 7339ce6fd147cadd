// The public HTTP API, from this page's origin: requests, the token, and event streams over fetch
// (EventSource cannot send an Authorization header).

const KEY = "cxdb.token";
export const BASE = new URL("../", import.meta.url); // the server's root, also behind a path-prefix proxy

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
  toString() {
    return this.status ? `${this.message} (${this.status} ${this.code})` : this.message;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  const value = token();
  if (value) result.Authorization = `Bearer ${value}`;
  return result;
}

export function url(path, query) {
  const target = new URL(path.replace(/^\//, ""), BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, String(value));
  }
  return target;
}

async function failure(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    error = null;
  }
  const message = error && error.message ? error.message : `${response.status} ${response.statusText || "error"}`;
  const failed = new ApiError(response.status, error ? error.code : `HTTP_${response.status}`, message,
    error ? error.details || {} : {});
  if (response.status === 401) unauthorized(failed);
  return failed;
}

export async function api(path, { method = "GET", query, body } = {}) {
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    throw new ApiError(0, "NETWORK", `cxdb cannot be reached: ${exc.message}`);
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

export async function blob(path) {
  const response = await fetch(url(path), { headers: headers({ Accept: "application/octet-stream" }) });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

function parseBlock(block) {
  const event = { event: "message", data: "" };
  let seen = false;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (name === "data") {
      event.data += value;
      seen = true;
    } else if (name === "event" || name === "id") event[name] = value;
  }
  return seen ? event : null;
}

const FINAL = new Set([400, 403, 404, 422, 424]);

// A Server-Sent Events stream that reconnects with Last-Event-ID, with backoff, until stopped.
// onEvent({event, id, data}); onState("live" | "reconnecting" | "failed", error?).
export function stream(path, query, { lastEventId = null, onEvent, onState = () => {} }) {
  let stopped = false;
  let controller = null;
  let last = lastEventId;
  let delay = 500;
  (async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const extra = { Accept: "text/event-stream" };
        if (last !== null && last !== undefined) extra["Last-Event-ID"] = String(last);
        const response = await fetch(url(path, query), { headers: headers(extra), signal: controller.signal });
        if (!response.ok) {
          const error = await failure(response);
          if (FINAL.has(response.status) || response.status === 401) {
            onState("failed", error);
            return;
          }
          onState("reconnecting", error);
        } else {
          onState("live");
          delay = 500;
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value.replace(/\r\n/g, "\n");
            let at;
            while ((at = buffer.indexOf("\n\n")) >= 0) {
              const parsed = parseBlock(buffer.slice(0, at));
              buffer = buffer.slice(at + 2);
              if (!parsed) continue;
              if (parsed.id !== undefined) last = parsed.id;
              parsed.data = parsed.data ? JSON.parse(parsed.data) : null;
              onEvent(parsed);
            }
          }
          if (!stopped) onState("reconnecting");
        }
      } catch (exc) {
        if (stopped) return;
        onState("reconnecting", exc instanceof ApiError ? exc : new ApiError(0, "NETWORK", String(exc.message || exc)));
      }
      if (stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}
