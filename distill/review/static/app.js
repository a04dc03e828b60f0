// Pseudo-label review page: plain JS, talks only to the server that served it.
"use strict";

(function () {
  const state = {
    classes: [],
    keys: [],
    search: false,    // more classes than relabel keys: relabel through the searchable class list
    matches: [],      // the classes the search box shows, best first
    active: 0,        // which of them Enter picks
    clips: [],        // sorted by the server: least confident first
    byName: new Map(),
    view: [],         // the clips shown (after filters), in order
    current: null,    // fname of the open clip
    busy: false,
    student: null,    // the student run's name, when one was given
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const pct = (p) => (p >= 0.9995 ? "100" : (100 * p).toFixed(1)) + "%";

  // ------------------------------------------------------------ loading

  async function load() {
    let data;
    try {
      const res = await fetch("/api/clips", { cache: "no-store" });
      data = await res.json();
      if (!res.ok) throw new Error(data.error || res.statusText);
    } catch (err) {
      $("list-count").textContent = "could not load the clips: " + err.message;
      return;
    }
    state.classes = data.classes;
    state.keys = data.keys;
    state.search = data.relabel === "search";
    state.clips = data.clips;
    state.byName = new Map(data.clips.map((c) => [c.fname, c]));
    state.student = data.student;
    $("source").textContent = data.pseudo + (data.teachers.length ? " · teachers: " + data.teachers.join(", ") : "") +
      (data.student ? " · student: " + data.student : "");
    $("review-path").textContent = data.review;
    if (data.teacher_note) toast(data.teacher_note);

    const counts = new Map();
    for (const c of state.clips) counts.set(c.label, (counts.get(c.label) || 0) + 1);
    const filter = $("filter-class");
    const relabel = $("relabel");
    const keyHelp = $("relabel-keys");
    state.classes.forEach((name, i) => {
      const n = counts.get(name) || 0;
      const opt = el("option", null, `${name} (${n})`);
      opt.value = name;
      opt.disabled = n === 0;
      filter.appendChild(opt);
      if (state.search) return;
      const key = state.keys[i];
      const r = el("option", null, `${key} · ${name}`);
      r.value = name;
      relabel.appendChild(r);
      const k = el("div");
      k.appendChild(el("kbd", null, key));
      k.appendChild(document.createTextNode(" " + name));
      keyHelp.appendChild(k);
    });
    // Beyond twelve classes there are not enough keys for all of them: a search box over every class instead
    $("relabel-choose").hidden = state.search;
    $("relabel-find").hidden = !state.search;
    keyHelp.hidden = state.search;
    if (state.search) {
      $("relabel-help").textContent = `Relabel as any of the ${state.classes.length} classes: press / and type part of its name; ` +
        "Enter picks the first match (↑ / ↓ choose another, Esc leaves the box).";
      renderMatches();
    }
    applyFilters();
  }

  // ------------------------------------------------------------ relabel search (more classes than keys)

  // exact name first, then names starting with the text, then names containing it; class order within each
  function matchClasses(text) {
    const q = text.trim().toLowerCase();
    if (!q) return state.classes.slice();
    const ranked = [];
    state.classes.forEach((name, i) => {
      const at = name.toLowerCase().indexOf(q);
      if (at >= 0) ranked.push([name.toLowerCase() === q ? 0 : at === 0 ? 1 : 2, i, name]);
    });
    ranked.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return ranked.map((r) => r[2]);
  }

  function renderMatches() {
    const input = $("relabel-search");
    state.matches = matchClasses(input.value);
    state.active = Math.min(state.active, Math.max(0, state.matches.length - 1));
    const clip = state.current ? state.byName.get(state.current) : null;
    const chosen = clip && clip.decision && clip.decision.decision === "relabel" ? clip.decision.label : null;
    const typed = input.value.trim() !== "";
    const list = $("relabel-matches");
    if (!state.matches.length) {
      list.replaceChildren(el("li", "none", `no class matches “${input.value.trim()}”`));
      return;
    }
    list.replaceChildren(...state.matches.map((name, i) => {
      const li = el("li", null, name);
      li.dataset.name = name;
      li.setAttribute("role", "option");
      const active = typed && i === state.active;
      li.classList.toggle("active", active);
      li.setAttribute("aria-selected", active ? "true" : "false");
      li.classList.toggle("chosen", name === chosen);
      li.addEventListener("mousedown", (e) => e.preventDefault());  // keep the box focused until the pick
      li.addEventListener("click", () => pickMatch(name));
      return li;
    }));
  }

  function pickMatch(name) {
    const input = $("relabel-search");
    input.value = "";
    state.active = 0;
    input.blur();  // back to the page's keys (a, r, j, k)
    renderMatches();
    if (name) decide("relabel", name);
  }

  function onSearchKey(event) {
    const key = event.key;
    const typed = event.target.value.trim() !== "";
    if (key === "Enter") { if (typed && state.matches.length) pickMatch(state.matches[state.active]); }
    else if (key === "Escape") pickMatch(null);
    else if (key === "ArrowDown" || key === "ArrowUp") {
      const n = state.matches.length;
      if (n) state.active = (state.active + (key === "ArrowDown" ? 1 : n - 1)) % n;
      renderMatches();
    } else return;
    event.preventDefault();
  }

  // ------------------------------------------------------------ list

  function applyFilters(keep) {
    const cls = $("filter-class").value;
    const disagree = $("filter-disagree").checked;
    const undecided = $("filter-undecided").checked;
    state.view = state.clips.filter((c) =>
      (!cls || c.label === cls) && (!disagree || c.agreement < 1) && (!undecided || !c.decision));
    const list = $("clip-list");
    list.replaceChildren(...state.view.map(listItem));
    $("list-count").textContent = state.view.length === state.clips.length
      ? `${state.clips.length} clips, least confident first`
      : `${state.view.length} of ${state.clips.length} clips, least confident first`;
    const target = keep && state.view.some((c) => c.fname === keep) ? keep : (state.view[0] && state.view[0].fname);
    updateProgress();
    select(target || null);
  }

  function listItem(clip) {
    const li = el("li");
    li.dataset.fname = clip.fname;
    fillItem(li, clip);
    li.addEventListener("click", () => select(clip.fname));
    return li;
  }

  function fillItem(li, clip) {
    li.replaceChildren();
    li.appendChild(el("span", "name", clip.fname));
    const meta = el("span", "meta");
    meta.appendChild(el("span", "chip", clip.label));
    const bar = el("span", "conf");
    const fill = el("div");
    fill.style.width = (100 * clip.confidence).toFixed(1) + "%";
    bar.appendChild(fill);
    meta.appendChild(bar);
    meta.appendChild(el("span", null, pct(clip.confidence)));
    if (clip.agreement < 1) {
      const d = el("span", "disagree", "⚑ " + Math.round(100 * clip.agreement) + "% agree");
      d.title = "the teachers disagree on this clip";
      meta.appendChild(d);
    }
    li.appendChild(meta);
    li.appendChild(badge(clip.decision, "state"));
    li.classList.toggle("current", clip.fname === state.current);
  }

  function badge(decision, extra) {
    const b = el("span", "badge " + (extra || ""));
    if (!decision) return b;
    b.classList.add(decision.decision);
    b.textContent = decision.decision === "accept" ? "✓ accepted"
      : decision.decision === "reject" ? "✗ rejected" : "→ " + decision.label;
    b.title = decision.decision + " · " + decision.timestamp;
    return b;
  }

  function itemOf(fname) {
    for (const li of $("clip-list").children) if (li.dataset.fname === fname) return li;
    return null;
  }

  function updateProgress() {
    const total = state.clips.length;
    let decided = 0;
    const tally = { accept: 0, reject: 0, relabel: 0 };
    for (const c of state.clips) if (c.decision) { decided += 1; tally[c.decision.decision] += 1; }
    $("decided-count").textContent = decided;
    $("total-count").textContent = total;
    $("progress-fill").style.width = total ? (100 * decided / total).toFixed(1) + "%" : "0";
    $("tally").textContent = `${tally.accept} accepted · ${tally.reject} rejected · ${tally.relabel} relabelled`;
  }

  // ------------------------------------------------------------ the open clip

  function select(fname) {
    const previous = state.current && itemOf(state.current);
    if (previous) previous.classList.remove("current");
    state.current = fname;
    const clip = fname ? state.byName.get(fname) : null;
    $("empty").hidden = !!clip;
    $("clip").hidden = !clip;
    if (!clip) {
      $("player").removeAttribute("src");
      return;
    }
    const li = itemOf(fname);
    if (li) { li.classList.add("current"); li.scrollIntoView({ block: "nearest" }); }
    const enc = encodeURIComponent(fname);
    $("clip-name").textContent = fname;
    const pos = state.view.findIndex((c) => c.fname === fname);
    $("clip-position").textContent = `${pos + 1} of ${state.view.length}`;
    $("spectrogram").src = "/spectrogram/" + enc + ".png";
    const player = $("player");
    player.src = "/audio/" + enc;
    if ($("opt-autoplay").checked) player.play().catch(() => {});
    renderDetail(clip);
  }

  function renderDetail(clip) {
    $("clip-decision").replaceWith(badge(clip.decision || { decision: "none" }));
    const b = document.querySelector(".clip-head .badge");
    b.id = "clip-decision";
    if (!clip.decision) { b.classList.add("none"); b.textContent = "undecided"; }
    $("pseudo-label").textContent = clip.label;
    const nTeachers = clip.teachers.length;
    $("agreement").textContent = clip.agreement >= 1 ? "all teachers agree"
      : nTeachers ? `${Math.round(clip.agreement * nTeachers)} of ${nTeachers} teachers agree`
      : `${pct(clip.agreement)} of teachers agree`;
    $("agreement").className = clip.agreement < 1 ? "disagree" : "";

    const top = $("top3");
    top.replaceChildren(...clip.top3.map((t) => {
      const li = el("li");
      li.appendChild(el("span", null, t.label));
      const bar = el("span", "bar");
      const fill = el("div");
      fill.style.width = (100 * t.prob).toFixed(1) + "%";
      bar.appendChild(fill);
      li.appendChild(bar);
      li.appendChild(el("span", "num", pct(t.prob)));
      return li;
    }));

    const teachers = $("teachers");
    if (clip.teachers.length) {
      teachers.replaceChildren(...clip.teachers.map((t) => {
        const li = el("li");
        li.appendChild(el("span", "who", t.name));
        li.appendChild(el("span", t.label === clip.label ? "" : "odd", `${t.label} ${pct(t.prob)}`));
        return li;
      }));
    } else {
      teachers.replaceChildren(el("li", "muted", "not available"));
    }

    $("student-panel").hidden = !state.student;
    if (state.student) {
      $("student").replaceChildren(clip.student
        ? el("span", clip.student.label === clip.label ? "" : "odd", `${clip.student.label} ${pct(clip.student.prob)}`)
        : el("span", "muted", "clip unreadable"));
    }
    $("relabel").value = clip.decision && clip.decision.decision === "relabel" ? clip.decision.label : "";
    if (state.search) renderMatches();
  }

  function move(step) {
    if (!state.view.length) return;
    const pos = state.view.findIndex((c) => c.fname === state.current);
    const next = Math.min(state.view.length - 1, Math.max(0, pos + step));
    select(state.view[next].fname);
  }

  // ------------------------------------------------------------ decisions

  async function decide(decision, label) {
    const fname = state.current;
    if (!fname || state.busy) return;
    const clip = state.byName.get(fname);
    state.busy = true;
    try {
      const res = await fetch("/api/decision", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ fname, decision, label: label || clip.label }),
      });
      const data = await res.json();
      if (!res.ok) throw new Error(data.error || res.statusText);
      clip.decision = data.decision;
      const li = itemOf(fname);
      if (li) fillItem(li, clip);
      updateProgress();
      if (state.current === fname) renderDetail(clip);
      toast(decision === "relabel" ? `${fname} → ${label}` : `${fname} ${decision}ed`);
      if ($("opt-advance").checked && state.current === fname) move(1);
    } catch (err) {
      toast("not saved: " + err.message, true);
    } finally {
      state.busy = false;
    }
  }

  let toastTimer = null;
  function toast(message, isError) {
    const t = $("toast");
    t.textContent = message;
    t.className = "toast" + (isError ? " error" : "");
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 6000 : 1800);
  }

  // ------------------------------------------------------------ wiring

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.target;
    if (t && (t.tagName === "SELECT" || t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "checkbox"))) return;
    const key = event.key;
    const relabelAt = state.keys.indexOf(key);
    if (key === "a") decide("accept");
    else if (key === "r") decide("reject");
    else if (relabelAt >= 0) decide("relabel", state.classes[relabelAt]);
    else if (key === "/" && state.search) $("relabel-search").focus();
    else if (key === "j" || key === "ArrowDown" || key === "ArrowRight") move(1);
    else if (key === "k" || key === "ArrowUp" || key === "ArrowLeft") move(-1);
    else if (key === " ") { const p = $("player"); if (p.paused) p.play().catch(() => {}); else p.pause(); }
    else return;
    event.preventDefault();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.addEventListener("keydown", onKey);
    const button = (id, action) => $(id).addEventListener("click", (e) => { e.currentTarget.blur(); action(); });
    button("btn-accept", () => decide("accept"));
    button("btn-reject", () => decide("reject"));
    button("btn-prev", () => move(-1));
    button("btn-next", () => move(1));
    $("relabel").addEventListener("change", (e) => {
      const label = e.target.value;
      e.target.blur();
      if (label) decide("relabel", label);
    });
    const search = $("relabel-search");
    search.addEventListener("input", () => { state.active = 0; renderMatches(); });
    search.addEventListener("keydown", onSearchKey);
    for (const id of ["filter-class", "filter-disagree", "filter-undecided"]) {
      $(id).addEventListener("change", (e) => { e.target.blur(); applyFilters(state.current); });
    }
    load();
  });
})();
