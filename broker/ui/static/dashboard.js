/* The user dashboard (serve's /ui/ and `0g-broker ui`): reads the JSON endpoints only. */
"use strict";
(() => {
  const {el, api, amount, short, rel, cell, fill, banner, chart} = ZG;
  const $ = (id) => document.getElementById(id);
  let config = {mode: document.body.dataset.mode};
  const setAmount = (id, og, neuron) => $(id).replaceChildren(amount(og, neuron));

  async function loadAccount() {
    const a = await api("/ui/api/account");
    setAmount("acct-total", a.total_0g, a.total);
    setAmount("acct-available", a.available_0g, a.available);
    setAmount("acct-locked", a.locked_0g, a.locked);
    if (!a.ledger) banner("no ledger yet: create one with `0g-broker add-account --amount N`");
    const rows = a.inference.map(s => {
      const unlock = (s.refunds || []).filter(r => Number(r.remaining_lock) > 0)
        .map(r => r.unlocks_at).sort()[0];
      const tr = el("tr", {"data-provider": s.provider, "data-balance": s.balance},
        cell(short(s.provider)), cell(amount(s.balance_0g, s.balance)),
        cell(amount(s.pending_refund_0g, s.pending_refund)),
        cell(unlock ? rel(unlock) : (s.refunds && s.refunds.length ? "unlocked" : "–")),
        cell(s.acknowledged === undefined ? "–" : s.acknowledged ? "yes" : "no"),
        cell(s.unsettled_fee !== undefined ? amount(s.unsettled_fee_0g, s.unsettled_fee) : "–"));
      return tr;
    });
    fill($("subaccounts").tBodies[0], rows, "no provider sub-accounts");
  }

  async function loadFunding() {
    const f = await api("/ui/api/funding");
    const dl = $("funding-state");
    const st = f.status;
    const kv = [];
    if (!st) kv.push(["State", config.mode === "serve" ? "not running" :
                      "runs inside `0g-broker serve`; see its dashboard"]);
    else {
      kv.push(["State", st.running ? `running every ${st.interval} s` : "stopped"]);
      kv.push(["Last check", st.last_check_at ? rel(st.last_check_at) : "not yet"]);
      kv.push(["Checks", String(st.checks)]);
      kv.push(["Transfers made", String(st.transfers)]);
      if (st.last_transfer_at) kv.push(["Last transfer", el("span", {}, amount(
        formatNeuron(String(st.last_transfer_amount)), String(st.last_transfer_amount)), " ", rel(st.last_transfer_at))]);
      kv.push(["Last failure", st.last_error || "none"]);
    }
    dl.replaceChildren(...kv.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {}, v)]));
    fill($("funding-events").tBodies[0], f.events.map(e => el("tr", {"data-kind": e.kind},
      cell(rel(e.at)), cell(e.kind === "error" ? "failure" : "transfer"),
      cell(amount(e.amount_0g, e.amount)), cell(e.detail))), "no transfers or failures yet");
  }

  async function loadRequests() {
    const filter = $("req-filter").value;
    const r = await api("/ui/api/requests" + (filter ? `?verified=${encodeURIComponent(filter)}` : ""));
    fill($("req-table").tBodies[0], r.requests.map(q => el("tr", {"data-verified": q.verified || "error"},
      cell(rel(q.at)), cell(`${q.method} ${q.route}`), cell(q.model || "–"), cell(String(q.status)),
      cell(amount(q.fee_0g, q.fee)),
      cell(el("span", {cls: q.verified === "true" ? "good" : q.verified === "false" ? "bad" : "",
                       title: q.verification_reason || "", text: q.verified || "–"})),
      cell(q.reason || ""),
      cell(`${Math.round(q.latency_ms)} ms`))),
      config.mode === "serve" ? "no requests yet" : "requests are recorded by `0g-broker serve`");
    if (!filter) drawCharts(r.requests);
  }

  function drawCharts(reqs) {
    const sorted = [...reqs].reverse();
    let total = 0;
    const spend = sorted.map(q => { total += Number(q.fee_0g); return {x: q.at, y: total}; });
    chart("chart-spend", {type: "line", data: {
      labels: spend.map(p => new Date(p.x * 1000).toLocaleTimeString()),
      datasets: [{label: "0G", data: spend.map(p => p.y), borderColor: "#3b82f6", pointRadius: 2}]}});
    const outcomes = {};
    for (const q of reqs) { const k = q.verified || "error"; outcomes[k] = (outcomes[k] || 0) + 1; }
    const colors = {true: "#16a34a", false: "#dc2626", none: "#a3a3a3", off: "#64748b", error: "#f59e0b"};
    chart("chart-outcome", {type: "doughnut", data: {labels: Object.keys(outcomes),
      datasets: [{data: Object.values(outcomes), backgroundColor: Object.keys(outcomes).map(k => colors[k])}]}});
    const edges = [50, 100, 250, 500, 1000, 2500, 5000, 10000, Infinity];
    const counts = edges.map(() => 0);
    for (const q of reqs) counts[edges.findIndex(e => q.latency_ms <= e)]++;
    chart("chart-latency", {type: "bar", data: {labels: edges.map(e => e === Infinity ? ">10 s" : `≤${e}`),
      datasets: [{label: "requests", data: counts, backgroundColor: "#8b5cf6"}]}});
  }

  async function loadProviders() {
    const p = await api("/ui/api/providers");
    fill($("prov-table").tBodies[0], p.providers.map(s => {
      const btn = el("button", {type: "button", cls: "verify", text: "verify"});
      btn.addEventListener("click", () => verify(s.provider, btn));
      return el("tr", {"data-provider": s.provider, cls: s.provider === p.served ? "served" : ""},
        cell(short(s.provider)), cell(s.service_type), cell(s.model),
        cell(amount(s.input_price_0g, s.input_price)), cell(amount(s.output_price_0g, s.output_price)),
        cell(`${s.verifiability || "none"}${s.tee_signer_acknowledged ? " · signer acknowledged" : ""}`),
        cell(btn));
    }), "no services registered");
  }

  async function verify(provider, btn) {
    btn.disabled = true; btn.textContent = "verifying…";
    const box = $("verify-report");
    try {
      const r = await api(`/ui/api/providers/${provider}/verify`, {method: "POST", json: {}});
      const head = el("h3", {}, "Attestation of ", short(provider), `: ${r.report ? r.report.verdict : "error"}`);
      const kids = [head];
      if (r.error) kids.push(el("p", {cls: "bad", text: r.error}));
      if (r.report) kids.push(el("table", {cls: "checks"}, el("tbody", {}, ...r.report.checks.map(c =>
        el("tr", {cls: c.status, "data-check": c.name}, cell(c.name), cell(c.status), cell(c.reason))))));
      box.replaceChildren(...kids);
      box.classList.remove("hidden");
    } catch (e) { banner(`verify: ${e.message}`); }
    finally { btn.disabled = false; btn.textContent = "verify"; }
  }

  async function generate(ev) {
    ev.preventDefault();
    const go = $("pg-go"); go.disabled = true; go.textContent = "generating…";
    const body = {prompt: $("pg-prompt").value, n: Number($("pg-n").value) || 1,
                  response_format: "b64_json"};
    if ($("pg-size").value.trim()) body.size = $("pg-size").value.trim();
    if (config.model) body.model = config.model;
    const t0 = performance.now();
    try {
      const resp = await api("/v1/images/generations", {method: "POST", json: body, raw: true});
      let data = null; try { data = await resp.json(); } catch (e) { data = null; }
      if (resp.status === 401) { banner("this page needs the key: enter it above"); return; }
      if (!resp.ok) throw new Error((data && data.error && data.error.message) || `HTTP ${resp.status}`);
      $("pg-images").replaceChildren(...data.data.map(d => el("img", {src: `data:image/png;base64,${d.b64_json}`,
                                                                      alt: body.prompt})));
      const fee = resp.headers.get("X-0G-Fee") || "0";
      $("pg-fee").replaceChildren(amount(formatNeuron(fee), fee));
      const v = resp.headers.get("X-0G-Verified") || "–";
      $("pg-verified").textContent = v; $("pg-verified").className = v === "true" ? "good" : "bad";
      $("pg-chat").textContent = resp.headers.get("ZG-Res-Key") || "–";
      $("pg-time").textContent = `${Math.round(performance.now() - t0)} ms`;
      banner("");
    } catch (e) { banner(`playground: ${e.message}`); }
    finally { go.disabled = false; go.textContent = "Generate"; refresh(); }
  }

  /* exact neuron → 0G decimal string (BigInt, no float) */
  function formatNeuron(n) {
    const v = BigInt(n), one = 10n ** 18n;
    const frac = (v % one).toString().padStart(18, "0").replace(/0+$/, "");
    return frac ? `${v / one}.${frac}` : `${v / one}`;
  }

  async function prepareAction(ev) {
    ev.preventDefault();
    try {
      const p = await api("/ui/api/actions", {method: "POST", json: {
        action: $("act-kind").value, amount: $("act-amount").value.trim(),
        provider: $("act-provider").value.trim() || null}, headers: {"X-CSRF-Token": config.csrf_token || ""}});
      $("act-summary").textContent = p.summary;
      $("act-amount-0g").textContent = p.amount_0g;
      $("act-amount-neuron").textContent = p.amount;
      const dlg = $("act-dialog");
      dlg.returnValue = "";
      dlg.onclose = async () => {
        if (dlg.returnValue !== "ok") { $("act-result").textContent = "cancelled: nothing moved"; return; }
        try {
          const r = await api(`/ui/api/actions/${p.id}/confirm`, {method: "POST", json: {},
            headers: {"X-CSRF-Token": config.csrf_token || ""}});
          $("act-result").textContent = `done: ${r.action} of ${r.amount_0g} 0G, transaction ${r.tx_hash}`;
          refresh();
        } catch (e) { $("act-result").textContent = `${e.message}`; }
      };
      dlg.showModal();
    } catch (e) { $("act-result").textContent = e.message; }
  }

  async function refresh() {
    const jobs = [loadAccount(), loadFunding(), loadRequests(), loadProviders()];
    const results = await Promise.allSettled(jobs);
    const failed = results.filter(r => r.status === "rejected").map(r => r.reason.message);
    if (failed.length) banner([...new Set(failed)].join(" · "));
    document.body.dataset.loaded = String(Date.now());
  }

  async function loadConfig() {
    try { config = await api("/ui/api/config"); } catch (e) { banner(e.message); }
    document.body.dataset.mode = config.mode;
    $("who").replaceChildren("user ", short(config.user),
      ...(config.provider ? [" · provider ", short(config.provider)] : []));
  }

  async function start() {
    ZG.setupKeyForm(async () => { await loadConfig(); await refresh(); });
    await loadConfig();
    $("req-filter").addEventListener("change", () => loadRequests().catch(e => banner(e.message)));
    $("pg-form").addEventListener("submit", generate);
    $("act-form").addEventListener("submit", prepareAction);
    await refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, 10000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
