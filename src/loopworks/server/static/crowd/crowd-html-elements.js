// loopworks' own crowd-html elements: the web components that Ground Truth and Augmented AI
// task templates are written with (<crowd-form>, <crowd-classifier>, <crowd-bounding-box>...).
// Written for loopworks from AWS's public element reference (SageMaker developer guide,
// "Crowd HTML Elements Reference", one page per element: sms-ui-template-crowd-*.html);
// nothing here is taken from Amazon's implementation. Each element's answer shape names the
// page it follows.
//
// How it works
// * Light DOM: each element renders plain HTML controls into itself, styled by one sheet.
// * Task data is untrusted: text is only ever written with textContent and DOM APIs, never
//   as HTML. No eval, no Function, no inline handlers, no style attributes: a strict
//   Content-Security-Policy holds.
// * <crowd-form> gathers ONE answer object from every named element inside it (and named
//   native inputs), fires a cancelable `submit`, then a cancelable `crowd-submit`
//   (detail: {answer}); if neither is cancelled it posts taskAnswers=JSON.stringify([answer])
//   to its `action` (default: this page).
// * Keys: 1..9 pick a category or label in the widget holding the focus (else the first one
//   on the page); Enter submits (not from a text area, button or link); Ctrl/Cmd+Enter
//   submits from anywhere in the form.
(function () {
  "use strict";
  if (!window.customElements || window.customElements.get("crowd-form")) return;

  // ------------------------------------------------------------------ helpers
  let counter = 0;
  const uid = (prefix) => `${prefix}-${++counter}`;
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#e377c2", "#8c564b", "#bcbd22", "#7f7f7f"];

  /** An element with attributes ("text" sets textContent, "on..." adds a listener). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) el.append(child);
    return el;
  }

  function svg(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  /** Run once the document is parsed: an element upgraded while the parser is still on its
   * opening tag has no children yet. */
  function whenParsed(fn) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", fn, { once: true });
    } else {
      fn();
    }
  }

  /** A boolean attribute: present and not "false" (GT's examples write checked="true"). */
  function flag(el, name) {
    if (!el.hasAttribute(name)) return false;
    return el.getAttribute(name).trim().toLowerCase() !== "false";
  }

  function num(el, name, fallback) {
    const value = parseFloat(el.getAttribute(name));
    return Number.isFinite(value) ? value : fallback;
  }

  const isPlain = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  /** Set a key safely: answer keys come from templates ("__proto__" stays a plain key). */
  function define(obj, key, value) {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true,
      configurable: true });
  }

  /** Put one element's answer under its name; objects under one name merge (checkboxes
   * that share a name give one object, as GT documents for crowd-checkbox). */
  function put(answer, key, value) {
    if (value === undefined || !key) return;
    const old = Object.prototype.hasOwnProperty.call(answer, key) ? answer[key] : undefined;
    if (isPlain(old) && isPlain(value)) {
      for (const [k, v] of Object.entries(value)) define(old, k, v);
    } else {
      define(answer, key, value);
    }
  }

  /** Parse AWS's attribute values: JSON, or the JavaScript-ish form GT's examples use
   * (single quotes, unquoted keys, trailing commas): "['a', 'b']", "{ text: 'None' }". */
  function parseLoose(source) {
    const text = String(source === null || source === undefined ? "" : source);
    const NUMBER = /[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y;
    const WORD = /[A-Za-z_$][\w$-]*/y;
    const ESCAPES = { n: "\n", t: "\t", r: "\r", b: "\b", f: "\f", v: "\v", 0: "\0" };
    let i = 0;
    const fail = (what) => { throw new SyntaxError(`${what} at character ${i + 1}`); };
    function space() {
      for (;;) {
        while (i < text.length && /\s/.test(text[i])) i++;
        if (text.startsWith("//", i)) {
          while (i < text.length && text[i] !== "\n") i++;
        } else if (text.startsWith("/*", i)) {
          const end = text.indexOf("*/", i + 2);
          i = end < 0 ? text.length : end + 2;
        } else {
          return;
        }
      }
    }
    function word() {
      WORD.lastIndex = i;
      const m = WORD.exec(text);
      if (!m) return "";
      i += m[0].length;
      return m[0];
    }
    function string() {
      const quote = text[i++];
      let out = "";
      while (i < text.length && text[i] !== quote) {
        let c = text[i++];
        if (c === "\\") {
          if (i >= text.length) fail("unfinished escape");
          const e = text[i++];
          if (e === "u") {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
            c = String.fromCharCode(parseInt(hex, 16));
            i += 4;
          } else {
            c = Object.prototype.hasOwnProperty.call(ESCAPES, e) ? ESCAPES[e] : e;
          }
        }
        out += c;
      }
      if (text[i] !== quote) fail("unterminated string");
      i++;
      return out;
    }
    function list() {
      i++;
      const out = [];
      for (;;) {
        space();
        if (text[i] === "]") { i++; return out; }
        out.push(value());
        space();
        if (text[i] === ",") i++;
        else if (text[i] !== "]") fail("expected , or ]");
      }
    }
    function object() {
      i++;
      const out = {};
      for (;;) {
        space();
        if (text[i] === "}") { i++; return out; }
        const key = text[i] === '"' || text[i] === "'" ? string() : word() || fail("expected a key");
        space();
        if (text[i] !== ":") fail("expected :");
        i++;
        define(out, key, value());
        space();
        if (text[i] === ",") i++;
        else if (text[i] !== "}") fail("expected , or }");
      }
    }
    function value() {
      space();
      const c = text[i];
      if (c === "[") return list();
      if (c === "{") return object();
      if (c === '"' || c === "'") return string();
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (m) { i += m[0].length; return Number(m[0]); }
      const w = word();
      if (w === "true") return true;
      if (w === "false") return false;
      if (w === "null" || w === "undefined") return null;
      return fail(w ? `unexpected "${w}"` : "unexpected end");
    }
    const result = value();
    space();
    if (i < text.length) fail("unexpected text");
    return result;
  }

  /** A list attribute (categories, labels, initial-value); a plain comma-separated list
   * when it is not JSON-ish at all. */
  function parseList(source) {
    if (source === null || source === undefined || !source.trim()) return [];
    try {
      const value = parseLoose(source);
      return Array.isArray(value) ? value : [value];
    } catch (err) {
      return source.replace(/^\s*\[|\]\s*$/g, "").split(",")
        .map((part) => part.trim().replace(/^(['"])(.*)\1$/, "$2")).filter(Boolean);
    }
  }

  function parseOr(source, fallback) {
    try { return parseLoose(source); } catch (err) { return fallback; }
  }

  const labelOf = (item) => (isPlain(item)
    ? String(item.label ?? item.text ?? item.name ?? "") : String(item));

  /** Code points before a UTF-16 index: GT's entity offsets count Unicode characters, as
   * Python's string indexes do. */
  const toCodePoints = (text, unit) => Array.from(text.slice(0, unit)).length;
  function toUnits(text, points) {
    let unit = 0;
    for (let n = 0; n < points && unit < text.length; n++) {
      unit += text.codePointAt(unit) > 0xffff ? 2 : 1;
    }
    return unit;
  }

  const kbd = (index) => (index < 9
    ? h("kbd", { class: "crowd-key", "aria-hidden": "true", text: String(index + 1) }) : null);

  /** The common layout of a task widget: instructions aside, then the header and the
   * widget's own parts, then the author's other content (classification-target...). */
  function layout(host, headerText) {
    const side = h("aside", { class: "crowd-side", "aria-label": "Instructions" });
    const main = h("div", { class: "crowd-main" });
    for (const node of Array.from(host.childNodes)) {
      const region = node.nodeType === 1
        && (node.localName === "short-instructions" || node.localName === "full-instructions");
      (region ? side : main).append(node);
    }
    let header = null;
    if (headerText) {
      header = h("div", { class: "crowd-header", id: uid("crowd-header"), role: "heading",
        "aria-level": "2", text: headerText });
      main.prepend(header);
    }
    const wrap = h("div", { class: "crowd-widget" });
    if (side.childNodes.length) wrap.append(side);
    wrap.append(main);
    host.append(wrap);
    /** Insert the widget's parts right after the header, before the author's content. */
    const insert = (...parts) => {
      const anchor = header ? header.nextSibling : main.firstChild;
      for (const part of parts) if (part) main.insertBefore(part, anchor);
    };
    return { main, header, insert };
  }

  function dialog(title, ...content) {
    const titleId = uid("crowd-dialog-title");
    const close = h("button", { type: "button", class: "crowd-dialog-close",
      "aria-label": "Close", text: "×" });
    const box = h("dialog", { class: "crowd-dialog", "aria-labelledby": titleId },
      h("div", { class: "crowd-dialog-inner" },
        h("div", { class: "crowd-dialog-head" }, h("h2", { id: titleId, text: title }), close),
        ...content));
    close.addEventListener("click", () => box.close());
    box.addEventListener("click", (event) => { if (event.target === box) box.close(); });
    return box;
  }

  // ------------------------------------------------------------------ base classes
  /** Renders once, when the document is parsed (moving it in the DOM does not redo it). */
  class CrowdElement extends HTMLElement {
    connectedCallback() {
      if (this.crowdStarted) return;
      this.crowdStarted = true;
      whenParsed(() => this.crowdRender());
    }

    crowdRender() {}
  }

  /** An element that answers: the form asks it for its answer and whether one is missing. */
  class CrowdField extends CrowdElement {
    get crowdLabel() {
      return this.getAttribute("header") || this.getAttribute("label")
        || this.getAttribute("aria-label") || this.getAttribute("name") || this.localName;
    }

    /** This element's part of the answer, or undefined to leave it out. */
    crowdAnswer() { return undefined; }

    /** What is missing, or "" when nothing is. */
    crowdProblem() { return ""; }

    crowdFocus() {
      const control = this.querySelector("input:not([type=hidden]), textarea, select, button, [tabindex]");
      if (control) control.focus();
    }

    crowdShowProblem(message) {
      if (!message && !this.crowdProblemNode) return;
      if (!this.crowdProblemNode) {
        this.crowdProblemNode = h("p", { class: "crowd-problem" });
        this.append(this.crowdProblemNode);
      }
      this.crowdProblemNode.textContent = message;
      this.crowdProblemNode.hidden = !message;
      this.classList.toggle("crowd-invalid", Boolean(message));
    }

    /** After a change: a problem shown earlier goes once it is fixed; the form hears of it
     * (a `crowd-change` event) to update its list of what is missing. */
    crowdChanged() {
      if (this.crowdProblemNode && !this.crowdProblemNode.hidden) {
        this.crowdShowProblem(this.crowdProblem());
      }
      this.dispatchEvent(new Event("crowd-change", { bubbles: true }));
    }
  }

  // ------------------------------------------------------------------ crowd-form
  const NATIVE = "input, select, textarea";
  const isInternal = (el) => el.closest("[data-crowd-internal]") !== null;
  const isDisabled = (el) => flag(el, "disabled") || el.closest("fieldset[disabled]") !== null;

  /** A native control's answer, for templates that mix plain inputs in (a loopworks choice:
   * text as a string, a radio group as the chosen value, a checkbox like crowd-checkbox). */
  function nativeAnswer(el) {
    if (el instanceof HTMLInputElement) {
      if (["button", "submit", "reset", "image", "file"].includes(el.type)) return undefined;
      if (el.type === "radio") return el.checked ? el.value : undefined;
      if (el.type === "checkbox") {
        const out = {};
        define(out, el.getAttribute("value") || "on", el.checked);
        return out;
      }
    }
    if (el instanceof HTMLSelectElement && el.multiple) {
      return Array.from(el.selectedOptions, (o) => o.value);
    }
    return el.value === "" ? undefined : el.value;
  }

  function nativeLabel(el) {
    const label = el.labels && el.labels[0];
    return (label && label.textContent.trim()) || el.getAttribute("aria-label") || el.name
      || "A field";
  }

  /** The form: its content, a Submit button (unless a crowd-button submits), and the
   * answer posted as GT's crowd-form does (sms-ui-template-crowd-form). */
  class CrowdForm extends CrowdElement {
    /** The HTML form that posts the answer (templates append questions to it). */
    get form() {
      if (!this.crowdPost) {
        this.crowdAnswers = h("input", { type: "hidden", name: "taskAnswers",
          "data-crowd-internal": "" });
        this.crowdPost = h("form", { method: "post", class: "crowd-form-post" },
          this.crowdAnswers);
      }
      return this.crowdPost;
    }

    crowdRender() {
      this.crowdErrors = h("div", { class: "crowd-form-errors", role: "alert", hidden: true });
      const footer = h("div", { class: "crowd-form-footer" }, this.crowdErrors);
      if (!this.querySelector('crowd-button[form-action="submit"]')) {
        this.crowdSubmit = h("button", { type: "button", class: "crowd-submit",
          "data-crowd-internal": "", "aria-keyshortcuts": "Enter Control+Enter",
          text: "Submit", onclick: () => this.requestSubmit() });
        footer.append(this.crowdSubmit);
      }
      footer.append(this.form);
      this.append(footer);
      // Once the list of missing answers is shown, it follows the worker's changes.
      const refresh = () => {
        if (!this.crowdErrors.hidden) this.crowdShowProblems(this.crowdProblems(), false);
      };
      for (const type of ["input", "change", "crowd-change"]) this.addEventListener(type, refresh);
      // A native <form> inside (templates nest them) submits this form instead.
      this.addEventListener("submit", (event) => {
        if (event.target === this) return;
        event.preventDefault();
        event.stopPropagation();
        this.requestSubmit();
      }, true);
    }

    /** Every named answer inside, merged into one object. */
    crowdAnswer() {
      const answer = {};
      for (const el of this.querySelectorAll("*")) {
        if (isInternal(el) || isDisabled(el)) continue;
        if (typeof el.crowdAnswer === "function") {
          put(answer, el.getAttribute("name"), el.crowdAnswer());
        } else if (el.matches(NATIVE) && el.name) {
          put(answer, el.name, nativeAnswer(el));
        }
      }
      return answer;
    }

    /** What is missing: required elements unanswered, native controls invalid. */
    crowdProblems() {
      const problems = [];
      for (const el of this.querySelectorAll("*")) {
        if (isInternal(el) || isDisabled(el)) continue;
        if (typeof el.crowdProblem === "function") {
          const message = el.crowdProblem();
          el.crowdShowProblem(message);
          if (message) problems.push({ el, label: el.crowdLabel, message });
        } else if (el.matches(NATIVE) && !el.checkValidity()) {
          problems.push({ el, label: nativeLabel(el), message: el.validationMessage });
        }
      }
      return problems;
    }

    crowdShowProblems(problems, focus = true) {
      const box = this.crowdErrors;
      if (!box) return;
      box.replaceChildren();
      box.hidden = problems.length === 0;
      if (!problems.length) return;
      box.append(h("p", { text: problems.length === 1
        ? "One answer is missing:" : `${problems.length} answers are missing:` }),
      h("ul", {}, ...problems.map((p) => h("li", { text: `${p.label}: ${p.message}` }))));
      const first = problems[0].el;
      if (!focus) return;
      if (typeof first.crowdFocus === "function") first.crowdFocus(); else first.focus();
    }

    /** Validate, let the page cancel, then post the answer. Returns whether it was sent. */
    requestSubmit() {
      if (this.crowdSent) return false;
      const buttons = Array.from(this.querySelectorAll('crowd-button[form-action="submit"]'));
      if (buttons.length && buttons.every((b) => flag(b, "disabled") || flag(b, "loading"))) {
        return false;
      }
      const problems = this.crowdProblems();
      this.crowdShowProblems(problems);
      if (problems.length) return false;
      // Templates validate in onsubmit (GT: crowd-form "inherits its events, such as
      // onsubmit") and may fill hidden inputs there, so the answer is read after it.
      if (!this.dispatchEvent(new Event("submit", { bubbles: true, cancelable: true }))) {
        return false;
      }
      const answer = this.crowdAnswer();
      const event = new CustomEvent("crowd-submit", { bubbles: true, cancelable: true,
        detail: { answer } });
      if (!this.dispatchEvent(event)) return false;
      this.crowdSent = true;
      if (this.crowdSubmit) this.crowdSubmit.disabled = true;
      const form = this.form;
      form.action = this.getAttribute("action") || window.location.href;
      this.crowdAnswers.value = JSON.stringify([answer]);
      const csrf = document.querySelector('meta[name="csrf-token"]');
      if (csrf && !form.querySelector('input[name="csrf_token"]')) {
        form.append(h("input", { type: "hidden", name: "csrf_token",
          value: csrf.getAttribute("content") || "", "data-crowd-internal": "" }));
      }
      form.submit();
      return true;
    }

    submit() { return this.requestSubmit(); }
  }

  // ------------------------------------------------------------------ classifiers
  /** One category out of many (crowd-classifier, crowd-image-classifier) or several
   * (the -multi-select ones). Answers: {"label": "<category>"} (sms-ui-template-crowd-
   * classifier, -image-classifier; plus "workerComment" when given) and {"labels": [...]}
   * (sms-ui-template-crowd-classifier-multi-select, -image-classifier-multi). */
  class ClassifierBase extends CrowdField {
    static get multi() { return false; }
    static get image() { return false; }

    crowdRender() {
      const { multi, image } = this.constructor;
      this.setAttribute("data-crowd-keys", "");
      const headerText = this.getAttribute("header") || "";
      const { main, header, insert } = layout(this, headerText);
      const figure = image ? h("figure", { class: "crowd-figure" },
        h("img", { class: "crowd-image", src: this.getAttribute("src"),
          alt: headerText || "The image to classify" })) : null;
      const group = h("div", { class: "crowd-options", role: multi ? "group" : "radiogroup",
        "aria-labelledby": header ? header.id : null,
        "aria-label": header ? null : "Categories" });
      const groupName = uid("crowd-options");
      this.crowdOptions = parseList(this.getAttribute("categories")).map(labelOf)
        .map((label, index) => this.crowdOption(group, groupName, label, index));
      const exclusion = multi ? parseOr(this.getAttribute("exclusion-category"), null) : null;
      const exclusionText = isPlain(exclusion) ? labelOf(exclusion)
        : (typeof exclusion === "string" ? exclusion : "");
      if (exclusionText) {
        this.crowdExclusion = this.crowdOption(group, groupName, exclusionText,
          this.crowdOptions.length);
        this.crowdExclusion.row.classList.add("crowd-option-exclusion");
      }
      // The item first (image, classification-target), then the categories.
      const targets = Array.from(this.querySelectorAll("classification-target"))
        .filter((target) => target.parentElement === main);
      insert(figure, ...targets, group);
    }

    get crowdChoices() {
      return this.crowdExclusion ? [...this.crowdOptions, this.crowdExclusion]
        : this.crowdOptions || [];
    }

    crowdOption(group, groupName, label, index) {
      const id = uid("crowd-option");
      const input = h("input", { type: this.constructor.multi ? "checkbox" : "radio",
        name: groupName, id, "data-crowd-internal": "",
        "aria-keyshortcuts": index < 9 ? String(index + 1) : null });
      const row = h("label", { class: "crowd-option", for: id }, input,
        h("span", { class: "crowd-option-text", text: label }), kbd(index));
      input.addEventListener("change", () => { this.crowdExclusive(input); this.crowdChanged(); });
      group.append(row);
      return { label, input, row };
    }

    /** "None of the above" and the categories exclude each other. */
    crowdExclusive(input) {
      if (!this.crowdExclusion || !input.checked) return;
      const none = this.crowdExclusion.input;
      for (const option of this.crowdChoices) {
        if (input === none ? option.input !== none : option.input === none) {
          option.input.checked = false;
        }
      }
    }

    crowdDigit(n) {
      const option = this.crowdChoices[n - 1];
      if (!option || option.input.disabled) return false;
      option.input.checked = this.constructor.multi ? !option.input.checked : true;
      this.crowdExclusive(option.input);
      option.input.focus();
      this.crowdChanged();
      return true;
    }

    crowdAnswer() {
      if (!this.crowdOptions) return undefined;
      const chosen = this.crowdChoices.filter((o) => o.input.checked).map((o) => o.label);
      if (this.constructor.multi) return { labels: chosen };
      if (!chosen.length) return undefined;
      const answer = { label: chosen[0] };
      const comment = this.querySelector("worker-comment");
      if (comment && comment.comment) answer.workerComment = comment.comment;
      return answer;
    }

    crowdProblem() {
      if (!this.crowdOptions || this.crowdChoices.some((o) => o.input.checked)) return "";
      return this.constructor.multi ? "choose at least one category" : "choose a category";
    }

    crowdFocus() {
      const options = this.crowdChoices;
      const option = options.find((o) => o.input.checked) || options[0];
      if (option) option.input.focus();
    }
  }

  class CrowdClassifier extends ClassifierBase {}
  class CrowdClassifierMulti extends ClassifierBase {
    static get multi() { return true; }
  }
  class CrowdImageClassifier extends ClassifierBase {
    static get image() { return true; }
  }
  class CrowdImageClassifierMulti extends ClassifierBase {
    static get multi() { return true; }
    static get image() { return true; }
  }

  /** The image classifiers' worker-comment region: a link opens a text area; its text is
   * the answer's "workerComment" (sms-ui-template-crowd-image-classifier). */
  class WorkerComment extends CrowdElement {
    get comment() { return this.crowdArea ? this.crowdArea.value.trim() : ""; }

    crowdRender() {
      const id = uid("crowd-comment");
      const note = h("div", { class: "crowd-comment-note" });
      note.append(...this.childNodes);
      this.crowdArea = h("textarea", { id, rows: "3", "data-crowd-internal": "",
        placeholder: this.getAttribute("placeholder") });
      const panel = h("div", { class: "crowd-comment-panel", hidden: true },
        h("label", { for: id, text: this.getAttribute("header") || "Add a comment" }),
        note, this.crowdArea);
      const open = h("button", { type: "button", class: "crowd-link", "aria-expanded": "false",
        text: this.getAttribute("link-text") || "Add a comment" });
      open.addEventListener("click", () => {
        panel.hidden = !panel.hidden;
        open.setAttribute("aria-expanded", String(!panel.hidden));
        if (!panel.hidden) this.crowdArea.focus();
      });
      this.append(open, panel);
    }
  }

  // ------------------------------------------------------------------ entity annotation
  /** Label spans of a text. Answer: {"entities": [{"label", "startOffset", "endOffset"}]},
   * offsets in Unicode characters, end exclusive (sms-ui-template-crowd-entity-annotation).
   * Self-contained as GT documents it: outside a crowd-form it brings its own. */
  class CrowdEntityAnnotation extends CrowdField {
    crowdRender() {
      if (!this.closest("crowd-form")) {
        const form = document.createElement("crowd-form");
        this.parentNode.insertBefore(form, this);
        form.prepend(this);
      }
      this.setAttribute("data-crowd-keys", "");
      const text = this.getAttribute("text") || "";
      this.crowdText = text;
      this.crowdLabels = parseList(this.getAttribute("labels")).map((item, index) => {
        const label = labelOf(item);
        const plain = isPlain(item) ? item : {};
        return { label, full: String(plain.fullDisplayName || label),
          short: String(plain.shortDisplayName || label), color: PALETTE[index % PALETTE.length] };
      });
      this.crowdEntities = [];
      for (const item of parseList(this.getAttribute("initial-value"))) {
        if (!isPlain(item)) continue;
        const start = toUnits(text, Number(item.startOffset));
        const end = toUnits(text, Number(item.endOffset));
        if (start < end) this.crowdEntities.push({ start, end, label: labelOf(item) });
      }
      this.crowdActive = -1;
      this.crowdPending = null;
      const { insert } = layout(this, this.getAttribute("header") || "");
      const toolbar = h("div", { class: "crowd-labels", role: "toolbar", "aria-label": "Labels" });
      this.crowdLabelButtons = this.crowdLabels.map((label, index) => {
        const swatch = h("span", { class: "crowd-swatch", "aria-hidden": "true" });
        swatch.style.background = label.color;
        const button = h("button", { type: "button", class: "crowd-label-button",
          "aria-pressed": "false", "data-crowd-internal": "",
          "aria-keyshortcuts": index < 9 ? String(index + 1) : null },
        swatch, label.full, kbd(index));
        button.addEventListener("click", () => this.crowdUse(index));
        toolbar.append(button);
        return button;
      });
      this.crowdTextBox = h("div", { class: "crowd-entity-text", tabindex: "0",
        "aria-label": "The text: select words with the mouse to label them" });
      this.crowdTextBox.addEventListener("mouseup", () => this.crowdSelected());
      this.crowdTextBox.addEventListener("keyup", (event) => {
        if (event.shiftKey) this.crowdSelected();
      });
      this.crowdStatus = h("p", { class: "crowd-status", role: "status" });
      this.crowdList = h("ul", { class: "crowd-list", "aria-label": "Labeled entities" });
      const hint = h("p", { class: "crowd-hint", text: "Choose a label (click or 1–9), then "
        + "select words in the text. Select a labeled span again to change its label." });
      insert(hint, toolbar, this.crowdTextBox, this.crowdStatus, this.crowdList);
      this.crowdDraw();
    }

    /** A point in the text box as an index into the text (badges not counted). */
    crowdOffset(node, offset) {
      const range = document.createRange();
      range.selectNodeContents(this.crowdTextBox);
      range.setEnd(node, offset);
      const part = range.cloneContents();
      part.querySelectorAll("[data-badge]").forEach((badge) => badge.remove());
      return part.textContent.length;
    }

    crowdSelected() {
      const selection = window.getSelection();
      if (!selection || selection.rangeCount === 0) return;
      const range = selection.getRangeAt(0);
      const box = this.crowdTextBox;
      if (!box.contains(range.startContainer) || !box.contains(range.endContainer)) return;
      const text = this.crowdText;
      if (selection.isCollapsed) {  // a click: on a labeled span, pick it up to relabel
        const node = range.startContainer;
        const mark = (node.nodeType === 1 ? node : node.parentElement).closest("mark");
        this.crowdPending = mark && box.contains(mark)
          ? { start: Number(mark.dataset.start), end: Number(mark.dataset.end) } : null;
        if (this.crowdPending) {
          const { start, end } = this.crowdPending;
          this.crowdSay(`Choose a new label for “${text.slice(start, end)}”.`);
        }
        return;
      }
      let start = this.crowdOffset(range.startContainer, range.startOffset);
      let end = this.crowdOffset(range.endContainer, range.endOffset);
      while (start < end && /\s/.test(text[start])) start++;
      while (end > start && /\s/.test(text[end - 1])) end--;
      if (start >= end) return;
      if (this.crowdActive >= 0) {
        this.crowdAnnotate(start, end, this.crowdActive);
        selection.removeAllRanges();
      } else {
        this.crowdPending = { start, end };
        this.crowdSay(`Choose a label for “${text.slice(start, end)}”.`);
      }
    }

    crowdUse(index) {
      if (!this.crowdLabels[index]) return false;
      this.crowdActive = index;
      this.crowdLabelButtons.forEach((button, i) => {
        button.setAttribute("aria-pressed", String(i === index));
      });
      if (this.crowdPending) {
        this.crowdAnnotate(this.crowdPending.start, this.crowdPending.end, index);
        const selection = window.getSelection();
        if (selection) selection.removeAllRanges();
      } else {
        this.crowdSay(`Label: ${this.crowdLabels[index].full}. Select words to label them.`);
      }
      return true;
    }

    crowdAnnotate(start, end, index) {
      const label = this.crowdLabels[index];
      const words = this.crowdText.slice(start, end);
      this.crowdPending = null;
      const same = this.crowdEntities.find((e) => e.start === start && e.end === end);
      if (same) {
        same.label = label.label;
      } else if (this.crowdEntities.some((e) => e.start < end && start < e.end)) {
        this.crowdSay(`“${words}” overlaps a labeled span: remove that one first.`);
        return;
      } else {
        this.crowdEntities.push({ start, end, label: label.label });
        this.crowdEntities.sort((a, b) => a.start - b.start);
      }
      this.crowdSay(`“${words}” labeled ${label.full}.`);
      this.crowdDraw();
      this.crowdChanged();
    }

    crowdSay(message) { this.crowdStatus.textContent = message; }

    crowdLabelInfo(name) {
      return this.crowdLabels.find((l) => l.label === name)
        || { label: name, full: name, short: name, color: PALETTE[PALETTE.length - 1] };
    }

    crowdDraw() {
      const text = this.crowdText;
      const box = this.crowdTextBox;
      box.replaceChildren();
      this.crowdList.replaceChildren();
      let at = 0;
      this.crowdEntities.forEach((entity, index) => {
        const info = this.crowdLabelInfo(entity.label);
        const words = text.slice(entity.start, entity.end);
        if (entity.start > at) box.append(text.slice(at, entity.start));
        const mark = h("mark", { class: "crowd-entity", "data-start": entity.start,
          "data-end": entity.end, title: info.full },
        words, h("span", { class: "crowd-entity-badge", "data-badge": "", "aria-hidden": "true",
          text: info.short }));
        mark.style.setProperty("--crowd-entity", info.color);
        box.append(mark);
        at = entity.end;
        const remove = h("button", { type: "button", class: "crowd-remove",
          "data-crowd-internal": "", "aria-label": `Remove ${info.full} “${words}”`, text: "×" });
        remove.addEventListener("click", () => {
          this.crowdEntities.splice(index, 1);
          this.crowdSay(`Removed ${info.full} “${words}”.`);
          this.crowdDraw();
          this.crowdChanged();
        });
        this.crowdList.append(h("li", {}, h("span", { text: `${info.full}: “${words}”` }), remove));
      });
      box.append(text.slice(at));
    }

    crowdDigit(n) { return this.crowdUse(n - 1); }

    crowdAnswer() {
      if (!this.crowdEntities) return undefined;
      const text = this.crowdText;
      return { entities: this.crowdEntities.map((e) => ({ label: e.label,
        startOffset: toCodePoints(text, e.start), endOffset: toCodePoints(text, e.end) })) };
    }

    crowdProblem() {
      return flag(this, "required") && this.crowdEntities && !this.crowdEntities.length
        ? "label at least one span of the text" : "";
    }

    crowdFocus() { if (this.crowdTextBox) this.crowdTextBox.focus(); }
  }

  // ------------------------------------------------------------------ image annotation
  /** Shapes on an image, in the image's own pixels (0,0 at the top left), drawn on an SVG
   * overlay whose viewBox is the image's natural size. A label is chosen with a click or
   * 1..9; the chosen shape moves with the arrow keys and goes with Delete. */
  class ImageAnnotator extends CrowdField {
    crowdRender() {
      this.setAttribute("data-crowd-keys", "");
      this.crowdLabels = parseList(this.getAttribute("labels")).map(labelOf);
      this.crowdLabelIndex = 0;
      this.crowdInitial = this.hasAttribute("initial-value");
      this.crowdShapes = this.crowdInitial
        ? parseList(this.getAttribute("initial-value")).filter(isPlain)
          .map((item) => this.crowdShapeFrom(item)).filter(Boolean) : [];
      this.crowdModified = false;
      this.crowdSelected = -1;
      this.crowdDraft = null;
      const headerText = this.getAttribute("header") || "";
      const { insert } = layout(this, headerText);
      const picker = h("div", { class: "crowd-options crowd-options-row", role: "radiogroup",
        "aria-label": "Label" });
      const name = uid("crowd-label");
      this.crowdLabelInputs = this.crowdLabels.map((label, index) => {
        const id = uid("crowd-label-option");
        const swatch = h("span", { class: "crowd-swatch", "aria-hidden": "true" });
        swatch.style.background = this.crowdColor(label);
        const input = h("input", { type: "radio", name, id, "data-crowd-internal": "",
          "aria-keyshortcuts": index < 9 ? String(index + 1) : null });
        input.checked = index === 0;
        input.addEventListener("change", () => this.crowdUse(index));
        picker.append(h("label", { class: "crowd-option", for: id }, input, swatch,
          h("span", { text: label }), kbd(index)));
        return input;
      });
      this.crowdImage = h("img", { class: "crowd-image", src: this.getAttribute("src"),
        alt: headerText || "The image to annotate", draggable: "false" });
      this.crowdSvg = svg("svg", { class: "crowd-overlay", "aria-hidden": "true",
        preserveAspectRatio: "none" });
      const statusId = uid("crowd-status");
      this.crowdStage = h("div", { class: "crowd-stage", tabindex: "0", role: "application",
        "aria-roledescription": "annotation canvas", "aria-label": this.constructor.how,
        "aria-describedby": statusId }, this.crowdImage, this.crowdSvg);
      this.crowdStatus = h("p", { class: "crowd-status", role: "status", id: statusId });
      this.crowdList = h("ul", { class: "crowd-list", "aria-label": "Annotations" });
      insert(h("p", { class: "crowd-hint", text: this.constructor.how }), picker,
        this.crowdStage, this.crowdStatus, this.crowdList);
      this.crowdImage.addEventListener("load", () => this.crowdSized());
      if (this.crowdImage.complete && this.crowdImage.naturalWidth) this.crowdSized();
      this.crowdSvg.addEventListener("pointerdown", (event) => this.crowdDown(event));
      this.crowdSvg.addEventListener("pointermove", (event) => this.crowdMove(event));
      this.crowdSvg.addEventListener("pointerup", (event) => this.crowdUp(event));
      this.crowdStage.addEventListener("keydown", (event) => this.crowdKey(event));
      this.crowdDraw();
    }

    get crowdSize() {
      const img = this.crowdImage;
      return { width: img ? img.naturalWidth : 0, height: img ? img.naturalHeight : 0 };
    }

    /** Image pixels per screen pixel. */
    get crowdScale() {
      const rect = this.crowdSvg.getBoundingClientRect();
      return rect.width ? this.crowdSize.width / rect.width : 1;
    }

    crowdSized() {
      const { width, height } = this.crowdSize;
      this.crowdSvg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      this.crowdDraw();
    }

    crowdColor(label) {
      const index = this.crowdLabels.indexOf(label);
      return index < 0 ? PALETTE[PALETTE.length - 1] : PALETTE[index % PALETTE.length];
    }

    crowdPoint(event) {
      const rect = this.crowdSvg.getBoundingClientRect();
      const { width, height } = this.crowdSize;
      const clamp = (v, max) => Math.min(Math.max(v, 0), max);
      return { x: clamp((event.clientX - rect.left) * width / rect.width, width),
        y: clamp((event.clientY - rect.top) * height / rect.height, height),
        clientX: event.clientX, clientY: event.clientY };
    }

    crowdDown(event) {
      if (event.button !== 0 || !this.crowdSize.width) return;
      event.preventDefault();
      this.crowdStage.focus();
      this.crowdSvg.setPointerCapture(event.pointerId);
      this.crowdPress(this.crowdPoint(event));
    }

    crowdMove(event) {
      if (!this.crowdDraft) return;
      this.crowdDrag(this.crowdPoint(event));
      this.crowdDraw();
    }

    crowdUp(event) {
      if (!this.crowdDraft) return;
      this.crowdRelease(this.crowdPoint(event));
      this.crowdDraw();
    }

    crowdPress() {}
    crowdDrag() {}
    crowdRelease() {}

    crowdUse(index) {
      if (!this.crowdLabels[index]) return false;
      this.crowdLabelIndex = index;
      this.crowdLabelInputs[index].checked = true;
      const shape = this.crowdShapes[this.crowdSelected];
      if (shape && shape.label !== this.crowdLabels[index]) {
        shape.label = this.crowdLabels[index];
        this.crowdEdited(`Changed to ${shape.label}.`);
      }
      return true;
    }

    crowdDigit(n) {
      const ok = this.crowdUse(n - 1);
      if (ok && this.crowdLabelInputs[n - 1]) this.crowdLabelInputs[n - 1].focus();
      return ok;
    }

    crowdAdd(shape) {
      this.crowdShapes.push(shape);
      this.crowdSelected = -1;  // the next label chosen is for the next shape, not this one
      this.crowdEdited(`Added ${this.crowdDescribe(shape)}.`);
    }

    crowdSelect(index) {
      this.crowdSelected = index;
      const shape = this.crowdShapes[index];
      if (shape) {
        const label = this.crowdLabels.indexOf(shape.label);
        if (label >= 0) { this.crowdLabelIndex = label; this.crowdLabelInputs[label].checked = true; }
        this.crowdSay(`Selected ${this.crowdDescribe(shape)}. Arrow keys move it; Delete `
          + "removes it; a label changes it.");
      }
      this.crowdDraw();
    }

    crowdEdited(message) {
      this.crowdModified = true;
      this.crowdSay(message);
      this.crowdDraw();
      this.crowdChanged();
    }

    crowdSay(message) { this.crowdStatus.textContent = message; }

    crowdKey(event) {
      const shape = this.crowdShapes[this.crowdSelected];
      const step = event.shiftKey ? 10 : 1;
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step],
        ArrowDown: [0, step] };
      if (event.key === "Escape") {
        this.crowdDraft = null;
        this.crowdSelected = -1;
        this.crowdDraw();
      } else if ((event.key === "Delete" || event.key === "Backspace") && !this.crowdDraft
                 && shape) {
        this.crowdShapes.splice(this.crowdSelected, 1);
        this.crowdSelected = -1;
        this.crowdEdited(`Removed ${this.crowdDescribe(shape)}.`);
      } else if (moves[event.key] && shape) {
        const [dx, dy] = moves[event.key];
        this.crowdNudge(shape, dx, dy, event.altKey);
        this.crowdEdited(this.crowdDescribe(shape));
      } else if (!this.crowdKeyMore(event)) {
        return;
      }
      event.preventDefault();
    }

    crowdKeyMore() { return false; }

    crowdDraw() {
      if (!this.crowdSvg) return;
      const k = this.crowdScale;
      this.crowdSvg.replaceChildren();
      this.crowdShapes.forEach((shape, index) => {
        const group = svg("g", { class: index === this.crowdSelected
          ? "crowd-shape crowd-selected" : "crowd-shape" });
        this.crowdPaint(group, shape, this.crowdColor(shape.label), k);
        this.crowdSvg.append(group);
      });
      if (this.crowdDraft) {
        const group = svg("g", { class: "crowd-shape crowd-draft" });
        this.crowdPaintDraft(group, this.crowdDraft, this.crowdColor(this.crowdLabels[this.crowdLabelIndex]), k);
        this.crowdSvg.append(group);
      }
      this.crowdList.replaceChildren();
      this.crowdShapes.forEach((shape, index) => {
        const pick = h("button", { type: "button", class: "crowd-link",
          "aria-pressed": String(index === this.crowdSelected), text: this.crowdDescribe(shape) });
        pick.addEventListener("click", () => { this.crowdSelect(index); this.crowdStage.focus(); });
        const remove = h("button", { type: "button", class: "crowd-remove",
          "aria-label": `Remove ${this.crowdDescribe(shape)}`, text: "×" });
        remove.addEventListener("click", () => {
          this.crowdShapes.splice(index, 1);
          this.crowdSelected = -1;
          this.crowdEdited(`Removed ${this.crowdDescribe(shape)}.`);
        });
        this.crowdList.append(h("li", {}, pick, remove));
      });
    }

    /** A text tag for a shape, sized in screen pixels whatever the image's scale. */
    crowdTag(group, x, y, label, color, k) {
      const tag = svg("text", { x, y, fill: color, "font-size": 12 * k, class: "crowd-tag" });
      tag.textContent = label;
      group.append(tag);
    }

    crowdAnswerWith(key, items) {
      const answer = {};
      define(answer, key, items);
      answer.inputImageProperties = { height: this.crowdSize.height, width: this.crowdSize.width };
      // GT: initial values "can be adjusted and whether or not a worker answer was adjusted
      // is tracked via an initialValueModified boolean in the worker answer output".
      if (this.crowdInitial) answer.initialValueModified = this.crowdModified;
      return answer;
    }

    crowdProblem() {
      return flag(this, "required") && this.crowdShapes && !this.crowdShapes.length
        ? "draw at least one annotation" : "";
    }

    crowdFocus() { if (this.crowdStage) this.crowdStage.focus(); }
  }

  /** Boxes. Answer: {"boundingBoxes": [{"label", "left", "top", "width", "height"}],
   * "inputImageProperties": {"height", "width"}} (sms-ui-template-crowd-bounding-box). */
  class CrowdBoundingBox extends ImageAnnotator {
    static get how() {
      return "Drag on the image to draw a box with the chosen label; click a box to select it.";
    }

    crowdShapeFrom(item) {
      const n = (v) => Math.round(Number(v) || 0);
      return { label: labelOf(item), left: n(item.left), top: n(item.top),
        width: n(item.width), height: n(item.height) };
    }

    crowdPress(point) { this.crowdDraft = { start: point, end: point }; }

    crowdDrag(point) { this.crowdDraft.end = point; }

    crowdRelease(point) {
      const { start } = this.crowdDraft;
      this.crowdDraft = null;
      if (Math.abs(point.clientX - start.clientX) < 3 || Math.abs(point.clientY - start.clientY) < 3) {
        // A click, not a drag: select the smallest box under it.
        let best = -1;
        this.crowdShapes.forEach((b, i) => {
          const inside = point.x >= b.left && point.x <= b.left + b.width
            && point.y >= b.top && point.y <= b.top + b.height;
          const area = b.width * b.height;
          if (inside && (best < 0 || area < this.crowdShapes[best].width * this.crowdShapes[best].height)) best = i;
        });
        this.crowdSelect(best);
        return;
      }
      const left = Math.round(Math.min(start.x, point.x));
      const top = Math.round(Math.min(start.y, point.y));
      const width = Math.round(Math.max(start.x, point.x)) - left;
      const height = Math.round(Math.max(start.y, point.y)) - top;
      if (width < 1 || height < 1) return;
      this.crowdAdd({ label: this.crowdLabels[this.crowdLabelIndex] ?? "", left, top, width, height });
    }

    crowdNudge(box, dx, dy, resize) {
      const { width, height } = this.crowdSize;
      if (resize) {
        box.width = Math.min(Math.max(box.width + dx, 1), width - box.left);
        box.height = Math.min(Math.max(box.height + dy, 1), height - box.top);
      } else {
        box.left = Math.min(Math.max(box.left + dx, 0), width - box.width);
        box.top = Math.min(Math.max(box.top + dy, 0), height - box.height);
      }
    }

    crowdDescribe(b) { return `${b.label} box at ${b.left},${b.top}, ${b.width}×${b.height}`; }

    crowdPaint(group, b, color, k) {
      group.append(svg("rect", { x: b.left, y: b.top, width: b.width, height: b.height,
        stroke: color, fill: color, "fill-opacity": 0.12, "vector-effect": "non-scaling-stroke" }));
      this.crowdTag(group, b.left + 2 * k, b.top + 13 * k, b.label, color, k);
    }

    crowdPaintDraft(group, draft, color) {
      const { start, end } = draft;
      group.append(svg("rect", { x: Math.min(start.x, end.x), y: Math.min(start.y, end.y),
        width: Math.abs(end.x - start.x), height: Math.abs(end.y - start.y), stroke: color,
        fill: "none", "vector-effect": "non-scaling-stroke" }));
    }

    crowdAnswer() {
      if (!this.crowdShapes) return undefined;
      return this.crowdAnswerWith("boundingBoxes", this.crowdShapes.map((b) => ({
        label: b.label, left: b.left, top: b.top, width: b.width, height: b.height })));
    }
  }

  /** Points. Answer: {"keypoints": [{"label", "x", "y"}], "inputImageProperties"}
   * (sms-ui-template-crowd-keypoint). */
  class CrowdKeypoint extends ImageAnnotator {
    static get how() {
      return "Click on the image to place a point with the chosen label; click a point to select it.";
    }

    crowdShapeFrom(item) {
      return { label: labelOf(item), x: Math.round(Number(item.x) || 0),
        y: Math.round(Number(item.y) || 0) };
    }

    crowdPress(point) {
      const near = 8 * this.crowdScale;
      const hit = this.crowdShapes.findIndex((p) => Math.hypot(p.x - point.x, p.y - point.y) <= near);
      if (hit >= 0) { this.crowdSelect(hit); return; }
      this.crowdAdd({ label: this.crowdLabels[this.crowdLabelIndex] ?? "", x: Math.round(point.x),
        y: Math.round(point.y) });
    }

    crowdNudge(p, dx, dy) {
      p.x = Math.min(Math.max(p.x + dx, 0), this.crowdSize.width);
      p.y = Math.min(Math.max(p.y + dy, 0), this.crowdSize.height);
    }

    crowdDescribe(p) { return `${p.label} point at ${p.x},${p.y}`; }

    crowdPaint(group, p, color, k) {
      group.append(svg("circle", { cx: p.x, cy: p.y, r: 5 * k, fill: color, stroke: "#fff",
        "vector-effect": "non-scaling-stroke" }));
      this.crowdTag(group, p.x + 7 * k, p.y - 7 * k, p.label, color, k);
    }

    crowdPaintDraft() {}

    crowdAnswer() {
      if (!this.crowdShapes) return undefined;
      return this.crowdAnswerWith("keypoints", this.crowdShapes.map((p) => ({
        label: p.label, x: p.x, y: p.y })));
    }
  }

  /** Polygons. Answer: {"polygons": [{"label", "vertices": [{"x", "y"}]}],
   * "inputImageProperties"} (sms-ui-template-crowd-polygon). */
  class CrowdPolygon extends ImageAnnotator {
    static get how() {
      return "Click on the image to place each corner; click the first corner or press Enter "
        + "to close the polygon, Escape to drop it.";
    }

    crowdShapeFrom(item) {
      const vertices = (Array.isArray(item.vertices) ? item.vertices : []).filter(isPlain)
        .map((v) => ({ x: Math.round(Number(v.x) || 0), y: Math.round(Number(v.y) || 0) }));
      return vertices.length >= 3 ? { label: labelOf(item), vertices } : null;
    }

    crowdPress(point) {
      const vertex = { x: Math.round(point.x), y: Math.round(point.y) };
      const draft = this.crowdDraft;
      if (!draft) {
        this.crowdDraft = { vertices: [vertex], cursor: vertex };
        this.crowdSelected = -1;
        this.crowdSay("Corner placed; keep clicking, then click the first corner or press Enter.");
        this.crowdDraw();
        return;
      }
      const first = draft.vertices[0];
      if (draft.vertices.length >= 3
          && Math.hypot(first.x - point.x, first.y - point.y) <= 8 * this.crowdScale) {
        this.crowdClose();
        return;
      }
      draft.vertices.push(vertex);
      this.crowdDraw();
    }

    crowdMove(event) {
      if (!this.crowdDraft) return;
      const p = this.crowdPoint(event);
      this.crowdDraft.cursor = { x: p.x, y: p.y };
      this.crowdDraw();
    }

    crowdUp() {}

    crowdClose() {
      const draft = this.crowdDraft;
      this.crowdDraft = null;
      if (!draft || draft.vertices.length < 3) {
        this.crowdSay("A polygon needs at least three corners.");
        this.crowdDraw();
        return;
      }
      this.crowdAdd({ label: this.crowdLabels[this.crowdLabelIndex] ?? "", vertices: draft.vertices });
    }

    crowdKeyMore(event) {
      if (event.key === "Enter" && this.crowdDraft) { this.crowdClose(); return true; }
      if (event.key === "Backspace" && this.crowdDraft) {
        this.crowdDraft.vertices.pop();
        if (!this.crowdDraft.vertices.length) this.crowdDraft = null;
        this.crowdDraw();
        return true;
      }
      return false;
    }

    crowdNudge(polygon, dx, dy) {
      const { width, height } = this.crowdSize;
      const xs = polygon.vertices.map((v) => v.x);
      const ys = polygon.vertices.map((v) => v.y);
      const mx = Math.min(Math.max(dx, -Math.min(...xs)), width - Math.max(...xs));
      const my = Math.min(Math.max(dy, -Math.min(...ys)), height - Math.max(...ys));
      for (const v of polygon.vertices) { v.x += mx; v.y += my; }
    }

    crowdDescribe(p) {
      const [first] = p.vertices;
      return `${p.label} polygon of ${p.vertices.length} corners from ${first.x},${first.y}`;
    }

    crowdPaint(group, p, color, k) {
      group.append(svg("polygon", { points: p.vertices.map((v) => `${v.x},${v.y}`).join(" "),
        stroke: color, fill: color, "fill-opacity": 0.12, "vector-effect": "non-scaling-stroke" }));
      this.crowdTag(group, p.vertices[0].x + 4 * k, p.vertices[0].y - 4 * k, p.label, color, k);
    }

    crowdPaintDraft(group, draft, color, k) {
      const points = [...draft.vertices, draft.cursor].map((v) => `${v.x},${v.y}`).join(" ");
      group.append(svg("polyline", { points, stroke: color, fill: "none",
        "vector-effect": "non-scaling-stroke" }));
      for (const v of draft.vertices) {
        group.append(svg("circle", { cx: v.x, cy: v.y, r: 4 * k, fill: color }));
      }
    }

    crowdAnswer() {
      if (!this.crowdShapes) return undefined;
      return this.crowdAnswerWith("polygons", this.crowdShapes.map((p) => ({
        label: p.label, vertices: p.vertices.map((v) => ({ x: v.x, y: v.y })) })));
    }
  }

  // ------------------------------------------------------------------ form controls
  /** Checked or not. Answer: {"<name>": {"<value, default on>": true|false}}
   * (sms-ui-template-crowd-checkbox, -radio-button, -toggle-button). */
  class ToggleBase extends CrowdField {
    static get kind() { return "checkbox"; }

    crowdRender() {
      const id = uid(`crowd-${this.constructor.kind}`);
      this.crowdInput = h("input", { type: this.constructor.kind, id, name: this.crowdGroup(id),
        "data-crowd-internal": "" });
      this.crowdInput.checked = flag(this, "checked");
      this.crowdInput.disabled = flag(this, "disabled");
      const text = h("span", { class: "crowd-choice-text" });
      text.append(...this.childNodes);
      this.append(h("label", { class: "crowd-choice", for: id }, this.crowdInput, text));
      this.crowdInput.addEventListener("change", () => {
        this.crowdChanged();
        const group = this.closest("crowd-radio-group");
        if (group) group.crowdChanged();
      });
    }

    crowdGroup(id) { return id; }

    get checked() { return this.crowdInput ? this.crowdInput.checked : flag(this, "checked"); }

    set checked(value) {
      if (this.crowdInput) this.crowdInput.checked = Boolean(value);
      else this.toggleAttribute("checked", Boolean(value));
    }

    crowdAnswer() {
      const answer = {};
      define(answer, this.getAttribute("value") || "on", this.checked);
      return answer;
    }

    crowdProblem() {
      return flag(this, "required") && !this.checked ? "this box must be checked" : "";
    }
  }

  class CrowdCheckbox extends ToggleBase {}

  /** Inside a crowd-radio-group one button is checked at a time; outside one, buttons that
   * share a name exclude each other. */
  class CrowdRadioButton extends ToggleBase {
    static get kind() { return "radio"; }

    crowdGroup(id) {
      const group = this.closest("crowd-radio-group");
      if (group) return group.crowdGroupName;
      return `crowd-radio-${this.getAttribute("name") || id}`;
    }

    crowdProblem() { return ""; }
  }

  class CrowdRadioGroup extends CrowdField {
    get crowdGroupName() {
      if (!this.crowdName) this.crowdName = uid("crowd-radio-group");
      return this.crowdName;
    }

    get crowdLabel() { return this.getAttribute("aria-label") || "A choice"; }

    crowdRender() { this.setAttribute("role", "radiogroup"); }

    /** GT's radio buttons take no `required`; on the group it asks for one choice. */
    crowdProblem() {
      if (!flag(this, "required")) return "";
      const buttons = Array.from(this.querySelectorAll("crowd-radio-button"));
      return buttons.some((b) => b.checked) ? "" : "choose one";
    }
  }

  /** A button that stays pressed: aria-pressed; answer as crowd-checkbox's. */
  class CrowdToggleButton extends ToggleBase {
    crowdRender() {
      this.crowdButton = h("button", { type: "button", class: "crowd-toggle",
        "aria-pressed": String(flag(this, "checked")), "data-crowd-internal": "" });
      this.crowdButton.disabled = flag(this, "disabled");
      this.crowdButton.append(...this.childNodes);
      if (!this.crowdButton.textContent.trim()) {
        this.crowdButton.setAttribute("aria-label", this.getAttribute("name") || "Toggle");
      }
      this.crowdButton.addEventListener("click", () => {
        this.checked = !this.checked;
        this.crowdChanged();
      });
      this.append(this.crowdButton);
    }

    get checked() {
      return this.crowdButton ? this.crowdButton.getAttribute("aria-pressed") === "true"
        : flag(this, "checked");
    }

    set checked(value) {
      if (this.crowdButton) this.crowdButton.setAttribute("aria-pressed", String(Boolean(value)));
      else this.toggleAttribute("checked", Boolean(value));
    }

    crowdProblem() { return flag(this, "required") && !this.checked ? "press this button" : ""; }
  }

  /** Text. Answer: {"<name>": "<the text>"}; left out when empty (sms-ui-template-crowd-
   * input: "Elements with no input do not appear in the output"; -text-area, where line
   * breaks are \n). A number input's text is a string too: GT's output is the text. */
  class TextBase extends CrowdField {
    static get multiline() { return false; }

    crowdRender() {
      const id = uid("crowd-text");
      const multiline = this.constructor.multiline;
      const control = multiline
        ? h("textarea", { id, rows: this.getAttribute("rows") || "3" })
        : h("input", { id, type: this.getAttribute("type") || "text" });
      control.setAttribute("data-crowd-internal", "");
      const label = this.getAttribute("label");
      if (!label) control.setAttribute("aria-label", this.getAttribute("placeholder") || this.crowdLabel);
      const placeholder = this.getAttribute("placeholder");
      if (placeholder) control.placeholder = placeholder;
      control.value = this.getAttribute("value") || "";
      control.required = flag(this, "required");
      control.disabled = flag(this, "disabled");
      const max = num(this, "max-length", NaN);
      if (max >= 0) control.maxLength = max;
      const min = num(this, "min-length", NaN);
      if (min >= 0) control.minLength = min;
      for (const attr of ["min", "max", "step", "pattern", "autocomplete"]) {
        if (this.hasAttribute(attr)) control.setAttribute(attr, this.getAttribute(attr));
      }
      const rows = num(this, "max-rows", NaN);
      if (multiline && rows > 0) control.style.maxHeight = `${rows * 1.5 + 1}em`;
      this.crowdControl = control;
      this.crowdFilter(control);
      const parts = [label ? h("label", { for: id, class: "crowd-field-label", text: label }) : null,
        control];
      if (multiline && flag(this, "char-counter")) {
        const count = h("span", { class: "crowd-counter", "aria-live": "polite" });
        const update = () => {
          count.textContent = max >= 0 ? `${control.value.length}/${max}` : String(control.value.length);
        };
        control.addEventListener("input", update);
        update();
        parts.push(count);
      }
      this.append(h("div", { class: "crowd-field" }, ...parts));
      control.addEventListener("input", () => this.crowdChanged());
      if (flag(this, "auto-focus") || flag(this, "autofocus")) {
        window.setTimeout(() => control.focus(), 0);
      }
    }

    /** allowed-pattern with auto-validate: characters that do not match are not typed. */
    crowdFilter(control) {
      const pattern = this.getAttribute("allowed-pattern");
      if (!pattern || !flag(this, "auto-validate")) return;
      let allowed;
      try { allowed = new RegExp(pattern); } catch (err) { return; }
      control.addEventListener("beforeinput", (event) => {
        if (event.data && !Array.from(event.data).every((c) => allowed.test(c))) {
          event.preventDefault();
        }
      });
    }

    get value() {
      return this.crowdControl ? this.crowdControl.value : this.getAttribute("value") || "";
    }

    set value(text) {
      if (this.crowdControl) this.crowdControl.value = text;
      else this.setAttribute("value", text);
    }

    crowdAnswer() { return this.value === "" ? undefined : this.value; }

    crowdProblem() {
      const control = this.crowdControl;
      if (!control) return "";
      if (control.required && !control.value.trim()) return "this field is required";
      if (!control.checkValidity()) {
        return this.getAttribute("error-message") || control.validationMessage;
      }
      return "";
    }

    crowdFocus() { if (this.crowdControl) this.crowdControl.focus(); }
  }

  class CrowdInput extends TextBase {}
  class CrowdTextArea extends TextBase {
    static get multiline() { return true; }
  }

  /** A number on a scale. Answer: {"<name>": <number>} (sms-ui-template-crowd-slider lists
   * the attributes; the answer is the slider's value, a number). */
  class CrowdSlider extends CrowdField {
    crowdRender() {
      const id = uid("crowd-slider");
      const min = num(this, "min", 0);
      const max = num(this, "max", 100);
      const step = num(this, "step", 1);
      const range = h("input", { type: "range", id, min, max, step, "data-crowd-internal": "",
        "aria-label": this.crowdLabel });
      range.value = String(num(this, "value", min));
      range.disabled = flag(this, "disabled");
      const shown = h("output", { class: "crowd-slider-value", for: id, text: range.value });
      const parts = [range, shown];
      let box = null;
      if (flag(this, "editable")) {
        box = h("input", { type: "number", min, max, step, class: "crowd-slider-number",
          "data-crowd-internal": "", "aria-label": `${this.crowdLabel} (number)` });
        box.value = range.value;
        box.disabled = range.disabled;
        box.addEventListener("input", () => {
          if (box.value === "") return;
          range.value = box.value;
          this.crowdMoved();
        });
        parts.push(box);
      }
      range.addEventListener("input", () => { if (box) box.value = range.value; this.crowdMoved(); });
      this.crowdRange = range;
      this.crowdShown = shown;
      this.append(h("div", { class: "crowd-slider" }, ...parts));
    }

    crowdMoved() {
      this.crowdTouched = true;
      this.crowdShown.textContent = this.crowdRange.value;
      this.crowdChanged();
    }

    get value() {
      return this.crowdRange ? Number(this.crowdRange.value) : num(this, "value", num(this, "min", 0));
    }

    crowdAnswer() { return this.value; }

    /** Required and no preset value: the worker has to move it. */
    crowdProblem() {
      return flag(this, "required") && !this.hasAttribute("value") && !this.crowdTouched
        ? "move the slider to your answer" : "";
    }

    crowdFocus() { if (this.crowdRange) this.crowdRange.focus(); }
  }

  // ------------------------------------------------------------------ presentation
  /** A styled button; form-action="submit" submits the crowd-form (sms-ui-template-crowd-
   * button: disabled, form-action, href, target, icon-url, loading, variant). */
  class CrowdButton extends CrowdElement {
    static get observedAttributes() { return ["disabled", "loading"]; }

    attributeChangedCallback() { this.crowdSync(); }

    get disabled() { return flag(this, "disabled"); }

    set disabled(value) { this.toggleAttribute("disabled", Boolean(value)); }

    crowdRender() {
      const href = this.getAttribute("href");
      const action = this.getAttribute("form-action");
      const variant = this.getAttribute("variant") || (action === "submit" ? "primary" : "normal");
      const inner = href
        ? h("a", { href, target: this.getAttribute("target"), rel: "noopener" })
        : h("button", { type: "button", "data-crowd-internal": "" });
      inner.className = `crowd-button crowd-button-${variant}`;
      const icon = this.getAttribute("icon-url");
      const iconImg = icon ? h("img", { src: icon, alt: "", class: "crowd-button-icon" }) : null;
      inner.append(...this.childNodes);
      if (iconImg) {
        if (this.getAttribute("icon-align") === "right") inner.append(iconImg);
        else inner.prepend(iconImg);
      }
      inner.addEventListener("click", (event) => {
        if (this.crowdBlocked()) { event.preventDefault(); return; }
        const form = this.closest("crowd-form");
        if (action === "submit" && form) form.requestSubmit();
      });
      this.crowdInner = inner;
      this.append(inner);
      this.crowdSync();
    }

    crowdBlocked() { return flag(this, "disabled") || flag(this, "loading"); }

    crowdSync() {
      const inner = this.crowdInner;
      if (!inner) return;
      if (inner instanceof HTMLButtonElement) inner.disabled = this.crowdBlocked();
      else inner.setAttribute("aria-disabled", String(this.crowdBlocked()));
      inner.setAttribute("aria-busy", String(flag(this, "loading")));
    }
  }

  /** A message: type info (default), success, error or warning; dismissible adds a close
   * button (sms-ui-template-crowd-alert). */
  class CrowdAlert extends CrowdElement {
    crowdRender() {
      const given = (this.getAttribute("type") || "").toLowerCase();
      const type = ["success", "error", "warning"].includes(given) ? given : "info";
      this.classList.add("crowd-alert", `crowd-alert-${type}`);
      this.setAttribute("role", type === "error" || type === "warning" ? "alert" : "status");
      if (flag(this, "dismissible")) {
        this.append(h("button", { type: "button", class: "crowd-alert-close",
          "aria-label": "Dismiss", text: "×", onclick: () => { this.hidden = true; } }));
      }
    }
  }

  /** Instructions behind a link or button, on three tabs: Summary (short-summary), Detailed
   * Instructions (detailed-instructions), Examples (positive-example, negative-example)
   * (sms-ui-template-crowd-instructions: link-text, link-type). */
  class CrowdInstructions extends CrowdElement {
    crowdRender() {
      const regions = (tag) => Array.from(this.children).filter((c) => c.localName === tag);
      const good = regions("positive-example");
      const bad = regions("negative-example");
      const examples = [];
      if (good.length) examples.push(h("h3", { text: "Good examples" }), ...good);
      if (bad.length) examples.push(h("h3", { text: "Bad examples" }), ...bad);
      good.forEach((el) => el.classList.add("crowd-example-good"));
      bad.forEach((el) => el.classList.add("crowd-example-bad"));
      const pages = [["Summary", regions("short-summary")],
        ["Detailed Instructions", regions("detailed-instructions")], ["Examples", examples]];
      const tablist = h("div", { class: "crowd-tabs", role: "tablist" });
      const tabs = [];
      const panels = [];
      const show = (index, focus) => {
        tabs.forEach((tab, i) => {
          tab.setAttribute("aria-selected", String(i === index));
          tab.tabIndex = i === index ? 0 : -1;
          panels[i].hidden = i !== index;
        });
        if (focus) tabs[index].focus();
      };
      pages.forEach(([title, content], index) => {
        const tabId = uid("crowd-tab");
        const panelId = uid("crowd-tabpanel");
        const tab = h("button", { type: "button", role: "tab", id: tabId, "aria-controls": panelId,
          class: "crowd-tab", text: title, onclick: () => show(index, false) });
        const panel = h("div", { role: "tabpanel", id: panelId, "aria-labelledby": tabId,
          class: "crowd-tabpanel", tabindex: "0" }, ...content);
        tabs.push(tab);
        panels.push(panel);
        tablist.append(tab);
      });
      tablist.addEventListener("keydown", (event) => {
        const at = tabs.indexOf(document.activeElement);
        const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
        if (at < 0 || to === undefined) return;
        event.preventDefault();
        show((to + tabs.length) % tabs.length, true);
      });
      show(0, false);
      const box = dialog("Instructions", tablist, ...panels);
      const asButton = this.getAttribute("link-type") === "button";
      const open = h("button", { type: "button", "aria-haspopup": "dialog",
        class: asButton ? "crowd-button crowd-button-normal" : "crowd-link",
        text: this.getAttribute("link-text") || "Click for instructions" });
      open.addEventListener("click", () => box.showModal());
      this.append(open, box);
    }
  }

  /** Task-specific instructions shown in a prominent place (a note beside the widget). */
  class ShortInstructions extends CrowdElement {
    crowdRender() {
      this.setAttribute("role", "note");
      if (!this.hasAttribute("aria-label")) this.setAttribute("aria-label", "Instructions");
    }
  }

  /** General instructions behind a "View full instructions" button (header: its title). */
  class FullInstructions extends CrowdElement {
    crowdRender() {
      const body = h("div", { class: "crowd-dialog-body" });
      body.append(...this.childNodes);
      const box = dialog(this.getAttribute("header") || "Instructions", body);
      const open = h("button", { type: "button", class: "crowd-link", "aria-haspopup": "dialog",
        text: "View full instructions" });
      open.addEventListener("click", () => box.showModal());
      this.append(open, box);
    }
  }

  /** The content to classify: a labelled region. */
  class ClassificationTarget extends CrowdElement {
    crowdRender() {
      this.setAttribute("role", "region");
      if (!this.hasAttribute("aria-label")) this.setAttribute("aria-label", "The item to classify");
    }
  }

  // ------------------------------------------------------------------ keyboard
  const TEXT_TYPES = ["button", "checkbox", "radio", "range", "submit", "reset", "image",
    "color", "file"];

  function isTextEntry(el) {
    if (!(el instanceof Element)) return false;
    if (el.isContentEditable || el.matches("textarea, select")) return true;
    return el instanceof HTMLInputElement && !TEXT_TYPES.includes(el.type);
  }

  /** Keys belong to the crowd elements when focus is in a crowd-form or on nothing. */
  function ownsKeys(el) {
    return el === document.body || el === document.documentElement || el === null
      || (el instanceof Element && el.closest("crowd-form, [data-crowd-keys]") !== null);
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target instanceof Element ? event.target : null;
    if (!ownsKeys(target) || (target && target.closest("dialog[open]"))) return;
    const form = (target && target.closest("crowd-form")) || document.querySelector("crowd-form");
    if (event.key === "Enter") {
      if (!form || event.altKey || event.shiftKey) return;
      if (!(event.ctrlKey || event.metaKey)) {
        const activates = target && target.closest(
          "button, a[href], summary, [role=button], [role=tab], [role=link]");
        if (activates || (isTextEntry(target) && !(target instanceof HTMLInputElement))) return;
      }
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (/^[1-9]$/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey
        && !isTextEntry(target)) {
      const widget = (target && target.closest("[data-crowd-keys]"))
        || document.querySelector("[data-crowd-keys]");
      if (widget && typeof widget.crowdDigit === "function" && widget.crowdDigit(Number(event.key))) {
        event.preventDefault();
      }
    }
  });

  // ------------------------------------------------------------------ styles
  const CSS = `
crowd-form [hidden], crowd-alert[hidden], crowd-entity-annotation [hidden] { display: none !important; }
crowd-form { display: block; color: #16191f; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
crowd-form :focus-visible, .crowd-stage:focus-visible { outline: 3px solid #0972d3; outline-offset: 2px; }
.crowd-widget { display: flex; gap: 1.5rem; align-items: flex-start; margin: 0 0 1.25rem; }
.crowd-side { flex: 0 0 15rem; padding-right: 1rem; border-right: 1px solid #d5dbdb; }
.crowd-main { flex: 1 1 auto; min-width: 0; }
@media (max-width: 720px) {
  .crowd-widget { flex-direction: column; }
  .crowd-side { flex-basis: auto; border-right: 0; padding-right: 0; }
}
.crowd-header { font-size: 1.2rem; font-weight: 650; margin: 0 0 .75rem; }
.crowd-hint { color: #545b64; font-size: .9rem; margin: 0 0 .5rem; }
short-instructions { display: block; margin: 0 0 1rem; padding: .5rem .75rem; background: #f1faff; border-left: 4px solid #0972d3; }
full-instructions { display: block; margin: 0 0 1rem; }
classification-target { display: block; margin: 0 0 1rem; padding: .75rem 1rem; border: 1px solid #d5dbdb; border-radius: 6px; background: #fafafa; overflow-wrap: anywhere; }
.crowd-figure { margin: 0 0 1rem; }
.crowd-image { display: block; max-width: 100%; height: auto; user-select: none; }
.crowd-options { display: flex; flex-direction: column; align-items: flex-start; gap: .35rem; margin: 0 0 1rem; }
.crowd-options-row { flex-direction: row; flex-wrap: wrap; gap: .5rem 1rem; }
.crowd-option, .crowd-choice { display: inline-flex; align-items: center; gap: .5rem; cursor: pointer; padding: .3rem .5rem; border: 1px solid transparent; border-radius: 6px; }
.crowd-option:hover, .crowd-choice:hover { background: #f2f3f3; }
.crowd-option:has(input:checked) { border-color: #0972d3; background: #f1faff; }
.crowd-option-exclusion { margin-top: .25rem; border-top: 1px dashed #d5dbdb; }
.crowd-key { font: .75rem ui-monospace, monospace; padding: 0 .35rem; border: 1px solid #aab7b8; border-radius: 4px; color: #545b64; }
.crowd-swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; }
crowd-checkbox, crowd-radio-button, crowd-toggle-button { display: block; }
crowd-input, crowd-text-area, crowd-slider { display: block; margin: 0 0 .75rem; }
.crowd-field { display: flex; flex-direction: column; gap: .25rem; max-width: 40rem; }
.crowd-field-label { font-weight: 600; }
.crowd-field input, .crowd-field textarea, .crowd-slider-number { font: inherit; padding: .4rem .5rem; border: 1px solid #879596; border-radius: 4px; }
.crowd-field textarea { resize: vertical; overflow: auto; }
.crowd-counter { align-self: flex-end; color: #545b64; font-size: .85rem; }
.crowd-slider { display: flex; align-items: center; gap: .75rem; max-width: 40rem; }
.crowd-slider input[type=range] { flex: 1 1 auto; }
.crowd-slider-value { min-width: 2.5rem; font-weight: 600; text-align: right; }
.crowd-slider-number { width: 5rem; }
.crowd-button, .crowd-submit { font: inherit; padding: .45rem 1.1rem; border-radius: 20px; border: 1px solid #0972d3; background: #fff; color: #0972d3; cursor: pointer; text-decoration: none; display: inline-flex; align-items: center; gap: .4rem; }
.crowd-button-primary, .crowd-submit { background: #0972d3; color: #fff; font-weight: 650; }
.crowd-button-link { border-color: transparent; background: none; text-decoration: underline; }
.crowd-button-icon { width: 1.1rem; height: 1.1rem; }
.crowd-button:disabled, .crowd-submit:disabled, .crowd-button[aria-disabled=true] { opacity: .5; cursor: not-allowed; }
.crowd-toggle { font: inherit; padding: .35rem .9rem; border: 1px solid #879596; border-radius: 6px; background: #fff; cursor: pointer; }
.crowd-toggle[aria-pressed=true] { background: #0972d3; border-color: #0972d3; color: #fff; }
.crowd-link { font: inherit; padding: 0; border: 0; background: none; color: #0972d3; text-decoration: underline; cursor: pointer; }
.crowd-labels { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 .75rem; }
.crowd-label-button { font: inherit; display: inline-flex; align-items: center; gap: .4rem; padding: .3rem .7rem; border: 1px solid #879596; border-radius: 16px; background: #fff; cursor: pointer; }
.crowd-label-button[aria-pressed=true] { border-color: #0972d3; background: #f1faff; font-weight: 650; }
.crowd-entity-text { white-space: pre-wrap; line-height: 2.6; padding: .75rem 1rem; border: 1px solid #d5dbdb; border-radius: 6px; background: #fafafa; margin: 0 0 .5rem; }
.crowd-entity { position: relative; background: color-mix(in srgb, var(--crowd-entity) 22%, transparent); border-bottom: 2px solid var(--crowd-entity); color: inherit; padding: .1rem 0; }
.crowd-entity-badge { position: absolute; left: 0; top: -1.35em; font-size: .65rem; line-height: 1; font-weight: 700; color: var(--crowd-entity); white-space: nowrap; user-select: none; pointer-events: none; }
.crowd-status { min-height: 1.5em; margin: 0 0 .5rem; color: #545b64; }
.crowd-list { margin: 0 0 1rem; padding-left: 1.25rem; }
.crowd-list li { margin: .15rem 0; }
.crowd-remove { font: inherit; margin-left: .5rem; padding: 0 .45rem; border: 1px solid #aab7b8; border-radius: 4px; background: #fff; cursor: pointer; }
.crowd-stage { position: relative; display: inline-block; max-width: 100%; line-height: 0; margin: 0 0 .5rem; }
.crowd-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; cursor: crosshair; touch-action: none; }
.crowd-overlay * { pointer-events: none; }
.crowd-shape rect, .crowd-shape polygon, .crowd-shape polyline { stroke-width: 2; }
.crowd-selected rect, .crowd-selected polygon { stroke-width: 4; }
.crowd-selected circle { stroke-width: 3; stroke: #000; }
.crowd-draft polyline, .crowd-draft rect { stroke-dasharray: 6 4; }
.crowd-tag { font-family: system-ui, sans-serif; font-weight: 700; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.crowd-problem { color: #d91515; font-weight: 600; margin: .25rem 0 .75rem; }
.crowd-invalid .crowd-field input, .crowd-invalid .crowd-field textarea { border-color: #d91515; }
.crowd-form-footer { display: flex; flex-direction: column; align-items: flex-start; gap: .75rem; margin-top: 1.5rem; }
.crowd-form-errors { padding: .5rem 1rem; border-left: 4px solid #d91515; background: #fff5f5; }
.crowd-form-errors p, .crowd-form-errors ul { margin: .25rem 0; }
.crowd-alert { display: flex; align-items: flex-start; gap: .75rem; margin: 0 0 1rem; padding: .6rem 1rem; border-left: 4px solid #0972d3; background: #f1faff; }
.crowd-alert-success { border-color: #037f0c; background: #f2fcf3; }
.crowd-alert-warning { border-color: #8d6605; background: #fffce9; }
.crowd-alert-error { border-color: #d91515; background: #fff5f5; }
.crowd-alert-close { margin-left: auto; font: inherit; border: 0; background: none; cursor: pointer; font-size: 1.2rem; line-height: 1; }
crowd-instructions { display: block; margin: 0 0 1rem; }
.crowd-dialog { max-width: min(48rem, 92vw); max-height: 86vh; padding: 0; border: 1px solid #879596; border-radius: 8px; }
.crowd-dialog::backdrop { background: rgb(0 0 0 / 40%); }
.crowd-dialog-inner { padding: 1rem 1.25rem; }
.crowd-dialog-head { display: flex; align-items: center; justify-content: space-between; gap: 1rem; }
.crowd-dialog-head h2 { margin: 0; font-size: 1.2rem; }
.crowd-dialog-close { font: inherit; font-size: 1.4rem; line-height: 1; border: 0; background: none; cursor: pointer; }
.crowd-tabs { display: flex; gap: .25rem; margin: .75rem 0; border-bottom: 1px solid #d5dbdb; }
.crowd-tab { font: inherit; padding: .4rem .8rem; border: 0; border-bottom: 3px solid transparent; background: none; cursor: pointer; }
.crowd-tab[aria-selected=true] { border-color: #0972d3; font-weight: 650; }
.crowd-example-good { display: block; border-left: 4px solid #037f0c; padding-left: .75rem; margin: .5rem 0; }
.crowd-example-bad { display: block; border-left: 4px solid #d91515; padding-left: .75rem; margin: .5rem 0; }
.crowd-comment-panel { display: flex; flex-direction: column; gap: .35rem; margin-top: .5rem; max-width: 40rem; }
.crowd-comment-panel textarea { font: inherit; padding: .4rem .5rem; }
`;

  /** One sheet for every element. A constructed sheet needs no nonce under a strict CSP;
   * where those are missing, a <style> carries the nonce of this script. */
  function addStyles() {
    if ("adoptedStyleSheets" in document && typeof CSSStyleSheet === "function") {
      try {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
        return;
      } catch (err) { /* fall through to a <style> element */ }
    }
    const style = h("style", { text: CSS });
    const script = document.currentScript;
    if (script && script.nonce) style.nonce = script.nonce;
    document.head.append(style);
  }
  addStyles();

  // ------------------------------------------------------------------ registration
  const ELEMENTS = {
    "crowd-form": CrowdForm,
    "crowd-classifier": CrowdClassifier,
    "crowd-classifier-multi-select": CrowdClassifierMulti,
    "crowd-image-classifier": CrowdImageClassifier,
    "crowd-image-classifier-multi-select": CrowdImageClassifierMulti,
    "crowd-entity-annotation": CrowdEntityAnnotation,
    "crowd-bounding-box": CrowdBoundingBox,
    "crowd-keypoint": CrowdKeypoint,
    "crowd-polygon": CrowdPolygon,
    "crowd-radio-group": CrowdRadioGroup,
    "crowd-radio-button": CrowdRadioButton,
    "crowd-checkbox": CrowdCheckbox,
    "crowd-toggle-button": CrowdToggleButton,
    "crowd-input": CrowdInput,
    "crowd-text-area": CrowdTextArea,
    "crowd-slider": CrowdSlider,
    "crowd-button": CrowdButton,
    "crowd-alert": CrowdAlert,
    "crowd-instructions": CrowdInstructions,
    "short-instructions": ShortInstructions,
    "full-instructions": FullInstructions,
    "classification-target": ClassificationTarget,
    "worker-comment": WorkerComment,
  };
  for (const [name, element] of Object.entries(ELEMENTS)) {
    if (!customElements.get(name)) customElements.define(name, element);
  }
  // GT's templates wait for this before reaching into the elements.
  whenParsed(() => window.setTimeout(() => {
    document.dispatchEvent(new Event("all-crowd-elements-ready"));
  }, 0));
})();
