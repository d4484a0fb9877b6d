// The Spyglass search page: plain JS over the JSON API. The URL carries text (?q=) and
// "more like this" (?like=<id>) searches, so results can be bookmarked and Back works.
(() => {
  "use strict";
  const PAGE = 30;
  const $ = (id) => document.getElementById(id);
  const form = $("search-form"), input = $("q"), fileInput = $("file"), results = $("results");
  const message = $("message"), more = $("more"), viewer = $("viewer"), overlay = $("drop-overlay");
  const queryImage = $("query-image"), filter = $("filter");
  let current = null;      // {params | file} of the search on screen
  let nextOffset = null, loading = false, viewing = null;

  function say(text, isError = false) {
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  async function request(query, offset) {
    let response;
    if (query.file) {
      const body = new FormData();
      body.append("image", query.file);
      body.append("k", PAGE);
      body.append("offset", offset);
      // The page session's CSRF token (empty without accounts): every POST carries it.
      const csrf = document.querySelector('meta[name="csrf-token"]').content;
      response = await fetch("/api/v1/search", { method: "POST", body, headers: { "X-CSRF-Token": csrf } });
    } else {
      const params = new URLSearchParams({ ...query.params, k: PAGE, offset });
      response = await fetch("/api/v1/search?" + params);
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
    if (offset === 0) { results.replaceChildren(); current = query; say("Searching…"); }
    try {
      const data = await request(query, offset);
      data.results.forEach(addResult);
      nextOffset = data.next_offset;
      more.hidden = nextOffset === null;
      const shown = results.children.length;
      say(shown ? `${shown} result${shown === 1 ? "" : "s"} (${data.total_considered} vectors searched)`
                : "No results. Try other words, or lower the bar.");
    } catch (error) {
      more.hidden = true;
      say(error.message, true);
    } finally {
      loading = false;
    }
  }

  function addResult(hit) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = hit.file_url;
    link.className = "result";
    link.dataset.id = hit.id;
    link.title = hit.path;
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
    link.addEventListener("click", (event) => { event.preventDefault(); open(hit); });
    li.append(link);
    if (hit.kind === "video" && hit.segments && hit.segments.length > 1) li.append(momentButtons(hit));
    if (hit.matches && hit.matches.length) li.append(matchLine(hit));
    if (hit.labels && hit.labels.length) li.append(labelLinks(hit.labels));
    results.append(li);
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
  function matchLine(hit) {
    const match = hit.matches[0];
    const line = document.createElement("p");
    line.className = "match";
    line.innerHTML = match.snippet;
    line.title = `${match.field}: ${line.textContent}`;
    if (match.start_s !== undefined && hit.kind === "video") {
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = `▶ ${clock(match.start_s)}`;
      play.title = `play from ${clock(match.start_s)}`;
      play.addEventListener("click", () => open(hit, { start_s: match.start_s, end_s: match.end_s, best_s: match.start_s }));
      line.prepend(play, " ");
    }
    return line;
  }

  // A video's other matching moments; each opens the player there.
  function momentButtons(hit) {
    const box = document.createElement("div");
    box.className = "moments";
    for (const segment of hit.segments) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = span(segment);
      button.title = `score ${segment.score.toFixed(3)}`;
      button.addEventListener("click", () => open(hit, segment));
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
      const params = new URLSearchParams(location.search);
      params.set("label", label);
      if (!params.get("q") && !params.get("like")) params.set("q", label);
      chip.href = "?" + params;
      chip.textContent = label;
      chip.title = `label ${label} (score ${score.toFixed(3)}): show only items labelled so`;
      chip.addEventListener("click", (event) => { event.preventDefault(); navigate(Object.fromEntries(params)); });
      box.append(chip);
    }
    return box;
  }

  function open(hit, segment) {
    viewing = hit;
    const image = $("viewer-image"), video = $("viewer-video");
    const isVideo = hit.kind === "video" || hit.kind === "audio";  // the player plays audio files too
    image.hidden = isVideo;
    video.hidden = !isVideo;
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
      image.src = hit.file_url;
      image.alt = hit.name;
    }
    const size = hit.kind === "audio" ? `${clock(hit.duration_s || 0)}` : `${hit.width}×${hit.height}`;
    $("viewer-caption").textContent = `${hit.path}${where} · ${size} · score ${hit.score.toFixed(3)}`;
    $("viewer-open").href = hit.file_url;
    viewer.showModal();
    $("more-like-this").focus();
  }

  function fromUrl() {
    const url = new URL(location.href);
    const q = url.searchParams.get("q"), like = url.searchParams.get("like"), label = url.searchParams.get("label");
    const mode = url.searchParams.get("mode") || "";
    queryImage.hidden = true;
    input.value = q || "";
    $("mode").value = mode;
    const only = label ? { label } : {};
    filter.hidden = !label;
    if (label) {
      filter.querySelector("strong").textContent = label;
      const all = new URLSearchParams(url.search);
      all.delete("label");
      filter.querySelector("a").href = "?" + all;
    }
    if (like) return run({ params: { image_id: like, ...only } });
    if (q) return run({ params: { q, ...only, ...(mode ? { mode } : {}) } });
    results.replaceChildren();
    more.hidden = true;
    fetch("/api/v1/status").then((r) => r.json()).then((status) => {
      say(status.items ? `${status.items} items indexed. Type what you are looking for.`
                       : "Nothing is indexed yet: run `spyglass index <folder>`, then reload.");
    }).catch(() => say(""));
  }

  function navigate(params) {
    history.pushState(null, "", "?" + new URLSearchParams(params));
    fromUrl();
  }

  function searchFile(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) { say(`${file.name || "That file"} is not an image.`, true); return; }
    history.pushState(null, "", location.pathname);
    input.value = "";
    queryImage.querySelector("img").src = URL.createObjectURL(file);
    queryImage.hidden = false;
    run({ file });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = input.value.trim();
    const label = new URL(location.href).searchParams.get("label");
    const mode = $("mode").value;
    if (q) navigate({ q, ...(label ? { label } : {}), ...(mode ? { mode } : {}) });
  });
  filter.querySelector("a").addEventListener("click", (event) => {
    event.preventDefault();
    navigate(Object.fromEntries(new URLSearchParams(filter.querySelector("a").search)));
  });
  fileInput.addEventListener("change", () => searchFile(fileInput.files[0]));
  document.querySelector(".file-button").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
  });
  more.addEventListener("click", () => nextOffset !== null && run(current, nextOffset));
  $("more-like-this").addEventListener("click", () => { viewer.close(); navigate({ like: viewing.id }); });
  $("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("close", () => $("viewer-video").pause());
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
