# One image for every Spyglass service; each service picks its `spyglass` command.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md alembic.ini ./
COPY search search
COPY indexer indexer
COPY training training
COPY web web
COPY spyglass spyglass
COPY migrations migrations
# EXTRAS=video,words,speech,ray for an indexer that runs on a Ray cluster (SPYGLASS_RUNNER=ray).
ARG EXTRAS=video,words,speech
RUN pip install ".[${EXTRAS}]"

ENV SPYGLASS_HOME=/data
VOLUME ["/data"]
ENTRYPOINT []
CMD ["spyglass", "--help"]
