# rmt in a container: the collector sidecar (`rmt collect`) and Locust with rmt's scenarios, installed from the wheel
# of this checkout (scenarios and zoo included as package data). docker-compose.yml builds it for the collector and
# the Locust services:
#
#   docker build -t rmt .
#   docker run --rm rmt rmt scenarios                 # the ready scenarios and their installed locustfiles
FROM python:3.11-slim AS wheel
WORKDIR /src
# The wheel's sources, the same files tests/test_wheel.py builds from (the zoo's model.py symlinks resolve inside rmt/).
COPY pyproject.toml README.md ./
COPY rmt ./rmt
RUN pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY --from=wheel /dist /dist
RUN pip install --no-cache-dir /dist/*.whl && rm -rf /dist
WORKDIR /runs
EXPOSE 8089 9400
CMD ["rmt", "scenarios"]
