# The shape of a gunicorn config for a FastAPI app under uvicorn workers, as FastAPI's and
# uvicorn's deployment docs describe it. Written for this test.
bind = ["0.0.0.0:8080"]
workers = 2
worker_class = "uvicorn.workers.UvicornWorker"
timeout = 60
graceful_timeout = 20
max_requests = 200
max_requests_jitter = 20
accesslog = "/var/log/app/access.log"
