/*
 * delay-relay: a remote server modelled on loopback, for the benchmarks' --remote mode (issue 12).
 *
 *   delay-relay LISTEN_PORT BACKEND_PORT DELAY_MS [STATS_FILE]
 *   delay-relay --check PORT CLIENTS SECONDS REQUEST
 *
 * Relay mode: listens on 127.0.0.1:LISTEN_PORT; for every accepted client it connects to
 * 127.0.0.1:BACKEND_PORT at once and delivers every chunk DELAY_MS (fractional allowed) after the
 * kernel received it (the socket's receive timestamp, so a late wake-up of this process does not
 * add to the delay), in each direction, in order. The connect is modelled: a client's first bytes
 * reach the backend no earlier than accept + 3 × DELAY (SYN, SYN-ACK, then the data one way), and
 * the backend's first bytes reach the client no earlier than accept + 4 × DELAY. EOF is delivered
 * DELAY later as shutdown(SHUT_WR); an error or reset on one side DELAY later as a reset
 * (SO_LINGER 0 + close) on the other. Writes are non-blocking with EPOLLOUT backpressure; a
 * direction holding more than 4 MiB stops reading its source until it drains below 1 MiB.
 * Single-threaded: one epoll_pwait2 whose timeout (ns) is the earliest due chunk, so a delivery
 * costs a wake-up and its writev, no timer syscalls.
 * With STATS_FILE, SIGUSR1 writes how late chunks went out against their due time (and how late
 * this process read them) since the previous SIGUSR1 to STATS_FILE (one JSON line, written to
 * STATS_FILE.tmp and renamed) and starts counting again.
 *
 * Check mode: CLIENTS processes, all starting together, against 127.0.0.1:PORT: for SECONDS/2 each
 * sends REQUEST on one connection and waits for a reply line ending in \r\n, again and again
 * (round trip); then for SECONDS/2 each connects, sends REQUEST, reads the reply and closes
 * (connect + first reply). Prints one JSON line with the counts, p50, p99 and max in ms.
 *
 * Built by bench/short-lived.ts and bench/tcp-warm.ts with `cc -O2` into their temp dir. Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READ_MAX (64 * 1024)
#define HIGH_WATER (4u * 1024 * 1024)
#define LOW_WATER (1u * 1024 * 1024)
#define IOV_BATCH 64
#define HIST_US 21000 /* 1 µs buckets from -1 ms to 20 ms; the ends count what lies beyond */
#define HIST_NEG 1000
#define ADVANCE_STEP 1000    /* ns: the advance moves by this much per delivery the timeout woke us for */
#define ADVANCE_MAX 250000   /* ns */

enum kind { DATA, FIN, RST };

typedef struct chunk {
  struct chunk *next;
  int64_t due; /* CLOCK_MONOTONIC ns */
  uint32_t len, off;
  uint8_t kind;
  char data[];
} chunk;

/* One direction: d[0] client → backend, d[1] backend → client. Source e[i], destination e[1 - i]. */
typedef struct dir {
  chunk *head, *tail;
  int64_t last_due;
  size_t pending;  /* bytes queued, not yet written */
  uint8_t src_eof; /* nothing more will be read from the source */
  uint8_t paused;  /* source not read: more than HIGH_WATER queued */
  uint8_t blocked; /* destination's send buffer full: waiting for EPOLLOUT */
  uint8_t done;    /* FIN delivered, or the direction was abandoned (its destination failed) */
} dir;

struct pair;
typedef struct end {
  struct pair *p;
  int fd;
  uint8_t side; /* 0 client, 1 backend */
  uint8_t registered;
  uint8_t dead; /* taken out of epoll for good: failed, or shut both ways */
  uint32_t events;
} end;

typedef struct pair {
  end e[2];
  dir d[2];
  int64_t accepted;
  int refs; /* heap entries naming this pair */
  uint8_t connected;
  uint8_t closed;
  struct pair *next_zombie;
} pair;

typedef struct {
  int64_t due;
  pair *p;
  uint8_t dir;
} entry;

static int64_t delay_ns;
static int epfd, lfd, sfd = -1;
static struct sockaddr_in backend_addr;
static entry *heap;
static size_t heap_len, heap_cap;
/* The wait ends this much before the earliest due time, so that deliveries land on their due
 * time in the median instead of one wake-up latency after it (on this VM ~50 µs from idle, timer
 * interrupt to write): every delivery made on a timer expiry moves it by ADVANCE_STEP, up when it
 * went out late, down when early (a running median). */
static int64_t advance_ns;
static int adaptive = 1, realtime, timer_pass;
static pair *zombies;
static const char *stats_path;
static uint64_t late_hist[HIST_US + 1], lag_hist[HIST_US + 1];
static uint64_t stat_chunks, stat_lag_samples, stat_accepts, stat_seq;
static int64_t late_max, lag_max, late_min;
static char tag_listen, tag_signal;

static int64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* ---- the heap of due times (one entry per queued chunk) ---- */

static void heap_push(int64_t due, pair *p, uint8_t d) {
  if (heap_len == heap_cap) {
    heap_cap = heap_cap ? heap_cap * 2 : 1024;
    heap = realloc(heap, heap_cap * sizeof *heap);
    if (!heap) die("realloc");
  }
  size_t i = heap_len++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (heap[up].due <= due) break;
    heap[i] = heap[up];
    i = up;
  }
  heap[i] = (entry){due, p, d};
  p->refs++;
}

static entry heap_pop(void) {
  entry top = heap[0];
  entry last = heap[--heap_len];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < heap_len && heap[l].due < last.due) m = l;
    if (l + 1 < heap_len && heap[l + 1].due < (m == i ? last.due : heap[m].due)) m = l + 1;
    if (m == i) break;
    heap[i] = heap[m];
    i = m;
  }
  if (heap_len > 0) heap[i] = last;
  return top;
}

/* ---- statistics ---- */

static void hist_add(uint64_t *h, int64_t ns, int64_t *max) {
  if (ns > *max) *max = ns;
  int64_t i = ns / 1000 + HIST_NEG;
  h[i < 0 ? 0 : i > HIST_US ? HIST_US : i]++;
}

static void late_add(int64_t ns) {
  /* Deliveries the timer woke us for steer the advance: their median lateness goes to zero. */
  if (adaptive && timer_pass) {
    advance_ns += ns > 0 ? ADVANCE_STEP : -ADVANCE_STEP;
    if (advance_ns < 0) advance_ns = 0;
    if (advance_ns > ADVANCE_MAX) advance_ns = ADVANCE_MAX;
  }
  if (stat_chunks == 0 || ns < late_min) late_min = ns;
  stat_chunks++;
  hist_add(late_hist, ns, &late_max);
}

static double hist_q(const uint64_t *h, uint64_t n, double q) {
  if (n == 0) return -1;
  uint64_t want = (uint64_t)(q * (double)(n - 1)), seen = 0;
  for (int i = 0; i <= HIST_US; i++) {
    seen += h[i];
    if (seen > want) return i - HIST_NEG;
  }
  return HIST_US - HIST_NEG;
}

static void write_stats(void) {
  if (!stats_path) return;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f,
          "{\"seq\":%llu,\"sched\":\"%s\",\"advance_us\":%.1f,\"chunks\":%llu,"
          "\"late_us\":{\"min\":%.0f,\"p1\":%.0f,\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"max\":%.0f},"
          "\"read_lag_us\":{\"n\":%llu,\"p50\":%.0f,\"p99\":%.0f,\"max\":%.0f},\"accepts\":%llu}\n",
          (unsigned long long)++stat_seq, realtime ? "fifo" : "other", advance_ns / 1000.0, (unsigned long long)stat_chunks,
          late_min / 1000.0, hist_q(late_hist, stat_chunks, 0.01), hist_q(late_hist, stat_chunks, 0.5),
          hist_q(late_hist, stat_chunks, 0.9), hist_q(late_hist, stat_chunks, 0.99), late_max / 1000.0,
          (unsigned long long)stat_lag_samples, hist_q(lag_hist, stat_lag_samples, 0.5),
          hist_q(lag_hist, stat_lag_samples, 0.99), lag_max / 1000.0, (unsigned long long)stat_accepts);
  fclose(f);
  rename(tmp, stats_path);
  memset(late_hist, 0, sizeof late_hist);
  memset(lag_hist, 0, sizeof lag_hist);
  stat_chunks = stat_lag_samples = stat_accepts = 0;
  late_max = lag_max = late_min = 0;
}

/* ---- connections ---- */

static void set_interest(end *e) {
  pair *p = e->p;
  if (p->closed || e->fd < 0 || e->dead) return;
  int s = e->side;
  uint32_t want = 0;
  if (!p->d[s].src_eof && !p->d[s].paused) want |= EPOLLIN;
  if (p->d[1 - s].blocked || (s == 1 && !p->connected)) want |= EPOLLOUT;
  if (e->registered && want == e->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = e};
  if (epoll_ctl(epfd, e->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, e->fd, &ev) < 0) die("epoll_ctl");
  e->registered = 1;
  e->events = want;
}

static void unregister(end *e) {
  if (e->registered) epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
  e->registered = 0;
  e->dead = 1;
}

static void free_chunks(dir *d) {
  for (chunk *c = d->head, *n; c; c = n) {
    n = c->next;
    free(c);
  }
  d->head = d->tail = NULL;
  d->pending = 0;
}

/* Close both sockets; `reset_side` (0, 1, or -1 for none) is closed with SO_LINGER 0 (an RST). */
static void close_pair(pair *p, int reset_side) {
  if (p->closed) return;
  for (int s = 0; s < 2; s++) {
    end *e = &p->e[s];
    if (e->fd < 0) continue;
    unregister(e);
    /* Reset on purpose, or (the backend side, after both FINs) to leave no TIME_WAIT behind on the
     * relay's own connection to the backend: thousands of connects per second would use up ports. */
    if (s == reset_side || (s == 1 && reset_side < 0)) {
      struct linger lg = {1, 0};
      setsockopt(e->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(e->fd);
    e->fd = -1;
  }
  free_chunks(&p->d[0]);
  free_chunks(&p->d[1]);
  p->closed = 1;
  p->next_zombie = zombies;
  zombies = p;
}

static void enqueue(pair *p, int s, enum kind kind, const char *data, uint32_t len, int64_t received, int64_t floor) {
  dir *d = &p->d[s];
  if (d->done) return; /* the destination is gone: nothing reaches it any more */
  int64_t due = received + delay_ns;
  if (due < floor) due = floor;
  if (due < d->last_due) due = d->last_due;
  chunk *c = malloc(sizeof *c + len);
  if (!c) die("malloc");
  c->next = NULL;
  c->due = due;
  c->len = len;
  c->off = 0;
  c->kind = kind;
  if (len) memcpy(c->data, data, len);
  if (d->tail) d->tail->next = c;
  else d->head = c;
  d->tail = c;
  d->last_due = due;
  d->pending += len;
  heap_push(due, p, (uint8_t)s);
  if (d->pending > HIGH_WATER && !d->paused) {
    d->paused = 1;
    set_interest(&p->e[s]);
  }
}

static int64_t floor_for(pair *p, int s) { return p->accepted + (s == 0 ? 3 : 4) * delay_ns; }

/* Side s failed (reset, error, refused connect): the other side gets a reset one way later; what
 * was on its way to side s is dropped. */
static void fail_side(pair *p, int s, int64_t now, int64_t floor) {
  if (p->closed) return;
  end *e = &p->e[s];
  unregister(e);
  p->d[s].src_eof = 1;
  p->d[1 - s].done = 1;
  p->d[1 - s].blocked = 0;
  free_chunks(&p->d[1 - s]);
  if (p->d[s].done) { /* nothing can reach the other side either */
    close_pair(p, -1);
    return;
  }
  enqueue(p, s, RST, NULL, 0, now, floor);
  set_interest(&p->e[1 - s]);
}

static void flush(pair *p, int s, int64_t now) {
  dir *d = &p->d[s];
  end *dst = &p->e[1 - s];
  if (p->closed || d->done) return;
  if (s == 0 && !p->connected) return; /* EPOLLOUT on the connect flushes */
  int64_t horizon = now + advance_ns;
  for (;;) {
    struct iovec iov[IOV_BATCH];
    int n = 0;
    for (chunk *c = d->head; c && n < IOV_BATCH && c->kind == DATA && c->due <= horizon; c = c->next) {
      iov[n].iov_base = c->data + c->off;
      iov[n].iov_len = c->len - c->off;
      n++;
    }
    if (n == 0) break;
    ssize_t w = writev(dst->fd, iov, n);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!d->blocked) {
          d->blocked = 1;
          set_interest(dst);
        }
        return;
      }
      fail_side(p, 1 - s, now, 0);
      return;
    }
    int64_t wrote_at = now_ns(CLOCK_MONOTONIC);
    d->pending -= (size_t)w;
    while (w > 0) {
      chunk *c = d->head;
      uint32_t left = c->len - c->off;
      if ((size_t)w < left) {
        c->off += (uint32_t)w;
        break;
      }
      w -= left;
      if (c->off == 0) late_add(wrote_at - c->due);
      d->head = c->next;
      if (!d->head) d->tail = NULL;
      free(c);
    }
    if (d->head && d->head->kind == DATA && d->head->due <= horizon && d->head->off > 0) {
      /* partial write: the send buffer is full */
      if (!d->blocked) {
        d->blocked = 1;
        set_interest(dst);
      }
      return;
    }
  }
  if (d->blocked) {
    d->blocked = 0;
    set_interest(dst);
  }
  if (d->paused && d->pending < LOW_WATER) {
    d->paused = 0;
    set_interest(&p->e[s]);
  }
  chunk *c = d->head;
  if (c && c->kind != DATA && c->due <= horizon) {
    late_add(now_ns(CLOCK_MONOTONIC) - c->due);
    if (c->kind == RST) {
      close_pair(p, 1 - s);
      return;
    }
    shutdown(dst->fd, SHUT_WR);
    d->done = 1;
    d->head = d->tail = NULL;
    free(c);
    if (p->d[1 - s].done) close_pair(p, -1);
  }
}

static int64_t real_minus_mono;

static void on_readable(pair *p, int s, int64_t now) {
  static char buf[READ_MAX];
  char control[CMSG_SPACE(sizeof(struct timespec))];
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t n = recvmsg(p->e[s].fd, &msg, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    fail_side(p, s, now, 0);
    return;
  }
  int64_t received = now;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(cm), sizeof ts);
      int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - real_minus_mono;
      /* trust the kernel's stamp only when it is plausible (not in the future, not a second old) */
      if (at <= now && at > now - 1000000000) {
        received = at;
        stat_lag_samples++;
        hist_add(lag_hist, now - at, &lag_max);
      }
    }
  }
  if (n == 0) {
    p->d[s].src_eof = 1;
    set_interest(&p->e[s]);
    enqueue(p, s, FIN, NULL, 0, received, floor_for(p, s));
    return;
  }
  enqueue(p, s, DATA, buf, (uint32_t)n, received, floor_for(p, s));
}

static void on_writable(pair *p, int s, int64_t now) {
  if (s == 1 && !p->connected) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(p->e[1].fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { /* refused: the client learns it as a reset, one round trip after its connect */
      fail_side(p, 1, now, p->accepted + 2 * delay_ns);
      return;
    }
    p->connected = 1;
    set_interest(&p->e[1]);
    flush(p, 0, now);
    return;
  }
  flush(p, 1 - s, now);
}

static void on_event(end *e, uint32_t events, int64_t now) {
  pair *p = e->p;
  int s = e->side;
  if (p->closed || !e->registered) return;
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (s == 1 && !p->connected) {
      fail_side(p, 1, now, p->accepted + 2 * delay_ns);
      return;
    }
    if (err) {
      fail_side(p, s, now, 0);
      return;
    }
  }
  if ((events & EPOLLOUT) && !p->closed) on_writable(p, s, now);
  if ((events & (EPOLLIN | EPOLLHUP)) && !p->closed && !p->d[s].src_eof) on_readable(p, s, now);
  if ((events & EPOLLHUP) && !p->closed && e->registered && p->d[s].src_eof) {
    /* Both directions of this socket are shut. Once ours was shut too there is nothing left to do
     * with it until the pair closes; otherwise the peer is gone and what we still owe it cannot
     * arrive. */
    if (p->d[1 - s].done) unregister(e);
    else fail_side(p, s, now, 0);
  }
}

static void on_accept(int64_t now) {
  for (int i = 0; i < 64; i++) {
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        perror("accept4");
        return;
      }
      if (errno == ECONNABORTED || errno == EPROTO) continue;
      die("accept4");
    }
    stat_accepts++;
    int b = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b < 0) {
      perror("socket");
      struct linger lg = {1, 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(c);
      continue;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    setsockopt(b, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    pair *p = calloc(1, sizeof *p);
    if (!p) die("calloc");
    p->accepted = now;
    for (int s = 0; s < 2; s++) {
      p->e[s].p = p;
      p->e[s].side = (uint8_t)s;
    }
    p->e[0].fd = c;
    p->e[1].fd = b;
    if (connect(b, (struct sockaddr *)&backend_addr, sizeof backend_addr) == 0) p->connected = 1;
    else if (errno != EINPROGRESS) {
      set_interest(&p->e[0]);
      fail_side(p, 1, now, p->accepted + 2 * delay_ns);
      continue;
    }
    set_interest(&p->e[0]);
    set_interest(&p->e[1]);
  }
}

static void on_timer(void) {
  int64_t now = now_ns(CLOCK_MONOTONIC);
  while (heap_len && heap[0].due <= now + advance_ns) {
    entry en = heap_pop();
    en.p->refs--;
    flush(en.p, en.dir, now);
    if (!heap_len || heap[0].due > now + advance_ns) now = now_ns(CLOCK_MONOTONIC);
  }
}

static void reap_zombies(void) {
  pair **link = &zombies;
  while (*link) {
    pair *p = *link;
    if (p->refs == 0) {
      *link = p->next_zombie;
      free(p);
    } else {
      link = &p->next_zombie;
    }
  }
}

static _Noreturn void relay(int port, int backend_port, double ms) {
  delay_ns = (int64_t)(ms * 1e6);
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  /* A network does not wait for a CPU: run above the processes being measured when allowed (root or
   * CAP_SYS_NICE), so a delivery is not queued behind them. It uses a few % of one core. */
  const char *rt = getenv("DELAY_RELAY_RT");
  if (!rt || strcmp(rt, "0") != 0) {
    struct sched_param sp = {.sched_priority = 1};
    realtime = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
  }
  const char *adv = getenv("DELAY_RELAY_ADVANCE");
  if (adv && strcmp(adv, "0") == 0) adaptive = 0;
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  memset(&backend_addr, 0, sizeof backend_addr);
  backend_addr.sin_family = AF_INET;
  backend_addr.sin_port = htons((uint16_t)backend_port);
  backend_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(lfd, 4096) < 0) die("listen");

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  if (stats_path) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    ev.data.ptr = &tag_signal;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
    write_stats();
  }
  fprintf(stderr, "delay-relay: 127.0.0.1:%d -> 127.0.0.1:%d, %.3f ms each way, %s scheduling, %s\n", port, backend_port, ms,
          realtime ? "SCHED_FIFO" : "normal", adaptive ? "waits end early by the median lateness" : "waits end at the due time");

  struct epoll_event events[256];
  for (;;) {
    struct timespec timeout, *wait = NULL;
    if (heap_len) {
      int64_t left = heap[0].due - advance_ns - now_ns(CLOCK_MONOTONIC);
      if (left < 0) left = 0;
      timeout.tv_sec = left / 1000000000;
      timeout.tv_nsec = left % 1000000000;
      wait = &timeout;
    }
    int n = epoll_pwait2(epfd, events, 256, wait, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait2 (Linux 5.11 or later)");
    }
    int64_t now = now_ns(CLOCK_MONOTONIC);
    real_minus_mono = now_ns(CLOCK_REALTIME) - now;
    for (int i = 0; i < n; i++) {
      void *tag = events[i].data.ptr;
      if (tag == &tag_listen) on_accept(now);
      else if (tag == &tag_signal) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == sizeof si) write_stats();
      } else on_event((end *)tag, events[i].events, now);
    }
    /* Deliver whatever is due (also what a read just queued with a due time already past: data read
     * late, after its kernel timestamp + delay). */
    timer_pass = n == 0; /* woken by the timeout: these deliveries steer the advance */
    on_timer();
    timer_pass = 0;
    reap_zombies();
  }
}

/* ---- check mode ---- */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Send the request, read until the reply ends in \r\n. 0 on success. */
static int exchange(int fd, const char *req, size_t len) {
  if (write(fd, req, len) != (ssize_t)len) return -1;
  char buf[4096];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, buf + got, sizeof buf - got);
    if (n <= 0) return -1;
    got += (size_t)n;
    if (got >= 2 && buf[got - 2] == '\r' && buf[got - 1] == '\n') return 0;
    if (got == sizeof buf) got = 0;
  }
}

#define CHECK_MAX 100000

static void summary(const char *name, uint32_t *all, size_t n, int last) {
  qsort(all, n, sizeof *all, cmp_u32);
  if (n == 0) {
    printf("\"%s\":{\"n\":0}%s", name, last ? "" : ",");
    return;
  }
  printf("\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}%s", name, n, all[(n - 1) / 2] / 1e6,
         all[(size_t)((double)(n - 1) * 0.99)] / 1e6, all[n - 1] / 1e6, last ? "" : ",");
}

static int check(int port, int clients, double seconds, const char *req) {
  size_t len = strlen(req);
  /* per client: [rtt count, connect count, rtt samples..., connect samples...] */
  size_t per = 2 + 2 * CHECK_MAX;
  uint32_t *shared = mmap(NULL, (size_t)clients * per * sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) die("mmap");
  int64_t start = now_ns(CLOCK_MONOTONIC) + 100000000;
  int64_t half = (int64_t)(seconds * 1e9 / 2);
  uint32_t errors = 0;
  for (int i = 0; i < clients; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid > 0) continue;
    uint32_t *mine = shared + (size_t)i * per;
    struct timespec at = {start / 1000000000, start % 1000000000};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
    int fd = dial(port);
    if (fd < 0) _exit(2);
    while (now_ns(CLOCK_MONOTONIC) < start + half && mine[0] < CHECK_MAX) {
      int64_t t0 = now_ns(CLOCK_MONOTONIC);
      if (exchange(fd, req, len) < 0) _exit(3);
      mine[2 + mine[0]++] = (uint32_t)(now_ns(CLOCK_MONOTONIC) - t0);
    }
    close(fd);
    while (now_ns(CLOCK_MONOTONIC) < start + 2 * half && mine[1] < CHECK_MAX) {
      int64_t t0 = now_ns(CLOCK_MONOTONIC);
      int c = dial(port);
      if (c < 0 || exchange(c, req, len) < 0) _exit(4);
      mine[2 + CHECK_MAX + mine[1]++] = (uint32_t)(now_ns(CLOCK_MONOTONIC) - t0);
      close(c);
    }
    _exit(0);
  }
  for (int i = 0; i < clients; i++) {
    int status;
    if (wait(&status) < 0) die("wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) errors++;
  }
  size_t nr = 0, nc = 0;
  for (int i = 0; i < clients; i++) {
    nr += shared[(size_t)i * per];
    nc += shared[(size_t)i * per + 1];
  }
  uint32_t *rtt = malloc((nr + 1) * sizeof *rtt), *con = malloc((nc + 1) * sizeof *con);
  if (!rtt || !con) die("malloc");
  size_t r = 0, c = 0;
  for (int i = 0; i < clients; i++) {
    uint32_t *mine = shared + (size_t)i * per;
    memcpy(rtt + r, mine + 2, mine[0] * sizeof *rtt);
    r += mine[0];
    memcpy(con + c, mine + 2 + CHECK_MAX, mine[1] * sizeof *con);
    c += mine[1];
  }
  printf("{\"clients\":%d,\"errors\":%u,", clients, errors);
  summary("rtt", rtt, nr, 0);
  summary("connect", con, nc, 1);
  printf("}\n");
  return errors ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "--check") == 0) return check(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), argv[5]);
  if (argc != 4 && argc != 5) {
    fprintf(stderr,
            "usage: delay-relay LISTEN_PORT BACKEND_PORT DELAY_MS [STATS_FILE]\n"
            "       delay-relay --check PORT CLIENTS SECONDS REQUEST\n");
    return 2;
  }
  double ms = atof(argv[3]);
  if (!(ms >= 0)) {
    fprintf(stderr, "delay-relay: DELAY_MS must be a number >= 0\n");
    return 2;
  }
  if (argc == 5) stats_path = argv[4];
  relay(atoi(argv[1]), atoi(argv[2]), ms);
}
