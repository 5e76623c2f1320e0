import sys

import uwsgi

uwsgi.async_sleep(0.01)
uwsgi.suspend()
import basic  # noqa: F401  (a module next to the script: sys.path[0] is its directory)

print("args", sys.argv[1:])
sys.exit(int(sys.argv[1]))
