// The web view's entry: the key form, the hash router (#/, #/market/SLUG, #/ops), the
// status badge and the footer's own-load counters.

import { counters, Key } from "./api.js";
import { Live } from "./live.js";
import { setupMarket, setupMarkets } from "./market.js";
import { setupOps } from "./ops.js";
import { $, invalidate, on, renderCounter } from "./render.js";
import { frameCounter } from "./stream.js";

const live = new Live();
const ops = setupOps();
setupMarkets(live);
setupMarket(live);

on("status", () => {
  const [state, text] = live.status();
  const badge = $("status");
  badge.dataset.state = state;
  badge.textContent = state === "polling" ? "polled" : state;
  badge.title = text;
  const notice = $("notice");
  notice.hidden = !live.notice;
  notice.textContent = live.notice;
});

function showKey(key) {
  $("key-shown").hidden = !key;
  $("key-shown").textContent = key ? `key ${key.id.slice(0, 8)}…` : "";
  for (const id of ["key-id", "key-secret", "key-use"]) $(id).hidden = Boolean(key);
  $("key-forget").hidden = !key;
  $("trader-on").hidden = !key;
  $("trader-off").hidden = Boolean(key);
}

async function useKey(key) {
  showKey(key);
  await live.start(key);
  invalidate("list", "status");
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const key = await Key.make($("key-id").value, $("key-secret").value);
    key.remember();
    $("key-secret").value = "";
    live.notice = "";
    await useKey(key);
  } catch (error) {
    live.notice = `key not used: ${error.message}`;
    invalidate("status");
  }
});

$("key-forget").addEventListener("click", async () => {
  Key.forget();
  await useKey(null);
});

function route() {
  const hash = location.hash || "#/";
  const market = hash.match(/^#\/market\/([A-Za-z0-9_-]+)$/);
  const view = market ? "market" : hash === "#/ops" ? "ops" : "markets";
  for (const name of ["markets", "market", "ops"]) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === (view === "ops" ? "ops" : "markets"));
  }
  live.setFocus(market ? market[1] : null);
  if (view === "ops") ops.show();
  else ops.hide();
  invalidate("ops");
}

// a sign-in link (#key=ID&secret=BASE64, as the demo's banner prints): into the session's
// storage, then out of the address bar
async function fromFragment() {
  if (!location.hash.startsWith("#key=")) return null;
  const params = new URLSearchParams(location.hash.slice(1));
  history.replaceState(null, "", location.pathname + "#/");
  try {
    const key = await Key.make(params.get("key") || "", params.get("secret") || "");
    key.remember();
    return key;
  } catch (error) {
    live.notice = `key not used: ${error.message}`;
    return null;
  }
}

// the page's own load, once a second (also read by the browser tests)
const load = { requestsPerS: 0, framesPerS: 0, redrawsPerS: 0 };
let before = { ...counters, ...frameCounter, ...renderCounter, at: performance.now() };
setInterval(() => {
  const now = { ...counters, ...frameCounter, ...renderCounter, at: performance.now() };
  const seconds = (now.at - before.at) / 1000;
  load.requestsPerS = (now.requests - before.requests) / seconds;
  load.framesPerS = (now.frames - before.frames) / seconds;
  load.redrawsPerS = (now.redraws - before.redraws) / seconds;
  before = now;
  $("perf").textContent = `this page: ${load.requestsPerS.toFixed(1)} requests/s, `
    + `${load.framesPerS.toFixed(1)} frames/s in, ${load.redrawsPerS.toFixed(1)} redraws/s`;
  invalidate("status");
}, 1000);

window.pyexchange = { live, counters, frameCounter, renderCounter, load };

window.addEventListener("hashchange", async () => {
  const key = await fromFragment();
  if (key) await useKey(key);
  route();
});
const key = (await fromFragment()) || (await Key.stored());
showKey(key);
route();
await live.start(key);
