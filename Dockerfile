# syntax=docker/dockerfile:1
# Serin: the server (gunicorn + Flask), the webhook certificate tool (serin-certs) and the tick
# client, in one image. Build: docker build -t REGISTRY/serin:TAG .   (or, without Docker and
# without a registry to pull from, `make image`: localcluster/image.py)

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: the runtime dependencies and Serin's package, in a venv the final stage copies whole
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# The dependencies first, in a layer of their own that is rebuilt only when they change.
COPY requirements.txt /src/requirements.txt
RUN /opt/venv/bin/pip install --requirement /src/requirements.txt
# pip compiles the installed modules to bytecode, so the read-only container never needs to; the
# package brings the console scripts serin, kubectl-serin and serin-certs (the certificate Job's).
COPY pyproject.toml /src/
COPY serin/ /src/serin/
COPY handlers/ /src/handlers/
RUN /opt/venv/bin/pip install --no-deps /src

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
