"""The loop in one command: the reviewers' labels from a running service become a candidate, and the
candidate replaces the live model only when the promotion rule and the live comparison say so.

    python -m model.learn --service http://127.0.0.1:8000 --review-token $R --admin-token $A

(or ``$BNN_URL``, ``$BNN_REVIEW_TOKEN``, ``$BNN_ADMIN_TOKEN``). Run it where the service's files are: it
reads the live checkpoint the admin API names and writes the candidate inside the service's
``BNN_MODELS_DIR``, the only place the service loads candidates from. The stages, each timed:

1. **inspect**: the live model, its path, precision and workers (``GET /admin/models``);
2. **export**: every label (``GET /review/export``), written beside the candidate;
3. **fine-tune** (``python -m model.train --fine-tune``, ``model/fine_tune.py``): the head learns the
   training split with the live posterior as its prior, the trunk stays the live one, the recipe's
   streams replayed; then the temperature and the refer rules are fitted on the validation mix;
4. **calibrate**: the int8 trunk from the candidate's weights and every served precision's records
   (``model.quantize``, ``model.calibrate``), then the threshold of each channel with held-out labelled
   audits certified on them and its part of the validation mix together (``model.calibrate --reviewed
   --with-validation``);
5. **evaluate** both models on every family of ``model.evaluate``;
6. **decide** by the promotion rule (``model/promote.py``): better on the held-out labelled items, no
   family worse by more than a point, the guarantee held on the test split;
7. **shadow**: the candidate answers a share of live traffic beside the live model until it has
   compared ``--shadow-answers``; on the answers the live model accepted the two must agree on the
   class (``--min-agreement``), and the candidate may refer no more than a point more;
8. **promote** on every worker, then check that every worker serves it.

Exit status: 0 promoted; 3 the live model kept (the report says why); 2 bad input (tokens, the
service, the labels); 1 a stage's command failed (its log is named; the live model is untouched, a
shadow the command loaded is dropped); 4 the rule says promote but the admin API reaches one pod of several
(Kubernetes): roll the candidate out as docs/deployment.md's canary says. The report
(``learn-report.md`` and ``.json``: the before/after table, what decided, the time of each stage) is
written beside the candidate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.promote import TOLERANCE, compare, markdown
from model.reviewed import read_source

PROMOTED, FAILED, BAD_INPUT, KEPT, CLUSTER = 0, 1, 2, 3, 4
STAGES = ("inspect", "export", "fine-tune", "calibrate", "evaluate", "decide", "shadow", "promote")


class LearnError(RuntimeError):
    """Bad input: the tokens, the service or the labels; the command cannot start or go on (exit 2)."""


class StageFailed(RuntimeError):
    """A stage's command failed (its log says why); the live model is untouched (exit 1)."""


@dataclass(frozen=True)
class Service:
    """The running service's two APIs, with their tokens (standard library HTTP)."""

    url: str
    review_token: str
    admin_token: str

    def call(self, method: str, path: str, token: str, body: dict[str, Any] | None = None,
             timeout_s: float = 600.0) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url.rstrip("/") + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise LearnError(f"{self.url}{path}: the service did not answer ({error})") from error

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        status, data = self.call(method, "/admin" + path, self.admin_token, body)
        try:
            return status, json.loads(data or b"{}")
        except json.JSONDecodeError:
            return status, {"detail": data[:200].decode(errors="replace")}


@dataclass
class Run:
    """What the stages found and decided, in the order they ran: the report."""

    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    outcome: str = "running"

    def stage(self, name: str) -> StageTimer:
        return StageTimer(self, name)


@dataclass
class StageTimer:
    run: Run
    name: str
    began: float = 0.0

    def __enter__(self) -> None:
        self.began = time.perf_counter()
        number = STAGES.index(self.name) + 1
        print(f"\n[{number}/{len(STAGES)}] {self.name} (at {self.began - self.run.started:.0f} s)", flush=True)

    def __exit__(self, *exc: object) -> None:
        took = time.perf_counter() - self.began
        self.run.seconds[self.name] = round(took, 1)
        print(f"[{self.name}] {took:.1f} s", flush=True)


def run_step(command: list[str], log: Path) -> int:
    """``python -m ...`` streamed to the terminal and to ``log``; its exit status."""
    with log.open("w") as handle, subprocess.Popen([sys.executable, *command], stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            print("    " + line, end="", flush=True)
        return process.wait()


def inspect(service: Service, run: Run) -> dict[str, Any]:
    status, models = service.admin("GET", "/models")
    if status == 401:
        raise LearnError("the admin token was refused (one of BNN_ADMIN_TOKENS)")
    if status != 200:
        raise LearnError(f"GET /admin/models answered {status}: {models.get('detail')}")
    live = models["models"]["live"]
    if not Path(live["path"]).is_file():
        raise LearnError(f"the live checkpoint {live['path']} is not here: run this where the service's files are")
    run.facts["live"] = {key: live.get(key) for key in ("model_version", "path", "precision")}
    run.facts["workers"] = len(models["workers"])
    run.facts["pod"] = models.get("pod")
    print(f"live {live['model_version']} ({live['path']}, {live['precision']}) on {len(models['workers'])} "
          f"worker(s); models directory {models['models_dir']}")
    return models


def export(service: Service, to: Path) -> None:
    status, data = service.call("GET", "/review/export", service.review_token)
    if status != 200:
        raise LearnError(f"GET /review/export answered {status}: "
                         f"{'the review token was refused' if status == 401 else data[:200].decode(errors='replace')}")
    to.write_bytes(data)


def certify(candidate: Path, labels: Path, precision: str, out: Path, run: Run) -> bool:
    """The candidate made servable in the live model's precision (the fine-tune fitted float32's records: int8
    needs its trunk and records), then the threshold of each channel with held-out labelled audits certified on
    them and its validation part together: the traffic's new kinds and every kind the validation mix holds (the
    audits alone, a sample of what one service saw, would certify a threshold for that traffic only)."""
    if precision == "int8":
        if run_step(["-m", "model.quantize", "--checkpoint", str(candidate)], out / "quantize.log"):
            raise StageFailed(f"model.quantize failed on the candidate: {out / 'quantize.log'}")
        if run_step(["-m", "model.calibrate", "--checkpoint", str(candidate), "--precision", "int8",
                     "--no-temperature"], out / "calibrate.log"):
            raise StageFailed(f"model.calibrate failed on the candidate: {out / 'calibrate.log'}")
    code = run_step(["-m", "model.calibrate", "--checkpoint", str(candidate), "--reviewed", str(labels),
                     "--with-validation"], out / "certify.log")
    said = (out / "certify.log").read_text().strip().splitlines()
    run.facts["certificate"] = said[-3:]
    if code != 0:  # refused with the audits, or no validation record to start from: no certificate
        run.reasons.append("the held-out audits with the validation mix certified no threshold: " +
                           (said[-1] if said else f"model.calibrate exited {code}"))
    return not run.reasons


SMOKE_EVALUATION = ["--scale", "0.05", "--drawings", "40", "--no-ood"]  # --dry-run's: every section, tiny


def evaluate(checkpoint: Path, out: Path, log: Path, dry_run: bool) -> Path:
    if run_step(["-m", "model.evaluate", "--checkpoint", str(checkpoint), "--out", str(out), "--no-plots",
                 *(SMOKE_EVALUATION if dry_run else [])], log):
        raise StageFailed(f"model.evaluate failed on {checkpoint}: {log}")
    return out / "evaluation.json"


def decide(live: Path, live_report: Path, candidate: Path, candidate_report: Path, labels: Path,
           run: Run) -> bool:
    result = compare(live, live_report, candidate, candidate_report, read_source(str(labels)))
    run.facts["comparison"] = {"live": result.live, "candidate": result.candidate,
                               "held_out_items": result.held_out_items}
    if result.candidate:
        run.facts["table"] = markdown(result.live, result.candidate)
        print(run.facts["table"])
    run.reasons += result.reasons
    return result.promote


def shadow(service: Service, candidate: Path, answers: int, timeout_s: float, min_agreement: float,
           run: Run) -> bool:
    """The candidate beside the live model on live traffic; whether it kept what the live model reads."""
    status, answer = service.admin("POST", "/models/shadow", {"path": str(candidate)})
    if status != 200:
        run.reasons.append(f"the service refused the candidate as a shadow ({status}): {answer.get('detail')}")
        return False
    deadline = time.monotonic() + timeout_s
    compared: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, models = service.admin("GET", "/models")
        compared = models.get("shadow") or {}
        print(f"    shadow compared on {compared.get('compared', 0)} / {answers} live answers", flush=True)
        if compared.get("compared", 0) >= answers:
            break
        time.sleep(5.0)
    run.facts["shadow"] = compared
    version = json.loads(candidate.with_suffix(".json").read_text())["model_version"]
    if compared.get("shadow_version") not in (None, version):
        run.reasons.append(f"another shadow ({compared['shadow_version']}) took the candidate's place")
    elif compared.get("compared", 0) < answers:
        run.reasons.append(f"the shadow saw {compared.get('compared', 0)} live answers in {timeout_s:.0f} s, "
                           f"not {answers}: too little traffic to compare")
    else:
        agreement = compared.get("class_agreement_live_accepted")
        if agreement is None:
            run.reasons.append("the live model accepted none of the compared answers: nothing to compare on")
        elif agreement < min_agreement:
            run.reasons.append(f"on live answers the live model accepted, the candidate agreed on the class "
                               f"{agreement:.2%} of the time (needs {min_agreement:.2%})")
        if compared["shadow_referred"] > compared["live_referred"] + TOLERANCE:
            run.reasons.append(f"the candidate referred {compared['shadow_referred']:.2%} of live traffic, the live "
                               f"model {compared['live_referred']:.2%}")
    if run.reasons:
        service.admin("DELETE", "/models/shadow")
    return not run.reasons


def promote(service: Service, candidate: Path, run: Run) -> bool:
    status, answer = service.admin("POST", "/models/promote", {"path": str(candidate)})
    if status != 200:
        run.reasons.append(f"the service refused the promotion ({status}): {answer.get('detail')}")
        return False
    _, models = service.admin("GET", "/models")
    version = models["models"]["live"]["model_version"]
    serving = sorted({str(worker.get("live")) for worker in models["workers"]})
    run.facts["promoted"] = {"model_version": version, "workers": serving}
    if serving != [version]:
        run.reasons.append(f"after the promotion the workers serve {serving}, not {version} alone")
        return False
    print(f"every worker ({len(models['workers'])}) serves {version}")
    return True


def write_report(out: Path, run: Run) -> None:
    lines = [f"# model.learn: {run.outcome}", "", f"Written {datetime.now(UTC).isoformat(timespec='seconds')}.", ""]
    if run.reasons:
        lines += ["Why:", "", *[f"- {reason}" for reason in run.reasons], ""]
    if "table" in run.facts:
        lines += ["## Live model against the candidate", "", run.facts["table"], ""]
    if run.facts.get("shadow"):
        lines += ["## The shadow on live traffic", "", "```json", json.dumps(run.facts["shadow"], indent=2), "```", ""]
    lines += ["## Stages", "", "| stage | seconds |", "|---|---:|",
              *[f"| {name} | {seconds} |" for name, seconds in run.seconds.items()],
              f"| total | {round(sum(run.seconds.values()), 1)} |", ""]
    (out / "learn-report.md").write_text("\n".join(lines))
    (out / "learn-report.json").write_text(json.dumps({"outcome": run.outcome, "reasons": run.reasons,
                                                       "seconds": run.seconds, **run.facts}, indent=2, default=str))


def make_candidate(service: Service, args: argparse.Namespace, run: Run, live: Path, out: Path) -> int | None:
    """Stages 2-6: the candidate from the labels, certified, evaluated and judged; KEPT, or None to go on."""
    candidate, labels = out / "bnn.safetensors", out / "review-labels.ndjson"
    with run.stage("export"):
        export(service, labels)
    with run.stage("fine-tune"):
        command = ["-m", "model.train", "--fine-tune", str(live), "--reviewed", str(labels), "--out",
                   str(candidate), "--no-progress", *(["--dry-run"] if args.dry_run else [])]
        if run_step(command, out / "fine-tune.log"):
            raise StageFailed(f"the fine-tune failed: {out / 'fine-tune.log'}")
    with run.stage("calibrate"):
        if not certify(candidate, labels, run.facts["live"]["precision"], out, run):
            run.outcome = "kept the live model: the candidate's thresholds could not be certified"
            return KEPT
    with run.stage("evaluate"):
        live_report = evaluate(live, out / "live-reports", out / "evaluate-live.log", args.dry_run)
        candidate_report = evaluate(candidate, out / "reports", out / "evaluate.log", args.dry_run)
    with run.stage("decide"):
        if not decide(live, live_report, candidate, candidate_report, labels, run):
            run.outcome = "kept the live model: the promotion rule refused the candidate"
            return KEPT
    return None


def serve_candidate(service: Service, args: argparse.Namespace, run: Run, candidate: Path) -> int:
    """Stages 7-8: the candidate beside the live model on live traffic, then live on every worker."""
    with run.stage("shadow"):
        if not shadow(service, candidate, args.shadow_answers, args.shadow_timeout, args.min_agreement, run):
            run.outcome = "kept the live model: the shadow comparison on live traffic refused the candidate"
            return KEPT
    with run.stage("promote"):
        if not promote(service, candidate, run):
            run.outcome = "kept the live model: the promotion did not take on every worker"
            return KEPT
    run.outcome = f"promoted {run.facts['promoted']['model_version']}"
    return PROMOTED


def rollout_step(out: Path) -> str:
    """What to do instead of promoting one pod (docs/deployment.md, "On Kubernetes")."""
    files = ", ".join(sorted(path.name for path in out.glob("bnn.*")
                             if path.suffix in (".safetensors", ".json", ".onnx")))
    return (f"roll the candidate out as a canary: copy {files} from {out} to the model store, point the overlay's "
            "STORAGE_URI at them, `kubectl apply -k deploy/kubernetes/kserve/canary` (10 % of traffic), watch "
            "Grafana's referral rate by model version, then set canaryTrafficPercent to 100 (or revert the patch)")


def learn(service: Service, args: argparse.Namespace, run: Run) -> int:
    with run.stage("inspect"):
        models = inspect(service, run)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(models["models_dir"]) / "candidates" / f"{models['models']['live']['model_version']}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    run.facts["out"] = str(out)
    try:
        kept = make_candidate(service, args, run, Path(models["models"]["live"]["path"]), out)
        if kept is not None:
            return kept
        if (models.get("pod") or {}).get("one_of_several"):
            run.outcome = "the rule promotes the candidate, but this admin API reaches one pod of several"
            run.reasons.append(rollout_step(out))
            return CLUSTER
        return serve_candidate(service, args, run, out / "bnn.safetensors")
    except LearnError as error:
        run.outcome = "stopped on bad input"
        run.reasons.append(str(error))
        return BAD_INPUT
    except (StageFailed, ValueError, KeyError, OSError) as error:  # a crashed command, an unreadable report or file
        run.outcome = "stopped: a stage failed; the live model is untouched"
        run.reasons.append(f"{type(error).__name__}: {error}")
        return FAILED
    finally:
        if "shadow" in run.seconds and not run.outcome.startswith("promoted"):
            with contextlib.suppress(LearnError):  # best effort: the candidate leaves the live traffic
                service.admin("DELETE", "/models/shadow")
        write_report(out, run)
        print(f"\n{run.outcome}\n" + "".join(f"  - {reason}\n" for reason in run.reasons) +
              f"report: {out / 'learn-report.md'}")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.learn", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--service", default=os.environ.get("BNN_URL"), help="the running service (or $BNN_URL)")
    add("--review-token", default=os.environ.get("BNN_REVIEW_TOKEN"), help="a reviewer's (or $BNN_REVIEW_TOKEN)")
    add("--admin-token", default=os.environ.get("BNN_ADMIN_TOKEN"), help="an admin's (or $BNN_ADMIN_TOKEN)")
    add("--out", type=Path, default=None, help="the candidate's directory (default: a new one under the service's "
        "models directory, candidates/<live version>-<time>)")
    add("--shadow-answers", type=positive, default=200, help="live answers the shadow must be compared on")
    add("--shadow-timeout", type=float, default=600.0, help="seconds to wait for them")
    add("--min-agreement", type=float, default=0.99, help="class agreement needed on what the live model accepted")
    add("--dry-run", action="store_true", help="a smoke run of every stage: a dry-run fine-tune and a tiny "
        "evaluation, whose numbers mean nothing (the tests)")
    args = parser.parse_args(argv)
    missing = [name for name in ("service", "review_token", "admin_token") if not getattr(args, name)]
    if missing:
        parser.error("missing " + ", ".join("--" + name.replace("_", "-") for name in missing))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    service = Service(args.service, args.review_token, args.admin_token)
    try:
        return learn(service, args, Run())
    except LearnError as error:  # before the candidate's directory exists: nothing to report beside it
        print(f"python -m model.learn: {error}", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
