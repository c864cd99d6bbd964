// The playground's image tab: a prompt goes to /v1/images/generations with the model,
// size, quality and count picked; the images come back as base64 or URLs and are shown.
import { ApiError, authHeaders, describeError, el, ms } from "./common.js";

const $ = (id) => document.getElementById(id);
const MIME = { png: "image/png", jpeg: "image/jpeg", webp: "image/webp" };

function requestBody(prompt) {
  const body = { model: $("model").value.trim(), prompt, n: Number($("image-n").value || 1) };
  if ($("image-size").value) body.size = $("image-size").value;
  if ($("image-quality").value) body.quality = $("image-quality").value;
  return body;
}

function picture(image, format) {
  const src = image.b64_json ? `data:${MIME[format] || "image/png"};base64,${image.b64_json}` : image.url;
  const caption = image.revised_prompt ? el("figcaption", {}, image.revised_prompt) : null;
  return el("figure", {}, el("img", { src, alt: image.revised_prompt || "generated image" }), caption);
}

export function imageTab(key, setStatus) {
  let busy = false;

  async function generate(prompt) {
    $("image-empty").hidden = true;
    const pictures = el("div", { class: "pictures" });
    const node = el("div", { class: "generation working" }, el("div", { class: "prompt" }, prompt), pictures);
    $("image-log").append(node);
    const started = performance.now();
    let requestId = null;
    busy = true;
    $("generate").disabled = true;
    try {
      const response = await fetch("/v1/images/generations", {
        method: "POST",
        headers: { ...authHeaders(key.value), "content-type": "application/json" },
        body: JSON.stringify(requestBody(prompt)),
      });
      requestId = response.headers.get("x-request-id");
      if (!response.ok) throw await ApiError.from(response);
      const answer = await response.json();
      pictures.append(...(answer.data || []).map((image) => picture(image, answer.output_format)));
    } catch (error) {
      node.append(el("div", { class: "banner error" }, describeError(error)));
    } finally {
      node.classList.remove("working");
      const count = pictures.childElementCount;
      node.append(
        el("div", { class: "meta" }, [
          el("span", { class: "count" }, `${count} image${count === 1 ? "" : "s"}`),
          el("span", {}, `total ${ms(performance.now() - started)}`),
          requestId ? el("span", { class: "request-id mono" }, requestId) : null,
        ]),
      );
      $("image-log").scrollTop = $("image-log").scrollHeight;
      busy = false;
      $("generate").disabled = false;
    }
  }

  $("image-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = $("image-prompt").value.trim();
    if (!prompt || busy) return;
    if (!key.value) {
      setStatus("Enter an API key first.", true);
      return;
    }
    key.save();
    $("image-prompt").value = "";
    generate(prompt);
  });

  $("image-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("image-form").requestSubmit();
    }
  });
}
