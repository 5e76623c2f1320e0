/* abtl: ab's closed loop (`ab -cC -nN`, HTTP/1.0, one request per connection) with a
 * timeline: for every request, when its connect started, when the connection was
 * writable (the request written), when the first response byte and the end (EOF) came,
 * in microseconds from the start of the run (CLOCK_MONOTONIC). Used by
 * benches/gevent_timeline.py to see where the wall time of the article's test goes.
 *
 *     cc -O2 -o abtl benches/abtl.c
 *     abtl PORT CONCURRENCY REQUESTS PATH OUT.tsv      # 127.0.0.1 only; PATH: "/?i=%ld"
 *                                                       # puts the request's index in it
 *
 * Like ab: all C connections are opened at once, each answer (read to EOF) opens the next
 * connection while fewer than N were started. Output: one line per request in start
 * order, after a line `# t0 SECONDS` (CLOCK_MONOTONIC at the start): `index start connected first_byte end status` (status: the HTTP status, or -1
 * for a failed request: connect error, reset, no status line). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct req {
    long start, connected, first, end;
    int status;
    int fd;
    int sent;
    char head[16];
    int headlen;
};

static struct timespec t0;

static long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000;
}

static struct sockaddr_in addr;
static char request[512];
static int reqlen;
static int ep;
static const char *path;
static int port;

static int open_conn(struct req *r, long idx) {
    r->start = now_us();
    r->connected = r->first = r->end = -1;
    r->status = -1;
    r->sent = 0;
    r->headlen = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket");
        exit(2);
    }
    r->fd = fd;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        r->end = now_us();
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u64 = (unsigned long)idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(2);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: abtl PORT CONCURRENCY REQUESTS PATH OUT.tsv\n");
        return 2;
    }
    port = atoi(argv[1]);
    long conc = atol(argv[2]), total = atol(argv[3]);
    path = argv[4];
    FILE *out = fopen(argv[5], "w");
    if (!out || conc <= 0 || total < conc) {
        fprintf(stderr, "bad arguments or output\n");
        return 2;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct req *reqs = calloc(total, sizeof *reqs);
    ep = epoll_create1(EPOLL_CLOEXEC);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fprintf(out, "# t0 %ld.%09ld\n", (long)t0.tv_sec, t0.tv_nsec);
    long started = 0, done = 0, failed = 0;
    for (; started < conc; started++)
        if (open_conn(&reqs[started], started) < 0) {
            done++;
            failed++;
        }
    struct epoll_event evs[256];
    char buf[65536];
    while (done < total) {
        int n = epoll_wait(ep, evs, 256, 60000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 2;
        }
        if (n == 0) {
            fprintf(stderr, "abtl: 60 s without an event, %ld of %ld done\n", done, total);
            break;
        }
        for (int i = 0; i < n; i++) {
            long idx = (long)evs[i].data.u64;
            struct req *r = &reqs[idx];
            int finished = 0;
            if (!r->sent && (evs[i].events & EPOLLOUT)) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    finished = 1;
                } else {
                    r->connected = now_us();
                    char p[256];
                    snprintf(p, sizeof p, path, idx); /* PATH may hold one %ld: the request's index */
                    reqlen = snprintf(request, sizeof request,
                                      "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n",
                                      p, port);
                    if (write(r->fd, request, reqlen) != reqlen) {
                        finished = 1;
                    } else {
                        r->sent = 1;
                        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (unsigned long)idx};
                        epoll_ctl(ep, EPOLL_CTL_MOD, r->fd, &ev);
                    }
                }
            } else if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    ssize_t got = read(r->fd, buf, sizeof buf);
                    if (got > 0) {
                        if (r->first < 0)
                            r->first = now_us();
                        int take = got < (ssize_t)(sizeof r->head - 1 - r->headlen) ? (int)got : (int)(sizeof r->head - 1 - r->headlen);
                        memcpy(r->head + r->headlen, buf, take);
                        r->headlen += take;
                        continue;
                    }
                    if (got == 0) {
                        r->end = now_us();
                        r->head[r->headlen] = 0;
                        if (strncmp(r->head, "HTTP/1.", 7) == 0 && r->headlen >= 12)
                            r->status = atoi(r->head + 9);
                        finished = 1;
                    } else if (errno != EAGAIN) {
                        finished = 1;
                    }
                    break;
                }
            }
            if (finished) {
                if (r->end < 0)
                    r->end = now_us();
                epoll_ctl(ep, EPOLL_CTL_DEL, r->fd, NULL);
                close(r->fd);
                if (r->status < 0)
                    failed++;
                done++;
                while (started < total) {
                    long k = started++;
                    if (open_conn(&reqs[k], k) == 0)
                        break;
                    done++;
                    failed++;
                }
            }
        }
    }
    for (long i = 0; i < started; i++)
        fprintf(out, "%ld\t%ld\t%ld\t%ld\t%ld\t%d\n", i, reqs[i].start, reqs[i].connected, reqs[i].first, reqs[i].end,
                reqs[i].status);
    fclose(out);
    fprintf(stderr, "abtl: %ld done, %ld failed, %.3f s\n", done, failed, now_us() / 1e6);
    return failed ? 1 : 0;
}
