// Check an RFC 6962 / RFC 9162 inclusion proof in the browser (WebCrypto SHA-256), so an auditor
// need not take the server's word for it. The server renders the proof; this recomputes the root.
(function () {
  "use strict";
  const enc = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
  const unhex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
  async function sha256(prefix, ...parts) {
    const total = 1 + parts.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(total);
    data[0] = prefix;
    let at = 1;
    for (const p of parts) { data.set(p, at); at += p.length; }
    return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  }
  async function verify(el) {
    const out = el.querySelector("#browser-verdict");
    try {
      let fn = BigInt(el.dataset.index), sn = BigInt(el.dataset.size) - 1n;
      let r = await sha256(0, enc(el.dataset.leaf));
      const path = el.dataset.path ? el.dataset.path.split(",").map(unhex) : [];
      for (const p of path) {
        if (sn === 0n) { out.textContent = "NOT included (proof too long)"; return; }
        if ((fn & 1n) === 1n || fn === sn) {
          r = await sha256(1, p, r);
          if ((fn & 1n) === 0n) { while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; } }
        } else {
          r = await sha256(1, r, p);
        }
        fn >>= 1n; sn >>= 1n;
      }
      const ok = sn === 0n && hex(r) === el.dataset.root;
      out.textContent = ok ? "included (recomputed here)" : "NOT included";
      out.className = ok ? "ok" : "refused";
    } catch (e) {
      out.textContent = "could not check: " + e;
    }
  }
  document.addEventListener("htmx:afterSwap", (ev) => {
    ev.target.querySelectorAll(".proof").forEach(verify);
  });
  document.addEventListener("click", (ev) => {
    if (ev.target && ev.target.id === "prove") {
      const index = document.getElementById("proof-index").value;
      htmx.ajax("GET", "/log/proof/" + encodeURIComponent(index), "#proof");
    }
  });
})();
