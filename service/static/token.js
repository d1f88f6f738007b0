// What the pages behind a token (review, models) share: the token, taken once from the address
// (/review#token=...: the address the service shows at start; a fragment never reaches a server or
// its logs) and then removed from it, and the page's message line. The token is kept in this page's
// memory only, never in sessionStorage or localStorage: storage outlives the page (a reload, a
// restored tab) and any script on the origin can read it; a reload asks for the token again.
"use strict";

function tokenFromAddress() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) { return null; }
  history.replaceState(null, "", location.pathname);
  return decodeURIComponent(match[1]);
}

function say(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}
