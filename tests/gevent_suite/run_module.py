# Run one of gevent's own test modules (gevent.tests.NAME) in-process with unittest and
# print one summary line. Used on both loops by run.sh:
#   ringsgi --gevent 100 -H VENV --pyrun run_module.py -- test__event   (ringsgi's loop)
#   VENV/bin/python run_module.py test__event                          (gevent's default)
import importlib
import sys
import unittest


def main():
    name = sys.argv[1]
    loop = "?"
    try:
        mod = importlib.import_module("gevent.tests." + name)
        import gevent

        suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
        result = unittest.TextTestRunner(verbosity=1, stream=sys.stderr).run(suite)
        loop = type(gevent.get_hub().loop).__module__
        bad = len(result.failures) + len(result.errors)
        print(
            "RESULT %s loop=%s run=%d failures=%d errors=%d skipped=%d"
            % (name, loop, result.testsRun, len(result.failures), len(result.errors),
               len(result.skipped)),
            flush=True,
        )
        sys.stdout.flush()
        sys.exit(0 if bad == 0 else 1)
    except SystemExit:
        raise
    except BaseException as e:
        print("RESULT %s loop=%s import-error %s: %s" % (name, loop, type(e).__name__, e), flush=True)
        sys.exit(2)


main()
