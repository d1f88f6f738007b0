"""The naive reference service, for comparison only: the same network and preprocessing served
the seed's way, a loop of N forward passes with freshly sampled weights, one request at a time,
no batching.

    python -m bench.naive_service --port 8100
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Annotated

import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile

from bench.predictive_pass import loop_predictive
from model.checkpoint import load_checkpoint
from model.data import to_input
from model.predictive import summarize
from service.inference.preprocess import preprocess


def build(checkpoint: Path, samples: int) -> FastAPI:
    net, _ = load_checkpoint(checkpoint)
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/predict")
    def predict(file: Annotated[UploadFile, File()]) -> dict[str, object]:  # sync: runs in the threadpool
        digit = preprocess(file.file.read(), 40_000_000)
        result = summarize(loop_predictive(net, to_input(digit[None]), samples))
        probabilities = result.mean_probs[0].tolist()
        return {"class": int(result.mean_probs[0].argmax()), "probabilities": probabilities,
                "entropy": float(result.entropy[0])}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_service", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("BNN_PORT", "8100")))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    uvicorn.run(build(args.checkpoint, args.samples), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
