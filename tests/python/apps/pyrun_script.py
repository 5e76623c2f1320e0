"""Run by `ringsgi --pyrun` in tests/python.rs: prints its argv and whether it runs as
__main__ inside a worker (the uwsgi module importable), then exits with the status argv[1]
names ("raise" raises instead)."""
import json
import sys

import uwsgi

print(json.dumps({"argv": sys.argv, "name": __name__, "worker_id": uwsgi.worker_id()}), flush=True)
if len(sys.argv) > 1 and sys.argv[1] == "raise":
    raise RuntimeError("pyrun_script raised on purpose")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
