#!/usr/bin/env node
// Compile Solidity with the pinned solcjs (tools/node_modules/solc) through its JS API.
//
// Usage: node scripts/solc_compile.mjs < standard-json-input > standard-json-output
//
// Reads a solc standard-JSON input on stdin and writes the standard-JSON output on stdout (nothing
// else is printed there). Imports that are not in the input's `sources` are resolved by the import
// callback: `@openzeppelin/...` (and any other npm package) from tools/node_modules, everything else
// relative to the repository root. Exit status 1 when the output contains an error.
import { createRequire } from "node:module";
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nodeModules = join(repoRoot, "tools", "node_modules");
const require = createRequire(join(nodeModules, "noop.js"));
const solc = require("solc");

function findImports(path) {
  const candidates = path.startsWith("@") ? [join(nodeModules, path)] : [join(repoRoot, path), join(nodeModules, path)];
  for (const file of candidates) {
    const full = resolve(file);
    if (!(full.startsWith(repoRoot + sep))) continue;
    if (existsSync(full)) return { contents: readFileSync(full, "utf8") };
  }
  return { error: `File not found: ${path}` };
}

const input = readFileSync(0, "utf8");
const output = JSON.parse(solc.compile(input, { import: findImports }));
output.compilerVersion = solc.version();
process.stdout.write(JSON.stringify(output));
const failed = (output.errors || []).some((e) => e.severity === "error");
process.exitCode = failed ? 1 : 0;
