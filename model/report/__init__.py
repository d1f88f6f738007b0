"""Sections of the quality report that ``model.evaluate`` assembles: refer decisions per family
of simulated uploads (``uploads``), the MNIST test split as the service sees it (``served``),
and the drawing battery (``drawings``)."""
