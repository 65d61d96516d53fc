// creamery's pages work without this file; it only adds conveniences.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    button.classList.add("copied");
    setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else {
    fallbackCopy(text, done);
  }
});

function fallbackCopy(text, done) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
  area.remove();
}

// "/" focuses the search box, as on PyPI and GitHub.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target.isContentEditable) return;
  const box = document.querySelector("[data-search-shortcut]");
  if (box) { event.preventDefault(); box.focus(); box.select(); }
});

// search: on the search page (/search/), the results follow what is typed, without a reload
// (a debounced fetch of the same URL's JSON); arrow keys move between the box and the results,
// Enter opens the one focused, Escape goes back to the box. Without script the form submits.
(() => {
  const form = document.querySelector("form[data-instant-search]");
  const box = form && form.querySelector("input[name=q]");
  const region = document.getElementById("search-results");
  if (!form || !box || !region || !window.fetch) return;
  let timer = 0;
  let pending = null;
  let shown = box.value.trim();

  const element = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const status = (className, text) => {
    const line = element("p", className, text);
    line.id = "search-status";
    return line;
  };
  const countText = (data, query) => {
    const shownCount = data.results.length;
    let text = shownCount < data.total
      ? `The first ${shownCount} of ${data.total.toLocaleString("en")} projects matching “${query}”`
      : `${data.total} project${data.total === 1 ? "" : "s"} matching “${query}”`;
    if (!data.complete) text += " (summaries are still being read)";
    return text;
  };
  const draw = (data, query, problem) => {
    const parts = [];
    if (problem) {
      parts.push(status("empty", problem));
    } else if (!query) {
      parts.push(status("empty", "Type a project name or a word of its summary."));
    } else if (!data.total) {
      parts.push(status("empty", `No projects match “${query}”.`));
    } else {
      parts.push(status("result-count", countText(data, query)));
      const list = element("ol", "list results");
      list.id = "results";
      for (const hit of data.results) {
        const item = element("li", "result");
        item.dataset.project = hit.project;
        const head = element("div", "result-head");
        const link = element("a", "result-name", hit.name);
        link.href = hit.url;
        head.append(link, " ", element("span", "result-version", hit.version));
        if (hit.uploaded) {
          const time = element("time", "result-date", hit.date);
          time.dateTime = hit.uploaded;
          head.append(" ", time);
        }
        item.append(head);
        if (hit.summary) item.append(element("p", "result-summary", hit.summary));
        list.append(item);
      }
      parts.push(list);
    }
    region.replaceChildren(...parts);
  };
  const run = () => {
    const query = box.value.trim();
    if (query === shown) return;
    if (pending) pending.abort();
    pending = new AbortController();
    const url = new URL(form.action);
    url.searchParams.set("q", query);
    const page = url.toString();
    url.searchParams.set("format", "json");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", signal: pending.signal })
      .then((response) => {
        const type = response.headers.get("content-type") || "";
        if (!type.startsWith("application/json")) throw new Error("not the search's answer");
        return response.json().then((data) => [response.ok, data]);
      })
      .then(([ok, data]) => {
        shown = query;
        draw(data, query, ok ? null : data.message);
        history.replaceState(null, "", page);
        document.title = (query ? `${query} · ` : "") + "Search · creamery";
      })
      .catch(() => { /* aborted, or signed out: the form still submits */ });
  };
  box.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, 150);
  });

  const links = () => Array.from(region.querySelectorAll("a.result-name"));
  const focus = (node) => {
    node.focus();
    if (node !== box) node.closest(".result").scrollIntoView({ block: "nearest" });
  };
  form.parentElement.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const all = links();
    const at = all.indexOf(document.activeElement);
    if (event.key === "ArrowDown") {
      if (document.activeElement === box && all.length) { event.preventDefault(); focus(all[0]); }
      else if (at >= 0 && at + 1 < all.length) { event.preventDefault(); focus(all[at + 1]); }
    } else if (event.key === "ArrowUp" && at >= 0) {
      event.preventDefault();
      focus(at === 0 ? box : all[at - 1]);
    } else if (event.key === "Escape" && at >= 0) {
      event.preventDefault();
      focus(box);
    }
  });
})();
