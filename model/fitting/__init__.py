"""How the refer rule is fitted, one job a module: the statistics of a threshold with its guarantee
and of the reason mass (``guarantee``), the logits' temperature (``temperature``), the rules of a net
on the validation mix (``validation``) and a channel's threshold on its labelled audits (``audits``).
``python -m model.calibrate`` and training run them; the records go through ``model.calibration``'s
one writer."""
