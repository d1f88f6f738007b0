"""``python -m service.lifecycle.admin``: the model change from a shell, through the admin API (standard library HTTP).

    python -m service.lifecycle.admin status   --url http://127.0.0.1:8000 --token $TOKEN
    python -m service.lifecycle.admin shadow   checkpoints/candidate.safetensors
    python -m service.lifecycle.admin promote  [PATH]      # the shadow, or PATH
    python -m service.lifecycle.admin rollback
    python -m service.lifecycle.admin unshadow

The token is ``--token`` or ``$BNN_ADMIN_TOKEN`` (one from BNN_ADMIN_TOKENS); the URL ``--url`` or
``$BNN_URL``. Paths are the server's, inside its ``BNN_MODELS_DIR`` (default ``checkpoints/``). Exit
status: 0 done; 1 refused (the check, the rule for a refused path, and the reason are printed; the
live model stays); 2 conflict or bad usage; 3 the service did not answer or timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

EXIT = {200: 0, 422: 1, 409: 2, 401: 2}


def call(url: str, token: str, method: str, path: str, body: dict[str, Any] | None = None,
         timeout_s: float = 120.0) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) of one admin request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except json.JSONDecodeError:
            return error.code, {"detail": error.reason}


def describe_status(answer: dict[str, Any]) -> str:
    lines = []
    for role, model in answer["models"].items():
        if model is None:
            lines.append(f"{role:9s} -")
            continue
        calibration = model.get("calibration") or {}
        lines.append(f"{role:9s} {model['model_version']}  {model['path']}  sha256 {model['sha256'][:12]}  "
                     f"{model['precision']}, threshold {model['threshold']:.4g} nats (drawings "
                     f"{model['drawn_threshold']:.4g}), calibrated on "
                     f"{calibration.get('source', '?')}")
    lines.append(f"workers   {len(answer['workers'])} at generation "
                 f"{', '.join(str(w['generation']) for w in answer['workers'])}; live "
                 f"{', '.join(str(w['live']) for w in answer['workers'])}")
    shadow = answer.get("shadow")
    if shadow is not None and shadow["compared"]:
        lines.append(f"shadow    {shadow['shadow_version']} on {shadow['compared']} live answers "
                     f"({100 * answer['shadow_fraction']:.0f} % drawn, {shadow['dropped']} dropped): class agreement "
                     f"{100 * shadow['class_agreement']:.2f} %, "
                     f"refer agreement {100 * shadow['refer_agreement']:.2f} %, "
                     f"referred live {100 * shadow['live_referred']:.2f} % "
                     f"vs shadow {100 * shadow['shadow_referred']:.2f} %")
    audits = answer.get("shadow_on_audits")
    if audits is not None and audits["labelled_audits"]:
        live, theirs = audits["live"], audits["shadow"]
        lines.append(f"audits    on {audits['labelled_audits']} labelled audits both answered: accepted wrong "
                     f"live {live['wrong']} of {live['audited']}, shadow {theirs['wrong']} of {theirs['audited']}")
    return "\n".join(lines)


def describe_change(status: int, answer: dict[str, Any]) -> str:
    if status == 200:
        return (f"{answer['action']}: generation {answer['generation']}, live {answer['live']} on "
                f"{len(answer['workers'])} worker(s) after {answer['elapsed_s']:.2f} s")
    return f"HTTP {status}: {answer.get('detail', answer)}"


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m service.lifecycle.admin", description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument("action", choices=("status", "shadow", "unshadow", "promote", "rollback"))
    parse.add_argument("path", nargs="?", help="a checkpoint on the server (shadow: required; promote: optional)")
    parse.add_argument("--url", default=os.environ.get("BNN_URL", "http://127.0.0.1:8000"))
    parse.add_argument("--token", default=os.environ.get("BNN_ADMIN_TOKEN"), help="default: $BNN_ADMIN_TOKEN")
    parse.add_argument("--json", action="store_true", help="print the service's JSON answer")
    return parse


ROUTES = {"status": ("GET", "/admin/models"), "shadow": ("POST", "/admin/models/shadow"),
          "unshadow": ("DELETE", "/admin/models/shadow"), "promote": ("POST", "/admin/models/promote"),
          "rollback": ("POST", "/admin/models/rollback")}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.token:
        print("no admin token: pass --token or set BNN_ADMIN_TOKEN", file=sys.stderr)
        return 2
    if args.action == "shadow" and not args.path:
        print("shadow needs a checkpoint path", file=sys.stderr)
        return 2
    method, route = ROUTES[args.action]
    body = {"path": args.path} if args.path and args.action in ("shadow", "promote") else None
    try:
        status, answer = call(args.url, args.token, method, route, body)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        print(f"{args.url}: no answer ({error})", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.action == "status" and status == 200:
        print(describe_status(answer))
    else:
        print(describe_change(status, answer))
    if status == 404:
        print("no admin routes: is BNN_ADMIN_TOKENS set on the service?", file=sys.stderr)
    return EXIT.get(status, 3)


if __name__ == "__main__":
    raise SystemExit(main())
