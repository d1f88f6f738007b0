"""The training loop: maximise the ELBO over a batch mix, epoch by epoch, resumable.

Loss per batch = mean NLL + kl_weight * KL / N_train. This is the one place the KL is scaled:
each layer returns its full KL, the network sums them, and dividing by the training-set size
makes the batch loss an unbiased estimate of -ELBO / N_train. kl_weight ramps linearly from 0 to
1 over the warm-up epochs and stays at 1. Outlier exposure adds the cross-entropy of generated
non-digits to the uniform answer. ``python -m model.train`` (``model/train.py``) runs it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from model.batch_mix import Batch, BatchMix, TrainingData
from model.data import Mnist, Split
from model.layers import GaussianParameters
from model.network import BayesianNet
from model.scoring import predict_images
from model.train_config import TrainConfig


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    progress = min(1.0, step / max(1, total_steps))
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def evaluate_split(net: BayesianNet, split: Split, samples: int) -> dict[str, float]:
    result = predict_images(net, split.images, samples)
    labels = torch.as_tensor(split.labels)
    nll = -torch.log(result.mean_probs.gather(1, labels[:, None]).clamp_min(1e-12)).mean()
    accuracy = (result.mean_probs.argmax(-1) == labels).float().mean()
    return {"accuracy": accuracy.item(), "nll": nll.item(), "mean_entropy": result.entropy.mean().item()}


def _state_path(out: Path) -> Path:
    return out.with_name(out.stem + ".train-state.safetensors")


def save_train_state(out: Path, net: BayesianNet, optimizer: torch.optim.Optimizer, epoch: int,
                     history: list[dict[str, Any]]) -> None:
    """Model, optimizer and progress, for --resume: safetensors + JSON, no pickle. Every tensor of
    the two state dicts is stored under ``model.<name>`` / ``optim.<param index>.<name>``; the
    optimizer's param groups (plain numbers) and the progress go to the JSON metadata."""
    optim_state = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors |= {f"optim.{index}.{key}": value for index, state in optim_state["state"].items()
                for key, value in state.items()}
    path = _state_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata={
        "progress": json.dumps({"epoch": epoch, "history": history}),
        "param_groups": json.dumps(optim_state["param_groups"]),
    })


def load_train_state(out: Path, net: BayesianNet, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict[str, Any]]]:
    from safetensors import safe_open

    path = _state_path(out)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    net.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    progress = json.loads(metadata["progress"])
    return int(progress["epoch"]), list(progress["history"])


def outlier_exposure_loss(logits: Tensor) -> Tensor:
    """Cross-entropy from the uniform distribution to the prediction, averaged over the outliers:
    at its minimum, ln 10 nats, when every class gets probability 1/10."""
    return -(logits.log_softmax(-1).mean(-1)).mean()


def distillation_loss(logits: Tensor, teacher: BayesianNet, images: Tensor) -> Tensor:
    """KL(teacher's answer || the net's) averaged over ``images`` (one posterior sample of each): what keeps a
    fine-tuned net answering the parent's recipe as the parent did."""
    with torch.no_grad():
        target = teacher(images)[0].log_softmax(-1)
    return F.kl_div(logits.log_softmax(-1), target, log_target=True, reduction="batchmean")


def train_step(net: BayesianNet, optimizer: torch.optim.Optimizer, batch: Batch, kl_weight: float, labelled_total: int,
               config: TrainConfig, teacher: BayesianNet | None = None) -> dict[str, float]:
    """One ELBO step on ``batch``; returns its sums (weighted by the labelled count) for the epoch's means."""
    logits = net(batch.images)[0]  # [B_all, 10], one posterior sample; the trunk in net.precision
    labelled = len(batch.labels)
    nll = F.cross_entropy(logits[:labelled], batch.labels)
    oe = outlier_exposure_loss(logits[labelled:]) if labelled < len(logits) else nll.new_zeros(())
    kl = net.kl() / labelled_total
    loss = nll + config.outlier_weight * oe + kl_weight * kl
    if teacher is not None and config.distill > 0 and batch.replayed is not None:
        loss = loss + config.distill * distillation_loss(logits[batch.replayed], teacher, batch.images[batch.replayed])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    count = float(labelled)
    return {"loss": loss.item() * count, "nll": nll.item() * count, "kl": kl.item() * count, "oe": oe.item() * count,
            "correct": float((logits[:labelled].argmax(-1) == batch.labels).sum().item()), "seen": count}


def run_epoch(net: BayesianNet, optimizer: torch.optim.Optimizer, mix: BatchMix, epoch: int, config: TrainConfig,
              progress: bool, teacher: BayesianNet | None = None) -> dict[str, Any]:
    """One epoch over ``mix`` with the learning-rate schedule and the KL warm-up; the epoch's means."""
    from tqdm import tqdm  # a dev dependency: importing this module (a command's --help) must not need it

    steps = mix.steps_per_epoch
    sums = dict.fromkeys(("loss", "nll", "kl", "oe", "correct", "seen"), 0.0)
    started = time.perf_counter()
    bar = tqdm(mix.epoch(epoch), total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
               leave=True, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        global_step = epoch * steps + step
        for group in optimizer.param_groups:
            group["lr"] = lr_at(global_step, steps * config.epochs, config)
        kl_weight = min(1.0, (global_step + 1) / max(1.0, config.kl_warmup_epochs * steps))
        for key, value in train_step(net, optimizer, batch, kl_weight, mix.labelled, config, teacher).items():
            sums[key] += value
        bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.4f}", kl=f"{sums['kl'] / sums['seen']:.4f}",
                        acc=f"{sums['correct'] / sums['seen']:.4f}")
    seen = sums.pop("seen")
    return {"epoch": epoch + 1, "steps": steps, "seconds": time.perf_counter() - started,
            **{k: v / seen for k, v in sums.items() if k != "correct"}, "train_accuracy": sums["correct"] / seen}


def fit(net: BayesianNet, data: Mnist, config: TrainConfig, out: Path | None = None,
        resume: bool = False, progress: bool = True, extra: TrainingData | None = None,
        teacher: BayesianNet | None = None) -> dict[str, Any]:
    """Train ``net`` in place on ``extra`` (default: the arrays of ``data`` alone); returns the
    per-epoch history and the final validation metrics. With ``out``, the state after every epoch
    is saved for ``resume``. A fine-tune's ``teacher`` (its parent) is what ``config.distill`` keeps."""
    net.to(config.device)
    if teacher is not None:
        teacher.to(config.device)
    net.precision = config.precision  # the trunk's, under autocast; parameters, optimizer state and loss stay float32
    net.int8_trunk = None  # quantized from the weights before this training: python -m model.quantize makes a new one
    if config.anchor == "posterior":
        for layer in net.modules():
            if isinstance(layer, GaussianParameters):
                layer.anchor_to_posterior()
    net.requires_grad_(config.learns == "all")
    if config.learns != "all":
        (net.head if config.learns == "head" else net.head[-1]).requires_grad_(True)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    start_epoch, history = 0, list[dict[str, Any]]()
    if resume and out is not None and _state_path(out).exists():
        start_epoch, history = load_train_state(out, net, optimizer)
    mix = BatchMix(extra if extra is not None else TrainingData(data.train), config)
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)  # the posterior draws of the epoch: resumable
        net.train()
        record = run_epoch(net, optimizer, mix, epoch, config, progress, teacher)
        validation = evaluate_split(net, data.validation, config.eval_samples)
        record.update({f"validation_{k}": v for k, v in validation.items()})
        history.append(record)
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}))
        if out is not None:
            save_train_state(out, net, optimizer, epoch + 1, history)
    return {"history": history, "validation": history[-1] if history else {}}
