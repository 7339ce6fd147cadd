// The contexts, newest activity first, filtered by tag prefix, more on request; live from /v1/events.

import { api, stream } from "./api.js";
import { clear, h, plural, when } from "./dom.js";

const STEP = 50;

export async function showContexts(main, { report, params }) {
  const prefix = params.get("tag") || "";
  let limit = STEP; // how many are shown: a live reload shows as many again
  let next = null; // where the next page starts (next_before)
  const body = h("tbody", {});
  const count = h("span", { class: "muted" }, "");
  const more = h("button", { type: "button", onclick: () => loadMore().catch(report) }, "more");
  const status = h("span", { class: "status" }, "");
  const filter = h("input", { type: "search", placeholder: "tag prefix", value: prefix, "aria-label": "tag prefix" });
  const form = h("form", {
    class: "toolbar", onsubmit: (event) => {
      event.preventDefault();
      location.hash = filter.value ? `#/?tag=${encodeURIComponent(filter.value)}` : "#/";
    },
  }, h("h1", {}, "Contexts"), filter, h("button", { type: "submit" }, "filter"), count, status);
  clear(main).append(form,
    h("div", { class: "scroll" }, h("table", { class: "contexts" },
      h("thead", {}, h("tr", {}, ["context", "tag", "depth", "created", "last activity"].map((name) => h("th", {}, name)))),
      body)),
    h("p", {}, more));

  let shown = new Set();
  function row(context, fresh) {
    return h("tr", { class: fresh ? "fresh" : null, dataset: { contextId: context.context_id } },
      h("td", {}, h("a", { href: `#/c/${context.context_id}` }, context.context_id)),
      h("td", {}, context.client_tag === null ? h("span", { class: "muted" }, "—") : context.client_tag),
      h("td", { class: "num" }, context.head_depth.toLocaleString()),
      h("td", {}, when(context.created_at)),
      h("td", {}, when(context.last_activity_at)));
  }

  function settle(listed) {
    next = listed.next_before;
    count.textContent = `${plural(listed.total, "context")}${prefix ? ` tagged ${prefix}…` : ""}`;
    more.hidden = next === null;
  }

  async function load() {
    const listed = await api("/v1/contexts", { query: { limit, tag_prefix: prefix } });
    const key = (context) => context.context_id + ":" + context.head_depth;
    const rows = listed.contexts.map((context) => row(context, shown.size > 0 && !shown.has(key(context))));
    shown = new Set(listed.contexts.map(key));
    clear(body).append(...rows);
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, prefix ? "No context has a tag with this prefix." : "No contexts yet.")));
    settle(listed);
  }

  async function loadMore() {
    if (next === null) return;
    const page = await api("/v1/contexts", { query: { limit: STEP, tag_prefix: prefix, before: next } });
    body.append(...page.contexts.map((context) => row(context, false)));
    limit = Math.min(10000, limit + page.contexts.length);
    settle(page);
  }

  await load();
  // Any change may reorder the list: reload it, at most twice a second.
  let pending = null;
  const changes = stream("/v1/events", { events: "context_created,turn_appended" }, {
    onEvent: () => {
      if (!pending) pending = setTimeout(() => { pending = null; load().catch(report); }, 400);
    },
    onState: (state, error) => {
      status.className = `status ${state}`;
      status.textContent = state === "live" ? "live" : state === "failed" ? "not live" : "reconnecting…";
      if (error && state === "failed") report(error);
    },
  });
  return () => {
    changes.stop();
    if (pending) clearTimeout(pending);
  };
}
