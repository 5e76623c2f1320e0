"""Shared helpers of the benchmark scripts in this directory (Python 3 standard library only).

Process handling: every server and load generator is started in its own session (and so its
own process group); `Procs.close()` kills every group it started (SIGTERM, then SIGKILL after a
grace period), and the scripts call it from a `finally` block, so nothing outlives a run, even
on error or Ctrl-C.

Accounting: server CPU time is utime+stime (plus cutime+cstime, the time of reaped children) of
every process of the server's process group (master and workers), read from /proc/PID/stat;
memory is VmRSS from /proc/PID/status summed over the same processes.
"""

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def need(tool):
    path = shutil.which(tool)
    if path is None:
        die(f"{tool} not found in PATH")
    return path


def ringsgi_binary(path):
    path = path or os.path.join(REPO, "target", "release", "ringsgi")
    if not os.access(path, os.X_OK):
        die(f"{path} is not an executable; run `cargo build --release` first")
    return path


def raise_nofile():
    """Raise the soft open-files limit to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (index 0 is the state), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()


def group_pids(pgid):
    """Pids of the live (non-zombie) processes of process group `pgid`."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or int(fields[2]) != pgid or fields[0] == b"Z":
            continue
        pids.append(int(name))
    return pids


def group_cpu_seconds(pgid):
    """utime+stime+cutime+cstime of every process of the group (zombies included), seconds."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or int(fields[2]) != pgid:
            continue
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def group_cpu_split(pgid):
    """(user, system) seconds of the group's processes, reaped children included."""
    user = system = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or int(fields[2]) != pgid:
            continue
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    return user / CLK_TCK, system / CLK_TCK


def cpu_times():
    """{cpu index: (busy, steal) seconds} from /proc/stat; busy is user+nice+system+irq+softirq."""
    res = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()] + [0] * 8
                res[int(m.group(1))] = ((v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK)
    return res


def group_rss_kb(pgid):
    total = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def rss_parts_kb(pid):
    """(anon, file, shmem) kB resident in `pid` (RssAnon, RssFile, RssShmem of /proc/PID/status),
    or None if the process is gone. VmRSS is their sum; file and shmem pages shared with other
    processes (the binary, the scoreboard) count in each of them."""
    parts = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    parts[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        return None
    return parts.get("RssAnon", 0), parts.get("RssFile", 0), parts.get("RssShmem", 0)


def pss_kb(pid):
    """Proportional set size of `pid` in kB (/proc/PID/smaps_rollup): a page shared by n
    processes counts 1/n in each, so the sum over processes is what they take together."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def smaps_summary(pid):
    """{mapping: resident kB} of `pid` from /proc/PID/smaps, mappings grouped by what they are:
    the binary, each shared library, [heap], [stack], anonymous (mmap), shared memory, io_uring
    rings. Tells which part of a process's RSS is what."""
    out = {}
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    path = head[5] if len(head) > 5 else ""
                    if not path:
                        name = "anon (mmap)"
                    elif path.startswith("/dev/zero") or path.startswith("/SYSV") or "(deleted)" in line:
                        name = "shmem " + os.path.basename(path)
                    elif path.startswith("["):
                        name = path
                    elif path.startswith("anon_inode:"):
                        name = path
                    else:
                        name = os.path.basename(path)
                elif head and head[0] == "Rss:" and name is not None:
                    out[name] = out.get(name, 0) + int(head[1])
    except OSError:
        pass
    return {k: v for k, v in out.items() if v}


class RssSampler:
    """Samples the summed VmRSS of a process group every `interval` seconds in a thread."""

    def __init__(self, pgid, interval=0.05):
        self.pgid, self.interval = pgid, interval
        self.peak_kb, self.samples = 0, 0
        self.peak_at = 0.0  # seconds after the start of sampling
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set():
            kb = group_rss_kb(self.pgid)
            if kb > self.peak_kb:
                self.peak_kb, self.peak_at = kb, time.monotonic() - t0
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class Procs:
    """Starts processes in their own process groups and kills all of them on close()."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path=None):
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        try:
            p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if log_path:
                out.close()
        p.log_path = log_path
        self.procs.append(p)
        return p

    def run(self, argv, timeout):
        """Runs a load generator to completion in its own group; returns its stdout (text)."""
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(p)
        try:
            out, _ = p.communicate(timeout=timeout)
        finally:
            self.stop(p)
        text = out.decode(errors="replace")
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{text}")
        return text

    def stop(self, p, grace=5.0):
        """SIGTERM to the process group, then SIGKILL if anything is left after `grace` s."""
        pgid = p.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                p.poll()
                if p.returncode is not None and not group_pids(pgid):
                    break
                time.sleep(0.02)
            else:
                continue
            break
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def close(self):
        for p in list(self.procs):
            self.stop(p)


def log_tail(p, n=20):
    if not getattr(p, "log_path", None):
        return ""
    try:
        with open(p.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def wait_ready(p, host, port, path="/", timeout=10.0):
    """Until a GET of `path` gets a complete `200` answer (bounded by `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"server exited with {p.returncode} before it was ready:\n{log_tail(p)}")
        try:
            with socket.create_connection((host, port), timeout=2.0) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    # Some peers (may_minihttp) keep an HTTP/1.0 connection open: stop at the
                    # end of the body when its length is known.
                    head, sep, body = data.partition(b"\r\n\r\n")
                    lengths = [
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")[1:]
                        if line.lower().startswith(b"content-length:")
                    ]
                    if sep and lengths and len(body) >= lengths[0]:
                        break
            if data.startswith(b"HTTP/1.") and data.split(b" ", 2)[1] == b"200" and b"\r\n\r\n" in data:
                return
            last = data[:80]
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError(f"server on {host}:{port} not ready after {timeout} s (last: {last!r}):\n{log_tail(p)}")


def idle_cpu(pgid, seconds=2.0):
    """CPU seconds the server group uses while idle for `seconds`."""
    before = group_cpu_seconds(pgid)
    time.sleep(seconds)
    return group_cpu_seconds(pgid) - before


def parse_wrk(text):
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    if not m:
        raise RuntimeError(f"cannot parse wrk output:\n{text}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    res = {"requests": int(m.group(1)), "seconds": float(m.group(2)) * scale}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else res["requests"] / res["seconds"]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non2xx"] = int(m.group(1)) if m else 0
    res["errors"] = sum(res["socket_errors"].values()) + res["non2xx"]
    return res


def describe_binary(path):
    """The binary and, if it is this repository's target/release/ringsgi, the tree it came from."""
    if os.path.realpath(path) != os.path.realpath(os.path.join(REPO, "target", "release", "ringsgi")):
        return path
    return f"{path} (tree {git_revision()}; mtime {time.strftime('%H:%M:%S', time.localtime(os.path.getmtime(path)))})"


def git_revision():
    """Short HEAD of the repository, with "-dirty" if src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def kernel_tracing():
    """What the kernel is tracing right now, as a list of short descriptions (empty when nothing).

    An enabled tracepoint or an event trigger runs on every hit, even with `tracing_on` at 0: a
    `stacktrace` trigger left on `io_uring:io_uring_task_add` by a debugging session once added
    ~4 us of system time to every io_uring request on this machine and made every io_uring
    server look slower than every epoll one (docs/benchmarks.md, "A leftover trace trigger").
    """
    root = "/sys/kernel/tracing"
    if not os.path.isdir(os.path.join(root, "events")):
        root = "/sys/kernel/debug/tracing"
    found = []
    try:
        with open(os.path.join(root, "current_tracer")) as f:
            tracer = f.read().strip()
        if tracer and tracer != "nop":
            found.append(f"tracer {tracer}")
        for name in ("kprobe_events", "uprobe_events"):
            try:
                with open(os.path.join(root, name)) as f:
                    if f.read().strip():
                        found.append(name)
            except OSError:
                pass
        events = os.path.join(root, "events")
        for system in sorted(os.listdir(events)):
            sdir = os.path.join(events, system)
            if not os.path.isdir(sdir):
                continue
            for event in os.listdir(sdir):
                edir = os.path.join(sdir, event)
                try:
                    with open(os.path.join(edir, "enable")) as f:
                        enabled = f.read().strip()
                    with open(os.path.join(edir, "trigger")) as f:
                        triggers = [t.strip() for t in f if t.strip() and not t.startswith("#")]
                except OSError:
                    continue
                if enabled not in ("0", ""):
                    found.append(f"{system}:{event} enabled ({enabled})")
                found.extend(f"{system}:{event} trigger {t}" for t in triggers)
    except OSError:
        return []
    return found


def check_kernel_tracing():
    """Refuse to measure while the kernel traces anything (see `kernel_tracing`), unless
    RINGSGI_BENCH_ALLOW_TRACING=1."""
    found = kernel_tracing()
    if not found:
        return
    shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    if os.environ.get("RINGSGI_BENCH_ALLOW_TRACING") == "1":
        print(f"# WARNING: kernel tracing active, CPU figures are not comparable: {shown}", file=sys.stderr)
        return
    die(
        f"kernel tracing is active ({shown}): every hit costs CPU and skews the figures. Turn it off "
        "(echo 0 > /sys/kernel/tracing/events/enable; echo '!TRIGGER' > .../trigger) or set "
        "RINGSGI_BENCH_ALLOW_TRACING=1"
    )


def machine():
    check_kernel_tracing()
    u = os.uname()
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {u.release}, loadavg {os.getloadavg()[0]:.2f} at start"


def on_signal_raise():
    """Turn SIGTERM/SIGHUP/SIGINT into exceptions so the scripts' `finally` blocks run."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    # Ctrl-C raises KeyboardInterrupt even if SIGINT was ignored when we were started.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def measured_wrk_run(procs, server, name, port, path, args):
    """The measured part of a keep-alive wrk run against a started `server` on 127.0.0.1:`port`
    (`path`): warm-up, the measured `wrk -t1 -c{args.connections} -d{args.duration}s` pinned to
    `args.client_cpu`, the server's CPU (process group) and the machine's per-CPU busy/steal
    time around it, and a check that the server still answers afterwards. Stops the server.

    Returns wrk's parsed numbers plus: cpu_s, wall_s, user_s, sys_s, procs, healthy_after,
    req_per_cpu_s, cpu_us_per_req, server_cpu_other_s, server_cpu_steal_s, client_cpu_busy_s,
    loadavg, and `server` = name."""
    try:
        wrk = ["taskset", "-c", str(args.client_cpu), args.wrk, "-t1", f"-c{args.connections}"]
        url = f"http://127.0.0.1:{port}{path}"
        if args.warmup > 0:
            procs.run(wrk + [f"-d{args.warmup}s", url], timeout=args.warmup + 30)
        cpu0 = group_cpu_seconds(server.pid)
        split0 = group_cpu_split(server.pid)
        machine0 = cpu_times()
        t0 = time.monotonic()
        out = procs.run(wrk + [f"-d{args.duration}s", url], timeout=args.duration + 30)
        wall = time.monotonic() - t0
        cpu = group_cpu_seconds(server.pid) - cpu0
        split1 = group_cpu_split(server.pid)
        machine1 = cpu_times()
        nprocs = len(group_pids(server.pid))
        if server.poll() is not None:
            raise RuntimeError(f"{name} died during the run:\n{log_tail(server)}")
        # Still serving after the load? A worker stuck with requests pending shows up here.
        try:
            wait_ready(server, "127.0.0.1", port, path=path, timeout=5.0)
            healthy = True
        except RuntimeError:
            healthy = False
    finally:
        procs.stop(server)
    res = parse_wrk(out)
    res.update(
        server=name,
        cpu_s=cpu,
        wall_s=wall,
        healthy_after=healthy,
        procs=nprocs,
        req_per_cpu_s=res["requests"] / cpu if cpu > 0 else float("inf"),
        cpu_us_per_req=cpu / res["requests"] * 1e6 if res["requests"] else float("nan"),
        user_s=split1[0] - split0[0],
        sys_s=split1[1] - split0[1],
        # Busy time of the server's CPU not spent by the server: other jobs of the machine
        # (and interrupt work accounted to nobody); steal: time the hypervisor took away.
        server_cpu_other_s=machine1[args.server_cpu][0] - machine0[args.server_cpu][0] - cpu,
        server_cpu_steal_s=machine1[args.server_cpu][1] - machine0[args.server_cpu][1],
        client_cpu_busy_s=machine1[args.client_cpu][0] - machine0[args.client_cpu][0],
        loadavg=os.getloadavg()[0],
    )
    if args.verbose:
        print(out, file=sys.stderr)
    return res
