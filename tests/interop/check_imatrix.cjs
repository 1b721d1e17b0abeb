// Checks an imatrix file written by `tessera imatrix` with an independent GGUF
// parser (@huggingface/gguf), against what the model needs and what
// llama-imatrix writes (tools/imatrix/imatrix.cpp, save_imatrix):
//   - GGUF v3 with exactly the keys general.type = "imatrix" (string),
//     imatrix.datasets (array of string), imatrix.chunk_count and
//     imatrix.chunk_size (uint32), in that order;
//   - for every matrix of the model's blocks that the forward pass multiplies
//     (attention q/k/v/output, FFN gate/up/down, the router, stacked experts)
//     "<name>.in_sum2" F32 [n_per_row] or [n_per_row, n_expert] and
//     "<name>.counts" F32 [1] or [1, n_expert], in name order, nothing else
//     (no token_embd, no output);
//   - counts: chunks * n_ctx per dense weight; per stacked tensor the expert
//     counts sum to chunks * n_ctx * experts used per token; sums finite, >= 0;
//   - with --ref FILE (llama.cpp's collection of the same model and text):
//     the same names and shapes; dense weights: the same counts and every
//     sum within --rtol (--rtol0 in layer 0, where the two forward passes
//     have not yet drifted apart: a collection mistake shows there first);
//     stacked experts: at most 0.2% of the (token, expert)
//     routings differ (router near-ties), gate/up sums over experts within
//     --rtol, ffn_down_exps totals within 1%.
//
//   node check_imatrix.cjs IMATRIX.gguf MODEL.gguf --chunks K --ctx N --dataset PATH
//        [--ref REF.gguf] [--rtol 2e-3] [--rtol0 1e-4]
// Prints one summary line; exits 1 with the reasons on a mismatch.
"use strict";
const fs = require("node:fs");
const { gguf } = require("@huggingface/gguf");

const T_UINT32 = 4, T_STRING = 8, T_ARRAY = 9, F32 = 0;
const MATRIX = /^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down|ffn_gate_inp|ffn_gate_exps|ffn_up_exps|ffn_down_exps)\.weight$/;

function args() {
  const a = process.argv.slice(2), o = { rtol: 2e-3, rtol0: 1e-4 };
  if (a.length < 2) usage();
  o.file = a[0];
  o.model = a[1];
  for (let i = 2; i < a.length; i += 2) {
    const k = a[i], v = a[i + 1];
    if (v === undefined) usage();
    if (k === "--chunks") o.chunks = Number(v);
    else if (k === "--ctx") o.ctx = Number(v);
    else if (k === "--dataset") o.dataset = v;
    else if (k === "--ref") o.ref = v;
    else if (k === "--rtol") o.rtol = Number(v);
    else if (k === "--rtol0") o.rtol0 = Number(v);
    else usage();
  }
  if (!o.chunks || !o.ctx || !o.dataset) usage();
  return o;
}
function usage() {
  console.error("usage: node check_imatrix.cjs IMATRIX.gguf MODEL.gguf --chunks K --ctx N --dataset PATH [--ref REF.gguf] [--rtol X] [--rtol0 X]");
  process.exit(2);
}

const errors = [];
const bad = (msg) => { if (errors.length < 40) errors.push(msg); };
const num = (x) => Number(x);
const shapeStr = (s) => "[" + s.map(num).join(", ") + "]";

async function parse(path) {
  const r = await gguf(path, { allowLocalFile: true, typedMetadata: true });
  return r;
}

// The F32 values of tensor info t (file bytes at tensorDataOffset + offset).
function readF32(fd, r, t) {
  const n = t.shape.reduce((a, b) => a * num(b), 1);
  const buf = Buffer.alloc(4 * n);
  fs.readSync(fd, buf, 0, buf.length, num(r.tensorDataOffset) + num(t.offset));
  return new Float32Array(buf.buffer, buf.byteOffset, n);
}

function checkKeys(r, o) {
  const md = r.typedMetadata;
  if (md.version.value !== 3) bad(`GGUF version ${md.version.value}, expected 3`);
  const keys = Object.keys(md).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
  const want = ["general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"];
  if (keys.join(",") !== want.join(",")) bad(`keys ${keys.join(",")}, expected ${want.join(",")}`);
  if (num(md.kv_count.value) !== 4) bad(`kv_count ${md.kv_count.value}, expected 4`);
  const gt = md["general.type"], ds = md["imatrix.datasets"], cc = md["imatrix.chunk_count"], cs = md["imatrix.chunk_size"];
  if (!gt || gt.type !== T_STRING || gt.value !== "imatrix") bad("general.type is not the string \"imatrix\"");
  if (!ds || ds.type !== T_ARRAY || ds.subType !== T_STRING || ds.value.length !== 1 || ds.value[0] !== o.dataset)
    bad(`imatrix.datasets is not [${JSON.stringify(o.dataset)}] (string array): ${JSON.stringify(ds && ds.value)}`);
  if (!cc || cc.type !== T_UINT32 || cc.value !== o.chunks) bad(`imatrix.chunk_count ${cc && cc.value} (type ${cc && cc.type}), expected uint32 ${o.chunks}`);
  if (!cs || cs.type !== T_UINT32 || cs.value !== o.ctx) bad(`imatrix.chunk_size ${cs && cs.value} (type ${cs && cs.type}), expected uint32 ${o.ctx}`);
}

// Expected tensors, in order: [{name, shape, kind, n_mat}].
function expected(model) {
  const mats = model.tensorInfos.filter((t) => MATRIX.test(t.name)).map((t) => t.name).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const info = Object.fromEntries(model.tensorInfos.map((t) => [t.name, t]));
  const out = [];
  for (const m of mats) {
    const t = info[m], ne0 = num(t.shape[0]), stacked = t.shape.length === 3, n_mat = stacked ? num(t.shape[2]) : 1;
    out.push({ name: `${m}.in_sum2`, shape: stacked ? [ne0, n_mat] : [ne0], weight: m, stacked });
    out.push({ name: `${m}.counts`, shape: stacked ? [1, n_mat] : [1], weight: m, stacked });
  }
  return out;
}

(async () => {
  const o = args();
  const r = await parse(o.file), model = await parse(o.model);
  checkKeys(r, o);
  const arch = model.typedMetadata["general.architecture"].value;
  const used = model.typedMetadata[`${arch}.expert_used_count`];
  const want = expected(model);
  const got = r.tensorInfos;
  if (got.length !== want.length) bad(`${got.length} tensors, expected ${want.length}`);
  const fd = fs.openSync(o.file, "r");
  let tokens = o.chunks * o.ctx, n_checked = 0;
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const g = got[i], w = want[i];
    if (g.name !== w.name) { bad(`tensor ${i} is ${g.name}, expected ${w.name}`); continue; }
    if (g.dtype !== F32) bad(`${g.name}: dtype ${g.dtype}, expected F32`);
    if (shapeStr(g.shape) !== shapeStr(w.shape)) bad(`${g.name}: shape ${shapeStr(g.shape)}, expected ${shapeStr(w.shape)}`);
    const v = readF32(fd, r, g);
    if (w.name.endsWith(".counts")) {
      const sum = v.reduce((a, b) => a + b, 0);
      const expect = w.stacked ? tokens * (used ? num(used.value) : 0) : tokens;
      if (!w.stacked && v[0] !== tokens) bad(`${g.name}: ${v[0]} tokens, expected ${tokens}`);
      if (w.stacked && sum !== expect) bad(`${g.name}: expert counts sum to ${sum}, expected ${expect}`);
    } else {
      for (const x of v) if (!Number.isFinite(x) || x < 0) { bad(`${g.name}: value ${x}`); break; }
    }
    n_checked++;
  }
  let summary = `${o.file}: ${n_checked} tensors checked against ${o.model}`;
  if (o.ref) {
    const ref = await parse(o.ref), rfd = fs.openSync(o.ref, "r");
    const rinfo = Object.fromEntries(ref.tensorInfos.map((t) => [t.name, t]));
    if (ref.tensorInfos.length !== got.length)
      bad(`${got.length} tensors, llama.cpp's file has ${ref.tensorInfos.length}`);
    for (const k of ["imatrix.chunk_count", "imatrix.chunk_size"])
      if (ref.typedMetadata[k].value !== r.typedMetadata[k].value) bad(`${k}: ${r.typedMetadata[k].value}, llama.cpp ${ref.typedMetadata[k].value}`);
    let worst = 0, worstAt = "", worst0 = 0, worst0At = "", flips = 0, routed = 0, worstDown = 0;
    // Largest relative difference of a against b over one row of per values,
    // relative to the row's mean where an element is tiny (a column whose
    // activations are all near zero must not turn rounding into a large ratio).
    const rowDiff = (a, b, at) => {
      let mean = 0;
      for (let j = 0; j < b.length; j++) mean += Math.abs(b[j]) / b.length;
      for (let j = 0; j < b.length; j++) {
        const d = Math.abs(a[j] - b[j]) / Math.max(Math.abs(b[j]), 1e-2 * mean, 1e-30);
        if (d > worst) { worst = d; worstAt = `${at}[${j}] ${a[j]} vs ${b[j]}`; }
        if (at.startsWith("blk.0.") && d > worst0) { worst0 = d; worst0At = `${at}[${j}] ${a[j]} vs ${b[j]}`; }
      }
    };
    const counts = {};
    for (const g of got) {
      const t = rinfo[g.name];
      if (!t) { bad(`${g.name} is not in llama.cpp's file`); continue; }
      if (shapeStr(t.shape) !== shapeStr(g.shape)) { bad(`${g.name}: shape ${shapeStr(g.shape)}, llama.cpp ${shapeStr(t.shape)}`); continue; }
      const a = readF32(fd, r, g), b = readF32(rfd, ref, t), stacked = g.shape.length === 2;
      if (g.name.endsWith(".counts")) {
        if (!stacked && a[0] !== b[0]) bad(`${g.name}: ${a[0]}, llama.cpp ${b[0]}`);
        if (stacked && g.name.includes("ffn_gate_exps")) { // one count per layer's routing
          let d = 0, n = 0;
          for (let j = 0; j < a.length; j++) { d += Math.abs(a[j] - b[j]); n += b[j]; }
          flips += d / 2;
          routed += n;
        }
        continue;
      }
      const per = num(g.shape[0]);
      if (!stacked) { rowDiff(a, b, g.name); continue; }
      // Experts: near-ties in the router send a few tokens to another
      // expert in one runtime than in the other, and one token moves an
      // expert's sums by its own squares. Gate and up see the same input
      // whichever expert is chosen, so their sums over experts must agree
      // as closely as dense weights; down's input depends on the expert.
      const sa = new Float64Array(per), sb = new Float64Array(per);
      let ta = 0, tb = 0;
      for (let k = 0; k * per < a.length; k++)
        for (let j = 0; j < per; j++) { sa[j] += a[k * per + j]; sb[j] += b[k * per + j]; ta += a[k * per + j]; tb += b[k * per + j]; }
      if (g.name.includes("ffn_down_exps")) worstDown = Math.max(worstDown, Math.abs(ta - tb) / tb);
      else rowDiff(sa, sb, `${g.name} summed over experts`);
    }
    if (flips > Math.max(2, 2e-3 * routed)) bad(`routing differs from llama.cpp's for ${flips} of ${routed} (token, expert) pairs`);
    if (worstDown > 1e-2) bad(`ffn_down_exps total sums differ from llama.cpp's by ${worstDown.toExponential(3)} (> 1e-2)`);
    if (worst0 > o.rtol0) bad(`layer 0: largest relative difference from llama.cpp ${worst0.toExponential(3)} > ${o.rtol0} at ${worst0At}`);
    if (worst > o.rtol) bad(`largest relative difference from llama.cpp ${worst.toExponential(3)} > ${o.rtol} at ${worstAt}`);
    summary += `; vs llama.cpp: max rel diff of sums ${worst.toExponential(3)} (layer 0: ${worst0.toExponential(3)})`;
    if (routed) summary += `, ${flips} of ${routed} expert routings differ, ffn_down_exps totals within ${worstDown.toExponential(2)}`;
  }
  if (errors.length) {
    for (const e of errors) console.error(`FAIL: ${e}`);
    process.exit(1);
  }
  console.log(summary);
})().catch((e) => { console.error(`FAIL: ${e.stack || e}`); process.exit(1); });
