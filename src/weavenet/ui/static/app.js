// The web view's page: one EventSource on /ui/events, tables and small plots redrawn from what it brings.
// Messages: "hello" (snapshot, timeline, throughput history) on every (re)connection; "snapshot" when the mesh
// changed; "rates" every tick; "events" for the timeline. Nothing here sends anything but GETs.
"use strict";

(function () {
  const KEEP = 120; // throughput samples kept per link (as the router keeps)
  const state = { snap: null, rates: [], timeline: [], snapshots: 0 };
  window.weavenetView = state; // for the curious, and for the browser tests

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const bps = (v) => {
    if (v >= 1e9) return (v / 1e9).toFixed(2) + " Gbit/s";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + " Mbit/s";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + " kbit/s";
    return v + " bit/s";
  };
  const palette = ["#2f5fd0", "#1f9d55", "#e08a00", "#7b4fc9", "#00838f", "#c2185b", "#5d4037", "#689f38",
    "#f4511e", "#3949ab", "#00897b", "#8e24aa"];
  const colour = (name) => {
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return palette[h % palette.length];
  };
  const nickOf = (name) => {
    const p = state.snap && state.snap.peers.find((q) => q.name === name);
    if (p) return p.nickname;
    const d = state.snap && state.snap.dead.find((q) => q.name === name);
    return d ? d.nickname : "";
  };

  function rows(tbody, html, empty, cols) {
    tbody.innerHTML = html.length ? html.join("") : `<tr><td colspan="${cols}" class="empty">${empty}</td></tr>`;
  }

  function renderSummary(s) {
    $("me").textContent = `${s.self.nickname} (${s.self.name}) · ${s.self.version}`;
    const reach = s.peers.filter((p) => p.reachable).length;
    const up = s.links.filter((l) => l.state === "established").length;
    const down = s.links.filter((l) => ["failed", "retrying", "lost", "silent", "waiting"].includes(l.state)).length;
    const sleeve = s.links.filter((l) => l.state === "established" && l.datapath === "sleeve").length;
    $("summary").textContent = `${s.peers.length} peers, ${reach} reachable` +
      (s.dead.length ? `, ${s.dead.length} gone` : "") +
      ` · links: ${up} established` + (sleeve ? ` (${sleeve} on the sleeve)` : "") +
      (down ? `, ${down} down` : "") + (s.self.encryption ? " · encrypted mesh" : "");
  }

  function renderLinks(s) {
    const html = s.links.map((l) => {
      const key = l.peer || l.address;
      const enc = l.encrypted ? `encrypted (${esc(l.cipher)})` : (l.state === "established" ? "none" : "");
      const why = l.fallback ? `fallback: ${esc(l.fallback)}` : esc(l.error || "");
      return `<tr data-peer="${esc(key)}" data-nick="${esc(nickOf(l.peer))}" data-state="${esc(l.state)}"` +
        ` data-datapath="${esc(l.datapath)}" data-fallback="${esc(l.fallback || "")}">` +
        `<td>${esc(nickOf(l.peer) || "?")}<br><span class="mono">${esc(l.peer)}</span></td>` +
        `<td class="mono">${esc(l.address)}${l.outbound ? " →" : " ←"}</td>` +
        `<td class="state ${esc(l.state)}">${esc(l.state)}</td>` +
        `<td class="dp-${esc(l.datapath)}">${esc(l.datapath)}</td><td>${enc}</td><td>${esc(l.mtu ?? "")}</td>` +
        `<td class="why">${why}</td><td><canvas class="plot" data-peer="${esc(l.peer)}" width="160"` +
        ` height="30"></canvas></td><td class="rate" data-rate="${esc(l.peer)}"></td></tr>`;
    });
    rows($("links").tBodies[0], html, "no links", 9);
  }

  function renderPeers(s) {
    const html = s.peers.map((p) => `<tr data-peer="${esc(p.name)}" data-reachable="${p.reachable}">` +
      `<td>${esc(p.nickname)}</td><td class="mono">${esc(p.name)}</td>` +
      `<td>${p.kind === "self" ? "this one" : p.kind === "weave" ? "Go Weave" : esc(p.kind)}</td>` +
      `<td>${esc(p.version)}</td><td class="state ${p.reachable ? "established" : "failed"}">` +
      `${p.reachable ? "yes" : "no"}</td><td>${p.connections}</td></tr>`);
    for (const d of s.dead) {
      html.push(`<tr data-peer="${esc(d.name)}" data-reachable="false"><td>${esc(d.nickname)} †</td>` +
        `<td class="mono">${esc(d.name)}</td><td></td><td></td><td class="state failed">gone</td><td></td></tr>`);
    }
    rows($("peers").tBodies[0], html, "no peers", 6);
  }

  function arc(a0, a1, r0, r1) {
    const p = (a, r) => `${(r * Math.sin(a)).toFixed(2)} ${(-r * Math.cos(a)).toFixed(2)}`;
    const large = a1 - a0 > Math.PI ? 1 : 0;
    return `M${p(a0, r1)}A${r1} ${r1} 0 ${large} 1 ${p(a1, r1)}L${p(a1, r0)}A${r0} ${r0} 0 ${large} 0 ${p(a0, r0)}Z`;
  }

  function renderIpam(s) {
    const ipam = s.ipam;
    const svg = $("ring");
    if (!ipam) {
      $("ipam-range").textContent = "(IPAM off)";
      svg.innerHTML = "";
      rows($("owners").tBodies[0], [], "IPAM is off on this router", 6);
      $("unreachable").innerHTML = "";
      return;
    }
    $("ipam-range").textContent = `${ipam.range}, default subnet ${ipam.default_subnet}`;
    const total = ipam.total || 1;
    let at = 0;
    const paths = [];
    const entries = ipam.entries.slice(0, 2000); // the ring has one entry per range: few, but bounded anyway
    for (const e of entries) {
      const a0 = (2 * Math.PI * at) / total;
      at += e.size;
      const a1 = Math.max(a0 + 0.004, (2 * Math.PI * at) / total);
      paths.push(`<path d="${arc(a0, Math.min(a1, 2 * Math.PI - 0.0001), 62, 100)}" fill="${colour(e.peer)}"` +
        ` class="${e.known ? "" : "unknown"}"><title>${esc(e.start)} +${e.size}: ${esc(nickOf(e.peer) || e.peer)}` +
        `${e.known ? "" : " (unreachable)"}</title></path>`);
    }
    if (!paths.length) paths.push(`<circle r="81" fill="none" stroke="#dde1e8" stroke-width="38"/>`);
    svg.innerHTML = paths.join("") +
      `<text x="0" y="4" text-anchor="middle" font-size="11">${ipam.active} in use here</text>`;
    $("ipam-note").innerHTML = ipam.awaiting_consensus ? "awaiting consensus: no range owned yet" :
      `${ipam.entries.length} ranges · reclaimed: ${ipam.reclaims} peers, ${ipam.reclaimed_ips} addresses`;
    rows($("owners").tBodies[0], ipam.owners.map((o) => `<tr data-peer="${esc(o.peer)}">` +
      `<td><svg class="swatch" viewBox="0 0 10 10"><rect width="10" height="10" fill="${colour(o.peer)}"/></svg>` +
      `${esc(o.nickname || o.peer)}</td>` +
      `<td>${o.owned}</td><td>${o.share}%</td><td>${o.free ?? "?"}</td><td>${o.used ?? "?"}</td>` +
      `<td class="${o.known ? "" : "why"}">${o.known ? "" : "unreachable"}</td></tr>`), "no ranges", 6);
    $("unreachable").innerHTML = ipam.unreachable.map((u) => `<li>${esc(u.nickname || u.peer)}: ${u.ips}` +
      ` addresses unreachable for ${u.absent_minutes} min · ${esc(u.plan)}</li>`).join("");
  }

  function renderDns(s) {
    const dns = s.dns;
    $("dns-domain").textContent = dns ? `${dns.domain} · answering on ${dns.address || "?"}` : "(weaveDNS off)";
    rows($("dns").tBodies[0], dns ? dns.entries.map((e) => `<tr><td>${esc(e.hostname)}</td>` +
      `<td class="mono">${esc(e.address)}</td><td>${esc(e.nickname || e.origin)}</td>` +
      `<td class="mono">${esc(e.container.slice(0, 24))}</td></tr>`) : [], "no names", 4);
  }

  function subnetOf(cidr) {
    const [ip, len] = cidr.split("/");
    const n = ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
    const bits = Number(len);
    const net = bits === 0 ? 0 : (n - (n % 2 ** (32 - bits)));
    return [24, 16, 8, 0].map((s) => Math.floor(net / 2 ** s) % 256).join(".") + "/" + len;
  }

  function renderContainers(s) {
    rows($("containers").tBodies[0], s.containers.map((c) => `<tr><td class="mono">${esc(c.ident.slice(0, 40))}` +
      `</td><td class="mono">${c.addresses.map(esc).join("<br>")}</td>` +
      `<td class="mono">${[...new Set(c.addresses.map(subnetOf))].map(esc).join("<br>")}</td>` +
      `<td>${c.names.map(esc).join("<br>")}</td></tr>`), "no containers attached here", 4);
  }

  function renderTimeline() {
    const items = state.timeline.slice(-200).reverse().map((e) => {
      const t = new Date(e.t * 1000);
      return `<li class="k-${esc(e.kind)}"><time datetime="${t.toISOString()}">${t.toLocaleString()}</time>` +
        `${esc(e.text)}</li>`;
    });
    $("timeline").innerHTML = items.length ? items.join("") : `<li class="empty">nothing happened yet</li>`;
  }

  function series(peer) {
    return state.rates.map((r) => (peer === null ? r.host : (r.links[peer] || [0, 0])));
  }

  function plot(canvas, points) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const peak = Math.max(1, ...points.map((p) => Math.max(p[0], p[1])));
    const step = w / Math.max(points.length - 1, 30); // a short history is drawn wide, a long one whole
    const x0 = w - step * (points.length - 1);
    [[0, "#2f5fd0"], [1, "#e08a00"]].forEach(([i, stroke]) => {
      ctx.beginPath();
      points.forEach((p, j) => {
        const x = x0 + j * step;
        const y = h - 1 - (p[i] / peak) * (h - 3);
        if (j) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.strokeStyle = stroke;
      ctx.lineWidth = 1.3;
      ctx.stroke();
    });
    const recent = points.slice(-30);
    canvas.dataset.peak = String(Math.max(0, ...recent.map((p) => p[0] + p[1])));
    canvas.title = `peak of the last ${recent.length} s: ${bps(Number(canvas.dataset.peak))} (in + out)`;
  }

  function renderRates() {
    const last = state.rates[state.rates.length - 1];
    if (!last) return;
    $("host-rate").textContent = `in ${bps(last.host[0])}, out ${bps(last.host[1])}`;
    plot($("host-plot"), series(null));
    for (const canvas of document.querySelectorAll("#links canvas.plot")) {
      const peer = canvas.dataset.peer;
      if (!peer) continue;
      plot(canvas, series(peer));
      const r = last.links[peer] || [0, 0];
      const cell = document.querySelector(`#links td[data-rate="${CSS.escape(peer)}"]`);
      if (cell) cell.textContent = `${bps(r[0])} in / ${bps(r[1])} out`;
    }
  }

  function render(snap) {
    const began = performance.now();
    state.snap = snap;
    state.snapshots += 1;
    document.body.dataset.snapshots = String(state.snapshots);
    renderSummary(snap);
    window.weavenetGraph.draw($("graph"), snap);
    renderLinks(snap);
    renderPeers(snap);
    renderIpam(snap);
    renderDns(snap);
    renderContainers(snap);
    renderRates();
    state.renderMs = performance.now() - began; // what a snapshot costs the page (100 peers: tests/unit/ui)
  }

  function connect() {
    const es = new EventSource("/ui/events");
    const live = $("live");
    es.addEventListener("hello", (ev) => {
      const m = JSON.parse(ev.data);
      state.rates = m.rates.slice(-KEEP);
      state.timeline = m.timeline;
      render(m.snapshot);
      renderTimeline();
      live.className = "live on";
      live.textContent = "live";
      document.body.dataset.ready = "1";
    });
    es.addEventListener("snapshot", (ev) => render(JSON.parse(ev.data)));
    es.addEventListener("rates", (ev) => {
      state.rates.push(JSON.parse(ev.data));
      if (state.rates.length > KEEP) state.rates.splice(0, state.rates.length - KEEP);
      renderRates();
    });
    es.addEventListener("events", (ev) => {
      state.timeline.push(...JSON.parse(ev.data));
      if (state.timeline.length > 500) state.timeline.splice(0, state.timeline.length - 500);
      renderTimeline();
    });
    es.onerror = () => {
      live.className = "live off";
      live.textContent = "reconnecting…";
    };
  }

  connect();
})();
