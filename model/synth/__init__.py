"""Training and report data, synthesised: what people send, and what they send that is not a digit.

* ``uploads``: an MNIST-style digit (or any glyph) rendered as the file a person uploads
  (canvas, polarity, stroke, JPEG, photo light, ruled paper), then read back through the
  service's transform;
* ``pen``: MNIST digits thinned to a skeleton and re-inked as pen strokes on the page's pad;
* ``sketches``: digit skeletons drawn by hand in code, and the bank of named digits that no
  generated non-digit may resemble;
* ``outliers``: generated non-digits for outlier exposure (glyph marks, scribbles, shapes,
  textures, noise, pairs of digits);
* ``other_scripts``: marks of other scripts (Greek, Cyrillic, signs) printed and pen-drawn;
* ``families``: fonts and character sets, split into what training prints and what the report
  holds out;
* ``drawings``: the drawing battery's stroke paths (letters, doodles, digits) for the page;
* ``pools``: each of these rendered once, seeded, and cached on disk.

Nothing here is imported by the service.
"""
