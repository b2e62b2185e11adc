// The shopper page (server/src/shop): opens the shopper session with the store token
// from the address, then drives /api/v1/shopper/: add by camera or typed barcode,
// show the priced cart, remove lines. No dependencies, nothing from another origin.
"use strict";
(function () {
  const root = document.getElementById("shop");
  if (!root) return;
  const words = JSON.parse(root.dataset.words || "{}");
  const t = (id) => words[id] || id;
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const say = (text, bad) => {
    status.textContent = text;
    status.classList.toggle("bad", !!bad);
  };
  const lang = document.documentElement.lang || "en";
  const money = (minor, currency) => {
    const f = new Intl.NumberFormat(lang, { style: "currency", currency });
    const digits = f.resolvedOptions().maximumFractionDigits;
    return f.format(minor / Math.pow(10, digits));
  };
  const failure = (body) => {
    const code = body && body.code;
    if (code && words["err-" + code]) return t("err-" + code);
    return t("err-other") + " " + ((body && body.message) || "?");
  };

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let json = null;
    try { json = await r.json(); } catch (_) { json = null; }
    return { ok: r.ok, status: r.status, body: json };
  }

  function render(cart) {
    const list = $("lines");
    list.replaceChildren();
    const priced = cart.priced;
    $("empty").hidden = !!priced;
    $("totals").hidden = !priced;
    if (!priced) return;
    priced.lines.forEach((line, i) => {
      const li = document.createElement("li");
      li.className = "line";
      li.dataset.sku = line.sku;
      const name = document.createElement("span");
      name.className = "name";
      const units = line.quantity.units;
      name.textContent = (units ? units + " × " : "") + line.name;
      const price = document.createElement("span");
      price.className = "price";
      price.textContent = money(line.total, priced.currency);
      li.append(name, price);
      if (line.promotion_name) {
        const promo = document.createElement("span");
        promo.className = "promo";
        promo.textContent = line.promotion_name + " −" + money(line.discount, priced.currency);
        li.append(promo);
      }
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = t("remove");
      remove.setAttribute("aria-label", t("remove") + ": " + line.name);
      remove.addEventListener("click", () => change("DELETE", "/api/v1/shopper/cart/lines/" + (i + 1)));
      li.append(remove);
      list.append(li);
    });
    $("subtotal").textContent = money(priced.subtotal, priced.currency);
    $("discounts").textContent = "−" + money(priced.discount_total, priced.currency);
    $("discounts").hidden = $("discounts-label").hidden = priced.discount_total === 0;
    $("total").textContent = money(priced.total, priced.currency);
  }

  async function change(method, path, body) {
    const r = await api(method, path, body);
    if (!r.ok) {
      say(failure(r.body), true);
      return false;
    }
    render(r.body);
    return true;
  }

  const names = () => Array.from($("lines").children, (li) => li.querySelector(".name").textContent);

  async function add(code) {
    code = code.trim();
    if (!code) return;
    const before = names();
    if (await change("POST", "/api/v1/shopper/cart/lines", { barcode: code })) {
      // The line that changed: a new one, or the one whose quantity went up.
      const after = names();
      const changed = after.find((n, i) => n !== before[i]);
      say(t("added") + " " + (changed || code));
    }
  }

  async function start() {
    const token = new URLSearchParams(location.search).get("t");
    // The token has done its work once read: keep it out of the history.
    if (token) history.replaceState(null, "", location.pathname);
    if (!root.dataset.session) {
      if (!token) {
        say(t("need-qr"), true);
        return;
      }
      const opened = await api("POST", "/api/v1/shopper/sessions", { store_token: token });
      if (!opened.ok) {
        say(failure(opened.body), true);
        return;
      }
    }
    const cart = await api("GET", "/api/v1/shopper/cart");
    if (!cart.ok) {
      say(failure(cart.body), true);
      return;
    }
    render(cart.body);
    say("");
    root.classList.add("ready");
  }

  $("add").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("barcode");
    const code = input.value;
    input.value = "";
    add(code);
  });

  // The camera, where the browser reads barcodes itself (BarcodeDetector).
  const scan = $("scan");
  const video = $("camera");
  let stream = null;
  let timer = null;
  function stop() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((tr) => tr.stop());
    stream = null;
    video.hidden = true;
    scan.textContent = t("scan");
  }
  if ("BarcodeDetector" in window && navigator.mediaDevices) {
    scan.hidden = false;
    scan.addEventListener("click", async () => {
      if (stream) { stop(); return; }
      let detector;
      try {
        detector = new window.BarcodeDetector({ formats: ["ean_13", "ean_8", "upc_a", "upc_e", "code_128", "qr_code"] });
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      } catch (_) {
        stop();
        say(t("camera-failed"), true);
        return;
      }
      video.srcObject = stream;
      video.hidden = false;
      scan.textContent = t("stop-scan");
      await video.play().catch(() => {});
      let last = "";
      const look = async () => {
        if (!stream) return;
        try {
          const found = await detector.detect(video);
          if (found.length && found[0].rawValue !== last) {
            last = found[0].rawValue;
            await add(last);
            setTimeout(() => { last = ""; }, 2000);
          }
        } catch (_) { /* a frame not ready yet */ }
        timer = setTimeout(look, 250);
      };
      look();
    });
  } else {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = t("no-camera");
    $("scanner").append(note);
  }

  start();
})();
