// Image search page: plain JavaScript, no build step, no external resources.
// Talks to the search API with relative URLs, so it works wherever it is served.
"use strict";

const TOP_K = 24;
const STATS_EVERY_MS = 3000;
// The API refuses JSON bodies over 5 MB; base64 grows data by a third.
const MAX_RAW_IMAGE_BYTES = 3.5 * 1024 * 1024;
const QUERY_IMAGE_LONG_SIDE = 1024;

const $ = (id) => document.getElementById(id);
const form = $("search-form");
const queryInput = $("query");
const fileInput = $("file");
const results = $("results");
const statusLine = $("status");
const errorLine = $("error");
const template = $("tile-template");

let queryImage = null; // {base64, name, previewUrl} while searching by an image

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (!response.ok) {
    const message = payload && payload.message ? payload.message : response.statusText;
    throw new Error(`${message} (HTTP ${response.status})`);
  }
  return payload;
}

function showError(error) {
  errorLine.textContent = error ? String(error.message || error) : "";
  errorLine.hidden = !error;
}

function renderTiles(items, withScores) {
  results.replaceChildren();
  for (const item of items) {
    const tile = template.content.firstElementChild.cloneNode(true);
    tile.dataset.imageId = item.image_id;
    tile.dataset.key = item.key;
    const link = tile.querySelector("a.open");
    link.href = item.url || item.thumbnail_url || "#";
    const img = tile.querySelector("img");
    img.src = item.thumbnail_url || item.url || "";
    img.alt = item.key;
    const score = tile.querySelector(".score");
    if (withScores && typeof item.score === "number") {
      tile.dataset.score = String(item.score);
      score.textContent = item.score.toFixed(3);
    } else {
      score.remove();
    }
    const key = tile.querySelector(".key");
    key.textContent = item.key;
    key.title = item.key;
    tile.querySelector("button.more").addEventListener("click", () => moreLikeThis(item));
    results.appendChild(tile);
  }
}

async function search(body, label) {
  showError(null);
  statusLine.textContent = "Searching…";
  try {
    const payload = await api("POST", "search", { ...body, top_k: TOP_K });
    renderTiles(payload.results, true);
    statusLine.textContent =
      `${payload.count} result${payload.count === 1 ? "" : "s"} for ${label}` +
      ` in ${Math.round(payload.took_ms)} ms`;
  } catch (error) {
    statusLine.textContent = "";
    showError(error);
  }
}

function currentQuery() {
  const text = queryInput.value.trim();
  const body = {};
  const labels = [];
  if (text) {
    body.text = text;
    labels.push(`“${text}”`);
  }
  if (queryImage) {
    body.image = queryImage.base64;
    labels.push(queryImage.name);
  }
  return { body, label: labels.join(" + ") };
}

function moreLikeThis(item) {
  clearQueryImage();
  queryInput.value = "";
  search({ image_id: item.image_id }, `images like ${item.key}`);
}

async function browse() {
  showError(null);
  try {
    const page = await api("GET", "images?status=indexed&limit=48");
    renderTiles(page.items, false);
    statusLine.textContent = page.items.length
      ? "Indexed images. Search by text, or drop an image to search by it."
      : "Nothing indexed yet: drop images into the drop folder.";
  } catch (error) {
    showError(error);
  }
}

// --- Searching by an image -------------------------------------------------------

function readAsBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

async function shrink(file) {
  // Large photos are scaled down in the browser: the model sees at most
  // 2048 px anyway, and the request must stay under the API's body limit.
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, QUERY_IMAGE_LONG_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not encode"))),
      "image/jpeg", 0.9));
}

async function useImage(file) {
  if (!file) return;
  showError(null);
  let blob = file;
  if (file.size > MAX_RAW_IMAGE_BYTES) {
    try {
      blob = await shrink(file);
    } catch (_) {
      showError(new Error(`${file.name} is too large to search by (over 3.5 MB) and` +
        " this browser cannot scale it down; upload it and use “More like this”."));
      return;
    }
  }
  clearQueryImage();
  queryImage = {
    base64: await readAsBase64(blob),
    name: file.name || "dropped image",
    previewUrl: URL.createObjectURL(blob),
  };
  $("query-preview").src = queryImage.previewUrl;
  $("query-label").textContent = `Searching by ${queryImage.name}` +
    " (add text to combine both)";
  $("query-image").hidden = false;
  const { body, label } = currentQuery();
  await search(body, label);
}

function clearQueryImage() {
  if (queryImage) URL.revokeObjectURL(queryImage.previewUrl);
  queryImage = null;
  $("query-image").hidden = true;
  fileInput.value = "";
}

// --- Ingest counts and rejected files --------------------------------------------

async function refreshStats() {
  try {
    const stats = await api("GET", "local/stats");
    const queued = stats.queue.waiting + stats.queue.in_flight +
      (stats.dropbox ? stats.dropbox.pending : 0);
    $("stat-indexed").textContent = stats.images.indexed;
    $("stat-rejected").textContent = stats.images.rejected;
    $("stat-queued").textContent = queued;
    $("model").textContent = `${stats.model_id} · ${stats.dimension}-d`;
  } catch (_) {
    // Not local mode (or it stopped): the health route still has the count.
    try {
      const health = await api("GET", "health");
      $("stat-indexed").textContent = health.images;
      $("model").textContent = `${health.model_id} · ${health.dimension}-d`;
    } catch (error) {
      $("model").textContent = "offline";
    }
  }
}

async function toggleRejected() {
  const section = $("rejected");
  if (!section.hidden) {
    section.hidden = true;
    return;
  }
  try {
    const page = await api("GET", "images?status=rejected&limit=100");
    const list = $("rejected-list");
    list.replaceChildren();
    for (const item of page.items) {
      const entry = document.createElement("li");
      const key = document.createElement("code");
      key.textContent = item.key;
      entry.append(key, `: ${item.reason || "no reason given"}`);
      list.appendChild(entry);
    }
    if (!page.items.length) list.textContent = "No rejected files.";
    section.hidden = false;
  } catch (error) {
    showError(error);
  }
}

// --- Wiring ------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const { body, label } = currentQuery();
  if (!label) {
    browse();
    return;
  }
  search(body, label);
});

fileInput.addEventListener("change", () => useImage(fileInput.files[0]));
$("clear-image").addEventListener("click", () => {
  clearQueryImage();
  queryInput.focus();
});
$("stat-rejected-button").addEventListener("click", toggleRejected);

let dragDepth = 0;
document.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) document.body.classList.remove("dragging");
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  document.body.classList.remove("dragging");
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) useImage(file);
});

refreshStats();
setInterval(refreshStats, STATS_EVERY_MS);
browse();
