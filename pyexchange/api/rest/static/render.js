// One redraw per animation frame: frames and poll answers only mark what changed
// (invalidate), and the next animation frame draws each changed part once, however many
// messages came in between.

const renderers = new Map();
const dirty = new Set();
let pending = false;

export const renderCounter = { redraws: 0, parts: 0 };

export function on(part, draw) {
  renderers.set(part, draw);
}

export function invalidate(...parts) {
  for (const part of parts) dirty.add(part);
  if (!pending) {
    pending = true;
    requestAnimationFrame(flush);
  }
}

function flush() {
  pending = false;
  const parts = [...dirty];
  dirty.clear();
  renderCounter.redraws += 1;
  for (const part of parts) {
    const draw = renderers.get(part);
    if (draw) {
      renderCounter.parts += 1;
      draw();
    }
  }
}

// small DOM helpers
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

export const $ = (id) => document.getElementById(id);
