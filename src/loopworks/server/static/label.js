// The annotator page: keyboard shortcuts, span selection (NER) and box drawing.
// User text is only ever written with textContent, never as HTML.
(function () {
  "use strict";
  const task = document.getElementById("task");
  if (!task) return;
  const kind = task.dataset.kind;
  if (kind === "custom") {
    // A custom template's crowd-form hands its answer over in a crowd-submit event: it is
    // sent with this page's form (CSRF token, idempotency key), as any other answer.
    document.addEventListener("crowd-submit", (event) => {
      event.preventDefault();
      document.getElementById("answer-json").value = JSON.stringify(event.detail.answer);
      document.getElementById("answer-form").submit();
    });
    // S skips, as on every task page, unless a key goes to a field being typed in.
    document.addEventListener("keydown", (event) => {
      const target = event.composedPath()[0];
      const typing = target instanceof HTMLElement && (target.isContentEditable
        || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
      if ((event.key === "s" || event.key === "S") && !typing && !event.defaultPrevented
          && !event.ctrlKey && !event.metaKey && !event.altKey) {
        event.preventDefault();
        document.getElementById("skip-form").submit();
      }
    });
    return;
  }
  const data = JSON.parse(document.getElementById("task-data").textContent);
  const form = document.getElementById("answer-form");
  const skipForm = document.getElementById("skip-form");
  const answerJson = document.getElementById("answer-json");
  const marksList = document.getElementById("marks");
  const choices = Array.from(form.querySelectorAll(".choice"));
  const marks = [];  // NER: {start, end, label}; boxes: {label, left, top, width, height}
  let current = null;  // NER: the pending selection; boxes: the chosen label

  function choiceFor(key) { return choices.find((c) => c.dataset.key === key); }

  function writeAnswer() {
    if (!answerJson) return;
    answerJson.value = JSON.stringify(kind === "bounding-box"
      ? { boundingBoxes: marks } : { entities: marks.slice().sort((a, b) => a.start - b.start) });
  }

  function listMarks() {
    marksList.replaceChildren();
    marks.forEach((m, i) => {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = kind === "bounding-box"
        ? `${m.label}: ${m.left},${m.top} ${m.width}×${m.height}`
        : `${m.label}: “${data.source.slice(m.start, m.end)}” (${m.start}–${m.end})`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.addEventListener("click", () => { marks.splice(i, 1); redraw(); });
      li.append(text, remove);
      marksList.append(li);
    });
    writeAnswer();
  }

  // ---------------------------------------------------------------- NER spans
  const source = document.getElementById("source");
  function renderSpans() {
    const sorted = marks.slice().sort((a, b) => a.start - b.start);
    const parts = [];
    let at = 0;
    for (const m of sorted) {
      if (m.start > at) parts.push(document.createTextNode(data.source.slice(at, m.start)));
      const mark = document.createElement("mark");
      mark.textContent = data.source.slice(m.start, m.end);
      mark.dataset.label = m.label;
      parts.push(mark);
      at = m.end;
    }
    parts.push(document.createTextNode(data.source.slice(at)));
    source.replaceChildren(...parts);
  }
  function offsetIn(node, offset) {
    const range = document.createRange();
    range.setStart(source, 0);
    range.setEnd(node, offset);
    return range.toString().length;
  }
  function pendingSelection() {
    const sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    const range = sel.getRangeAt(0);
    if (!source.contains(range.startContainer) || !source.contains(range.endContainer)) return null;
    let start = offsetIn(range.startContainer, range.startOffset);
    let end = offsetIn(range.endContainer, range.endOffset);
    while (start < end && /\s/.test(data.source[start])) start++;
    while (end > start && /\s/.test(data.source[end - 1])) end--;
    return end > start ? { start, end } : null;
  }
  function tagSelection(label) {
    const span = pendingSelection() || current;
    if (!span) return flash("Select some words first, then choose a label.");
    if (marks.some((m) => span.start < m.end && m.start < span.end)) {
      return flash("That overlaps a span you already marked; remove it first.");
    }
    marks.push({ start: span.start, end: span.end, label });
    current = null;
    window.getSelection().removeAllRanges();
    redraw();
  }
  if (kind === "named-entity-recognition") {
    source.addEventListener("mouseup", () => { current = pendingSelection(); });
  }

  // ------------------------------------------------------------ bounding boxes
  const image = document.getElementById("task-image");
  const overlay = document.getElementById("overlay");
  function scale() { return image.naturalWidth / image.clientWidth || 1; }
  function drawBoxes() {
    if (!overlay) return;
    overlay.replaceChildren();
    const k = scale();
    marks.forEach((m) => {
      const box = document.createElement("div");
      box.className = "box";
      Object.assign(box.style, { left: `${m.left / k}px`, top: `${m.top / k}px`,
        width: `${m.width / k}px`, height: `${m.height / k}px` });
      const tag = document.createElement("span");
      tag.textContent = m.label;
      box.append(tag);
      overlay.append(box);
    });
  }
  if (overlay) {
    let origin = null;
    let ghost = null;
    const point = (e) => {
      const r = overlay.getBoundingClientRect();
      return { x: Math.min(Math.max(e.clientX - r.left, 0), r.width),
               y: Math.min(Math.max(e.clientY - r.top, 0), r.height) };
    };
    overlay.addEventListener("mousedown", (e) => {
      e.preventDefault();
      if (!current) return flash("Pick a label first (1–9 or click it), then drag.");
      origin = point(e);
      ghost = document.createElement("div");
      ghost.className = "box";
      overlay.append(ghost);
    });
    window.addEventListener("mousemove", (e) => {
      if (!origin) return;
      const p = point(e);
      Object.assign(ghost.style, { left: `${Math.min(p.x, origin.x)}px`,
        top: `${Math.min(p.y, origin.y)}px`, width: `${Math.abs(p.x - origin.x)}px`,
        height: `${Math.abs(p.y - origin.y)}px` });
    });
    window.addEventListener("mouseup", (e) => {
      if (!origin) return;
      const p = point(e);
      const k = scale();
      const box = { label: current, left: Math.round(Math.min(p.x, origin.x) * k),
        top: Math.round(Math.min(p.y, origin.y) * k),
        width: Math.round(Math.abs(p.x - origin.x) * k),
        height: Math.round(Math.abs(p.y - origin.y) * k) };
      origin = null;
      if (box.width >= 2 && box.height >= 2) marks.push(box);
      redraw();
    });
  }

  function redraw() {
    if (kind === "named-entity-recognition") renderSpans();
    if (kind === "bounding-box") drawBoxes();
    listMarks();
  }
  function flash(text) {
    let note = document.getElementById("flash");
    if (!note) {
      note = document.createElement("p");
      note.id = "flash";
      note.className = "flash";
      note.setAttribute("role", "status");
      task.prepend(note);
    }
    note.textContent = text;
  }

  // ---------------------------------------------------------------- choosing
  function choose(choice) {
    if (!choice) return;
    const label = choice.dataset.label;
    if (kind === "named-entity-recognition") return tagSelection(label);
    if (kind === "bounding-box") {
      current = label;
      choices.forEach((c) => c.classList.toggle("active", c === choice));
      return;
    }
    const input = choice.querySelector("input");
    input.checked = input.type === "checkbox" ? !input.checked : true;
  }
  choices.forEach((c) => {
    if (c.tagName === "BUTTON") c.addEventListener("click", () => choose(c));
  });
  form.addEventListener("submit", writeAnswer);

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== "radio"
        && e.target.type !== "checkbox") return;
    if (/^[1-9]$/.test(e.key)) {
      e.preventDefault();
      choose(choiceFor(e.key));
    } else if (e.key === "Enter") {
      e.preventDefault();
      writeAnswer();
      form.requestSubmit();
    } else if (e.key === "s" || e.key === "S") {
      e.preventDefault();
      skipForm.requestSubmit();
    }
  });

  if (kind === "named-entity-recognition") renderSpans();
  if (image && image.complete) drawBoxes();
  if (image) image.addEventListener("load", drawBoxes);
  writeAnswer();
})();
