// Large refused uploads through Node's fetch (undici): does every try get the ingress's answer?
// usage: node fetch_refusals.mjs URL SIZE TRIES   (a JSON body of SIZE bytes; over --max-body: 413 expected)
// Prints one line: `statuses <status>:<count> ... errors <count> <first error>`.
const [url, size, tries] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const body = Buffer.alloc(size, 0x78);
body.write('{"a":"', 0);
body.write('"}', size - 2);
const seen = new Map();
const errors = [];
for (let i = 0; i < tries; i++) {
  try {
    const r = await fetch(url, {
      method: "POST",
      body,
      headers: { Accept: "*/*", "Content-Type": "application/json" },
    });
    await r.arrayBuffer();
    seen.set(r.status, (seen.get(r.status) || 0) + 1);
  } catch (e) {
    errors.push(String(e.cause || e));
  }
}
const s = [...seen.entries()].sort().map(([k, v]) => `${k}:${v}`).join(" ");
console.log(`statuses ${s} errors ${errors.length} ${errors[0] || ""}`);
