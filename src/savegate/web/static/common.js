// Shared by the playground and the dashboard: the key the user typed (kept in this tab's
// sessionStorage only, never sent anywhere but the gateway's API), API calls with
// OpenAI-shaped errors, an SSE reader that buffers lines across reads, and formatting.

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.type = error?.type || null;
    this.code = error?.code || null;
  }

  static async from(response) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch {
      // not JSON: the status says it all
    }
    return new ApiError(response.status, error);
  }

  describe() {
    const where = [this.status, this.type, this.code].filter(Boolean).join(" · ");
    return where ? `${where}: ${this.message}` : this.message;
  }
}

export function describeError(error) {
  if (error instanceof ApiError) return error.describe();
  return `Network error: ${error.message}`;
}

/** A key input bound to sessionStorage: restored on load, saved when used. */
export function keyField(input, storageName) {
  input.value = sessionStorage.getItem(storageName) || "";
  return {
    get value() {
      return input.value.trim();
    },
    save() {
      sessionStorage.setItem(storageName, input.value.trim());
    },
  };
}

export function authHeaders(key) {
  return { authorization: `Bearer ${key}` };
}

export async function apiJson(path, key, { method = "GET", body } = {}) {
  const headers = authHeaders(key);
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await ApiError.from(response);
  return response.json();
}

/**
 * The `data:` payloads of an SSE body, one per event. Text is decoded as a stream and
 * split into lines only where a newline has arrived: the unfinished tail of one read is
 * kept for the next, so an event cut across two reads is never lost.
 */
export async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = done ? "" : lines.pop();
      if (done) lines.push("");
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const integer = new Intl.NumberFormat("en-US");

export function count(value) {
  return integer.format(value || 0);
}

export function usd(value) {
  const amount = value || 0;
  if (amount !== 0 && Math.abs(amount) < 0.01) return `$${amount.toPrecision(2)}`;
  return `$${amount.toFixed(2)}`;
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}
