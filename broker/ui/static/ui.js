/* Shared helpers of the 0g-broker pages: authenticated JSON fetches (the key lives in this tab's
   sessionStorage only, sent as a Bearer header, never in a URL), and readable values: 0G amounts
   with neuron on hover, short addresses with a copy button, relative times with the exact time on
   hover, errors in words. No external resources. */
"use strict";
const ZG = (() => {
  const KEY = "zg-ui-key:" + location.pathname;
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v; else if (k === "cls") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const kid of kids) e.append(kid);
    return e;
  };
  const banner = (msg) => {
    const b = document.getElementById("banner");
    if (!msg) { b.classList.add("hidden"); b.textContent = ""; return; }
    b.textContent = msg; b.classList.remove("hidden");
  };
  let onUnlock = null;
  const askKey = () => {
    const form = document.getElementById("key-form");
    form.classList.remove("hidden");
    document.getElementById("key-input").focus();
  };
  const setupKeyForm = (callback) => {
    onUnlock = callback;
    document.getElementById("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("key-input").value);
      document.getElementById("key-input").value = "";
      document.getElementById("key-form").classList.add("hidden");
      banner("");
      if (onUnlock) onUnlock();
    });
  };
  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  const errorText = (body, status) => {
    if (body && typeof body.error === "string") return body.error;
    if (body && body.error && body.error.message) return body.error.message;
    return `HTTP ${status}`;
  };
  /* fetch JSON (or the raw Response with raw=true); 401 asks for the key. */
  const api = async (path, opts = {}) => {
    const headers = Object.assign({}, opts.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers["Authorization"] = "Bearer " + key;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
    }
    const resp = await fetch(path, {method: opts.method || "GET", headers, body: opts.body,
                                    credentials: "same-origin", cache: "no-store"});
    if (opts.raw) return resp;
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (resp.status === 401) { askKey(); throw new HttpError(401, "this page needs the key: enter it above"); }
    if (!resp.ok) throw new HttpError(resp.status, errorText(body, resp.status));
    return body;
  };
  /* "1.5" (exact, from the server) → <span title="1500000000000000000 neuron">1.5 0G</span> */
  const amount = (og, neuron) => el("span", {cls: "amt", title: `${neuron} neuron`, "data-neuron": neuron,
                                            text: `${og} 0G`});
  const short = (addr) => {
    if (!addr) return el("span", {text: "–"});
    const s = el("span", {cls: "addr", title: addr, "data-full": addr,
                          text: addr.length > 14 ? `${addr.slice(0, 6)}…${addr.slice(-4)}` : addr});
    const b = el("button", {cls: "copy", type: "button", title: `copy ${addr}`, text: "copy"});
    b.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(addr));
    return el("span", {}, s, b);
  };
  const rel = (unixSeconds) => {
    if (unixSeconds === null || unixSeconds === undefined || unixSeconds === "") return el("span", {text: "–"});
    const t = typeof unixSeconds === "number" ? unixSeconds * 1000 : Date.parse(unixSeconds);
    const d = Math.round((t - Date.now()) / 1000), a = Math.abs(d);
    const n = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400
      ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
    return el("time", {datetime: new Date(t).toISOString(), title: new Date(t).toString(),
                       text: a < 2 ? "now" : d < 0 ? `${n} ago` : `in ${n}`});
  };
  const cell = (...kids) => el("td", {}, ...kids.map(k => (typeof k === "string" || typeof k === "number") ? String(k) : k));
  const fill = (tbody, rows, empty) => {
    tbody.replaceChildren(...rows);
    if (!rows.length) tbody.append(el("tr", {cls: "empty"}, el("td", {colspan: "9", text: empty})));
  };
  const charts = {};
  const chart = (id, config) => {
    if (typeof Chart === "undefined") return;
    if (charts[id]) { charts[id].data = config.data; charts[id].update("none"); return; }
    config.options = Object.assign({animation: false, responsive: true, maintainAspectRatio: false,
                                    plugins: {legend: {display: config.type === "doughnut"}}}, config.options || {});
    charts[id] = new Chart(document.getElementById(id), config);
  };
  return {el, api, amount, short, rel, cell, fill, banner, chart, setupKeyForm, HttpError};
})();
