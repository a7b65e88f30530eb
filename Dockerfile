# tunedeck as a container (also the shape of a Hugging Face Docker Space).
#   docker build -t tunedeck .                         # CPU build of PyTorch
#   docker build --build-arg TORCH=cuda -t tunedeck .  # CUDA build, for a GPU host
#   docker run -p 7860:7860 -v $PWD/runs:/app/runs tunedeck
FROM python:3.11-slim

ARG TORCH=cpu
ENV PYTHONUNBUFFERED=1 \
    TUNEDECK_RUNS_DIR=/app/runs \
    TUNEDECK_CACHE=/app/.cache/tunedeck \
    GRADIO_SERVER_NAME=0.0.0.0

WORKDIR /app
RUN if [ "$TORCH" = "cpu" ]; then \
      pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
    else \
      pip install --no-cache-dir torch; \
    fi
COPY pyproject.toml README.md ./
COPY trainer ./trainer
COPY webui ./webui
RUN pip install --no-cache-dir .
COPY . .

# Build the demo model once at image build time so the first Start is instant.
RUN python -c "from trainer.demo import ensure_demo_model; ensure_demo_model()"

EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
