// One venue WebSocket that stays up: signed on every connect, reconnected with backoff after
// a close (a server restart), its subscriptions replayed with the same request ids, and
// "stale" when no frame (heartbeats included) came for 2.5 heartbeat periods; at 5 periods
// the connection is given up and opened again (the venue tells clients to reconnect if
// heartbeats stop).

import { socketUrl } from "./api.js";

export const frameCounter = { frames: 0, bytes: 0 };

export class Stream {
  constructor(path, key, { heartbeatS = 10, onFrame, onState, onOpen }) {
    this.path = path;
    this.key = key;
    this.heartbeatMs = heartbeatS * 1000;
    this.onFrame = onFrame;
    this.onState = onState || (() => {});
    this.onOpen = onOpen || (() => {});
    this.subscriptions = new Map(); // requestId -> subscribe body
    this.socket = null;
    this.state = "connecting";
    this.failures = 0;
    this.lastFrame = 0;
    this.closed = false;
    this.retry = null;
    this.watchdog = setInterval(() => this.check(), 500);
  }

  setState(state) {
    if (state !== this.state) {
      this.state = state;
      this.onState(state);
    }
  }

  async open() {
    if (this.closed) return;
    this.setState(this.failures ? "down" : "connecting");
    let url;
    try {
      url = await socketUrl(this.key, this.path);
    } catch (error) {
      this.schedule();
      return;
    }
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.lastFrame = performance.now();
      this.failures = 0;
      this.setState("live");
      for (const body of this.subscriptions.values()) this.send({ subscribe: body });
      this.onOpen();
    };
    socket.onmessage = (event) => {
      this.lastFrame = performance.now();
      frameCounter.frames += 1;
      frameCounter.bytes += event.data.length;
      if (this.state !== "live") this.setState("live");
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if ("heartbeat" in message) return;
      this.onFrame(message);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.failures += 1;
      this.schedule();
    };
    socket.onerror = () => {}; // onclose follows
  }

  schedule() {
    if (this.closed || this.retry) return;
    this.setState("down");
    const base = Math.min(500 * 2 ** Math.min(this.failures, 4), 5000);
    const delay = base / 2 + Math.random() * base / 2;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.open();
    }, delay);
  }

  check() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    const quiet = performance.now() - this.lastFrame;
    if (quiet > 5 * this.heartbeatMs) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
      this.failures += 1;
      this.schedule();
    } else if (quiet > 2.5 * this.heartbeatMs) {
      this.setState("stale");
    }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  subscribe(requestId, subscriptionType, marketSlugs) {
    const body = { requestId, subscriptionType };
    if (marketSlugs && marketSlugs.length) body.marketSlugs = marketSlugs;
    this.subscriptions.set(requestId, body);
    this.send({ subscribe: body });
  }

  // a one-shot request (the order snapshot): not replayed on reconnect
  request(requestId, subscriptionType, marketSlugs) {
    const body = { requestId, subscriptionType };
    if (marketSlugs && marketSlugs.length) body.marketSlugs = marketSlugs;
    this.send({ subscribe: body });
  }

  unsubscribe(requestId) {
    if (this.subscriptions.delete(requestId)) this.send({ unsubscribe: { requestId } });
  }

  close() {
    this.closed = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retry);
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    if (socket.readyState === WebSocket.CONNECTING) {
      socket.onopen = () => socket.close(); // closing a connecting socket is a console error
    } else {
      socket.close();
    }
  }
}
