# --pyrun under --gevent: the loop is ringsgi's, gevent.wait() works in the script.
import gevent

print("loop", type(gevent.get_hub().loop).__module__, type(gevent.get_hub().loop).__name__)
done = []
gevent.spawn_later(0.01, done.append, 1)
gevent.wait()
print("waited", done)
