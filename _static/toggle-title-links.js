// Clicks inside the title of a collapsed hint or solution (sphinx-togglebutton).
//
// sphinx-togglebutton's title handler finds the toggle button only when the click lands on the
// title itself, the button or its icon. A solution's title holds a link to its exercise
// ("Solution to Exercise 9.1"): a click on that link went to the handler with no button of its
// own, so it toggled whichever dropdown the reader had clicked last (closing an open hint), or
// threw "button is not defined" when none had been clicked yet.
//
// This listener runs first (the capture phase, on the document): a click on a link in such a
// title only follows the link; a click on any other element in the title (the chevron's path,
// inline code) toggles that title's own dropdown, as a click on the title does.
document.addEventListener(
  "click",
  (event) => {
    const title = event.target.closest(".toggle > .admonition-title");
    if (!title || event.target === title) {
      return;
    }
    event.stopPropagation();
    if (!event.target.closest("a")) {
      title.click();
    }
  },
  true
);
