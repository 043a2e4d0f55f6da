// The venue API from the browser: public REST, and requests signed as the SDK signs them
// (Ed25519 over timestamp + METHOD + path, three X-PM headers), with WebCrypto.
// The key (id + base64 secret) lives in this tab's sessionStorage only.

const STORE = "pyexchange.key";
const PKCS8_ED25519 = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// counted for the page's own load (shown in the footer, read by the tests)
export const counters = { requests: 0, signed: 0, failed: 0 };

function fromBase64(text) {
  const raw = atob(text.trim());
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function toBase64(bytes) {
  let raw = "";
  for (const b of new Uint8Array(bytes)) raw += String.fromCharCode(b);
  return btoa(raw);
}

export class Key {
  constructor(id, secret, signing) {
    this.id = id;
    this.secret = secret;
    this.signing = signing;
  }

  // The secret as `pyexchange keys create` prints it: base64 of the 32-byte seed or of
  // seed + public key (64 bytes; the first 32 are the seed, as the SDK takes them).
  static async make(id, secret) {
    id = id.trim();
    let bytes;
    try {
      bytes = fromBase64(secret);
    } catch {
      throw new Error("the secret is not base64");
    }
    if (!id) throw new Error("the key id is empty");
    if (!globalThis.crypto || !crypto.subtle) {
      throw new Error("this page is not a secure context (http://127.0.0.1, localhost or https): the browser cannot sign");
    }
    if (bytes.length !== 32 && bytes.length !== 64) {
      throw new Error(`the secret is ${bytes.length} bytes; an Ed25519 secret is 32 or 64`);
    }
    const der = new Uint8Array([...PKCS8_ED25519, ...bytes.slice(0, 32)]);
    const signing = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
    return new Key(id, secret.trim(), signing);
  }

  static async stored() {
    const saved = sessionStorage.getItem(STORE);
    if (!saved) return null;
    try {
      const { id, secret } = JSON.parse(saved);
      return await Key.make(id, secret);
    } catch {
      sessionStorage.removeItem(STORE);
      return null;
    }
  }

  remember() {
    sessionStorage.setItem(STORE, JSON.stringify({ id: this.id, secret: this.secret }));
  }

  static forget() {
    sessionStorage.removeItem(STORE);
  }

  // {X-PM-Access-Key, X-PM-Timestamp, X-PM-Signature} for METHOD path (no query)
  async headers(method, path) {
    const stamp = String(Date.now());
    const message = new TextEncoder().encode(stamp + method + path);
    const signature = await crypto.subtle.sign({ name: "Ed25519" }, this.signing, message);
    return { "X-PM-Access-Key": this.id, "X-PM-Timestamp": stamp, "X-PM-Signature": toBase64(signature) };
  }
}

async function call(method, path, { key = null, body = undefined, query = null } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (key) {
    Object.assign(headers, await key.headers(method, path));
    counters.signed += 1;
  }
  const url = path + (query ? "?" + new URLSearchParams(query) : "");
  counters.requests += 1;
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    counters.failed += 1;
    throw new ApiError(0, "the server cannot be reached");
  }
  const text = await response.text();
  let data = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text.slice(0, 200) };
    }
  }
  if (!response.ok) {
    counters.failed += 1;
    throw new ApiError(response.status, data.message || response.statusText || "request failed");
  }
  return data;
}

export const publicGet = (path, query) => call("GET", path, { query });
export const signedGet = (key, path, query) => call("GET", path, { key, query });
export const signedPost = (key, path, body) => call("POST", path, { key, body });

// The WebSocket URL of a venue socket, signed in the query (a browser cannot set headers on
// the upgrade; the server takes the three values from the query instead: docs/webview.md).
export async function socketUrl(key, path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const signed = await key.headers("GET", path);
  return `${scheme}//${location.host}${path}?${new URLSearchParams(signed)}`;
}
