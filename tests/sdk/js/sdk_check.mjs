// The official 0G TS SDK (0.9.0) as a user of our devnet provider (tests/sdk/test_ts_sdk_compat.py).
// Usage: node sdk_check.mjs <rpc_url> <provider_address>   (user key in env ZG_SDK_USER_KEY)
// Prints one JSON line: {ok, endpoint, model, status, chatID, processResponse, ...}.
import { ethers } from "ethers";
import { createZGComputeNetworkBroker } from "@0gfoundation/0g-compute-ts-sdk";

const [rpcUrl, provider] = process.argv.slice(2);
const key = process.env.ZG_SDK_USER_KEY;
const out = { ok: false };
try {
  const wallet = new ethers.Wallet(key, new ethers.JsonRpcProvider(rpcUrl));
  // chain 31337: the SDK picks its hardhat addresses, where our devnet deploys the proxies
  const broker = await createZGComputeNetworkBroker(wallet);
  await broker.ledger.addLedger(3);
  await broker.inference.acknowledgeProviderSigner(provider);
  const { endpoint, model } = await broker.inference.getServiceMetadata(provider);
  out.endpoint = endpoint;
  out.model = model;
  const body = { model, prompt: "a green sphere", n: 1, size: "32x32", num_inference_steps: 1 };
  const content = JSON.stringify(body);
  const headers = await broker.inference.getRequestHeaders(provider, content);
  const res = await fetch(`${endpoint}/images/generations`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: content,
  });
  out.status = res.status;
  const json = await res.json();
  out.images = Array.isArray(json.data) ? json.data.length : 0;
  out.chatID = res.headers.get("ZG-Res-Key");
  out.processResponse = await broker.inference.processResponse(provider, out.chatID, content);
  out.ok = res.ok && out.processResponse === true;
} catch (err) {
  out.error = String(err && err.message ? err.message : err);
}
console.log(JSON.stringify(out));
process.exit(0);
