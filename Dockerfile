# chat-bridge: docker build -t chat-bridge . && docker run --stop-timeout 30 -v $PWD/config.yaml:/config/config.yaml:ro -v chat-bridge-data:/data --env-file .env chat-bridge  (README: Docker)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# sqlite3: the store's backups and checks (docs/store.md), from inside the container.
RUN apt-get update && apt-get install -y --no-install-recommends sqlite3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY adapters ./adapters
RUN pip install . && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin bridge \
    && mkdir -p /data /config && chown bridge:bridge /data

USER bridge
VOLUME ["/data"]
EXPOSE 8080

# The config's http.listen must be reachable inside the container (the default 127.0.0.1:8080 is);
# asked directly, whatever HTTP_PROXY says.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request as u; sys.exit(0 if u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"

# A stop is held from the command's first moment and ends the start; only in the few
# hundredths of a second before Python runs it does PID 1 (no init) ignore one:
# `docker run --init` covers those too (README: Docker).
STOPSIGNAL SIGTERM
ENTRYPOINT ["chat-bridge"]
CMD ["run", "-c", "/config/config.yaml"]
