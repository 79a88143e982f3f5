// Caption Zoo's page script, run once when the page loads (page/server.py passes it as launch(js=...)).
//
// Rating grid: a key "rates" by clicking the radio input of the caption card in focus, so Gradio's own input
// event saves the score exactly as a mouse click does (no second save path); likewise Delete clicks the card's
// Clear button, Ctrl+Z the Undo button, and pairwise keys click the vote buttons. Cards are made focusable and
// their labels get the full model name as a tooltip each time the grid is drawn. A card the server marks with
// the class "focus-me" (after Caption, a page turn, next unrated, undo, clear) gets the focus once drawn.
() => {
  if (window.captionZooKeys) return;
  window.captionZooKeys = true;
  const CARD = ".caption-card";
  const cell = (i, j) => document.getElementById(`cell-${i}-${j}`);
  const place = (card) => card.id.split("-").slice(1).map(Number);
  const cards = () => Array.from(document.querySelectorAll(CARD));
  // Done with: rated, or "complete" (a set's overlap: enough other raters have it), so the keys skip it.
  const rated = (card) => card.classList.contains("caption-complete") ||
    !!card.querySelector("input[type=radio]:checked");
  const visible = (el) => !!el && el.offsetParent !== null;
  let focusTimer = null;
  let focusedToken = null;  // the drawing whose marked caption was last given the focus
  let userActed = false;  // a key pressed or a pointer pressed since the marked caption last got the focus
  const acted = (event) => { if (event.isTrusted) userActed = true; };
  document.addEventListener("keydown", acted, true);
  document.addEventListener("pointerdown", acted, true);

  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;
  };
  // Focus a card and bring it into view only if it is not already fully in view. `settle`: check again a
  // little later, when the page may still be changing around it (inputs folding away after Caption).
  const focusCard = (card, settle = false) => {
    if (!card) return;
    card.focus({preventScroll: true});
    const reveal = () => { if (document.activeElement === card && !shown(card))
      card.scrollIntoView({block: "nearest", inline: "nearest"}); };
    if (settle) setTimeout(reveal, 700); else reveal();
  };

  // The card the server marked "focus-me" gets the focus once per drawing (its "focus-v<N>" class), a moment
  // after it appears, and again whenever a later update of the same drawing replaced it (which leaves the
  // focus on the page's body) while the user has not pressed a key or the pointer since: however long a
  // drawing's updates take, the focus ends on the marked card, and it is never pulled back from where the
  // user put it. One pending attempt at a time, not reset by each DOM change (a page whose spinners keep
  // changing would otherwise never get there).
  const focusMarked = () => {
    if (focusTimer !== null) return;
    const wanted = document.querySelector(".caption-card.focus-me");
    const token = wanted ? Array.from(wanted.classList).find((c) => c.startsWith("focus-v")) : null;
    const lost = () => document.activeElement === document.body || document.activeElement === null;
    const due = () => token !== focusedToken || (lost() && !userActed);
    if (!wanted || !visible(wanted) || !due()) return;
    focusTimer = setTimeout(() => {
      focusTimer = null;
      const card = document.querySelector(`.caption-card.${token}`);
      if (card && visible(card) && due()) {
        focusedToken = token;
        userActed = false;
        focusCard(card, true);
      }
    }, 300);
  };

  const prepare = () => {
    for (const card of cards()) {
      if (!card.hasAttribute("tabindex")) card.tabIndex = 0;
      const label = card.querySelector(".caption-text [data-testid=block-info]");
      const name = label ? label.textContent.trim() : "";
      if (label && label.title !== name) label.title = name;  // the full name on hover
      card.classList.toggle("unrated", !rated(card));
    }
    // An error said next to a field that may be out of sight (e.g. the rater name, after a click on Caption
    // further down): bring it into view once, when its text appears.
    for (const error of document.querySelectorAll(".field-error")) {
      const text = error.textContent.trim();
      if (text && error.dataset.shown !== text) { error.dataset.shown = text; error.scrollIntoView({block: "center"}); }
      if (!text) delete error.dataset.shown;
    }
    focusMarked();
  };
  new MutationObserver(prepare).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                         attributeFilter: ["class"]});
  document.addEventListener("change", prepare, true);  // a radio clicked: the card is rated now
  prepare();
  // Also on a clock: a card can lose the focus, or become visible, without a DOM change observed above.
  setInterval(focusMarked, 500);

  // Click an image of the grid (or the pairwise image) to see it large.
  document.addEventListener("click", (event) => {
    const overlay = document.getElementById("zoom-overlay");
    if (overlay) { overlay.remove(); return; }
    const img = event.target.closest ? event.target.closest(".image-frame img") : null;
    if (!img) return;
    event.preventDefault();
    const shown = document.createElement("div");
    shown.id = "zoom-overlay";
    shown.title = "Click or press Escape to close";
    const big = document.createElement("img");
    big.src = img.src;
    big.alt = img.alt || "";
    shown.appendChild(big);
    document.body.appendChild(shown);
  }, true);

  const typing = (el) => el.isContentEditable || ["TEXTAREA", "SELECT"].includes(el.tagName) ||
    (el.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(el.type));
  const press = (id) => {
    const button = document.getElementById(id);
    if (!button || button.disabled || !visible(button)) return false;
    button.click();
    return true;
  };
  const turnPage = (id) => {  // the server draws the new page with its first caption marked "focus-me"
    const button = document.getElementById(id);
    if (button && !button.disabled) button.click();
  };
  // The next unrated caption after `from` on this page (wrapping to the top of the page); else ask the server,
  // which turns to the page that has one and marks it "focus-me".
  const nextUnrated = (from) => {
    const all = cards();
    const start = from ? all.indexOf(from) + 1 : 0;
    const order = all.slice(start).concat(all.slice(0, start));
    const found = order.find((c) => c !== from && !rated(c));
    if (found) focusCard(found);
    else press("next-unrated");
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented) return;
    const overlay = document.getElementById("zoom-overlay");
    if (overlay && event.key === "Escape") { overlay.remove(); event.preventDefault(); return; }
    if (typing(event.target)) return;  // keys typed into a text box are text
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && key.toLowerCase() === "z") {
      if (press("undo-btn")) event.preventDefault();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;

    // Pairwise: while its vote buttons are on screen and no caption card has the focus.
    const card = event.target.closest ? event.target.closest(CARD) : null;
    if (!card && visible(document.getElementById("vote-a"))) {
      const vote = {ArrowLeft: "vote-a", a: "vote-a", ArrowRight: "vote-b", b: "vote-b", ArrowUp: "vote-both-good",
                    t: "vote-both-good", ArrowDown: "vote-both-bad", x: "vote-both-bad"}[key];
      if (vote && press(vote)) event.preventDefault();
      return;
    }
    if (key === "u" && visible(document.getElementById("next-unrated"))) {
      nextUnrated(card);
      event.preventDefault();
      return;
    }
    if (!card) return;  // the remaining keys act only on a caption card in focus
    const [i, j] = place(card);
    let next = null;
    if (["0", "1", "2"].includes(key)) {
      const input = card.querySelector(`input[type=radio][value="${key}"]`);
      if (!input) return;
      input.click();
      const all = cards();
      next = all[all.indexOf(card) + 1] || card;
    } else if (key === "Delete" || key === "Backspace") {
      const clear = card.querySelector(".clear-rating");
      if (clear) clear.click();
    } else if (key === "s") {
      nextUnrated(card);  // skip: leave this one unrated, go to the next unrated one
    } else if (key === "ArrowRight") next = cell(i, j + 1);
    else if (key === "ArrowLeft") next = cell(i, j - 1);
    else if (key === "ArrowDown" || key === "ArrowUp") {
      const row = i + (key === "ArrowDown" ? 1 : -1);
      next = cell(row, j) || Array.from(document.querySelectorAll(`[id^="cell-${row}-"]`)).pop() || null;
    } else if (key === "PageDown" || key === "n") turnPage("next-page");
    else if (key === "PageUp" || key === "p") turnPage("prev-page");
    else return;
    event.preventDefault();  // arrows would otherwise change the radio choice (and save it) or scroll
    if (next) focusCard(next);
  });
}
