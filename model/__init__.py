"""The variational (Bayesian) digit network and everything that makes and judges it. Three jobs:

* **What the service loads** (this folder's top level; ``SERVED_CORE``): ``layers`` (variational
  Linear/Conv2d), ``network`` (config + net), ``predictive`` (the N-sample predictive),
  ``checkpoint`` (safetensors + JSON metadata), ``calibration`` (the refer rule's records: one map by where they were
  fitted, channel and precision), ``refer_rule`` (the rule applied: referred or not, why, the candidates),
  ``precision`` (what the conv trunk runs in: float32, or int8 where the CPU has the units),
  ``int8_trunk`` (the trunk quantized from the weights, run by ONNX Runtime), ``transform``
  (image -> the network's 28x28), ``data`` (the input constants and splits), ``binomial`` (exact
  intervals for the review statistics).
* **The pipeline commands** (top level too, each ``python -m model.<name>``), reading MNIST through
  ``mnist``: ``train`` (its loop in ``train_loop``, its recipe in ``train_config``, its data in ``batch_mix``,
  fine-tuning in ``fine_tune``), ``quantize`` (the int8 trunk from the weights), ``calibrate`` (the fitting
  in ``model.fitting``), ``evaluate`` (with its sections in
  ``model.report``; ``python -m tools.drawn_digits`` draws the same on the real page), ``promote`` (the
  rule that decides whether a candidate ships), ``learn`` (the loop from a running service's labels to a
  promoted model, through the others), ``migrate_records`` (older checkpoint metadata to the
  one map of calibration records); ``reviewed`` is the library they read the reviewers' labels with
  (``--reviewed SOURCE``), ``scoring`` what they share to score a net, not commands.
* **Synthesis of training and report data** (``model.synth``): simulated uploads, pen drawings,
  sketches, outliers (all drawn with ``synth.canvas``), marks of other scripts, fonts, the cached
  pools.

The service imports only the first (``tests/test_layout.py``); ``model/`` never imports ``service/``.
"""

SERVED_CORE = ("binomial", "calibration", "checkpoint", "data", "int8_trunk", "layers", "network", "precision",
               "predictive", "refer_rule", "transform")
