# A loop run inside the hub's loop (gevent's own tests do this): each loop gets its own ring
# completions. A greenlet waits on a socket in the hub's loop; the data arrives while the
# script runs a second loop; the greenlet must still get it.
import gevent
from gevent import config, socket

a, b = socket.socketpair()
got = []
reader = gevent.spawn(lambda: got.append(a.recv(10)))
gevent.sleep(0.01)  # the reader waits: its poll is on the ring
b.send(b"hello")  # completes the hub loop's poll...
nested = config.loop(default=False)
t = nested.timer(0.05)
t.start(lambda: None)
nested.run()  # ...while this loop waits on the executor
t.close()
nested.destroy()
with gevent.Timeout(5):
    reader.join()
print("nested ok", got)
