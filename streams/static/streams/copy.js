// Copy buttons: <button data-copy="ID"> copies the text of the element #ID. They stay hidden
// without script, where the text itself is selected by one click (CSS user-select: all); where
// the clipboard is refused (plain http to another host), the text is selected for Ctrl+C.
(function () {
  "use strict";

  function select(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const status = document.querySelector("[data-copy-status]");
    const say = function (text) { if (status) status.textContent = text; };
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        const text = source.textContent.trim();
        const fallback = function () {
          select(source);
          say("Selected: press Ctrl+C (⌘C on a Mac) to copy.");
        };
        if (!navigator.clipboard || !window.isSecureContext) {
          fallback();
          return;
        }
        navigator.clipboard.writeText(text).then(function () {
          say("Copied.");
        }, fallback);
      });
    });
  });
})();
