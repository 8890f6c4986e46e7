# The dispatchwire app image: one image, every part (worker, api, sink, simulate) chosen by
# the command. Kafka itself runs from the official apache/kafka image (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatchwire ./dispatchwire
COPY cli ./cli
COPY schemas ./schemas
COPY streams ./streams
COPY api ./api
COPY views ./views
COPY analytics ./analytics
COPY infra ./infra
RUN pip install . && useradd --create-home --uid 10001 dispatch && mkdir -p /data \
    && chown dispatch /data
USER dispatch
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["dispatchwire"]
CMD ["--help"]
