# syntax=docker/dockerfile:1
# Serin: the server (gunicorn + Flask), the webhook certificate tool (serin-certs) and the tick
# client, in one image. Build:
#   docker build --build-arg PYTHON_IMAGE_DIGEST=sha256:... -t REGISTRY/serin:TAG .
# (or, without Docker and without a registry to pull from, `make image`: localcluster/image.py).
# README, "Supply chain": where the digest comes from, the locks, the SBOM.

# The base is named by digest, never by its tag alone: a tag can be moved to another image, a
# digest names one. The digest has no default, so that a build not given one fails rather than
# take whatever the tag names that day: pass the digest of python:3.11-slim's image index.
ARG PYTHON_IMAGE_DIGEST
ARG PYTHON_IMAGE=python:3.11-slim@${PYTHON_IMAGE_DIGEST}

# ---- builder: the runtime dependencies and Serin's package, in a venv the final stage copies whole
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Every package comes from a lock that pins its version and the hashes of its files: pip refuses
# any other file, resolves nothing (--no-deps: each lock is a whole closure) and takes wheels only,
# so no locked package's own build code runs here. First the build's own tools, kept out of the
# image: the base's pip, and the locked setuptools that builds Serin's wheel.
COPY requirements-build.lock /src/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps --only-binary=:all: \
       --requirement /src/requirements-build.lock
# The dependencies, in a layer of their own that is rebuilt only when the lock changes. The venv
# has no pip of its own: it holds what the lock names and Serin, nothing else. pip's report of what
# it installed (each file's address and SHA-256) feeds the SBOM.
COPY requirements.lock /src/
RUN python -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes --no-deps --only-binary=:all: \
       --report /src/install-report.json --requirement /src/requirements.lock
# Serin's wheel, built without isolation (which would fetch setuptools unchecked) and installed from
# the file alone. pip compiles the installed modules to bytecode, so the read-only container never
# needs to; the package brings the console scripts serin, kubectl-serin and serin-certs (the
# certificate Job's).
COPY requirements.txt pyproject.toml /src/
COPY serin/ /src/serin/
COPY handlers/ /src/handlers/
RUN /opt/build/bin/pip wheel --no-index --no-deps --no-build-isolation --wheel-dir /src/dist /src \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-index --no-deps /src/dist/serin-*.whl
# The SBOM: the venv's packages, checked against the lock and pip's report (localcluster/sbom.py).
COPY localcluster/sbom.py /src/
RUN /opt/venv/bin/python /src/sbom.py /src/requirements.lock /src/install-report.json /src/sbom.cdx.json

# ---- final: the same base (the venv links to its interpreter), no build tools
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="serin" \
      org.opencontainers.image.description="Progressive delivery for Kubernetes: admission webhooks and a tick endpoint"

# No .pyc written at run time (the root filesystem is read-only in the cluster), logs unbuffered,
# and the venv first on PATH.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# A fixed numeric identity, the one the manifests' securityContext (runAsUser: 10001) expects.
RUN groupadd --gid 10001 serin \
    && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin serin

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/sbom.cdx.json /usr/share/serin/sbom.cdx.json

WORKDIR /app
# gunicorn's entry point and settings, read from the working directory; owned by root and not
# writable by the server's user. The code itself is the package installed in the venv.
COPY wsgi.py gunicorn.conf.py ./
RUN python -m compileall -q wsgi.py gunicorn.conf.py

USER 10001:10001
EXPOSE 8443

# The fixed part of the server: HTTPS on 8443 with the Secret mounted at /etc/serin/tls, and no
# gunicorn control socket (it would want a writable $HOME; nothing uses it in a Pod).
ENTRYPOINT ["gunicorn", \
            "--bind", "0.0.0.0:8443", \
            "--certfile", "/etc/serin/tls/tls.crt", \
            "--keyfile", "/etc/serin/tls/tls.key", \
            "--no-control-socket", \
            "wsgi:app"]
# The tunable part; a Pod's `args:` replace it (k8s/deployment.yaml repeats it explicitly).
CMD ["--worker-class", "serin.worker.GuardedThreadWorker", "--workers", "1", "--threads", "8", "--worker-tmp-dir", "/tmp"]
