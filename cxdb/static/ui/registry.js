// The registry: each type's versions and fields, and the bundles in publish order.

import { api } from "./api.js";
import { clear, h, when } from "./dom.js";

export async function showRegistry(main) {
  const [types, bundles] = await Promise.all([api("/v1/registry/types"), api("/v1/registry/bundles")]);
  clear(main).append(
    h("h1", {}, "Registry"),
    h("h2", {}, "Types"),
    types.types.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ["type", "versions", "bundle"].map((name) => h("th", {}, name)))),
        h("tbody", {}, types.types.map((type) => h("tr", {},
          h("td", { class: "mono" }, type.type_id),
          h("td", {}, Array.from({ length: type.latest_version }, (_, index) => index + 1).map((version) =>
            h("a", { href: `#/registry/${encodeURIComponent(type.type_id)}/${version}` }, `v${version} `))),
          h("td", {}, type.bundle_id)))))
      : h("p", { class: "muted" }, "No types yet: publish a bundle (docs/registry.md)."),
    h("h2", {}, "Bundles, in publish order"),
    h("ol", {}, bundles.bundles.map((bundle) => h("li", {}, h("span", { class: "mono" }, bundle.bundle_id),
      h("span", { class: "muted" }, ` published ${when(bundle.published_at)}`)))));
}

export async function showType(main, typeId, version, report) {
  let found;
  try {
    found = await api(`/v1/registry/types/${encodeURIComponent(typeId)}/versions/${version}`);
  } catch (exc) {
    report(exc);
    clear(main).append(h("p", {}, h("a", { href: "#/registry" }, "← registry")));
    return;
  }
  const fields = Object.entries(found.fields).sort((a, b) => Number(a[0]) - Number(b[0]));
  clear(main).append(
    h("p", {}, h("a", { href: "#/registry" }, "← registry")),
    h("h1", { class: "mono" }, `${found.type_id} v${found.type_version}`),
    h("p", { class: "muted" }, `from bundle ${found.bundle_id}`),
    h("table", { class: "fields" }, h("thead", {}, h("tr", {}, ["tag", "name", "type", "details"].map((n) => h("th", {}, n)))),
      h("tbody", {}, fields.map(([tag, field]) => h("tr", {},
        h("td", { class: "num" }, tag), h("td", { class: "mono" }, field.name), h("td", { class: "mono" }, field.type),
        h("td", { class: "muted" }, Object.entries(field).filter(([key]) => !["name", "type"].includes(key))
          .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`).join(", ")))))));
}
