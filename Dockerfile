# CPU-only image of the digit service: 2 worker processes by default (BNN_WORKERS; metrics add up).
#
# Build arguments, today's values as defaults (for a machine behind a package mirror, or without
# Docker Hub: README "Docker"):
#   BASE_IMAGE       a Debian-based image with python3.11 and its venv module (python:3.11-slim)
#   TORCH_INDEX_URL  the index torch==2.13.0 (CPU build) comes from; empty: pip's own configuration
#                    (e.g. a mirror or a wheel folder given to the build with -v)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
# torch from the CPU wheel index: the default index's wheel bundles CUDA (several GB). Then what
# the service never loads at run time (measured in the built image, README "Docker"): torch's C++
# test programs (test/, 83 MB; bin/ but torch_shm_manager, 50 MB), its C++ headers and CMake files
# (for building extensions), and pip itself.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0 \
 && /opt/venv/bin/pip install -r requirements.txt \
 && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && rm -rf "$site/torch/include" "$site/torch/share" "$site/torch/test" \
 && find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} + \
 && /opt/venv/bin/python -m pip uninstall -y -q pip

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BNN_HOST=0.0.0.0 BNN_PORT=8000 BNN_MODEL_PATH=/app/checkpoints/bnn.safetensors \
    BNN_MODELS_DIR=/app/checkpoints \
    BNN_REVIEW_DB=sqlite:////data/review.db
# /data: the review queue's SQLite file (a volume: the root filesystem is read-only at run time)
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bnn \
 && mkdir /data && chown 10001 /data
VOLUME /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root model/ model/
COPY --chown=root:root service/ service/
COPY --chown=root:root checkpoints/bnn.safetensors checkpoints/bnn.json checkpoints/bnn.int8.onnx checkpoints/
RUN chmod -R a+rX /app
USER 10001
EXPOSE 8000
# on the port the service listens on (BNN_PORT, also when it is changed at run time)
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BNN_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2).status == 200 else 1)"]
# exec form: python is PID 1 and receives SIGTERM directly, then passes it to its workers and waits for them
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
