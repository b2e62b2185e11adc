// The shopper page (server/src/shop): opens the shopper session with the store token
// from the address, then drives /api/v1/shopper/: add by camera or typed barcode,
// show the priced cart, remove lines, pay it with a QR code in the wallet (the page
// goes to the provider's pay link and comes back with ?paid=1), show the exit code.
// No dependencies, nothing from another origin.
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

  // Paying: the pay button while there is something to pay and no checkout running.
  const canPay = root.dataset.pay === "1";
  let paying = false;
  function payable(cart) {
    if (canPay) $("pay").hidden = paying || !(cart && cart.priced);
  }

  // Show where the session's checkout stands; `go`: send the phone to the wallet.
  function showCheckout(v, go) {
    paying = v.status === "paying" || v.status === "starting";
    $("paying").hidden = v.status !== "paying";
    if (canPay) $("pay").hidden = true;
    if (v.status === "paying") {
      $("open-wallet").href = v.pay_url;
      if (go) {
        say(t("going"));
        location.assign(v.pay_url);
        return;
      }
      say(t("paying"));
    } else if (v.status === "paid") {
      $("paid").hidden = false;
      $("paid-total").textContent = money(v.total, v.cart.currency);
      $("exit-qr").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(v.exit_svg);
      $("exit-qr").dataset.code = v.exit_code;
      const earned = typeof v.points_earned === "number";
      $("paid-points").hidden = !earned;
      if (earned) $("paid-points").textContent = t("points-earned") + " " + v.points_earned;
      // The paid cart was sold: the server emptied it.
      render({ lines: [], priced: null });
      say(t("paid"));
    } else if (v.status === "failed") {
      $("paid").hidden = true;
      say(failure(v.error), true);
    }
  }

  // After the wallet: ask until the payment is in (or the code ends), bounded.
  async function follow(deadline) {
    while (Date.now() < deadline) {
      const r = await api("GET", "/api/v1/shopper/checkout");
      if (!r.ok) { say(failure(r.body), true); return; }
      showCheckout(r.body, false);
      if (r.body.status === "paid" || r.body.status === "failed") break;
      await new Promise((ok) => setTimeout(ok, 1000));
    }
    const cart = await api("GET", "/api/v1/shopper/cart");
    if (cart.ok) { render(cart.body); payable(cart.body); }
  }

  async function change(method, path, body) {
    const r = await api(method, path, body);
    if (!r.ok) {
      say(failure(r.body), true);
      return false;
    }
    // A new cart after paying: the paid one's code is put away.
    $("paid").hidden = true;
    render(r.body);
    payable(r.body);
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
    const query = new URLSearchParams(location.search);
    const token = query.get("t");
    const back = query.get("paid") === "1";
    // The token has done its work once read: keep it out of the history.
    if (token || back) history.replaceState(null, "", location.pathname);
    if (!root.dataset.session && token) {
      const opened = await api("POST", "/api/v1/shopper/sessions", { store_token: token });
      if (!opened.ok) {
        say(failure(opened.body), true);
        return;
      }
    }
    // Without a token the cookie may still name a session (coming back from the
    // wallet, whose redirect does not carry a SameSite=Strict cookie to the page).
    const cart = await api("GET", "/api/v1/shopper/cart");
    if (!cart.ok) {
      say(token || cart.status !== 401 ? failure(cart.body) : t("need-qr"), true);
      return;
    }
    render(cart.body);
    say("");
    root.classList.add("ready");
    const checkout = canPay ? await api("GET", "/api/v1/shopper/checkout") : null;
    if (checkout && !checkout.ok) say(failure(checkout.body), true);
    if (checkout && checkout.ok && checkout.body.status !== "none") {
      showCheckout(checkout.body, false);
      if (paying) {
        await follow(Date.now() + 60000);
      } else {
        // Paid or failed: the cart as the server has it now (a paid one is empty).
        const now = await api("GET", "/api/v1/shopper/cart");
        if (now.ok) { render(now.body); payable(now.body); }
      }
    } else {
      payable(cart.body);
    }
  }

  // A loyalty card: the carts paid from now on are sold to its customer.
  $("loyalty").addEventListener("submit", async (e) => {
    e.preventDefault();
    const card = $("card").value.trim();
    if (!card) return;
    const r = await api("PUT", "/api/v1/shopper/customer", { card });
    if (!r.ok) {
      $("card-status").textContent = "";
      say(failure(r.body), true);
      return;
    }
    $("card-status").textContent = t("card-added") + " " + r.body.points;
    say("");
  });

  if (canPay) {
    $("pay").addEventListener("click", async () => {
      $("pay").disabled = true;
      const r = await api("POST", "/api/v1/shopper/checkout");
      $("pay").disabled = false;
      if (!r.ok) { say(failure(r.body), true); return; }
      showCheckout(r.body, true);
      if (r.body.status === "starting") await follow(Date.now() + 30000);
    });
    $("cancel-pay").addEventListener("click", async () => {
      const r = await api("DELETE", "/api/v1/shopper/checkout");
      if (!r.ok) { say(failure(r.body), true); return; }
      showCheckout(r.body, false);
      if (r.body.status === "failed") say(t("cancelled"));
      const cart = await api("GET", "/api/v1/shopper/cart");
      if (cart.ok) { render(cart.body); payable(cart.body); }
    });
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
