// Mesh: the only script. Submits the workspace switcher when its choice changes.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    var form = select.form;
    form.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
    select.addEventListener("change", function () { form.submit(); });
  });
});
