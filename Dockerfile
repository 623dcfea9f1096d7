# The careflow image used by docker-compose.yml (API, worker and migrations share it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY careflow careflow
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY api api
COPY messaging messaging
COPY store store
COPY simulator simulator
COPY exchange exchange
COPY devtools devtools
COPY examples examples
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
EXPOSE 8000
CMD ["careflow", "api"]
