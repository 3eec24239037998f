// The UI's only script, loaded from our own origin so the CSP can forbid inline code.
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("change", (event) => {
  if (event.target.hasAttribute("data-autosubmit")) event.target.form.requestSubmit();
});
