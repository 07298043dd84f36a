# One image for the api, scheduler and worker services of compose.yaml.
# GPU workers: build with --build-arg EXTRAS=gpu to add torch (CUDA wheels are large); the
# scheduler, to send on_complete messages to a dramatiq broker: --build-arg EXTRAS=dramatiq.
FROM python:3.11-slim
ARG EXTRAS=""
WORKDIR /app
COPY pyproject.toml README.md ./
COPY storage storage
COPY scheduler scheduler
COPY producers producers
COPY consumers consumers
COPY jobcord jobcord
COPY examples examples
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
ENV JOBCORD_LOG_FORMAT=json
ENTRYPOINT ["jobcord"]
