# CPU-only image of the digit service: 2 worker processes by default (BNN_WORKERS; metrics add up).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
# torch from the CPU wheel index: the default index's wheel bundles CUDA (several GB).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && /opt/venv/bin/pip install -r requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BNN_HOST=0.0.0.0 BNN_PORT=8000 BNN_MODEL_PATH=/app/checkpoints/bnn.safetensors \
    BNN_REVIEW_DB=sqlite:////data/review.db
# /data: the review queue's SQLite file (a volume: the root filesystem is read-only at run time)
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bnn \
 && mkdir /data && chown 10001 /data
VOLUME /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root model/ model/
COPY --chown=root:root service/ service/
COPY --chown=root:root checkpoints/bnn.safetensors checkpoints/bnn.json checkpoints/
RUN chmod -R a+rX /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]
# exec form: python is PID 1 and receives SIGTERM directly, then passes it to its workers and waits for them
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
