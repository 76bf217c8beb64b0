# gunicorn config: the peers' best practice. The app is preloaded in the master, and each
# worker runs the warm-up in-process before it starts accepting connections.
def post_worker_init(worker):
    import app
    app.warm_up()
