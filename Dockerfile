# tunedeck as a container: the shape of a Hugging Face Docker Space, and of a GPU host of your own.
#   docker build -t tunedeck .
#   docker run --gpus all -p 7860:7860 -v tunedeck-data:/data -e TUNEDECK_AUTH="alice:pw1,bob:pw2" tunedeck
# Runs live on the /data volume (a Space's persistent storage mounts there), so a restart keeps them.
# Without any sign-in configured the server refuses to listen on 0.0.0.0 (see the README's Space section).
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && pip install torch --index-url "$TORCH_INDEX"

# Spaces run the container as uid 1000; so does a local `docker run`. /data is created for that user, so
# a fresh volume mounted there is writable by it.
RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data \
    && chown user:user /data
ENV HOME=/home/user \
    TUNEDECK_CACHE=/home/user/.cache/tunedeck \
    GRADIO_SERVER_NAME=0.0.0.0
WORKDIR /home/user/app

COPY --chown=user:user pyproject.toml README.md ./
COPY --chown=user:user trainer ./trainer
COPY --chown=user:user webui ./webui
RUN pip install ".[oauth]" && chown -R user:user /home/user
COPY --chown=user:user . .

USER user
# The demo model, built once into the image: the first Start trains at once, offline.
RUN python -c "from trainer.engine.demo import ensure_demo_model; ensure_demo_model()"

VOLUME ["/data"]
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
