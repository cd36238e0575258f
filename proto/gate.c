/*
 * The handshake gate: accepting and authenticating clients before a server
 * gives them anything (proto/wire.h says the rules). One thread, one poll
 * over the listening socket and every unfinished handshake; OpenSSL runs
 * each handshake on a non-blocking socket, a step whenever its socket is
 * ready.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "proto/tls_int.h"

/* Connections taken from the listen queue per turn of the loop, so that the
 * handshakes under way get their turn during a flood. */
#define ACCEPT_BATCH 64
/* Dropped, timed out or refused connections are summed up in the log at
 * most this often, whatever the flood. */
#define SUMMARY_SECONDS 10.0
/* Refused handshakes logged one by one per summary period; more are only
 * counted. */
#define REFUSALS_LOGGED 20
/* Out of descriptors: the listening socket stays readable; wait this long
 * before the next accept rather than spin. */
#define ACCEPT_BACKOFF 0.1
/* A refused client gets this long to read our alert: closing a socket with
 * its unread bytes would send a reset, which can destroy the alert before
 * the client reads it. */
#define LINGER_SECONDS 2.0

struct slot {
	int fd;                       /* -1: free */
	SSL *ssl;                     /* NULL while closing */
	bool want_write;
	double since, deadline;
	char addr[INET6_ADDRSTRLEN];  /* the address without port */
	char peer[INET6_ADDRSTRLEN + 8];
};

struct fy_gate {
	struct fy_tls *tls;
	int lfd;
	struct fy_gate_opts o;
	fy_gate_cb cb;
	void *opaque;
	pthread_t thread;
	int wake[2];
	struct slot *slots;
	unsigned used;
	/* Log state (gate thread only). */
	bool accept_failing;
	double accept_again;
	double summary_at;
	unsigned evicted, timed_out, refused, refusals_logged;
};

static void slot_drop(struct fy_gate *g, struct slot *s)
{
	SSL_free(s->ssl);
	close(s->fd);
	s->ssl = NULL;
	s->fd = -1;
	g->used--;
}

static void summarize(struct fy_gate *g, double now)
{
	/* The first event of a quiet spell is reported at once, the rest
	 * summed up for SUMMARY_SECONDS. */
	if (now < g->summary_at ||
	    !(g->evicted || g->timed_out || g->refused > g->refusals_logged))
		return;
	fy_warn("%s: before authentication, lately: %u connection(s) dropped "
		"for newer ones (at most %u unfinished handshakes, %u per "
		"address), %u without a complete TLS handshake within %d s, "
		"%u refused", g->o.what, g->evicted, g->o.max_pending,
		g->o.max_per_address, g->timed_out,
		g->o.handshake_timeout_ms / 1000, g->refused);
	g->evicted = g->timed_out = g->refused = g->refusals_logged = 0;
	g->summary_at = now + SUMMARY_SECONDS;
}

/* The oldest unfinished handshake, of addr when addr is not NULL. */
static struct slot *oldest(struct fy_gate *g, const char *addr,
			   unsigned *count)
{
	struct slot *best = NULL;
	unsigned i, n = 0;

	for (i = 0; i < g->o.max_pending; i++) {
		struct slot *s = &g->slots[i];

		if (s->fd < 0 || (addr && strcmp(s->addr, addr)))
			continue;
		n++;
		if (!best || s->since < best->since)
			best = s;
	}
	if (count)
		*count = n;
	return best;
}

static void admit(struct fy_gate *g, int fd, double now)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[16] = "?";
	struct slot *s, tmp = { .fd = fd };
	unsigned same, i;

	snprintf(tmp.addr, sizeof(tmp.addr), "?");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, tmp.addr,
			    sizeof(tmp.addr), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(tmp.peer, sizeof(tmp.peer), "%s:%s", tmp.addr, port);
	/* Room first: from this address's own oldest, then anyone's. */
	s = oldest(g, tmp.addr, &same);
	if (same >= g->o.max_per_address ||
	    (g->used >= g->o.max_pending && (s = oldest(g, NULL, NULL)))) {
		fy_debug("%s: %s dropped before authentication for a newer "
			 "connection", g->o.what, s->peer);
		slot_drop(g, s);
		g->evicted++;
	}
	for (i = 0; i < g->o.max_pending && g->slots[i].fd >= 0; i++)
		;
	s = &g->slots[i];
	tmp.ssl = SSL_new(tls_ctx(g->tls));
	if (!tmp.ssl || SSL_set_fd(tmp.ssl, fd) != 1 ||
	    tls_diag_attach(tmp.ssl) < 0) {
		fy_warn("%s: cannot start a TLS handshake with %s: out of "
			"memory", g->o.what, tmp.peer);
		SSL_free(tmp.ssl);
		close(fd);
		ERR_clear_error();
		return;
	}
	SSL_set_accept_state(tmp.ssl);
	tmp.since = now;
	tmp.deadline = now + g->o.handshake_timeout_ms / 1000.0;
	*s = tmp;
	g->used++;
}

static void complete(struct fy_gate *g, struct slot *s)
{
	struct fy_conn *c;
	int fd = s->fd;
	SSL *ssl = s->ssl;

	s->fd = -1;
	s->ssl = NULL;
	g->used--;
	/* From now on the connection's own thread reads it, blocking with
	 * timeouts. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (tls_conn_adopt(ssl, fd, g->o.io_timeout_ms, &c) < 0) {
		fy_warn("%s: %s", g->o.what, fy_err_msg());
		return;
	}
	g->cb(g->opaque, c);
}

static void refuse(struct fy_gate *g, struct slot *s, int ssl_error)
{
	char reason[1024], why[256];
	unsigned long e = ERR_peek_error();

	g->refused++;
	if (g->refusals_logged++ < REFUSALS_LOGGED) {
		if (tls_verify_reason(s->ssl, reason, sizeof(reason)))
			;
		else if (e) {
			ERR_error_string_n(e, why, sizeof(why));
			snprintf(reason, sizeof(reason), "%s", why);
		} else if (ssl_error == SSL_ERROR_SYSCALL ||
			   ssl_error == SSL_ERROR_ZERO_RETURN)
			snprintf(reason, sizeof(reason), "the client closed "
				 "the connection");
		else
			snprintf(reason, sizeof(reason), "TLS error %d",
				 ssl_error);
		fy_warn("%s: TLS handshake from %s refused: %s", g->o.what,
			s->peer, reason);
	}
	ERR_clear_error();
	/* The alert is out; read what the client still sends until it closes
	 * (or LINGER_SECONDS), then close without a reset. */
	SSL_free(s->ssl);
	s->ssl = NULL;
	s->want_write = false;
	shutdown(s->fd, SHUT_WR);
	s->deadline = fy_now() + LINGER_SECONDS;
}

/* A refused connection: discard input until the client closes. */
static void drain(struct fy_gate *g, struct slot *s)
{
	char buf[4096];
	ssize_t n;

	while ((n = read(s->fd, buf, sizeof(buf))) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		slot_drop(g, s);
}

static void step(struct fy_gate *g, struct slot *s)
{
	int rc, e;

	if (!s->ssl) {
		drain(g, s);
		return;
	}
	ERR_clear_error();
	errno = 0;
	rc = SSL_do_handshake(s->ssl);
	if (rc == 1) {
		complete(g, s);
		return;
	}
	e = SSL_get_error(s->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		s->want_write = e == SSL_ERROR_WANT_WRITE;
		return;
	}
	refuse(g, s, e);
}

static void accept_some(struct fy_gate *g, double now)
{
	unsigned n;

	for (n = 0; n < ACCEPT_BATCH; n++) {
		int fd = accept4(g->lfd, NULL, NULL,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Once per episode, not 10 times a second. */
				if (!g->accept_failing)
					fy_error("%s: cannot accept a connection: "
						 "%s; retrying every %.0f ms",
						 g->o.what, strerror(errno),
						 ACCEPT_BACKOFF * 1000);
				g->accept_failing = true;
				g->accept_again = now + ACCEPT_BACKOFF;
			}
			return;
		}
		if (g->accept_failing) {
			fy_warn("%s: accepting connections again", g->o.what);
			g->accept_failing = false;
		}
		admit(g, fd, now);
	}
}

static void *gate_main(void *arg)
{
	struct fy_gate *g = arg;
	unsigned n_fds = g->o.max_pending + 2;
	struct pollfd *pfd = calloc(n_fds, sizeof(*pfd));
	struct slot **of = calloc(n_fds, sizeof(*of));

	if (!pfd || !of) {
		fy_error("%s: out of memory: not accepting connections",
			 g->o.what);
		goto out;
	}
	for (;;) {
		double now = fy_now(), next = now + 1.0;
		unsigned n = 0, i;
		bool listening = now >= g->accept_again;
		int rc;

		pfd[n++] = (struct pollfd){ .fd = g->wake[0], .events = POLLIN };
		if (listening)
			pfd[n++] = (struct pollfd){ .fd = g->lfd,
						    .events = POLLIN };
		else if (g->accept_again < next)
			next = g->accept_again;
		for (i = 0; i < g->o.max_pending; i++) {
			struct slot *s = &g->slots[i];

			if (s->fd < 0)
				continue;
			of[n] = s;
			pfd[n++] = (struct pollfd){
				.fd = s->fd,
				.events = s->want_write ? POLLOUT : POLLIN,
			};
			if (s->deadline < next)
				next = s->deadline;
		}
		rc = poll(pfd, n, next > now ? (int)((next - now) * 1000) + 1 : 0);
		if (rc < 0 && errno != EINTR) {
			fy_error("%s: poll: %s", g->o.what, strerror(errno));
			break;
		}
		if (rc > 0 && (pfd[0].revents & POLLIN))
			break;
		now = fy_now();
		for (i = listening ? 2 : 1; rc > 0 && i < n; i++) {
			struct slot *s = of[i];

			/* Dropped meanwhile for a newer one: not ours now. */
			if (s->fd != pfd[i].fd)
				continue;
			if (pfd[i].revents)
				step(g, s);
		}
		for (i = 0; i < g->o.max_pending; i++) {
			struct slot *s = &g->slots[i];

			if (s->fd >= 0 && now >= s->deadline && !s->ssl) {
				slot_drop(g, s);
			} else if (s->fd >= 0 && now >= s->deadline) {
				fy_debug("%s: %s: no TLS handshake within %d s; "
					 "dropped", g->o.what, s->peer,
					 g->o.handshake_timeout_ms / 1000);
				slot_drop(g, s);
				g->timed_out++;
			}
		}
		if (listening && rc > 0 && (pfd[1].revents & POLLIN))
			accept_some(g, now);
		summarize(g, now);
	}
out:
	free(pfd);
	free(of);
	return NULL;
}

int fy_gate_start(struct fy_tls *tls, int lfd, const struct fy_gate_opts *o,
		  fy_gate_cb cb, void *opaque, struct fy_gate **out)
{
	struct fy_gate *g;
	unsigned i;
	int rc;

	if (o->max_pending < 1 || o->max_pending > FY_GATE_PENDING_MAX ||
	    o->max_per_address < 1 || o->handshake_timeout_ms < 1)
		return fy_err_set(-EINVAL, "%s: handshake limits out of range "
				  "(1..%u handshakes, at least 1 per address "
				  "and 1 s)", o->what, FY_GATE_PENDING_MAX);
	g = calloc(1, sizeof(*g));
	if (!g)
		return fy_err_set(-ENOMEM, "out of memory");
	g->tls = tls;
	g->lfd = lfd;
	g->o = *o;
	g->cb = cb;
	g->opaque = opaque;
	g->wake[0] = g->wake[1] = -1;
	g->slots = calloc(o->max_pending, sizeof(*g->slots));
	if (!g->slots) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	for (i = 0; i < o->max_pending; i++)
		g->slots[i].fd = -1;
	if (pipe2(g->wake, O_CLOEXEC) < 0) {
		rc = fy_err_set(-errno, "pipe: %s", strerror(errno));
		goto fail;
	}
	/* The gate never blocks in accept: a connection that vanished between
	 * poll and accept would otherwise hang it. */
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	rc = pthread_create(&g->thread, NULL, gate_main, g);
	if (rc) {
		rc = fy_err_set(-rc, "%s: cannot start a thread: %s", o->what,
				strerror(rc));
		goto fail;
	}
	*out = g;
	return 0;
fail:
	if (g->wake[0] >= 0) {
		close(g->wake[0]);
		close(g->wake[1]);
	}
	free(g->slots);
	free(g);
	return rc;
}

void fy_gate_stop(struct fy_gate *g)
{
	unsigned i;

	if (!g)
		return;
	if (write(g->wake[1], "x", 1) < 0)
		fy_warn("%s: cannot wake the accepting thread: %s", g->o.what,
			strerror(errno));
	pthread_join(g->thread, NULL);
	g->summary_at = 0;
	summarize(g, fy_now());
	for (i = 0; i < g->o.max_pending; i++)
		if (g->slots[i].fd >= 0)
			slot_drop(g, &g->slots[i]);
	close(g->wake[0]);
	close(g->wake[1]);
	free(g->slots);
	free(g);
}
