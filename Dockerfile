# One image for the api, worker and beat services of docker-compose.yml; the command picks
# the process (`flashsale serve api|worker|beat`). The API serves the built front end.

# --- the front end: built here so the image does not depend on a local npm --------------
FROM node:22-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
# Named sources only: a local node_modules or dist never enters the build.
COPY frontend/*.json frontend/*.ts frontend/*.html ./
COPY frontend/src ./src
RUN npm run build

# --- the Python application --------------------------------------------------------------
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY common ./common
COPY api ./api
COPY worker ./worker
RUN pip install . && rm -rf /src

WORKDIR /app
COPY --from=frontend /frontend/dist ./frontend/dist
RUN useradd --system --user-group --uid 10001 --home-dir /app --no-create-home flashsale \
    && mkdir -p /app/var && chown flashsale:flashsale /app/var

# The package is installed into site-packages: say where the front end and run files live.
ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    VAR_DIR=/app/var \
    FRONTEND_DIST=/app/frontend/dist
USER flashsale
EXPOSE 8000
CMD ["flashsale", "serve", "api"]
