// Starts the vendored ReDoc on /redoc with the nonce this response's Content-Security-Policy allows
// for styles: ReDoc writes its styles into <style> elements, and gives each this nonce.
"use strict";

const root = document.getElementById("redoc");
Redoc.init(root.dataset.specUrl, { nonce: root.dataset.nonce }, root);
