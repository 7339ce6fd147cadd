// A conversation: its newest page first, older pages as the reader scrolls up (one request a page),
// new turns live from /follow, a rebase shown as such; its lineage and head history beside it.

import { api, blob, stream } from "./api.js";
import { clear, h, plural, when } from "./dom.js";
import { renderTurn } from "./render.js";

const PAGE = 40;
const STRING_LIMIT = 2000;

function renderQuery(raw) {
  return { view: raw ? "both" : "typed", bytes_render: "len_only", string_limit: STRING_LIMIT };
}

export async function showConversation(main, contextId, { at = null, report, go }) {
  const raw = sessionStorage.getItem("cxdb.raw") === "1";
  const query = renderQuery(raw);
  const [context, first] = await Promise.all([
    api(`/v1/contexts/${contextId}`),
    at ? api(`/v1/contexts/${contextId}/turns`, { query: { ...query, turn_id: at, string_limit: undefined } })
      : api(`/v1/contexts/${contextId}/turns`, { query: { ...query, limit: PAGE } }),
  ]);
  const turns = h("div", { class: "turns" });
  const top = h("div", { class: "marker" }, "");
  const status = h("span", { class: "status" }, at ? "a replaced head: not live" : "connecting…");
  const side = h("aside", {});
  const actions = {
    onExpand: (turn) => expand(turn).catch(report),
    onFork: (turn) => fork(turn).catch(report),
    onBlob: (hash) => download(hash).catch(report),
  };
  let older = first.next_before_turn_id;
  let loading = false;

  function element(turn) {
    return renderTurn(turn, actions, { raw });
  }

  async function expand(turn) {
    const whole = await api(`/v1/contexts/${contextId}/turns`, { query: { ...query, turn_id: turn.turn_id, string_limit: undefined } });
    const old = document.getElementById(`turn-${turn.turn_id}`);
    if (old) old.replaceWith(element(whole.turns[0]));
  }

  async function fork(turn) {
    const made = await api("/v1/contexts/fork", {
      method: "POST",
      body: { base_turn_id: turn.turn_id, client_tag: context.client_tag, provenance: { forked_in: "cxdb viewer" } },
    });
    go(`#/c/${made.context_id}`);
  }

  async function download(hash) {
    const bytes = await blob(`/v1/blobs/${hash}`);
    const link = h("a", { href: URL.createObjectURL(bytes), download: `${hash}.msgpack` });
    document.body.append(link);
    link.click();
    link.remove();
  }

  function setTop() {
    top.textContent = older ? "older turns load as you scroll up" : "the first turn";
  }

  async function loadOlder() {
    if (!older || loading) return;
    loading = true;
    try {
      const page = await api(`/v1/contexts/${contextId}/turns`, { query: { ...query, limit: PAGE, before_turn_id: older } });
      const before = document.documentElement.scrollHeight;
      const fragment = document.createDocumentFragment();
      for (const turn of page.turns) fragment.append(element(turn));
      turns.prepend(fragment);
      window.scrollBy(0, document.documentElement.scrollHeight - before); // keep what the reader looked at in place
      older = page.next_before_turn_id;
      setTop();
    } catch (exc) {
      report(exc);
    } finally {
      loading = false;
    }
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }

  function onTurn(turn) {
    if (document.getElementById(`turn-${turn.turn_id}`)) return;
    const follow = nearBottom();
    turns.append(element(turn));
    head.textContent = `head turn ${turn.turn_id} · depth ${turn.depth}`;
    if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
  }

  function onRebase(ancestor) {
    const id = ancestor.common_ancestor_turn_id;
    const kept = id === "0" ? 0 : Number((document.getElementById(`turn-${id}`) || { dataset: { depth: "0" } }).dataset.depth);
    let dropped = 0;
    for (const el of [...turns.querySelectorAll(".turn")]) {
      if (Number(el.dataset.depth) > kept) {
        el.remove();
        dropped += 1;
      }
    }
    turns.append(h("div", { class: "marker rebase" },
      `The head moved to another branch: ${plural(dropped, "turn")} after turn ${id} left this view ` +
      "(they stay in the head history)."));
    api(`/v1/contexts/${contextId}`).then((fresh) => sideBar(clear(side), fresh, contextId, report)).catch(report);
  }

  const head = h("span", { class: "mono muted" }, `head turn ${first.meta.head_turn_id} · depth ${first.meta.head_depth}`);
  const title = h("h1", {}, `Context ${contextId}`, context.client_tag ? h("span", { class: "muted" }, ` · ${context.client_tag}`) : null);
  const rawToggle = h("label", {}, h("input", {
    type: "checkbox", checked: raw, onchange: (event) => {
      sessionStorage.setItem("cxdb.raw", event.target.checked ? "1" : "0");
      go(location.hash, true);
    },
  }), " raw view");
  for (const turn of first.turns) turns.append(element(turn));
  older = at ? first.turns[0].turn_id : first.next_before_turn_id;
  setTop();
  if (at) turns.prepend(h("div", { class: "marker" }, `Turn ${at} was a head of this context, replaced since.`));
  clear(main).append(
    h("div", { class: "toolbar" }, title, head, status, rawToggle),
    h("div", { class: "layout" }, h("section", {}, top, turns), side));
  sideBar(side, context, contextId, report).catch(report);
  window.scrollTo(0, document.documentElement.scrollHeight);

  const observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadOlder();
  });
  observer.observe(top);

  let follower = null;
  if (!at) {
    const last = first.meta.head_turn_id;
    follower = stream(`/v1/contexts/${contextId}/follow`, last === "0" ? { ...query, after_turn_id: 0 } : query, {
      lastEventId: last === "0" ? null : last,
      onEvent: (event) => {
        if (event.event === "turn") onTurn(event.data);
        else if (event.event === "rebase") onRebase(event.data);
      },
      onState: (state, error) => {
        status.className = `status ${state}`;
        status.textContent = state === "live" ? "live" : state === "failed" ? "not live" : "reconnecting…";
        if (error && state === "failed") report(error);
      },
    });
  }
  return () => {
    observer.disconnect();
    if (follower) follower.stop();
  };
}

async function sideBar(side, context, contextId, report) {
  const lineage = context.lineage;
  const link = (id, text) => h("a", { href: `#/c/${id}` }, text || `context ${id}`);
  const heads = await api(`/v1/contexts/${contextId}/heads`, { query: { limit: 50 } }).catch((exc) => {
    report(exc);
    return { heads: [] };
  });
  side.append(
    h("section", {},
      h("h2", {}, "Context"),
      h("ul", {},
        h("li", {}, `created ${when(context.created_at)}`),
        h("li", {}, `last activity ${when(context.last_activity_at)}`),
        context.provenance ? h("li", {}, h("details", { class: "fold" }, h("summary", {}, "provenance"),
          h("pre", { class: "text" }, JSON.stringify(context.provenance, null, 2)))) : null)),
    h("section", { class: "lineage" },
      h("h2", {}, "Lineage"),
      h("ul", {},
        lineage.parent_context_id
          ? h("li", {}, "forked from ", link(lineage.parent_context_id), ` at turn ${lineage.fork_turn_id}`)
          : h("li", { class: "muted" }, "a root context"),
        lineage.root_context_id !== String(contextId) ? h("li", {}, "root ", link(lineage.root_context_id)) : null,
        h("li", {}, plural(lineage.child_count, "fork")),
        lineage.children.map((child) => h("li", { class: "child" }, "↳ ", link(child))))),
    h("section", { class: "heads" },
      h("h2", {}, "Head history"),
      heads.heads.length
        ? h("ul", {}, heads.heads.map((entry) => h("li", {},
          h("a", { href: `#/c/${contextId}/at/${entry.head_turn_id}` }, `turn ${entry.head_turn_id}`),
          ` (depth ${entry.head_depth}), replaced ${when(entry.replaced_at)}`)))
        : h("p", { class: "muted" }, "No head was ever replaced.")));
}
