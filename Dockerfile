# Kinetoscope image: the HTTP API and the Redis worker, serving the demo model on ONNX Runtime.
#
#   CPU (default):  docker build -t kinetoscope .
#   NVIDIA GPU:     docker build --build-arg GPU=1 -t kinetoscope:gpu .
#                   docker run --gpus all -p 127.0.0.1:8000:8000 kinetoscope:gpu
#
# Stages:
#   export            PyTorch (CPU build) turns the committed demo checkpoints into an ONNX model
#                     repository, and builds the kinetoscope wheel. Nothing of it ships but those two.
#   runtime-base-0/1  the runtime's base: python:3.11-slim (CPU) or an NVIDIA CUDA + cuDNN runtime
#                     image (GPU=1); only the one GPU names is built.
#   runtime           the package with its runtime dependencies only (no torch), the ONNX files,
#                     a non-root user; `kinetoscope serve` by default, `kinetoscope worker` for workers.
#
# Needs BuildKit (the default builder since Docker 23): a stage is chosen by a build argument and
# the wheel is installed through a bind mount so it adds no layer to the image.

# Overridable bases. The GPU base must carry the CUDA major version the onnxruntime-gpu wheel from
# PyPI links against: 1.31.1 (the newest in 2026-10) needs CUDA 13 (libcudart.so.13,
# libcublas.so.13; read off the wheel with readelf) and cuDNN 9. If a newer onnxruntime-gpu moves to
# another CUDA, change CUDA_IMAGE with it. Ubuntu's python3 (3.12 on 24.04) runs the server there.
ARG PYTHON_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
# 0: CPU image, onnxruntime. 1: CUDA image, onnxruntime-gpu instead of onnxruntime.
ARG GPU=0

# ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS export
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src

# The CPU build of PyTorch, from PyTorch's own index: PyPI's default torch wheel for Linux is the
# CUDA build, several GB that the export does not use. The version is the one the Makefile pins.
ARG TORCH_VERSION=2.13.0
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu

# The dependencies of `.[train]` (runtime + train extras) in a layer of their own, read from
# pyproject.toml alone, so a change to the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['train']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY . .
# The package itself (its dependencies are in already), then the model repository. The .pt2
# programs the export also writes are for the torch backend, which the runtime image (no torch)
# cannot use, so they are dropped; the manifest names only the ONNX files.
RUN pip install --no-deps . \
 && kinetoscope export onnx --checkpoints models/checkpoints/demo --out /models/moving-digits \
 && rm -f /models/moving-digits/*.pt2 \
 && pip wheel --no-deps --wheel-dir /wheels .

# ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime-base-0

FROM ${CUDA_IMAGE} AS runtime-base-1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# ------------------------------------------------------------------------------------------------
FROM runtime-base-${GPU} AS runtime
ARG GPU
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH

# Runtime dependencies only: the [project] dependencies of pyproject.toml, no extras, so no torch.
# With GPU=1, onnxruntime-gpu takes onnxruntime's place (the two install the same module and must
# not sit side by side).
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -m venv /opt/venv \
 && python -c "import re, tomllib; gpu = '${GPU}' == '1'; \
deps = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']; \
name = lambda d: re.split(r'[\s<>=!~;\[]', d, maxsplit=1)[0].lower(); \
print('\n'.join(('onnxruntime-gpu' + d[len('onnxruntime'):]) if gpu and name(d) == 'onnxruntime' else d \
for d in deps))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/pyproject.toml /tmp/requirements.txt

# The package from the export stage's wheel (its dependencies are in already). Its copy of the
# training checkpoints (package data of `models`) is removed: serving reads only the ONNX files.
RUN --mount=type=bind,from=export,source=/wheels,target=/tmp/wheels \
    pip install --no-deps /tmp/wheels/*.whl \
 && rm -rf "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/models/checkpoints"

COPY --from=export /models /models

# A user without privileges; numeric so that orchestrators can check it is not root. The results
# folder is created here, owned by that user, so a named volume mounted on it starts writable.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/kinetoscope kinetoscope \
 && mkdir -p /var/lib/kinetoscope/results \
 && chown -R 10001:10001 /var/lib/kinetoscope
USER 10001:10001
WORKDIR /home/kinetoscope

# The app binds 127.0.0.1 unless told otherwise. Inside a container that address is the
# container's own loopback, unreachable through a published port, so the image listens on all of
# the container's interfaces; which host addresses reach it is decided by `-p` / `ports:`.
ENV KINETOSCOPE_HOST=0.0.0.0 \
    KINETOSCOPE_PORT=8000 \
    KINETOSCOPE_MODEL_REPOSITORY=/models
EXPOSE 8000

# Liveness of the API (slim images have no curl; urllib raises, so exits 1, on anything but 2xx).
# A worker container (`kinetoscope worker`) serves no HTTP: compose.yaml gives it its own check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KINETOSCOPE_PORT', '8000'), timeout=4)"]

CMD ["kinetoscope", "serve"]
