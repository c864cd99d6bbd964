// The playground: pick a model, chat with streaming, stop mid-answer (aborting the fetch
// closes the connection, and the gateway cancels the upstream call), see each answer's
// token usage, request id and timings, the tool calls the model made, and errors. The
// Images tab (images.js) generates images with the same key and model.
import { ApiError, apiJson, authHeaders, describeError, el, keyField, ms, sseData } from "./common.js";
import { imageTab } from "./images.js";

const $ = (id) => document.getElementById(id);
const key = keyField($("api-key"), "savegate.playground.key");
const history = [];
let controller = null;

function setStatus(text, isError = false) {
  $("key-status").textContent = text;
  $("key-status").classList.toggle("error", isError);
}

async function loadModels() {
  if (!key.value) {
    setStatus("Kept in this tab only.");
    return;
  }
  key.save();
  try {
    const { data } = await apiJson("/v1/models", key.value);
    $("models").replaceChildren(...data.map((model) => el("option", { value: model.id })));
    if (!$("model").value && data.length) $("model").value = data[0].id;
    setStatus(`${data.length} model${data.length === 1 ? "" : "s"} available`);
  } catch (error) {
    setStatus(describeError(error), true);
  }
}

function scrollDown() {
  const log = $("log");
  log.scrollTop = log.scrollHeight;
}

function addMessage(role, text) {
  $("empty").hidden = true;
  const body = el("div", { class: "text" }, text);
  const node = el("div", { class: `msg ${role}` }, el("div", { class: "who" }, role), body);
  $("log").append(node);
  scrollDown();
  return { node, body };
}

function requestBody() {
  const system = $("system").value.trim();
  const body = {
    model: $("model").value.trim(),
    messages: [...(system ? [{ role: "system", content: system }] : []), ...history],
    stream: true,
    stream_options: { include_usage: true },
  };
  const maxTokens = $("max-tokens").value;
  if (maxTokens) body.max_tokens = Number(maxTokens);
  const temperature = $("temperature").value;
  if (temperature) body.temperature = Number(temperature);
  const tools = $("tools").value.trim();
  if (tools) {
    try {
      body.tools = JSON.parse(tools);
    } catch (error) {
      throw new ApiError(null, { message: `Tools are not valid JSON: ${error.message}` });
    }
  }
  return body;
}

/** One streamed answer: the text, tool calls by index, usage, and how it ended. */
class Answer {
  constructor() {
    const { node, body } = addMessage("assistant", "");
    this.node = node;
    this.body = body;
    this.text = "";
    this.tools = new Map();
    this.usage = null;
    this.finish = null;
    this.started = performance.now();
    this.firstAt = null;
    node.classList.add("streaming");
  }

  add(chunk) {
    if (chunk.error) throw new ApiError(null, chunk.error);
    if (chunk.usage) this.usage = chunk.usage;
    for (const choice of chunk.choices || []) {
      const delta = choice.delta || {};
      if (delta.content) {
        this.firstAt ??= performance.now();
        this.text += delta.content;
        this.body.textContent = this.text;
      }
      for (const call of delta.tool_calls || []) {
        this.firstAt ??= performance.now();
        this.toolCall(call);
      }
      if (choice.finish_reason) this.finish = choice.finish_reason;
    }
    scrollDown();
  }

  toolCall(call) {
    let view = this.tools.get(call.index);
    if (!view) {
      const name = el("span", { class: "name" });
      const args = el("pre");
      const box = el("div", { class: "tool-call" }, "Tool call: ", name, args);
      view = { name, args };
      this.tools.set(call.index, view);
      this.node.append(box);
    }
    if (call.function?.name) view.name.textContent += call.function.name;
    if (call.function?.arguments) view.args.textContent += call.function.arguments;
  }

  end({ requestId, stopped = false, error = null }) {
    this.node.classList.remove("streaming");
    for (const { args } of this.tools.values()) {
      try {
        args.textContent = JSON.stringify(JSON.parse(args.textContent), null, 2);
      } catch {
        // arguments cut short (stopped) or not JSON: leave them as they came
      }
    }
    if (!this.text) this.body.hidden = true;
    if (error) this.node.append(el("div", { class: "banner error" }, describeError(error)));
    const now = performance.now();
    const usage = this.usage;
    const items = [
      stopped ? el("span", { class: "stopped" }, "Stopped") : null,
      usage
        ? el(
            "span",
            { class: "usage" },
            `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion = ` +
              `${usage.total_tokens} tokens`,
          )
        : null,
      this.finish ? el("span", {}, `finish: ${this.finish}`) : null,
      this.firstAt ? el("span", {}, `first token ${ms(this.firstAt - this.started)}`) : null,
      el("span", {}, `total ${ms(now - this.started)}`),
      requestId ? el("span", { class: "request-id mono" }, requestId) : null,
    ];
    this.node.append(el("div", { class: "meta" }, items));
    scrollDown();
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const answer = new Answer();
  controller = new AbortController();
  setBusy(true);
  let requestId = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { ...authHeaders(key.value), "content-type": "application/json" },
      body: JSON.stringify(requestBody()),
      signal: controller.signal,
    });
    requestId = response.headers.get("x-request-id");
    if (!response.ok) throw await ApiError.from(response);
    for await (const data of sseData(response.body)) {
      if (data === "[DONE]") break;
      answer.add(JSON.parse(data));
    }
    answer.end({ requestId });
  } catch (error) {
    if (error.name === "AbortError") answer.end({ requestId, stopped: true });
    else answer.end({ requestId, error });
  } finally {
    // What the user saw is what the conversation continues from. Tool calls are shown but
    // not run, so they stay out of the history (a call needs its result to follow it).
    if (answer.text) history.push({ role: "assistant", content: answer.text });
    controller = null;
    setBusy(false);
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  function showTab(images) {
  $("tab-chat").setAttribute("aria-selected", String(!images));
  $("tab-images").setAttribute("aria-selected", String(images));
  document.querySelector("section.chat:not(#images)").hidden = images;
  $("chat-settings").hidden = images;
  $("images").hidden = !images;
  $("image-settings").hidden = !images;
}

$("tab-chat").addEventListener("click", () => showTab(false));
$("tab-images").addEventListener("click", () => showTab(true));
imageTab(key, setStatus);

loadModels();
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  if (!key.value) {
    setStatus("Enter an API key first.", true);
    return;
  }
  key.save();
  $("prompt").value = "";
  send(text);
});

$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

$("stop").addEventListener("click", () => controller?.abort());

$("new-chat").addEventListener("click", () => {
  controller?.abort();
  history.length = 0;
  $("log").replaceChildren($("empty"));
  $("empty").hidden = false;
});

function showTab(images) {
  $("tab-chat").setAttribute("aria-selected", String(!images));
  $("tab-images").setAttribute("aria-selected", String(images));
  document.querySelector("section.chat:not(#images)").hidden = images;
  $("chat-settings").hidden = images;
  $("images").hidden = !images;
  $("image-settings").hidden = !images;
}

$("tab-chat").addEventListener("click", () => showTab(false));
$("tab-images").addEventListener("click", () => showTab(true));
imageTab(key, setStatus);

loadModels();
