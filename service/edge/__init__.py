"""The HTTP edge: the server (uvicorn with connection-level guards) and the pure-ASGI middleware for
body limits, latency and security headers. Nothing here knows what a digit is."""
