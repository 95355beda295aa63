#!/usr/bin/env bash
# Pack what a GPU machine (Python 3.12, no network) needs to run rmt's GPU tests into .carry/ (git-ignored):
#  - tritonserver.tar.xz: the wheel's server files in their relative layout (pytriton/tritonserver + nvidia_pytriton.libs)
#    with only the 3.12 stub and without the bundled libpython 3.13 (~27 MB);
#  - wheels/: pure or cp312 wheels of what the GPU image lacks (tritonclient and its HTTP stack, hdrhistogram, Locust
#    and its web stack for `rmt run`, cuda-python for CUDA shared memory, ...). cuda-python/cuda-bindings 12.9 run on
#    CUDA 12 drivers and newer (the image's driver is 580, CUDA 13); 13.x would need a driver >= 580 everywhere.
# Usage: benchmarks/gpu/prepare_carry.sh   (then see docs/gpu-validation.md for the device command)
set -euo pipefail
cd "$(dirname "$0")/../.."
SP=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p .carry/wheels
if [ ! -s .carry/tritonserver.tar.xz ]; then
  excludes=()
  for v in 3.8 3.9 3.10 3.11 3.13; do excludes+=(--exclude="pytriton/tritonserver/python_backend_stubs/$v"); done
  tar -C "$SP" -cJf .carry/tritonserver.tar.xz "${excludes[@]}" --exclude='nvidia_pytriton.libs/libpython3-*' \
      --exclude='__pycache__' pytriton/tritonserver nvidia_pytriton.libs
fi
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_35_x86_64 \
  --platform manylinux1_x86_64 --platform any -d .carry/wheels \
  tritonclient==2.73.0 geventhttpclient gevent greenlet zope.event zope.interface python-rapidjson brotli \
  hdrhistogram pbr hpack \
  locust==2.47.0 flask werkzeug jinja2 markupsafe itsdangerous blinker click flask-cors flask-login configargparse \
  msgpack pyzmq requests urllib3 certifi idna charset-normalizer python-socketio python-engineio bidict \
  simple-websocket wsproto h11 websocket-client typing_extensions \
  cuda-python==12.9.4 cuda-bindings==12.9.10 cuda-pathfinder==1.9.1 "$@"
du -sh .carry/tritonserver.tar.xz .carry/wheels
