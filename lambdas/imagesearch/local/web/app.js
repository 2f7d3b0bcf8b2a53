// Image search page: plain JavaScript, no build step, no external resources.
// Talks to the search API with relative URLs, so it works wherever it is served.
// The query lives in the URL (?q, like, folder, type, min, id) so the back button
// and shared links restore a search; an image query (too big for a URL) lives in
// the history entry's state instead.
"use strict";

const PAGE_SIZE = 48; // browse page (the list API allows up to 100)
const SEARCH_STEP = 24; // search results per "show more"
const MAX_TOP_K = 100; // the search API's limit
const STATS_EVERY_MS = 2000;
// While ingesting, a browse list this long or shorter is re-read on every change;
// a longer one only picks up new images as the user scrolls (keys are ordered).
const LIVE_REFRESH_LIMIT = 480;
// The API refuses JSON bodies over 5 MB; base64 grows data by a third.
const MAX_RAW_IMAGE_BYTES = 3.5 * 1024 * 1024;
const QUERY_IMAGE_LONG_SIDE = 1024;
const SCROLL_AHEAD_PX = 300; // infinite scroll: load the next page this far ahead
// Originals the detail view shows as they are. The rest get the thumbnail as a
// preview: TIFF and HEIC do not show in most browsers, and a BMP is uncompressed
// (tens of MB for a photo).
const SHOWABLE_TYPES = new Set(["image/jpeg", "image/png", "image/webp", "image/gif"]);
const TYPE_NAMES = {
  "image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WebP", "image/gif": "GIF",
  "image/bmp": "BMP", "image/tiff": "TIFF", "image/heic": "HEIC", "image/heif": "HEIF",
};

const $ = (id) => document.getElementById(id);
const form = $("search-form");
const queryInput = $("query");
const fileInput = $("file");
const folderInput = $("filter-folder");
const typeSelect = $("filter-type");
const minInput = $("filter-min");
const results = $("results");
const statusLine = $("status");
const errorLine = $("error");
const moreButton = $("more");
const staleButton = $("stale");
const template = $("tile-template");
const detail = $("detail");

// --- State -------------------------------------------------------------------------

let uploadPrefix = ""; // from /local/resources; names are shown relative to it
let stats = null; // the last /local/stats (or /health) answer
let offline = false;
const query = { text: "", like: null, image: null, folder: "", type: "", min: null };
// What the results area shows: a browse list or search results.
const view = {
  mode: "browse",
  items: [],
  cursor: null,
  more: false,
  topK: SEARCH_STEP,
  label: "",
  tookMs: 0,
  generation: 0, // bumped on every new query: late answers to old ones are dropped
  loading: false,
  seenCount: null, // indexed count when the results were fetched
  notice: "", // said before the summary until the next query ("Deleted …")
};
const tiles = new Map(); // image_id -> tile element, reused across refreshes
const folders = new Set();
const queryImages = new Map(); // history state ref -> query image (blobs stay in memory)
let detailItem = null;
let detailPushed = false;

// --- API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (_) {
    // fetch only says "Failed to fetch": the server is not answering at all.
    throw new ApiError(
      `The image search server at ${location.host} is not answering: is local mode` +
        " (imagesearch local) still running? The page reconnects when it is back.", 0);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch (_) {
    payload = null;
  }
  if (!response.ok) {
    const message = payload && typeof payload.message === "string" && payload.message
      ? payload.message
      : `The server answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(`${message} (HTTP ${response.status})`, response.status);
  }
  return payload;
}

function showError(error) {
  errorLine.textContent = error ? String(error.message || error) : "";
  errorLine.hidden = !error;
  errorLine.dataset.offline = error && error.status === 0 ? "true" : "";
}

// --- Names -----------------------------------------------------------------------------

function relativeName(key) {
  return uploadPrefix && key.startsWith(uploadPrefix) ? key.slice(uploadPrefix.length) : key;
}

function baseName(key) {
  return key.slice(key.lastIndexOf("/") + 1);
}

function noteFolders(key) {
  const parts = relativeName(key).split("/").slice(0, -1);
  let added = false;
  for (let n = 1; n <= parts.length; n += 1) {
    const folder = parts.slice(0, n).join("/") + "/";
    if (!folders.has(folder)) {
      folders.add(folder);
      added = true;
    }
  }
  if (added) {
    $("folders").replaceChildren(
      ...[...folders].sort().map((folder) => Object.assign(document.createElement("option"),
        { value: folder })));
  }
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function humanSize(bytes) {
  if (typeof bytes !== "number") return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// --- Tiles -------------------------------------------------------------------------------

function tileFor(item) {
  let tile = tiles.get(item.image_id);
  if (!tile) {
    tile = template.content.firstElementChild.cloneNode(true);
    tile.dataset.imageId = item.image_id;
    tile.dataset.key = item.key;
    if (item.content_type) tile.dataset.contentType = item.content_type;
    const name = relativeName(item.key);
    const link = tile.querySelector("a.open");
    link.href = detailHref(item.image_id);
    link.setAttribute("aria-label", `Details of ${name}`);
    const img = tile.querySelector("img");
    img.alt = name;
    img.addEventListener("error", () => refreshThumbnail(img, item.image_id), { once: true });
    img.src = item.thumbnail_url || item.url || "";
    const key = tile.querySelector(".key");
    breakAfterSlashes(key, name);
    key.title = item.key;
    const more = tile.querySelector("button.more");
    more.setAttribute("aria-label", `More like ${name}`);
    tiles.set(item.image_id, tile);
    noteFolders(item.key);
  }
  tile.item = item;
  const score = tile.querySelector(".score");
  if (typeof item.score === "number") {
    tile.dataset.score = String(item.score);
    score.textContent = item.score.toFixed(3);
    score.hidden = false;
  } else {
    delete tile.dataset.score;
    score.textContent = "";
    score.hidden = true;
  }
  return tile;
}

function detailHref(imageId) {
  const params = new URLSearchParams(location.search);
  params.set("id", imageId);
  return `?${params}`;
}

// Long names wrap after a folder rather than inside a word (<wbr> adds no text).
function breakAfterSlashes(element, text) {
  const parts = text.split("/");
  element.replaceChildren();
  parts.forEach((part, index) => {
    if (index < parts.length - 1) {
      element.append(`${part}/`, document.createElement("wbr"));
    } else {
      element.append(part);
    }
  });
}

async function refreshThumbnail(img, imageId) {
  // Presigned URLs expire (15 min); a page left open asks for fresh ones.
  try {
    const record = await api("GET", `images/${encodeURIComponent(imageId)}`);
    if (record.thumbnail_url) img.src = record.thumbnail_url;
  } catch (_) {
    img.closest(".result")?.classList.add("broken");
  }
}

// Show `items` in order, reusing existing tiles (no flicker, no reloaded thumbnails).
function renderItems(items) {
  const wanted = new Set(items.map((item) => item.image_id));
  for (const [id, tile] of tiles) {
    if (!wanted.has(id)) {
      tile.remove();
      tiles.delete(id);
    }
  }
  let previous = null;
  for (const item of items) {
    const tile = tileFor(item);
    const expected = previous ? previous.nextElementSibling : results.firstElementChild;
    if (expected !== tile) results.insertBefore(tile, expected);
    previous = tile;
  }
}

function appendItems(items) {
  const fragment = document.createDocumentFragment();
  for (const item of items) {
    if (!tiles.has(item.image_id)) fragment.appendChild(tileFor(item));
  }
  results.appendChild(fragment);
}

function clearTiles() {
  results.replaceChildren();
  tiles.clear();
}

// --- The query, the URL and history ----------------------------------------------------

function filtersFromInputs() {
  query.folder = folderInput.value.trim();
  query.type = typeSelect.value;
  const min = minInput.value.trim() === "" ? null : Number(minInput.value);
  query.min = Number.isFinite(min) ? Math.max(-1, Math.min(1, min)) : null;
}

function queryToUrl() {
  const params = new URLSearchParams();
  if (query.text) params.set("q", query.text);
  if (query.like) params.set("like", query.like.image_id);
  if (query.folder) params.set("folder", query.folder);
  if (query.type) params.set("type", query.type);
  if (query.min !== null) params.set("min", String(query.min));
  if (detailItem) params.set("id", detailItem.image_id);
  const search = params.toString();
  return `${location.pathname}${search ? `?${search}` : ""}`;
}

function historyState() {
  return { imageRef: query.image ? query.image.ref : null };
}

function pushUrl() {
  const url = queryToUrl();
  if (url !== `${location.pathname}${location.search}` ||
      (history.state && history.state.imageRef) !== historyState().imageRef) {
    history.pushState(historyState(), "", url);
  }
}

function replaceUrl() {
  history.replaceState(historyState(), "", queryToUrl());
}

function queryFromUrl() {
  const params = new URLSearchParams(location.search);
  query.text = params.get("q") || "";
  const like = params.get("like");
  query.like = like ? { image_id: like, key: (query.like && query.like.image_id === like)
    ? query.like.key : null } : null;
  query.folder = params.get("folder") || "";
  query.type = params.get("type") || "";
  const min = params.get("min");
  query.min = min !== null && min !== "" && Number.isFinite(Number(min)) ? Number(min) : null;
  const ref = history.state && history.state.imageRef;
  query.image = ref && queryImages.has(ref) ? queryImages.get(ref) : null;
  queryInput.value = query.text;
  folderInput.value = query.folder;
  if (![...typeSelect.options].some((option) => option.value === query.type)) {
    typeSelect.appendChild(new Option(query.type, query.type));
  }
  typeSelect.value = query.type;
  minInput.value = query.min === null ? "" : String(query.min);
  showQueryImage();
  return params.get("id");
}

function hasQuery() {
  return Boolean(query.text || query.like || query.image);
}

function queryLabel() {
  const parts = [];
  if (query.like) parts.push(`images like ${query.like.key ? relativeName(query.like.key) : "the chosen image"}`);
  if (query.image) parts.push(query.image.name);
  if (query.text) parts.push(`“${query.text}”`);
  return parts.join(" + ");
}

function filterLabel() {
  const parts = [];
  if (query.folder) parts.push(`in ${query.folder}`);
  if (query.type) parts.push(query.type.split(",").map((t) => TYPE_NAMES[t] || t).join("/"));
  if (query.min !== null && view.mode === "search") parts.push(`score ≥ ${query.min}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

// --- Running a query ---------------------------------------------------------------------

function run(notice = "") {
  view.generation += 1;
  view.notice = notice;
  view.items = [];
  view.cursor = null;
  view.more = false;
  view.topK = SEARCH_STEP;
  staleButton.hidden = true;
  clearTiles();
  window.scrollTo(0, 0);
  showError(null);
  if (hasQuery()) {
    view.mode = "search";
    return searchStep();
  }
  view.mode = "browse";
  return browseStep();
}

function searchBody() {
  const body = { top_k: view.topK };
  if (query.like) {
    body.image_id = query.like.image_id;
  } else {
    if (query.text) body.text = query.text;
    if (query.image) body.image = query.image.base64;
  }
  if (query.folder) body.prefix = query.folder;
  if (query.type) body.content_type = query.type.split(",");
  if (query.min !== null) body.min_score = query.min;
  return body;
}

async function searchStep() {
  const generation = view.generation;
  view.loading = true;
  statusLine.textContent = "Searching…";
  moreButton.hidden = true;
  view.seenCount = stats ? stats.indexed : null;
  try {
    const payload = await api("POST", "search", searchBody());
    if (generation !== view.generation) return;
    if (query.like && !query.like.key) {
      // A shared "more like this" link: name the image once it is known.
      api("GET", `images/${encodeURIComponent(query.like.image_id)}`).then((record) => {
        if (query.like && query.like.image_id === record.image_id) {
          query.like.key = record.key;
          renderSummary();
        }
      }, () => {});
    }
    view.items = payload.results;
    view.more = payload.count >= view.topK && view.topK < MAX_TOP_K;
    view.tookMs = payload.took_ms;
    renderItems(view.items);
    renderSummary();
  } catch (error) {
    if (generation !== view.generation) return;
    statusLine.textContent = "";
    showError(error);
  } finally {
    if (generation === view.generation) view.loading = false;
  }
}

function browsePath(cursor, limit) {
  const params = new URLSearchParams({ status: "indexed", limit: String(limit) });
  if (query.folder) params.set("prefix", query.folder);
  if (cursor) params.set("cursor", cursor);
  return `images?${params}`;
}

function typeMatches(item) {
  return !query.type || query.type.split(",").includes(item.content_type);
}

async function browseStep() {
  // The list API has no type filter: filter here, and read on until a page adds tiles.
  const generation = view.generation;
  view.loading = true;
  view.seenCount = stats ? stats.indexed : null;
  moreButton.hidden = true;
  if (!view.items.length) statusLine.textContent = "Loading images…";
  try {
    let added = 0;
    for (let pages = 0; pages < 10 && added === 0; pages += 1) {
      const page = await api("GET", browsePath(view.cursor, PAGE_SIZE));
      if (generation !== view.generation) return;
      const shown = page.items.filter(typeMatches);
      view.items.push(...shown);
      view.cursor = page.cursor;
      view.more = Boolean(page.cursor);
      appendItems(shown);
      added += shown.length;
      if (!view.more) break;
    }
    renderSummary();
    catchUpHeader();
  } catch (error) {
    if (generation !== view.generation) return;
    showError(error);
  } finally {
    if (generation === view.generation) view.loading = false;
  }
}

// Re-read the browse list as far as it is shown, to show new and deleted images.
async function refreshBrowse() {
  if (view.loading) return;
  const generation = view.generation;
  const wanted = Math.max(view.items.length, PAGE_SIZE);
  view.loading = true;
  view.seenCount = stats ? stats.indexed : null;
  try {
    const items = [];
    let cursor = null;
    let scanned = 0;
    do {
      const page = await api("GET", browsePath(cursor, 100));
      if (generation !== view.generation) return;
      items.push(...page.items.filter(typeMatches));
      scanned += page.items.length;
      cursor = page.cursor;
    } while (cursor && items.length < wanted && scanned < LIVE_REFRESH_LIMIT * 2);
    view.items = items;
    view.cursor = cursor;
    view.more = Boolean(cursor);
    renderItems(items);
    renderSummary();
    catchUpHeader();
  } catch (error) {
    if (generation === view.generation) showError(error);
  } finally {
    if (generation === view.generation) view.loading = false;
  }
}

// The list was read after the last count: when it holds more than the header says,
// ask for the counts now rather than show "All 46" under "44 indexed" until the next poll.
function catchUpHeader() {
  if (stats && !query.folder && !query.type && view.items.length > stats.indexed) {
    setTimeout(refreshStats, 0);
  }
}

function loadMore() {
  if (view.loading || !view.more) return;
  if (view.mode === "browse") {
    browseStep();
  } else {
    view.topK = Math.min(MAX_TOP_K, view.topK + SEARCH_STEP);
    searchStep();
  }
}

function renderSummary() {
  const shown = view.items.length;
  let text;
  if (view.mode === "search") {
    text = `${plural(shown, "result")} for ${queryLabel()}${filterLabel()}` +
      ` in ${Math.round(view.tookMs)} ms`;
    if (!view.more && shown >= MAX_TOP_K) {
      text += `: the best ${MAX_TOP_K} (the API's limit); narrow it down with the filters`;
    }
  } else if (query.folder || query.type) {
    text = shown || view.more
      ? `${plural(shown, "image")}${filterLabel()}${view.more ? ", scroll for more" : ""}`
      : `No indexed images${filterLabel()}.`;
  } else if (shown) {
    // The total is the header's count, rendered together with it: never "All 46"
    // under "49 indexed" (the three new ones are on their way to the list).
    const total = stats ? stats.indexed : null;
    if (total === null) {
      text = `${plural(shown, "image")}${view.more ? ", scroll for more" : ""}`;
    } else if (!view.more && shown >= total) {
      text = `All ${plural(shown, "image")}`;
    } else {
      text = `${shown} of ${plural(Math.max(total, shown), "image")}`;
    }
  } else if (stats && stats.indexed) {
    text = "Loading…"; // indexed meanwhile: the next refresh shows them
  } else if (stats && stats.pending) {
    text = "Indexing has started: images appear here as they are indexed.";
  } else {
    text = "Nothing indexed yet: drop images into " +
      `${stats && stats.dropbox ? stats.dropbox : "the drop folder"}.`;
  }
  const line = view.notice ? `${view.notice} ${text}` : text;
  // Unchanged text is not rewritten: screen readers would announce it every poll.
  if (statusLine.textContent !== line) statusLine.textContent = line;
  moreButton.hidden = !view.more;
  moreButton.textContent = view.mode === "search" ? "Show more results" : "Show more images";
  // The observer only reports changes: if the button is still in sight, read on.
  if (view.more) requestAnimationFrame(() => {
    if (!moreButton.hidden && moreButton.getBoundingClientRect().top < innerHeight + SCROLL_AHEAD_PX) {
      loadMore();
    }
  });
}

// --- Search by image -------------------------------------------------------------------

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

async function useImage(file, fallbackName) {
  if (!file) return;
  showError(null);
  let blob = file;
  if (file.size > MAX_RAW_IMAGE_BYTES) {
    try {
      blob = await shrink(file);
    } catch (_) {
      showError(new Error(`${file.name || fallbackName} is too large to search by (over 3.5 MB)` +
        " and this browser cannot scale it down: upload it and use “More like this”."));
      return;
    }
  }
  const ref = `image-${Date.now()}-${queryImages.size}`;
  const image = {
    ref,
    base64: await readAsBase64(blob),
    name: file.name || fallbackName,
    previewUrl: URL.createObjectURL(blob),
  };
  queryImages.set(ref, image);
  // A new query image starts a new search: the previous words and "more like this"
  // would otherwise combine with it unseen. Words typed now combine, visibly.
  query.image = image;
  query.text = "";
  query.like = null;
  queryInput.value = "";
  fileInput.value = "";
  closeDetail(false);
  showQueryImage();
  pushUrl();
  await run();
}

function showQueryImage() {
  const section = $("query-image");
  if (!query.image) {
    section.hidden = true;
    queryInput.placeholder = "Describe it, e.g. red suede sneaker";
    return;
  }
  $("query-preview").src = query.image.previewUrl;
  $("query-label").textContent = query.text
    ? `Searching by ${query.image.name} combined with “${query.text}”`
    : `Searching by ${query.image.name}; words you add are combined with it`;
  queryInput.placeholder = `Add words to combine with ${query.image.name}`;
  section.hidden = false;
}

// --- Ingest counts, progress, rejected and failed files ---------------------------------

let batchSize = null; // most files waiting at once in the current ingest batch

async function refreshStats() {
  let next;
  try {
    const local = await api("GET", "local/stats");
    const counts = local.images || {};
    const pending = (local.queue ? local.queue.waiting + local.queue.in_flight : 0) +
      (local.dropbox ? local.dropbox.pending : 0);
    next = {
      indexed: counts.indexed || 0,
      rejected: counts.rejected || 0,
      failed: typeof counts.failed === "number" ? counts.failed : null,
      pending,
      dropbox: local.dropbox ? local.dropbox.path : null,
      refusals: local.dropbox && Array.isArray(local.dropbox.refusals) ? local.dropbox.refusals : [],
      refused: local.dropbox && typeof local.dropbox.refused === "number" ? local.dropbox.refused : 0,
      model: `${local.model_id} · ${local.dimension}-d`,
      // The start-up check's verdict (re-checked every 20 s while it fails).
      modelProblem: local.model && local.model.ok === false
        ? { cause: `${local.model.what}: ${local.model.detail}`, fix: local.model.fix } : null,
    };
    // A model switch under way (another model on this state folder): say so by the model.
    if (local.switch && local.switch.phase !== "serving") next.model = `${next.model} · ${local.switch.text}`;
  } catch (error) {
    if (error.status === 0) return goOffline(error);
    try {
      // Not local mode: the health route still has the count.
      const health = await api("GET", "health");
      next = { indexed: health.images, rejected: null, failed: null, pending: 0, dropbox: null,
        model: `${health.model_id} · ${health.dimension}-d`, refusals: [], refused: 0,
        modelProblem: health.model && health.model.state === "unusable"
          ? { cause: health.model.cause, fix: health.model.fix } : null };
    } catch (healthError) {
      return goOffline(healthError);
    }
  }
  stats = next;
  const reconnected = offline;
  if (offline) {
    offline = false;
    document.body.classList.remove("offline");
    if (errorLine.dataset.offline) showError(null);
  }
  renderStats();
  if (reconnected) {
    if (!uploadPrefix) await loadResources();
    run(); // whatever was asked while the server was away
  } else if (view.generation && !view.loading && view.seenCount !== stats.indexed) {
    onCountsChanged();
  }
}

function goOffline(error) {
  offline = true;
  document.body.classList.add("offline");
  $("model").textContent = "server not answering";
  $("progress").hidden = true;
  showError(error);
}

function renderStats() {
  $("stat-indexed").textContent = stats.indexed;
  $("stat-rejected").textContent = stats.rejected === null ? "–" : stats.rejected;
  $("stat-queued").textContent = stats.pending;
  $("stat-failed").textContent = stats.failed || 0;
  $("stat-failed-button").hidden = !stats.failed;
  $("stat-refused").textContent = stats.refused;
  $("stat-refused-button").hidden = !stats.refused;
  $("model").textContent = stats.model;
  renderModelProblem(stats.modelProblem);
  if (view.mode === "browse" && !view.loading) renderSummary(); // same numbers as the header
  const progress = $("progress");
  if (!stats.pending) {
    batchSize = null;
    progress.hidden = true;
    return;
  }
  // Measured by the work left, so removals (which lower the counts) move it too.
  batchSize = Math.max(batchSize || 0, stats.pending);
  const done = batchSize - stats.pending;
  $("progress-bar").max = batchSize;
  $("progress-bar").value = done;
  $("progress-label").textContent =
    `Indexing: ${done} of ${batchSize} files processed, ${stats.pending} to go`;
  progress.hidden = false;
}

function renderModelProblem(problem) {
  $("model-problem").hidden = !problem;
  if (!problem) return;
  $("model-problem-cause").textContent = problem.cause || "";
  $("model-problem-fix").textContent = problem.fix || "";
  $("model-problem-fix-line").hidden = !problem.fix;
}

// The results were fetched when `view.seenCount` images were indexed; now there are more
// (or fewer). A browse list follows by itself; search results offer an update instead
// of reshuffling under the user's pointer (and of paying for another embedding).
function onCountsChanged() {
  if (view.mode === "browse") {
    if (view.items.length <= LIVE_REFRESH_LIMIT || !view.more) refreshBrowse();
    else renderSummary();
  } else if (view.seenCount === null) {
    // A search made before the page's first count: this count is what it saw.
    view.seenCount = stats.indexed;
  } else {
    const change = stats.indexed - view.seenCount;
    staleButton.textContent = change > 0
      ? `${plural(change, "new image")} indexed since this search: update the results`
      : "Images were removed since this search: update the results";
    staleButton.hidden = false;
  }
}

let problemsShown = null;

function refusalItems() {
  // Names the bucket refused may hold control characters: show them escaped.
  return (stats ? stats.refusals : []).map((refusal) => ({
    key: JSON.stringify(String(refusal.path)).slice(1, -1),
    reason: refusal.reason,
    local: true,
  }));
}

async function toggleProblems(status) {
  const section = $("problems");
  const buttons = {
    rejected: $("stat-rejected-button"),
    failed: $("stat-failed-button"),
    refused: $("stat-refused-button"),
  };
  if (!section.hidden && problemsShown === status) {
    section.hidden = true;
    problemsShown = null;
    buttons[status].setAttribute("aria-expanded", "false");
    return;
  }
  try {
    // Refusals are the drop folder's (files never uploaded); the rest are the catalog's.
    const page = status === "refused"
      ? { items: refusalItems(), cursor: stats && stats.refused > stats.refusals.length ? "more" : null }
      : await api("GET", `images?status=${status}&limit=100`);
    const list = $("problems-list");
    list.replaceChildren();
    $("problems-title").textContent = {
      failed: "Failed files (retried when the cause is fixed)",
      rejected: "Rejected files",
      refused: "Files in the drop folder that were not uploaded",
    }[status];
    for (const item of page.items) {
      const entry = document.createElement("li");
      entry.dataset.key = item.key;
      const key = document.createElement("code");
      key.textContent = item.local ? item.key : relativeName(item.key);
      key.title = item.key;
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = item.reason || "no reason given";
      entry.append(key, ": ", reason);
      list.appendChild(entry);
    }
    if (!page.items.length) list.textContent = `No ${status} files.`;
    if (page.cursor) {
      const note = document.createElement("li");
      note.textContent = `… and more (the first ${page.items.length} are shown)`;
      list.appendChild(note);
    }
    section.hidden = false;
    problemsShown = status;
    for (const [name, button] of Object.entries(buttons)) {
      button.setAttribute("aria-expanded", String(name === status));
    }
  } catch (error) {
    showError(error);
  }
}

// --- Detail view -----------------------------------------------------------------------------

function localTime(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toLocaleString() : iso;
}

function metaRow(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  const term = document.createElement("dt");
  term.textContent = name;
  const data = document.createElement("dd");
  data.textContent = value;
  data.dataset.field = name.toLowerCase();
  list.append(term, data);
}

function renderDetail(item) {
  const name = relativeName(item.key);
  $("detail-title").textContent = name;
  $("detail-title").title = item.key;
  detail.dataset.imageId = item.image_id;
  detail.dataset.status = item.status || "indexed";
  const img = $("detail-image");
  const note = $("detail-note");
  const type = item.content_type || "";
  img.alt = name;
  img.onerror = null;
  note.textContent = "";
  if (SHOWABLE_TYPES.has(type) && item.url) {
    img.onerror = () => {
      img.onerror = null;
      if (item.thumbnail_url) {
        img.src = item.thumbnail_url;
        note.textContent = "Preview: this browser cannot show the original; Download keeps it.";
      }
    };
    img.src = item.url;
    img.dataset.source = "original";
  } else if (item.thumbnail_url) {
    img.src = item.thumbnail_url;
    img.dataset.source = "thumbnail";
    note.textContent = `Preview: browsers cannot show ${TYPE_NAMES[type] || type || "this format"}` +
      " originals; Download keeps the original.";
  } else {
    img.removeAttribute("src");
    img.dataset.source = "none";
    note.textContent = item.key ? "No preview: this file was not indexed." : "Loading…";
  }
  const meta = $("detail-meta");
  meta.replaceChildren();
  if (typeof item.score === "number") metaRow(meta, "Score", item.score.toFixed(3));
  metaRow(meta, "Status", item.status);
  metaRow(meta, "Reason", item.reason);
  metaRow(meta, "Key", item.key);
  metaRow(meta, "Type", TYPE_NAMES[type] ? `${TYPE_NAMES[type]} (${type})` : type);
  if (item.width && item.height) metaRow(meta, "Dimensions", `${item.width} × ${item.height}`);
  metaRow(meta, "Size", humanSize(item.size));
  metaRow(meta, "Uploaded", localTime(item.uploaded_at));
  metaRow(meta, "Indexed", localTime(item.indexed_at));
  metaRow(meta, "Caption", item.caption);
  metaRow(meta, "Model", item.model_id && `${item.model_id}${item.dimension ? ` · ${item.dimension}-d` : ""}`);
  const download = $("detail-download");
  download.href = item.url || "#";
  download.download = baseName(item.key);
  $("detail-more").disabled = (item.status || "indexed") !== "indexed";
  $("detail-error").hidden = true;
}

async function openDetail(item, { push = true } = {}) {
  detailItem = item;
  renderDetail(item);
  if (!detail.open) detail.showModal();
  if (push) {
    pushUrl();
    detailPushed = true;
  }
  try {
    // Search results lack status and dates; the record has them (and fresh URLs).
    const record = await api("GET", `images/${encodeURIComponent(item.image_id)}`);
    if (detailItem && detailItem.image_id === item.image_id) {
      detailItem = { ...record, score: item.score };
      renderDetail(detailItem);
    }
  } catch (error) {
    if (detailItem && detailItem.image_id === item.image_id) {
      $("detail-error").textContent = error.message;
      $("detail-error").hidden = false;
    }
  }
}

function closeDetail(viaHistory = true) {
  if (!detailItem) return;
  detailItem = null;
  if (detail.open) detail.close();
  if (viaHistory && detailPushed) {
    detailPushed = false;
    history.back();
  } else {
    detailPushed = false;
    replaceUrl();
  }
}

async function downloadOriginal(event) {
  // A cross-origin link ignores `download` (a JPEG would open instead of saving):
  // fetch the bytes and save them; if the bucket does not allow that, open the original.
  event.preventDefault();
  const link = event.currentTarget;
  try {
    const response = await fetch(link.href);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const save = Object.assign(document.createElement("a"), { href: url, download: link.download });
    document.body.appendChild(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (_) {
    window.open(link.href, "_blank", "noopener");
  }
}

async function deleteShown() {
  const item = detailItem;
  if (!item) return;
  const name = relativeName(item.key);
  if (!window.confirm(`Delete ${name}? The original is removed from the bucket and the index.`)) {
    return;
  }
  try {
    await api("DELETE", `images/${encodeURIComponent(item.image_id)}`);
  } catch (error) {
    $("detail-error").textContent = error.message;
    $("detail-error").hidden = false;
    return;
  }
  closeDetail();
  const tile = tiles.get(item.image_id);
  if (tile) {
    tile.remove();
    tiles.delete(item.image_id);
  }
  view.items = view.items.filter((entry) => entry.image_id !== item.image_id);
  view.notice = `Deleted ${name}.`;
  renderSummary();
}

function moreLikeThis(item) {
  query.like = { image_id: item.image_id, key: item.key };
  query.text = "";
  query.image = null;
  queryInput.value = "";
  showQueryImage();
  closeDetail(false);
  pushUrl();
  run();
}

// --- Wiring ------------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  query.text = queryInput.value.trim();
  if (query.text) query.like = null; // words and "more like this" do not mix
  filtersFromInputs();
  showQueryImage();
  pushUrl();
  run();
});

for (const input of [folderInput, typeSelect, minInput]) {
  input.addEventListener("change", () => {
    filtersFromInputs();
    pushUrl();
    run();
  });
}

results.addEventListener("click", (event) => {
  const tile = event.target.closest(".result");
  if (!tile || !tile.item) return;
  if (event.target.closest("button.more")) {
    moreLikeThis(tile.item);
  } else if (event.target.closest("a.open") && !event.ctrlKey && !event.metaKey &&
             !event.shiftKey && event.button === 0) {
    event.preventDefault();
    openDetail(tile.item);
  }
});

moreButton.addEventListener("click", loadMore);
if ("IntersectionObserver" in window) {
  // Infinite scroll: the "Show more" button loads the next page when it comes into view.
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: `${SCROLL_AHEAD_PX}px` }).observe(moreButton);
}
staleButton.addEventListener("click", () => {
  view.topK = Math.max(view.topK, SEARCH_STEP);
  staleButton.hidden = true;
  view.generation += 1;
  searchStep();
});

fileInput.addEventListener("change", () => useImage(fileInput.files[0], "chosen image"));
$("clear-image").addEventListener("click", () => {
  query.image = null;
  showQueryImage();
  pushUrl();
  run();
  queryInput.focus();
});
$("stat-rejected-button").addEventListener("click", () => toggleProblems("rejected"));
$("stat-failed-button").addEventListener("click", () => toggleProblems("failed"));
$("stat-refused-button").addEventListener("click", () => toggleProblems("refused"));
$("home").addEventListener("click", (event) => {
  event.preventDefault();
  clearQuery();
});

$("detail-close").addEventListener("click", () => closeDetail());
detail.addEventListener("close", () => closeDetail()); // Esc, or the form's dialog method
detail.addEventListener("click", (event) => {
  if (event.target === detail) closeDetail(); // a click on the backdrop
});
$("detail-download").addEventListener("click", downloadOriginal);
$("detail-delete").addEventListener("click", deleteShown);
$("detail-more").addEventListener("click", () => detailItem && moreLikeThis(detailItem));

function clearQuery() {
  query.text = "";
  query.like = null;
  query.image = null;
  queryInput.value = "";
  showQueryImage();
  pushUrl();
  run();
}

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if (detail.open || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "/" && !typing(event.target)) {
    event.preventDefault();
    queryInput.focus();
    queryInput.select();
  } else if (event.key === "Escape" && (hasQuery() || queryInput.value)) {
    event.preventDefault();
    clearQuery();
    queryInput.focus();
  }
});

document.addEventListener("paste", (event) => {
  const items = event.clipboardData ? [...event.clipboardData.items] : [];
  const entry = items.find((item) => item.kind === "file" && item.type.startsWith("image/"));
  if (!entry) return; // text pastes into the search box as usual
  event.preventDefault();
  useImage(entry.getAsFile(), "pasted image");
});

window.addEventListener("popstate", () => {
  const before = queryKey();
  const id = queryFromUrl();
  detailPushed = false;
  if (queryKey() !== before) run(); // not when only the detail view opened or closed
  syncDetail(id);
});

function queryKey() {
  return JSON.stringify([query.text, query.like && query.like.image_id,
    query.image && query.image.ref, query.folder, query.type, query.min]);
}

function syncDetail(id) {
  if (id && (!detailItem || detailItem.image_id !== id)) {
    openDetail({ image_id: id, key: "" }, { push: false });
  } else if (!id && detailItem) {
    detailItem = null;
    if (detail.open) detail.close();
  }
}

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
  if (file) useImage(file, "dropped image");
});

async function loadResources() {
  try {
    const resources = await api("GET", "local/resources");
    uploadPrefix = resources.upload_prefix || "";
  } catch (_) {
    uploadPrefix = ""; // not local mode (or not answering yet): full keys
  }
}

async function start() {
  await loadResources();
  const id = queryFromUrl();
  syncDetail(id); // a shared link to one image
  replaceUrl();
  await refreshStats();
  // A query asked while the page was starting has run already: not again (it would
  // clear its results or error and ask the server twice). A deletion made meanwhile
  // (a shared link's detail view) is still said.
  if (!offline && !view.generation) run(view.notice);
  setInterval(() => {
    if (!document.hidden) refreshStats();
  }, STATS_EVERY_MS);
}

start();
