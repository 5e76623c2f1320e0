# Shadows the real greenlet (tests/python.rs): as if it were not installed.
raise ImportError("No module named 'greenlet' (test stand-in)")
