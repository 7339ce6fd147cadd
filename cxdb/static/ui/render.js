// One turn as a DOM element: a chat bubble when its data has a role and text, a JSON tree otherwise,
// and the raw facts (hash, encoding, compression, sizes) when asked for. Text only, never HTML.

import { h, when } from "./dom.js";

const ROLES = new Set(["system", "user", "assistant", "tool"]);
const COMPRESSION = { 0: "none", 1: "zstd", 2: "zstd with a dictionary" };
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

function isChat(data) {
  return data && typeof data === "object" && !Array.isArray(data) && ROLES.has(data.role) &&
    (typeof data.text === "string" || Array.isArray(data.tool_calls));
}

export function tree(value, depth = 0) {
  if (value === null) return h("span", { class: "lit" }, "null");
  if (Array.isArray(value)) {
    if (!value.length) return h("span", { class: "lit" }, "[]");
    return h("details", { class: "fold", open: depth < 2 },
      h("summary", {}, `[${value.length}]`),
      h("ul", {}, value.map((item, index) => h("li", {}, h("span", { class: "key" }, `${index}: `), tree(item, depth + 1)))));
  }
  if (typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return h("span", { class: "lit" }, "{}");
    return h("details", { class: "fold", open: depth < 2 },
      h("summary", {}, `{${keys.length}}`),
      h("ul", {}, keys.map((key) => h("li", {}, h("span", { class: "key" }, `${key}: `), tree(value[key], depth + 1)))));
  }
  if (typeof value === "string") {
    return h("span", { class: "str", title: ISO.test(value) ? when(value) : null }, JSON.stringify(value));
  }
  return h("span", { class: typeof value === "number" ? "num" : "lit" }, String(value));
}

function chat(data) {
  const parts = [];
  if (typeof data.text === "string" && data.text) {
    const text = h("div", { class: "text" }, data.text);
    // A tool's result is folded, as the calls are: the conversation reads without them.
    parts.push(data.role === "tool"
      ? h("details", { class: "fold tool-result" }, h("summary", {}, `tool result · ${data.text.length.toLocaleString()} characters`), text)
      : text);
  }
  for (const call of data.tool_calls || []) {
    const name = call && typeof call === "object" ? call.name : undefined;
    parts.push(h("details", { class: "fold tool-call" },
      h("summary", {}, `tool call ${name || ""}`.trim(), call && call.duration !== undefined ? ` · ${call.duration} ms` : ""),
      h("div", { class: "tree" }, tree(call, 1))));
  }
  const rest = Object.fromEntries(Object.entries(data).filter(([key]) => !["role", "text", "tool_calls", "timestamp"].includes(key)));
  if (Object.keys(rest).length) {
    parts.push(h("details", { class: "fold" }, h("summary", {}, "more fields"), h("div", { class: "tree" }, tree(rest, 1))));
  }
  return parts;
}

function raw(turn, onBlob) {
  const rows = [];
  const add = (name, value) => rows.push(h("span", {}, name), h("span", { class: "mono" }, value));
  if (turn.content_hash_b3) {
    add("hash", h("span", {}, turn.content_hash_b3.slice(0, 16) + "… ",
      h("button", { type: "button", class: "link", onclick: () => onBlob(turn.content_hash_b3) }, "blob")));
  }
  if (turn.encoding !== undefined) add("encoding", turn.encoding === 1 ? "msgpack" : String(turn.encoding));
  if (turn.compression !== undefined) add("compression", COMPRESSION[turn.compression] || String(turn.compression));
  if (turn.uncompressed_len !== undefined) add("size", `${turn.uncompressed_len.toLocaleString()} bytes`);
  add("type", `${turn.declared_type.type_id} v${turn.declared_type.type_version}`);
  if (turn.decoded_as) add("decoded as", `${turn.decoded_as.type_id} v${turn.decoded_as.type_version}`);
  return h("div", { class: "raw" }, rows);
}

// actions: {onExpand(turn), onFork(turn), onBlob(hash)}; options: {raw}
export function renderTurn(turn, actions, options = {}) {
  const data = turn.data;
  const chatty = isChat(data);
  const role = chatty ? data.role : null;
  const stamp = chatty && typeof data.timestamp === "string" ? when(data.timestamp) : "";
  const head = h("div", { class: "turn-head" },
    role ? h("span", { class: "role" }, role) : h("span", { class: "type mono" }, turn.declared_type.type_id),
    h("span", {}, `#${turn.depth}`),
    stamp ? h("time", { datetime: data.timestamp }, stamp) : null,
    h("span", { class: "mono" }, `turn ${turn.turn_id}`),
    h("span", { class: "actions" },
      h("button", { type: "button", class: "link write-action", title: "A new context whose head is this turn",
        onclick: () => actions.onFork(turn) }, "fork here")));
  const body = [];
  if (turn.error) body.push(h("div", { class: "error" }, `${turn.error.code}: ${turn.error.message}`));
  if (chatty) body.push(...chat(data));
  else if (data !== undefined && data !== null) body.push(h("div", { class: "tree" }, tree(data)));
  if (turn.truncated && turn.truncated.length) {
    body.push(h("div", { class: "cut" }, `${turn.truncated.length} long string(s) cut here `,
      h("button", { type: "button", class: "link expand", onclick: () => actions.onExpand(turn) }, "show all")));
  }
  if (options.raw) body.push(raw(turn, actions.onBlob));
  return h("article", {
    class: `turn${role ? " role-" + role : ""}`, id: `turn-${turn.turn_id}`,
    dataset: { turnId: turn.turn_id, depth: String(turn.depth) },
  }, head, body);
}
