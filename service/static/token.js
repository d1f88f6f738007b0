// What the pages behind a token (review, models) share: the token, taken once from the address
// (/review#token=...: the address the service logs at start; a fragment never reaches a server or
// its logs) and kept in this tab only (sessionStorage), and the page's message line.
"use strict";

function tokenFromAddress(key) {
  const match = location.hash.match(/^#token=(.+)$/);
  if (match) {
    sessionStorage.setItem(key, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(key);
}

function say(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}
