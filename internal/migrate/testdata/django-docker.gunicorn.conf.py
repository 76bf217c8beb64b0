# The shape of a gunicorn.conf.py as Django projects in containers write it (cookiecutter-django
# style deployments, the gunicorn docs' example config): computed workers, env, preloading,
# logs to stdout, a trusted proxy, and a server hook. Written for this test.
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = 4  # multiprocessing.cpu_count() * 2 + 1 on a 2-CPU box would be 5
threads = 4
worker_class = "gthread"
max_requests = 1000
max_requests_jitter = 50
timeout = 30
graceful_timeout = 30
keepalive = 5
preload_app = True
accesslog = "-"
errorlog = "-"
loglevel = "info"
chdir = "/app"
raw_env = ["DJANGO_SETTINGS_MODULE=config.settings.production"]
forwarded_allow_ips = "10.0.0.1,10.0.0.2"
wsgi_app = "config.wsgi:application"
user = "django"


def post_fork(server, worker):
    server.log.info("worker spawned (pid: %s)", worker.pid)


def when_ready(server):
    server.log.info("server is ready")
