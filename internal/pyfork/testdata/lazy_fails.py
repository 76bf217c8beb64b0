"""A module that imports only in a worker: it needs the connection post_fork opens."""
import learnapp

assert learnapp.connection is not None, "no connection: post_fork opens it in each worker"
