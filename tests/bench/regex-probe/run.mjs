// Runs a wasm32-wasip1 command in Node's V8 with WASI (stdin/stdout passed through).
// Usage: node --no-liftoff run.mjs <module.wasm>   (TurboFan only, as Envoy runs Wasm)
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv } from "node:process";

const wasi = new WASI({ version: "preview1", args: ["aigw-regex-probe"], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
