"""The Open Inference Protocol (OIP, "KServe v2") for this model: its tensors and metadata
(``spec.py``), request parsing (``request.py``) and response encoding (``response.py``). No HTTP types
(``routes/v2.py`` serves it) and no network code.

The model ``bnn-digits`` takes one input per request:

* ``image``: BYTES ``[B]``, each element an encoded image file (PNG, JPEG, WebP, BMP, GIF),
  preprocessed as ``/predict`` does. In the JSON body an element is the file in **base64** (a
  JSON string cannot carry raw bytes); with the binary tensor data extension it is the raw file.
* ``digits``: UINT8 ``[B, 28, 28]``, already MNIST-style (light ink on black, centred as MNIST
  is), row-major; not preprocessed.

and answers ``class`` INT64 ``[B]``, ``probabilities`` FP32 ``[B, 10]``, ``entropy`` FP32 ``[B]``,
``mutual_information`` FP32 ``[B]``, ``refer`` BOOL ``[B]``, ``refer_reason`` BYTES ``[B]``
(``uncertain``, ``unfamiliar`` or empty), ``candidates`` INT64 ``[B, 3]`` (the digits worth a
reviewer's look, most likely first, -1 padded), ``audit`` BOOL ``[B]`` and ``review_id`` BYTES
``[B]`` (the review item, empty when not queued); the threshold, N and the model version are
response parameters (with the channel). ``outputs`` in the request selects outputs;
``parameters.samples`` sets N; ``parameters.channel`` ("file", the default, or "drawn": a drawing
on a pad) whose calibrated refer rule judges the images.

Binary tensor data extension, both directions: with an ``Inference-Header-Content-Length``
header the body is that many bytes of JSON followed by the inputs' raw data, in order, each
input's size given by its ``parameters.binary_data_size`` (BYTES elements: a 4-byte
little-endian length, then the bytes). An output is returned binary when the request asks
(``parameters.binary_data_output`` for all, or an output's ``parameters.binary_data``); the
response then carries the JSON length in the same header.

Hostile bodies are a 400 naming the problem, never a 500: JSON nested deeper than ``MAX_DEPTH``
(the deepest valid request, digits as ``[B][28][28]`` lists, is 6), a number past Python's integer
digit limit (4300), a shape dimension outside int64, and ``parameters`` (the request's, an input's,
an output's) that are not an object or hold a value of the wrong type. The depth check walks
the parsed containers once: 0.5 to 1 ms for 32 digits ([32, 28, 28], flat or nested), beside
0.75 to 1.5 ms for ``json.loads`` itself (measured here).

No per-element work before the element count is known to be within the batch limit: a body of
the request limit (32 MiB) can hold 11 million ``""`` or 16 million ``0`` elements, and parsing
them took 2.5 to 3 s of the event loop. So the JSON is refused unread when it has more commas
than the largest valid request needs (every value after the first in an array or object follows
one: ``max_batch`` digits of 28 x 28 values, plus ``MAX_FRAMING_COMMAS``; counting them in 32 MiB
takes 10 ms), a shape over the batch limit is refused before its data is read, and binary BYTES
data is split only up to ``max_batch`` elements.
"""
