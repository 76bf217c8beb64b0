"""A module whose import starts a thread (a metrics client's flusher): no template may import it."""
import threading
import time

threading.Thread(target=time.sleep, args=(3600,), name="flusher", daemon=True).start()
