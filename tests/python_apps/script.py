import sys

import uwsgi

uwsgi.async_sleep(0.01)
uwsgi.suspend()
print("args", sys.argv[1:])
sys.exit(int(sys.argv[1]))
