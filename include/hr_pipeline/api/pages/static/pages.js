// Links into Airflow's UI (marked data-airflow-link) open in the UI's own window. The UI shows
// these pages in a sandboxed iframe that may not navigate the window itself; the page and the
// UI share one origin, so the link is followed from the UI's document instead.
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest("a[data-airflow-link]");
  if (!link || window.top === window) return;
  try {
    var outer = window.top.document.createElement("a");
    outer.href = link.href;
    window.top.document.body.appendChild(outer);
    outer.click();
    outer.remove();
    event.preventDefault();
  } catch (error) {
    // Another origin: the link opens inside the frame.
  }
});

// A changed filter applies at once (the Apply button stays for keyboards and no-script use).
document.addEventListener("change", function (event) {
  var form = event.target.form;
  if (form && form.classList.contains("filters") && event.target.name === "year") form.submit();
});
