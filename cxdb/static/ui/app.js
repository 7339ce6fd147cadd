// The viewer's shell: routes (#/, #/c/ID, #/c/ID/at/TURN, #/registry, #/registry/TYPE/VERSION), the
// token prompt, what the token may do, and one place that shows errors.

import { ApiError, api, onUnauthorized, setToken, token } from "./api.js";
import { showContexts } from "./contexts.js";
import { showConversation } from "./conversation.js";
import { clear, h } from "./dom.js";
import { showRegistry, showType } from "./registry.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const bannerText = document.getElementById("banner-text");
const dialog = document.getElementById("token-dialog");
const tokenInput = document.getElementById("token-input");
const tokenError = document.getElementById("token-error");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");
let leave = null;
let asking = false;

function report(error) {
  if (error instanceof ApiError && error.status === 401) return; // the token prompt says it
  bannerText.textContent = error instanceof ApiError ? String(error) : `Something went wrong: ${error.message || error}`;
  banner.className = "banner error";
  banner.hidden = false;
}

document.getElementById("banner-close").addEventListener("click", () => { banner.hidden = true; });

function ask(message) {
  if (asking) return;
  asking = true;
  tokenError.hidden = !message;
  tokenError.textContent = message || "";
  tokenInput.value = "";
  dialog.showModal();
}

onUnauthorized((error) => ask(token() ? `That token was refused: ${error.message}` : ""));

document.getElementById("token-form").addEventListener("submit", () => {
  setToken(tokenInput.value.trim());
  asking = false;
  start();
});
dialog.addEventListener("cancel", (event) => event.preventDefault()); // nothing to see without a token

signOut.addEventListener("click", () => {
  setToken(null);
  location.reload();
});

async function start() {
  let me;
  try {
    me = await api("/v1/whoami");
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.status === 401)) report(exc);
    return;
  }
  document.body.classList.toggle("read-only", me.scope === "cxdb:read");
  signOut.hidden = me.auth === "off";
  who.textContent = me.auth === "off" ? "access control off"
    : `token ${me.token_id} · ${me.scope}${me.namespace ? ` · ${me.namespace}` : ""}`;
  route();
}

function go(hash, reload = false) {
  if (location.hash === hash && reload) route();
  else location.hash = hash;
}

async function route() {
  if (asking) return;
  if (leave) leave();
  leave = null;
  banner.hidden = true;
  const [path, search] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === (parts[0] === "registry" ? "registry" : "contexts"));
  }
  clear(main).append(h("p", { class: "muted" }, "Loading…"));
  try {
    if (parts[0] === "c" && parts[1]) {
      leave = await showConversation(main, parts[1], { at: parts[2] === "at" ? parts[3] : null, report, go });
    } else if (parts[0] === "registry" && parts[1]) {
      await showType(main, parts[1], parts[2] || "1", report);
    } else if (parts[0] === "registry") {
      await showRegistry(main);
    } else {
      leave = await showContexts(main, { report, params });
    }
  } catch (exc) {
    clear(main).append(h("p", {}, h("a", { href: "#/" }, "← contexts")));
    report(exc);
  }
}

window.addEventListener("hashchange", route);
start();
