# After NetBox's contrib/gunicorn.py (github.com/netbox-community/netbox), the config its
# install guide copies to /opt/netbox/gunicorn.py; written here in its shape, not copied.

# The IP address (typically localhost) and port that the WSGI process should listen on
bind = '127.0.0.1:8001'

# Number of gunicorn workers to spawn: typically 2n+1 for n CPU cores
workers = 5

# Number of threads per worker process
threads = 3

# Timeout (in seconds) for a request to complete
timeout = 120

# The maximum number of requests a worker can handle before being respawned
max_requests = 5000
max_requests_jitter = 500
