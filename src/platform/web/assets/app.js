// The chat page: sends a message (or a command from the buttons) and shows the answer as
// it streams. The server answers POST /api/send with an event stream:
//   event: message  data: {"id": "...", "html": "...", "final": bool}
//   event: done     data: {"balance": "..."}
// Served as a file (the Content-Security-Policy allows no inline script).
"use strict";
(function () {
  const log = document.getElementById("log");
  const form = document.getElementById("send");
  if (!log || !form) return;
  const box = form.querySelector("textarea");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const balance = document.getElementById("balance");

  function scrollDown() { window.scrollTo(0, document.body.scrollHeight); }

  function bubble(role, content, isHtml) {
    const div = document.createElement("div");
    div.className = "msg " + role;
    if (isHtml) div.innerHTML = content; else div.textContent = content;
    log.appendChild(div);
    scrollDown();
    return div;
  }

  async function send(text) {
    if (!text.trim()) return;
    if (!text.startsWith("/")) bubble("user", text, false);
    const shown = {};
    let response;
    try {
      response = await fetch("/api/send", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ text: text }),
        credentials: "same-origin",
      });
    } catch (e) {
      bubble("assistant", "Could not reach the server. Please try again.", false);
      return;
    }
    if (response.status === 401) { window.location = "/login"; return; }
    if (!response.ok || !response.body) {
      bubble("assistant", "The server refused the message (" + response.status + ").", false);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (!data) continue;
        const payload = JSON.parse(data);
        if (event === "message") {
          if (!shown[payload.id]) shown[payload.id] = bubble("assistant", "", true);
          shown[payload.id].innerHTML = payload.html;
          shown[payload.id].dataset.final = payload.final ? "1" : "";
          scrollDown();
        } else if (event === "done" && balance) {
          balance.textContent = payload.balance;
        }
      }
    }
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const text = box.value;
    box.value = "";
    send(text);
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  for (const button of document.querySelectorAll("button[data-command]")) {
    button.addEventListener("click", function () {
      let command = button.dataset.command;
      if (command === "/system") {
        const prompt = window.prompt("System prompt (empty: show it; `reset`: the default)", "");
        if (prompt === null) return;
        command = prompt ? "/system " + prompt : "/system";
      }
      send(command);
    });
  }
  scrollDown();
})();
