// The mesh as an SVG drawing, seen from this router. Layout is fixed and linear in the number of peers (no
// force simulation to settle), so 100 peers draw in milliseconds and never freeze the page: this router in the
// middle, the peers it has a link with (or had, or tries) on an inner ring, every other peer on an outer ring.
// Links between other peers, known from gossip, are one SVG path for all of them (a full mesh of 100 peers is
// some 5,000 segments: one element, not 5,000).
"use strict";

window.weavenetGraph = (function () {
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  function ring(names, radius, start) {
    const pos = {};
    const n = names.length;
    names.forEach((name, i) => {
      // at least three places on a ring: two peers are never opposite, their link never hidden behind the centre
      const a = start + (2 * Math.PI * i) / Math.max(n, 3) - Math.PI / 2;
      pos[name] = [Math.round(radius * Math.cos(a) * 1.45), Math.round(radius * Math.sin(a))];
    });
    return pos;
  }

  function layout(snap) {
    const me = snap.self.name;
    const linked = new Set(snap.links.map((l) => l.peer || l.address));
    const inner = [];
    const outer = [];
    for (const p of snap.peers) {
      if (p.name === me) continue;
      (linked.has(p.name) ? inner : outer).push(p.name);
    }
    for (const l of snap.links) if (!l.peer) inner.push(l.address); // a target we never knew by name
    for (const d of snap.dead) outer.push(d.name);
    const r1 = Math.min(200, Math.max(110, inner.length * 5));
    const r2 = Math.min(300, Math.max(r1 + 90, outer.length * 4));
    const pos = Object.assign({}, ring(inner, r1, 0), ring(outer, r2, Math.PI / Math.max(outer.length, 1)));
    pos[me] = [0, 0];
    return { pos, crowded: inner.length + outer.length > 40 };
  }

  function linkTitle(l, nick) {
    const parts = [`${nick}: ${l.state}`];
    if (l.datapath !== "none") parts.push(l.datapath);
    if (l.encrypted) parts.push(`encrypted (${l.cipher})`);
    if (l.mtu) parts.push(`MTU ${l.mtu}`);
    if (l.fallback) parts.push(`fallback: ${l.fallback}`);
    if (l.error) parts.push(l.error);
    return parts.join(" · ");
  }

  function draw(svg, snap) {
    const { pos, crowded } = layout(snap);
    const me = snap.self.name;
    const nicks = {};
    for (const p of snap.peers) nicks[p.name] = p.nickname;
    for (const d of snap.dead) nicks[d.name] = d.nickname;
    const out = [];
    const segs = { established: [], half: [] };
    for (const g of snap.gossiped) {
      const a = pos[g.a];
      const b = pos[g.b];
      if (a && b) segs[g.state === "established" ? "established" : "half"].push(`M${a[0]} ${a[1]}L${b[0]} ${b[1]}`);
    }
    out.push(`<path class="gossip" d="${segs.established.join("")}"/>`);
    out.push(`<path class="gossip half" d="${segs.half.join("")}"/>`);
    for (const l of snap.links) {
      const key = l.peer || l.address;
      const b = pos[key];
      if (!b) continue;
      const cls = `link state-${l.state} dp-${l.datapath}${l.encrypted ? " encrypted" : ""}`;
      const nick = nicks[l.peer] || l.address;
      out.push(`<line class="${cls}" data-peer="${esc(key)}" x1="0" y1="0" x2="${b[0]}" y2="${b[1]}">` +
        `<title>${esc(linkTitle(l, nick))}</title></line>`);
      if (!crowded) {
        const label = l.state === "established" ? (l.datapath + (l.fallback ? " ⚠" : "")) : l.state;
        out.push(`<text class="linklabel" x="${Math.round(b[0] * 0.55)}" y="${Math.round(b[1] * 0.55) - 3}"` +
          ` text-anchor="middle">${esc(label)}</text>`);
      }
    }
    const node = (name, label, cls, title, r) => {
      const p = pos[name];
      if (!p) return;
      const text = crowded && name !== me ? "" :
        `<text x="${p[0]}" y="${p[1] + r + 12}" text-anchor="middle">${esc(label)}</text>`;
      out.push(`<g class="${cls}" data-peer="${esc(name)}"><circle cx="${p[0]}" cy="${p[1]}" r="${r}">` +
        `<title>${esc(title)}</title></circle>${text}</g>`);
    };
    for (const p of snap.peers) {
      const cls = `node kind-${p.kind}${p.reachable ? "" : " unreachable"}`;
      const what = p.kind === "self" ? "this router" : p.kind === "weave" ? "Go Weave" : p.kind;
      const title = `${p.nickname} ${p.name} (${what}, topology version ${p.version})` +
        (p.reachable ? "" : " — unreachable");
      node(p.name, p.nickname || p.name, cls, title, p.name === me ? 14 : crowded ? 6 : 10);
    }
    for (const d of snap.dead) {
      node(d.name, `${d.nickname || d.name} †`, "node dead", `${d.nickname} ${d.name}: gone, still owns addresses`,
        crowded ? 6 : 9);
    }
    for (const l of snap.links) {
      if (!l.peer) node(l.address, l.address, "node kind-unknown unreachable", `${l.address}: ${l.state}`, 7);
    }
    svg.innerHTML = out.join("");
    let w = 120;
    let h = 60;
    for (const p of Object.values(pos)) {
      w = Math.max(w, Math.abs(p[0]));
      h = Math.max(h, Math.abs(p[1]));
    }
    // fit the drawing, labels included: a small mesh is drawn large, a large one whole
    svg.setAttribute("viewBox", `${-w - 90} ${-h - 30} ${2 * w + 180} ${2 * h + 70}`);
  }

  return { draw };
})();
