# The one image for every process: web (`serve --no-workers`), `worker`, and migrations.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY status ./status
COPY bot ./bot
COPY channels ./channels
COPY templates ./templates
RUN pip install . && useradd --system --uid 10001 --home /app patient-status
# The learned classifier's artifact, built into the image (the app would train it at start).
ENV NLU_MODEL_DIR=/app/nlu-model
RUN patient-status nlu train

USER patient-status
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["patient-status", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-workers", "--workers", "2"]
