"""A module that is slow to import, as a data library is."""
import os
import time

time.sleep(float(os.environ.get("COLD_SECONDS", "0.3")))
