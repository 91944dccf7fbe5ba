// Outpost console: small progressive enhancements. Every page works
// without this script; it adds upload progress, confirmations, marks
// policy lines with errors and shows the distribution server field only
// in mode distribution. Loaded as a file: the CSP allows no inline script.
(function () {
  "use strict";

  // Confirm destructive buttons.
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-confirm]");
    if (b && !window.confirm(b.getAttribute("data-confirm"))) {
      e.preventDefault();
    }
  });

  // Upload with a progress bar: the file goes as the raw request body,
  // streamed by the coordinator to the file server.
  var form = document.getElementById("upload-form");
  if (form) {
    form.addEventListener("submit", function (e) {
      var file = document.getElementById("upload-file").files[0];
      if (!file || !window.XMLHttpRequest) {
        return; // the plain form reports what is missing
      }
      e.preventDefault();
      var nameInput = document.getElementById("upload-name");
      var name = nameInput.value.trim() || file.name;
      var bar = document.getElementById("upload-progress");
      var status = document.getElementById("upload-status");
      var button = document.getElementById("upload");
      ["name", "file"].forEach(function (f) {
        document.getElementById(f + "-error").textContent = "";
      });
      nameInput.classList.remove("invalid");
      document.getElementById("upload-file").classList.remove("invalid");
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      status.textContent = "Uploading " + name + "…";
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/ui/artifacts?name=" + encodeURIComponent(name));
      xhr.setRequestHeader("X-CSRF-Token", form.querySelector("input[name=csrf]").value);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (ev) {
        if (ev.lengthComputable) {
          bar.value = Math.round((ev.loaded / ev.total) * 100);
          status.textContent = "Uploading " + name + ": " + bar.value + "%";
        }
      };
      xhr.onload = function () {
        button.disabled = false;
        var answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (err) { answer = { error: xhr.responseText }; }
        if (xhr.status === 201) {
          bar.value = 100;
          status.textContent = "Uploaded " + answer.name + ": sha256 " + answer.sha256;
          window.location.reload();
          return;
        }
        bar.hidden = true;
        status.textContent = "";
        var field = answer.field === "name" ? "name" : "file";
        var p = document.createElement("p");
        p.className = "field-error";
        p.setAttribute("role", "alert");
        p.textContent = answer.error || ("upload failed: " + xhr.status);
        document.getElementById(field + "-error").appendChild(p);
        document.getElementById(field === "name" ? "upload-name" : "upload-file").classList.add("invalid");
      };
      xhr.onerror = function () {
        button.disabled = false;
        bar.hidden = true;
        status.textContent = "The upload was cut off; try again.";
      };
      xhr.send(file);
    });
  }

  // Office form: the distribution server is for mode distribution only.
  // Out of that mode its field is hidden and disabled, so that it is not
  // sent; without this script it shows with a note and the console
  // refuses a value that does not belong.
  var mode = document.getElementById("mode");
  var dsField = document.getElementById("distribution-server-field");
  if (mode && dsField) {
    var ds = document.getElementById("distribution_server");
    // A field the console refused stays in view until the mode changes.
    var showDistribution = function (keepRefused) {
      var off = mode.value !== "distribution" && !(keepRefused && ds.classList.contains("invalid"));
      dsField.hidden = off;
      ds.disabled = off;
    };
    mode.addEventListener("change", function () { showDistribution(false); });
    showDistribution(true);
  }

  // Policy editor: put the cursor on the first line with an error, and
  // let a click on a problem select its line in the editor.
  var yaml = document.getElementById("yaml");
  function selectLine(ta, n) {
    var lines = ta.value.split("\n");
    var start = 0;
    for (var i = 0; i < n - 1 && i < lines.length; i++) {
      start += lines[i].length + 1;
    }
    var end = start + (lines[n - 1] || "").length;
    ta.focus();
    ta.setSelectionRange(start, end);
    var lh = parseFloat(window.getComputedStyle(ta).lineHeight) || 18;
    ta.scrollTop = Math.max(0, (n - 3) * lh);
  }
  if (yaml && yaml.dataset.badLines) {
    var first = parseInt(yaml.dataset.badLines.split(",")[0], 10);
    if (first > 0) {
      selectLine(yaml, first);
    }
    document.querySelectorAll(".problems li.bad").forEach(function (li) {
      li.addEventListener("click", function () {
        selectLine(yaml, parseInt(li.getAttribute("value"), 10));
      });
    });
  }
})();
