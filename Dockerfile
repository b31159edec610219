# microseg worker image: `docker build -t microseg .`, then `docker run microseg worker` (the default).
# Configured only by MICROSEG_* environment variables (docs/operations.md); no broker set = the
# embedded demo broker, so set MICROSEG_BROKER=kafka://host:9092 for anything real.

# Build stage: a wheel with the core compiled by mypyc (setup.py), which needs a C compiler.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A non-root user that owns only the state directory.
RUN groupadd --system --gid 10001 microseg \
 && useradd --system --uid 10001 --gid microseg --home-dir /var/lib/microseg --shell /usr/sbin/nologin microseg \
 && mkdir -p /var/lib/microseg \
 && chown microseg:microseg /var/lib/microseg

# The wheel built above (no compiler in this image); the check fails the build if the compiled
# core did not make it in.
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
 && rm -rf /wheels \
 && microseg --help > /dev/null \
 && python -c "from microseg.segments.native import build; b = build(); assert b.compiled, b.reason"

# Inside a container the web endpoints must listen on all interfaces (the CLI default is 127.0.0.1).
ENV MICROSEG_DATA_DIR=/var/lib/microseg \
    MICROSEG_WEB_HOST=0.0.0.0 \
    MICROSEG_WEB_PORT=6066

WORKDIR /var/lib/microseg
USER 10001:10001

# /metrics, /health, /segments, /customers/{id}
EXPOSE 6066

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MICROSEG_WEB_PORT', '6066'), timeout=4).read()"]

ENTRYPOINT ["microseg"]
CMD ["worker"]
