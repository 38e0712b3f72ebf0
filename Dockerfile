# The app + supervisor for server mode (compose.yaml runs it behind the edge in deploy/nginx).
#   docker build -t voicegen-app .                     (BASE: any Debian-based image with python3 + venv, Python >= 3.10)
#   docker build --build-arg BASE=local/debian-python:bookworm -t voicegen-app .   (offline: a local base image)
# The default architecture's environment (Piper) is built here, at image build time, into /data/envs: a named volume
# mounted on /data starts as a copy of it, so the first request does not wait for an install.
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG UV_VERSION=0.13.9
ARG APP_UID=10001
# tini as PID 1: forwards SIGTERM to the app (a Python PID 1 ignores it and `docker stop` waits 10 s) and reaps
# the workers' orphans. libatomic1: pedalboard's native module needs it (slim images lack it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini ca-certificates libatomic1 \
 && rm -rf /var/lib/apt/lists/* \
 && (command -v python3 >/dev/null || ln -s "$(command -v python)" /usr/local/bin/python3) \
 && useradd --system --uid ${APP_UID} --create-home --home-dir /home/voicegen --shell /usr/sbin/nologin voicegen \
 && mkdir -p /data /app /shared && chown voicegen:voicegen /data /shared

# The app's pinned dependencies first (a layer that stays cached while only the code changes). uv uses the system's
# CA store (UV_NATIVE_TLS): a site with a TLS-inspecting proxy adds its CA to the base image.
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH UV_NATIVE_TLS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/app.lock /app/requirements/app.lock
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --quiet uv==${UV_VERSION} \
 && /opt/venv/bin/uv pip install --no-cache --compile-bytecode --python /opt/venv/bin/python -r /app/requirements/app.lock

COPY --chown=root:root . /app
RUN python -m compileall -q -j 0 /app/app /app/runtimes /app/pipeline /app/jobs /app/launcher.py >/dev/null || true

# Server settings: every VOICEGEN_* setting can be overridden (compose.yaml's environment, a .env file).
# The app refuses a public bind without logins (VOICEGEN_AUTH_FILE) or API keys unless VOICEGEN_INSECURE_PUBLIC=1.
ENV VOICEGEN_DATA_DIR=/data VOICEGEN_HOST=0.0.0.0 VOICEGEN_PORT=7860 VOICEGEN_OPEN_BROWSER=false \
    PYTHONUNBUFFERED=1 HOME=/home/voicegen
WORKDIR /app
USER voicegen
# Build time, not first start: Piper's environment (venv kind) goes into the data folder now.
RUN python -m app setup && rm -rf /data/logs /data/tmp /home/voicegen/.cache

VOLUME ["/data"]
EXPOSE 7860
# /readyz: 200 once the app serves at warm speed (503 while it starts). Loopback Host: always allowed by the app.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/readyz', timeout=4)"]
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "app", "serve"]
