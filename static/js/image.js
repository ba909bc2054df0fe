// Image task page: drag-and-drop, paste, the camera and (for digits and clothes) a drawing canvas.
// Every path ends in the same plain form submit, so the page also works without JavaScript.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var input = document.getElementById("file");
  var zone = document.getElementById("dropzone");
  if (!form || !input) { return; }

  function submitFile(file) {
    var dt = new DataTransfer();
    dt.items.add(file);
    input.files = dt.files;
    form.submit();
  }

  function firstImage(items) {
    for (var i = 0; i < items.length; i++) {
      var f = items[i].getAsFile ? items[i].getAsFile() : items[i];
      if (f && (!f.type || f.type.indexOf("image/") === 0)) { return f; }
    }
    return null;
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    var f = e.dataTransfer && firstImage(e.dataTransfer.files);
    if (f) { submitFile(f); }
  });
  document.addEventListener("paste", function (e) {
    var f = e.clipboardData && firstImage(e.clipboardData.items);
    if (f) { e.preventDefault(); submitFile(f); }
  });
  input.addEventListener("change", function () { if (input.files.length) { form.submit(); } });

  // Camera: a live preview, one snapshot shown and sent like a chosen file. Without a camera
  // (no API, refused, none found) the button says why; the file picker still works.
  var cam = document.getElementById("camera");
  if (cam) {
    cam.hidden = false;
    var start = document.getElementById("camera-start");
    var snap = document.getElementById("camera-snap");
    var video = document.getElementById("camera-video");
    var shot = document.getElementById("camera-shot");
    var status = document.getElementById("camera-status");
    var say = function (key) { status.textContent = cam.dataset[key]; };
    start.addEventListener("click", function () {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        say("noApi");
        start.disabled = true;
        return;
      }
      navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
        .then(function (stream) {
          video.srcObject = stream;
          video.hidden = false;
          snap.hidden = false;
          start.hidden = true;
          say("ready");
          return video.play();
        })
        .catch(function (err) {
          var name = err && err.name;
          say(name === "NotAllowedError" || name === "SecurityError" ? "refused"
              : name === "NotFoundError" || name === "OverconstrainedError" ? "absent" : "busy");
        });
    });
    snap.addEventListener("click", function () {
      var c = document.createElement("canvas");
      c.width = video.videoWidth || 640;
      c.height = video.videoHeight || 480;
      c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
      shot.src = c.toDataURL("image/jpeg", 0.92);
      shot.hidden = false;
      video.hidden = true;
      snap.disabled = true;
      if (video.srcObject) { video.srcObject.getTracks().forEach(function (t) { t.stop(); }); }
      c.toBlob(function (blob) {
        submitFile(new File([blob], "camera.jpg", { type: "image/jpeg" }));
      }, "image/jpeg", 0.92);
    });
  }

  // Drawing canvas: dark ink on white, like paper; the server's MNIST preprocessing inverts,
  // crops and centres it exactly as it does a photo.
  var draw = document.getElementById("draw");
  var canvas = document.getElementById("canvas");
  if (!draw || !canvas) { return; }
  draw.hidden = false;
  var ctx = canvas.getContext("2d");
  var KEY = "lstmlab-drawing-" + location.pathname;
  function clear() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  clear();
  var saved = sessionStorage.getItem(KEY);
  if (saved && document.getElementById("result")) {
    var img = new Image();
    img.onload = function () { ctx.drawImage(img, 0, 0); };
    img.src = saved;
  }
  ctx.lineWidth = canvas.width / 14;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#111";
  var drawing = false;
  var last = null;
  function at(e) {
    var r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height };
  }
  canvas.addEventListener("pointerdown", function (e) {
    drawing = true;
    last = at(e);
    canvas.setPointerCapture(e.pointerId);
    ctx.beginPath();
    ctx.arc(last.x, last.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fill();
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drawing) { return; }
    var p = at(e);
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    last = p;
  });
  ["pointerup", "pointercancel"].forEach(function (name) {
    canvas.addEventListener(name, function () { drawing = false; });
  });
  document.getElementById("canvas-clear").addEventListener("click", function () {
    clear();
    sessionStorage.removeItem(KEY);
  });
  document.getElementById("canvas-submit").addEventListener("click", function () {
    sessionStorage.setItem(KEY, canvas.toDataURL("image/png"));
    canvas.toBlob(function (blob) {
      submitFile(new File([blob], "drawing.png", { type: "image/png" }));
    }, "image/png");
  });
})();
