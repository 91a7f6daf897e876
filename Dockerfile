# syntax=docker/dockerfile:1
# The mlgate model server (DESIGN §7).
#
#   docker build -t mlgate-serving .
#   docker run -p 8080:8080 -v "$PWD/models/candidate:/model:ro" mlgate-serving
#
# or with the model copied into the image (the `bundled` target):
#   docker build --target bundled --build-arg MODEL_DIR=models/candidate -t mlgate-serving:candidate .
#
# The container runs `mlgate serve --model /model --host 0.0.0.0 --port 8080` as a non-root user;
# pass other arguments after the image name, e.g. `--model champion=/models/champion --port 8080`.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the project and its dependencies into a virtual environment ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mlgate ./mlgate
COPY gates ./gates
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install --upgrade pip setuptools wheel \
 && pip install . \
 && python -c "import mlgate.serving.app, mlgate.pipelines.cli.main"

# ---- base: the runtime, without compilers, caches or sources ------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 mlgate \
 && useradd --system --uid 10001 --gid mlgate --home-dir /home/mlgate --create-home \
            --shell /usr/sbin/nologin mlgate
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/mlgate
USER 10001:10001
EXPOSE 8080
# Liveness only: /readyz turns 200 once the model is loaded, for orchestrators' readiness probes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["mlgate", "serve"]
CMD ["--model", "/model", "--host", "0.0.0.0", "--port", "8080"]

# ---- bundled: the model copied in at build time (docker build --target bundled) -----------------
FROM base AS bundled
ARG MODEL_DIR=models/candidate
COPY --chown=10001:10001 ${MODEL_DIR} /model

# ---- runtime (default target): the model is mounted at /model ----------------------------------
FROM base AS runtime
