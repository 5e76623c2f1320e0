# examples/python/crazy.py for tests: its prints go to stderr (the server's log), its sleep
# is short and its names are local.
import os
import runpy
import sys

sys.stdout = sys.stderr
os.environ["CRAZY_SLEEP"] = "0.2"
os.environ["CRAZY_NAMES"] = "localhost,localhost"
_here = os.path.dirname(os.path.abspath(__file__))
_g = runpy.run_path(os.path.join(_here, "..", "..", "examples", "python", "crazy.py"))
application = _g["application"]
