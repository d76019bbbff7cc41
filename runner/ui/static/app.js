// run-project ui: the only script of the pages (served from /static, no inline code).
// It never builds HTML from strings: log text is added as text, and a refreshed page's
// <main> is parsed by DOMParser (whose scripts never run) from this same server.
"use strict";

const POLL_MS = 2000;

function followLogs() {
  for (const pre of document.querySelectorAll("pre.log[data-follow]")) {
    const tick = async () => {
      const offset = pre.dataset.offset || "0";
      let answer;
      try {
        answer = await fetch(`${pre.dataset.follow}?offset=${offset}`);
      } catch {
        setTimeout(tick, 5 * POLL_MS); // the server is away: try again later
        return;
      }
      if (!answer.ok) return;
      const text = await answer.text();
      pre.dataset.offset = answer.headers.get("X-Next-Offset") || offset;
      if (text) {
        pre.append(document.createTextNode(text));
        pre.scrollTop = pre.scrollHeight;
      }
      const status = answer.headers.get("X-Run-Status");
      if (status === "RUNNING" || status === "STARTING") setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }
}

// A running run's page (main[data-live]) reloads its content until the run ends; the logs
// follow on their own in between, so the refresh is slower.
function refreshWhileLive() {
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  setTimeout(async () => {
    let answer;
    try {
      answer = await fetch(location.href, { headers: { Accept: "text/html" } });
    } catch {
      refreshWhileLive(); // the server is away: try again later
      return;
    }
    if (!answer.ok) return;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
    const next = fresh.querySelector("main");
    if (!next) return;
    main.replaceWith(document.adoptNode(next));
    followLogs();
    refreshWhileLive();
  }, 3 * POLL_MS);
}

// The compare page's axis choices submit at once.
function submitOnChange() {
  for (const field of document.querySelectorAll("select[form], form#choices input")) {
    field.addEventListener("change", () => field.form && field.form.requestSubmit());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  followLogs();
  refreshWhileLive();
  submitOnChange();
});
