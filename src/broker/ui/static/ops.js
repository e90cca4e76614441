/* The provider's ops page: reads /ui/api/ops (admin key, kept in this tab only). */
"use strict";
(() => {
  const {el, api, amount, short, rel, cell, fill, banner, chart} = ZG;
  const $ = (id) => document.getElementById(id);
  const kv = (dl, pairs) => dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {}, v)]));
  const tx = (h) => h ? short(h) : el("span", {cls: "muted", text: "not sent"});
  const batchRow = (b, full) => el("tr", {"data-batch": String(b.id), "data-status": b.status, cls: b.status},
    cell(`#${b.id}`), cell(short(b.user)), cell(amount(b.amount_0g, b.amount)),
    ...(full ? [cell(b.paid === null ? "–" : amount(b.paid_0g, b.paid)), cell(String(b.requests))] : []),
    cell(b.status), cell(b.result || "–"), cell(tx(b.tx_hash)), cell(rel(b.created_at)));

  async function refresh() {
    let d;
    try { d = await api("/ui/api/ops"); banner(""); }
    catch (e) { banner(e.message); return; }
    $("who").replaceChildren("provider ", short(d.provider));
    kv($("ops-service-kv"), [["Type", d.service.service_type], ["Model", d.service.model],
      ["Input price", amount(d.service.input_price_0g, d.service.input_price)],
      ["Output price", amount(d.service.output_price_0g, d.service.output_price)],
      ["Settles every", `${d.service.settlement_interval} s`]]);
    const w = d.worker;
    kv($("ops-worker-kv"), w.up ? [["State", w.status ?? w.state], ["Model loaded", w.loaded ? `yes (${w.model})` : "no"],
      ["Device", w.device], ["Queue", `${w.queue_length} waiting / ${w.queue_size}`], ["Running", String(w.running)],
      ["Jobs", String(w.jobs)]] : [["State", el("span", {cls: "bad", text: w.error})]]);
    const gens = [...d.generations].reverse();
    chart("chart-generations", {type: "bar", data: {labels: gens.map(g => new Date(g.at * 1000).toLocaleTimeString()),
      datasets: [{label: "ms", data: gens.map(g => g.ms), backgroundColor: "#8b5cf6"}]}});
    $("ops-unsettled-total").replaceChildren(amount(d.unsettled_total_0g, d.unsettled_total));
    fill($("ops-unsettled").tBodies[0], d.unsettled.map(u => el("tr", {"data-user": u.user},
      cell(short(u.user)), cell(amount(u.unsettled_0g, u.unsettled)), cell(amount(u.settling_0g, u.settling)),
      cell(String(u.requests)), cell(rel(u.oldest)))), "nothing unsettled");
    fill($("ops-pending").tBodies[0], [...d.pending, ...d.refused].map(b => batchRow(b, false)),
      "no pending or refused settlement");
    fill($("ops-settlements").tBodies[0], d.settlements.map(b => batchRow(b, true)), "no settlement yet");
    const t = d.traffic;
    const labels = t.map(m => new Date(m.minute * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}));
    chart("chart-traffic", {type: "bar", options: {scales: {x: {stacked: true}, y: {stacked: true}},
      plugins: {legend: {display: true}}}, data: {labels, datasets: [
        {label: "answered", data: t.map(m => m.ok), backgroundColor: "#16a34a"},
        {label: "rate-limited (429)", data: t.map(m => m.rate_limited), backgroundColor: "#f59e0b"},
        {label: "other 4xx", data: t.map(m => m.client_errors), backgroundColor: "#64748b"},
        {label: "5xx", data: t.map(m => m.server_errors), backgroundColor: "#dc2626"}]}});
    kv($("ops-counts"), Object.entries(d.request_counts).map(([k, v]) => [`requests ${k}`, String(v)]));
    document.body.dataset.loaded = String(Date.now());
  }

  document.addEventListener("DOMContentLoaded", async () => {
    ZG.setupKeyForm(refresh);
    try {
      const c = await api("/ui/api/config");
      if (!c.enabled) { banner("the ops page is off: set ZG_PROVIDER_ADMIN_KEY (or ZG_PROVIDER_ADMIN_KEY_FILE) and restart the gateway"); return; }
    } catch (e) { banner(e.message); return; }
    await refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, 10000);
  });
})();
