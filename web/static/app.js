// The Spyglass search page: plain JS over the JSON API. The URL carries the whole query (text,
// "more like this", a region, more/less like a result (👍/👎), "leave out", filters, order, closeness), so Back and
// bookmarks work; only a dropped or pasted image cannot travel in it.
(() => {
  "use strict";
  // 40 a page: folding duplicates scores twice that from the first hit, under the API's cheap bound (100).
  const PAGE = 40;
  const $ = (id) => document.getElementById(id);
  const form = $("search-form"), input = $("q"), fileInput = $("file"), results = $("results");
  const message = $("message"), more = $("more"), viewer = $("viewer"), overlay = $("drop-overlay");
  const queryImage = $("query-image"), filter = $("filter"), chips = $("chips"), filters = $("filters");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const defaultCutoff = Number(document.querySelector('meta[name="page-cutoff"]').content) || 0;
  // What a query string may hold, and what each becomes as a chip.
  const FILTERS = ["kind", "taken_from", "taken_to", "camera", "place", "near", "folder"];
  const KINDS = { image: "photos", video: "videos", audio: "recordings" };
  let current = null;      // {params | file} of the search on screen
  let hits = [];           // the results on screen, in order, for the viewer's previous/next
  let nextOffset = null, loading = false, viewing = -1;

  function say(text, isError = false) {
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  const params = () => new URL(location.href).searchParams;

  async function request(query, offset) {
    let response;
    if (query.file) {
      const body = new FormData();
      body.append("image", query.file);
      body.append("k", PAGE);
      body.append("offset", offset);
      body.append("collapse", "true");
      // The page session's CSRF token (empty without accounts): every POST carries it.
      response = await fetch("/api/v1/search", { method: "POST", body, headers: { "X-CSRF-Token": csrf } });
    } else {
      const asked = new URLSearchParams(query.search || query.params);
      asked.set("k", PAGE);
      asked.set("offset", offset);
      asked.set("collapse", "true");
      response = await fetch("/api/v1/search?" + asked);
    }
    if (response.status === 401) {  // the session ended (logged out elsewhere, expired): log in again
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    }
    const data = await response.json().catch(() => ({ message: `the server answered ${response.status}` }));
    if (!response.ok) throw new Error(data.message || data.error);
    return data;
  }

  async function run(query, offset = 0) {
    if (loading) return;
    loading = true;
    $("weaker").hidden = true;
    if (offset === 0) { results.replaceChildren(); hits = []; current = query; say("Searching…"); }
    try {
      const data = await request(query, offset);
      if (offset === 0 && data.understood && data.understood.chips.length && !query.file) adopt(data.understood);
      data.results.forEach(addResult);
      nextOffset = data.next_offset;
      more.hidden = nextOffset === null;
      tell(data);
    } catch (error) {
      more.hidden = true;
      if (query.file) queryImage.hidden = true;
      say(query.file ? `That image could not be used: ${error.message}` : error.message, true);
    } finally {
      loading = false;
    }
  }

  // "12 photos, 3 videos", and a way to lower the bar when the cutoff left nothing or little.
  function tell(data) {
    if (!hits.length) {
      const cut = current.params && Number(current.params.cutoff) > 0;
      say(cut ? "No close matches." : "No results. Try other words, or remove a filter.");
      $("weaker").hidden = !cut;
      return;
    }
    const counts = {};
    for (const hit of hits) counts[hit.kind] = (counts[hit.kind] || 0) + 1 + (hit.duplicates || []).length;
    const parts = Object.entries(counts).map(([kind, n]) => `${n} ${n === 1 ? (KINDS[kind] || kind).replace(/s$/, "") : (KINDS[kind] || kind)}`);
    const folded = hits.reduce((n, hit) => n + (hit.duplicates || []).length, 0);
    say(parts.join(", ") + (folded ? ` (${folded} near-duplicate${folded === 1 ? "" : "s"} folded)` : "")
        + (nextOffset !== null ? ", more below" : ""));
    $("weaker").hidden = !(current.params && Number(current.params.cutoff) > 0);
  }

  // The server read dates and places in the text: they become the URL's filters (and chips), and
  // the text what is left; interpret=false so that removing a chip does not bring it back.
  function adopt(understood) {
    const next = params();
    next.set("q", understood.text);
    for (const chip of understood.chips) {
      if (chip.kind === "date") { next.set("taken_from", chip.taken_from.slice(0, 10)); next.set("taken_to", chip.taken_to.slice(0, 10)); }
      if (chip.kind === "place") next.set("place", chip.place);
    }
    next.set("interpret", "false");
    history.replaceState(null, "", "?" + next);
    input.value = understood.text;
    showChips(next);
  }

  function addResult(hit) {
    const index = hits.push(hit) - 1;
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = hit.file_url;
    link.className = "result";
    link.dataset.id = hit.id;
    link.title = `${hit.path}\nscore ${hit.score.toFixed(3)}`;
    const img = hit.kind === "video" ? posterOf(hit) : document.createElement("img");
    if (hit.kind !== "video") {
      img.src = hit.thumbnail_url;
      img.loading = "lazy";
      img.alt = hit.name;
    }
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.innerHTML = '<span class="name"></span><span class="score"></span>';
    caption.firstChild.textContent = hit.name;
    caption.lastChild.textContent = hit.score.toFixed(3);
    link.append(img, caption);
    if (hit.kind === "video" && hit.segments) link.append(badge(hit.segments[0]));
    if (hit.duplicates && hit.duplicates.length) {
      const copies = document.createElement("span");
      copies.className = "copies";
      copies.textContent = `+${hit.duplicates.length}`;
      copies.title = `${hit.duplicates.length} near-identical item${hit.duplicates.length === 1 ? "" : "s"} folded into this one`;
      link.append(copies);
    }
    link.addEventListener("click", (event) => { event.preventDefault(); open(index); });
    li.append(link, votes(hit));
    const extra = document.createElement("div");
    extra.className = "extra";
    if (hit.kind === "video" && hit.segments && hit.segments.length > 1) extra.append(momentButtons(index));
    if (hit.matches && hit.matches.length) extra.append(matchLine(index));
    if (hit.labels && hit.labels.length) extra.append(labelLinks(hit.labels));
    li.append(extra);
    results.append(li);
  }

  // + (👍) adds the item to the query, pulling towards it; − (👎) pushes away from it.
  function votes(hit) {
    const box = document.createElement("div");
    box.className = "votes";
    // Plain signs, not emoji: they render in every font (a server's headless browser has no emoji font).
    for (const [sign, label, key] of [["+", "more like this one", "positive"], ["−", "less like this one", "negative"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = key;
      button.textContent = sign;
      button.title = `Add to the search: ${label}`;
      button.setAttribute("aria-label", `${label}: ${hit.name}`);
      button.addEventListener("click", () => refine(key, hit.id));
      box.append(button);
    }
    return box;
  }

  function refine(key, id) {
    const next = params();
    const ids = new Set((next.get(key) || "").split(",").filter(Boolean));
    ids.add(String(id));
    next.set(key, [...ids].join(","));
    const other = key === "positive" ? "negative" : "positive";  // one item cannot pull both ways
    const rest = (next.get(other) || "").split(",").filter((x) => x && x !== String(id));
    rest.length ? next.set(other, rest.join(",")) : next.delete(other);
    if (!next.get("q") && !next.get("like") && current && current.file) {
      say("A dropped image cannot be refined: search by text or “more like this” first.", true);
      return;
    }
    go(next);
  }

  // A video in the grid: its best frame as the poster, and nothing fetched of the video itself
  // (preload none), so a page of video results loads like a page of images.
  function posterOf(hit) {
    const video = document.createElement("video");
    video.preload = "none";
    video.muted = true;
    video.poster = hit.thumbnail_url;
    video.setAttribute("aria-label", hit.name);
    return video;
  }

  function clock(seconds) {
    const whole = Math.round(seconds), h = Math.floor(whole / 3600), m = Math.floor(whole / 60) % 60, s = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
  }

  function span(segment) { return `${clock(segment.start_s)}–${clock(segment.end_s)}`; }

  function badge(segment) {
    const mark = document.createElement("span");
    mark.className = "moment";
    mark.textContent = span(segment);
    return mark;
  }

  // Why it matched: the best matching text. The server escaped the snippet and added only <mark>.
  function matchLine(index) {
    const hit = hits[index], match = hit.matches[0];
    const line = document.createElement("p");
    line.className = "match";
    line.innerHTML = match.snippet;
    line.title = `${match.field}: ${line.textContent}`;
    if (match.start_s !== undefined && hit.kind === "video") {
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = `▶ ${clock(match.start_s)}`;
      play.title = `play from ${clock(match.start_s)}`;
      play.addEventListener("click", () => open(index, { start_s: match.start_s, end_s: match.end_s, best_s: match.start_s }));
      line.prepend(play, " ");
    }
    return line;
  }

  // A video's other matching moments; each opens the player there.
  function momentButtons(index) {
    const box = document.createElement("div");
    box.className = "moments";
    for (const segment of hits[index].segments) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = span(segment);
      button.title = `score ${segment.score.toFixed(3)}`;
      button.addEventListener("click", () => open(index, segment));
      box.append(button);
    }
    return box;
  }

  // The item's best zero-shot labels; each narrows the search on screen to items labelled so.
  function labelLinks(labels) {
    const box = document.createElement("div");
    box.className = "labels";
    for (const { label, score } of labels) {
      const chip = document.createElement("a");
      const next = params();
      next.set("label", label);
      if (!next.get("q") && !next.get("like")) next.set("q", label);
      chip.href = "?" + next;
      chip.textContent = label;
      chip.title = `label ${label} (score ${score.toFixed(3)}): show only items labelled so`;
      chip.addEventListener("click", (event) => { event.preventDefault(); go(next); });
      box.append(chip);
    }
    return box;
  }

  // The viewer: a preview-size image (never the multi-MB original), previous/next, arrow keys.
  function open(index, segment) {
    const hit = hits[index];
    if (!hit) return;
    viewing = index;
    stopCrop();
    const image = $("viewer-image"), video = $("viewer-video");
    const isVideo = hit.kind === "video" || hit.kind === "audio";  // the player plays audio files too
    $("viewer-frame").hidden = isVideo;
    video.hidden = !isVideo;
    $("crop-start").hidden = hit.kind !== "image";
    let where = "";
    if (isVideo) {
      image.removeAttribute("src");
      const moment = segment || (hit.segments && hit.segments[0]);
      const base = hit.file_url.split("#")[0];
      // The media fragment starts the player at the moment; play() from there, muted.
      video.src = moment ? `${base}#t=${moment.start_s},${moment.end_s}` : base;
      video.poster = hit.thumbnail_url;
      video.play().catch(() => {});
      where = moment ? ` · ${span(moment)}` : "";
    } else {
      video.pause();
      video.removeAttribute("src");
      image.src = preview(hit);
      image.alt = hit.name;
    }
    const size = hit.kind === "audio" ? `${clock(hit.duration_s || 0)}` : `${hit.width}×${hit.height}`;
    const facts = [hit.taken_source && hit.taken_source !== "mtime" ? hit.taken_at.replace("T", " ").slice(0, 16) : "",
                   hit.camera || "", hit.place || ""].filter(Boolean);
    $("viewer-caption").textContent = [`${hit.path}${where}`, size, ...facts, `score ${hit.score.toFixed(3)}`].join(" · ");
    $("viewer-open").href = hit.file_url;
    $("viewer-prev").disabled = index === 0;
    $("viewer-next").disabled = index === hits.length - 1;
    if (!viewer.open) viewer.showModal();
    $("more-like-this").focus();
    const after = hits[index + 1];  // the next one is likely looked at next: fetch it now
    if (after && after.kind === "image") new Image().src = preview(after);
  }

  function preview(hit) {
    return hit.thumbnail_url.includes("/api/v1/items/") ? hit.thumbnail_url + "?size=preview" : hit.thumbnail_url;
  }

  // Drawing a region on the viewer's image: its box, as shares of the image, becomes `crop`.
  let cropping = false, anchor = null, box = null;
  function stopCrop() {
    cropping = false;
    anchor = box = null;
    $("crop-box").hidden = true;
    $("crop-search").hidden = true;
    $("viewer-frame").classList.remove("cropping");
  }
  function startCrop() {
    cropping = true;
    $("viewer-frame").classList.add("cropping");
    say("Draw a box around what you want to find.");
  }
  function pointAt(event) {
    const rect = $("viewer-image").getBoundingClientRect();
    return { x: Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
             y: Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height)) };
  }
  function drawBox(a, b) {
    box = { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.abs(a.x - b.x), h: Math.abs(a.y - b.y) };
    const image = $("viewer-image"), frame = $("viewer-frame").getBoundingClientRect(), rect = image.getBoundingClientRect();
    const shown = $("crop-box");
    shown.style.left = `${rect.left - frame.left + box.x * rect.width}px`;
    shown.style.top = `${rect.top - frame.top + box.y * rect.height}px`;
    shown.style.width = `${box.w * rect.width}px`;
    shown.style.height = `${box.h * rect.height}px`;
    shown.hidden = false;
  }
  $("viewer-image").addEventListener("pointerdown", (event) => {
    if (!cropping) return;
    event.preventDefault();
    anchor = pointAt(event);
    $("viewer-image").setPointerCapture(event.pointerId);
  });
  $("viewer-image").addEventListener("pointermove", (event) => { if (cropping && anchor) drawBox(anchor, pointAt(event)); });
  $("viewer-image").addEventListener("pointerup", (event) => {
    if (!cropping || !anchor) return;
    drawBox(anchor, pointAt(event));
    anchor = null;
    $("crop-search").hidden = !(box && box.w >= 0.02 && box.h >= 0.02);
  });
  $("crop-start").addEventListener("click", startCrop);
  $("crop-search").addEventListener("click", () => {
    const hit = hits[viewing];
    const crop = [box.x, box.y, Math.min(box.w, 1 - box.x), Math.min(box.h, 1 - box.y)].map((v) => v.toFixed(4)).join(",");
    viewer.close();
    go(keepFilters({ like: hit.id, crop }));
  });

  // The chips: every filter and refinement in the URL, each with a button that removes it.
  function showChips(url) {
    chips.replaceChildren();
    const add = (text, drop) => {
      const li = document.createElement("li");
      li.className = "chip";
      const words = document.createElement("span");
      words.textContent = text;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${text}`);
      remove.addEventListener("click", () => { const next = params(); drop(next); go(next); });
      li.append(words, remove);
      chips.append(li);
    };
    const from = url.get("taken_from"), to = url.get("taken_to");
    if (from || to) add(from && to ? (from === to ? `taken ${from}` : `taken ${from} – ${to}`) : from ? `taken from ${from}` : `taken until ${to}`,
                        (n) => { n.delete("taken_from"); n.delete("taken_to"); });
    if (url.get("kind")) add(`only ${KINDS[url.get("kind")] || url.get("kind")}`, (n) => n.delete("kind"));
    for (const [key, words] of [["camera", "camera"], ["place", "in"], ["folder", "folder"], ["near", "near"]]) {
      if (url.get(key)) add(`${words} ${url.get(key)}`, (n) => n.delete(key));
    }
    if (url.get("crop")) add(`a region of #${url.get("like")}`, (n) => n.delete("crop"));
    for (const [key, words] of [["positive", "more like"], ["negative", "less like"]]) {
      for (const id of (url.get(key) || "").split(",").filter(Boolean)) {
        add(`${words} #${id}`, (n) => {
          const rest = (n.get(key) || "").split(",").filter((x) => x && x !== id);
          rest.length ? n.set(key, rest.join(",")) : n.delete(key);
        });
      }
    }
    for (const text of url.getAll("without")) {
      add(`without ${text}`, (n) => { const rest = n.getAll("without").filter((t) => t !== text); n.delete("without"); rest.forEach((t) => n.append("without", t)); });
    }
    if (url.get("sort") === "date") add("newest first", (n) => n.delete("sort"));
    chips.hidden = !chips.children.length;
  }

  function showFilters(url) {
    $("f-kind").value = url.get("kind") || "";
    $("f-from").value = url.get("taken_from") || "";
    $("f-to").value = url.get("taken_to") || "";
    $("f-camera").value = url.get("camera") || "";
    $("f-place").value = url.get("place") || "";
    $("f-folder").value = url.get("folder") || "";
    $("f-without").value = "";
    $("f-sort").value = url.get("sort") || "relevance";
    const cutoff = url.has("cutoff") ? Number(url.get("cutoff")) : defaultCutoff;
    $("f-cutoff").value = Math.round(cutoff * 100);
    $("f-cutoff-shown").textContent = cutoff ? `${Math.round(cutoff * 100)}% of the best` : "everything";
  }

  // What the API is asked: the URL's query, with the page's default closeness unless it names one.
  function asked(url) {
    const query = {};
    for (const key of ["q", "mode", "label", "sort", "interpret", "positive", "negative", ...FILTERS]) {
      if (url.get(key)) query[key] = url.get(key);
    }
    if (url.get("like")) query.image_id = url.get("like");
    if (url.get("crop")) query.crop = url.get("crop");
    const cutoff = url.has("cutoff") ? Number(url.get("cutoff")) : defaultCutoff;
    if (cutoff > 0) query.cutoff = String(cutoff);
    const search = new URLSearchParams(query);
    for (const text of url.getAll("without")) search.append("without", text);
    return search;
  }

  function fromUrl() {
    const url = params();
    const q = url.get("q"), like = url.get("like"), label = url.get("label");
    queryImage.hidden = true;
    input.value = q || "";
    $("mode").value = url.get("mode") || "";
    filter.hidden = !label;
    if (label) {
      filter.querySelector("strong").textContent = label;
      const all = new URLSearchParams(url);
      all.delete("label");
      filter.querySelector("a").href = "?" + all;
    }
    showChips(url);
    showFilters(url);
    if (q || like || url.get("positive")) return run({ params: Object.fromEntries(asked(url)), search: asked(url) });
    results.replaceChildren();
    hits = [];
    current = null;
    more.hidden = true;
    greet();
  }

  // Before any search: how many items, or that the model is still loading, or how to index.
  async function greet() {
    const asked = current;  // a search started meanwhile speaks for itself
    try {
      const health = await fetch("/api/v1/healthz");
      if (current !== asked) return;
      if (health.status === 503) {
        say("Loading the model… searches start in a moment.");
        setTimeout(greet, 2000);
        return;
      }
      const status = await (await fetch("/api/v1/status")).json();
      if (current !== asked) return;
      say(status.items ? `${status.items.toLocaleString()} items indexed. Type what you are looking for.`
                       : "Nothing is indexed yet: run `spyglass index <folder>`, then reload.");
    } catch { say(""); }
  }

  function go(next) {
    history.pushState(null, "", "?" + next);
    fromUrl();
  }

  // A new text keeps the filters and order on screen, and drops what refined the last query.
  function keepFilters(extra) {
    const url = params(), next = new URLSearchParams();
    for (const key of [...FILTERS, "label", "sort", "cutoff", "mode"]) if (url.get(key)) next.set(key, url.get(key));
    for (const [key, value] of Object.entries(extra)) if (value !== "" && value !== undefined) next.set(key, value);
    return next;
  }

  function searchFile(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) { say(`${file.name || "That file"} is not an image.`, true); return; }
    history.pushState(null, "", location.pathname);
    input.value = "";
    chips.replaceChildren();
    const shown = queryImage.querySelector("img");
    shown.onerror = () => { queryImage.hidden = true; };  // a format the browser cannot show: no broken icon
    shown.src = URL.createObjectURL(file);
    queryImage.hidden = false;
    run({ file });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = input.value.trim();
    const next = keepFilters({ q });
    $("mode").value ? next.set("mode", $("mode").value) : next.delete("mode");
    if (q) go(next);
  });
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = params();
    for (const [key, id] of [["kind", "f-kind"], ["taken_from", "f-from"], ["taken_to", "f-to"], ["camera", "f-camera"],
                             ["place", "f-place"], ["folder", "f-folder"], ["sort", "f-sort"]]) {
      const value = $(id).value.trim();
      value && !(key === "sort" && value === "relevance") ? next.set(key, value) : next.delete(key);
    }
    const without = $("f-without").value.trim();
    if (without && !next.getAll("without").includes(without)) next.append("without", without);
    next.set("cutoff", String(Number($("f-cutoff").value) / 100));
    if (!next.get("q") && !next.get("like") && !next.get("positive")) {
      if (input.value.trim()) next.set("q", input.value.trim());
    }
    go(next);
  });
  $("f-cutoff").addEventListener("input", () => {
    const value = Number($("f-cutoff").value);
    $("f-cutoff-shown").textContent = value ? `${value}% of the best` : "everything";
  });
  $("weaker").addEventListener("click", () => { const next = params(); next.set("cutoff", "0"); go(next); });
  filter.querySelector("a").addEventListener("click", (event) => {
    event.preventDefault();
    go(new URLSearchParams(filter.querySelector("a").search));
  });
  fileInput.addEventListener("change", () => searchFile(fileInput.files[0]));
  document.querySelector(".file-button").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
  });
  more.addEventListener("click", () => nextOffset !== null && run(current, nextOffset));
  $("more-like-this").addEventListener("click", () => { viewer.close(); go(keepFilters({ like: hits[viewing].id })); });
  $("viewer-up").addEventListener("click", () => { viewer.close(); refine("positive", hits[viewing].id); });
  $("viewer-down").addEventListener("click", () => { viewer.close(); refine("negative", hits[viewing].id); });
  $("viewer-prev").addEventListener("click", () => open(viewing - 1));
  $("viewer-next").addEventListener("click", () => open(viewing + 1));
  $("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft" && viewing > 0) { event.preventDefault(); open(viewing - 1); }
    if (event.key === "ArrowRight" && viewing < hits.length - 1) { event.preventDefault(); open(viewing + 1); }
  });
  viewer.addEventListener("close", () => { $("viewer-video").pause(); stopCrop(); });
  window.addEventListener("popstate", fromUrl);

  let dragDepth = 0;
  document.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; overlay.hidden = false; });
  document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; overlay.hidden = true; } });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    overlay.hidden = true;
    searchFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) { event.preventDefault(); searchFile(file); }
  });
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && nextOffset !== null) run(current, nextOffset);
    }).observe(more);
  }
  fromUrl();
})();
