"""Read metrics in tests: Prometheus' text format by name and labels, and each worker's own file."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The value of the sample with exactly ``labels``, or the sum over the samples whose labels
    include them (labels not named, such as ``model_version``, summed over); KeyError when none has them."""
    key = (name, frozenset(labels.items()))
    if key in samples:
        return samples[key]
    wanted = set(labels.items())
    matching = [v for (sample_name, sample_labels), v in samples.items()
                if sample_name == name and wanted <= sample_labels]
    if not matching:
        raise KeyError(f"no sample {name}{labels}")
    return sum(matching)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (sample_name, sample_labels), v in samples.items()
               if sample_name == name and wanted <= sample_labels)


def predictions_by_worker(directory: Path) -> dict[int, float]:
    """Answered images per worker process id, read from each worker's own metrics file."""
    counts = {}
    for path in sorted(directory.glob("counter_*.db")):
        families = MultiProcessCollector.merge([str(path)])
        pid = int(path.stem.split("_")[-1])
        counts[pid] = sum(s.value for f in families for s in f.samples if s.name == "bnn_predictions_total")
    return counts


def per_worker_predictions(directory: Path) -> list[float]:
    return list(predictions_by_worker(directory).values())
