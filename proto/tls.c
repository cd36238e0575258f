/*
 * Mutual TLS 1.3 connections carrying length-prefixed frames.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proto/tls_int.h"

struct fy_tls {
	SSL_CTX *ctx;
	bool server;
};

/* Output is flushed once this much is queued; large frames go at once. */
#define WRITE_FLUSH_AT (256u << 10)
/* fy_conn_send_tail writes a tail this large from the caller's buffer
 * rather than copying it into the queue. */
#define WRITE_DIRECT_MIN (64u << 10)
/* OpenSSL's read buffer per connection with read-ahead on. */
#define TLS_READ_BUFFER (256u << 10)
/* The buffer between the record layer and the socket (wbuffer_on). */
#define TLS_WRITE_BUFFER (256u << 10)

struct fy_conn {
	SSL *ssl;
	int fd;
	int error; /* sticky: the first transport failure, as -errno */
	/* A frame that broke the protocol: nothing more can be read, but an
	 * Error frame can still be sent before closing. */
	int rx_error;
	char peer[320];
	/* The largest frame the peer takes: FY_FRAME_MAX until a
	 * HelloReply announces less. */
	size_t tx_max;
	uint8_t *wbuf;
	size_t wlen, wcap;
	uint8_t *rbuf;
	size_t rcap;
};

/* Drains OpenSSL's error queue into one line for messages. */
static const char *tls_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	unsigned long next;

	if (!e) {
		snprintf(buf, len, "%s", errno ? strerror(errno) : "unknown");
		return buf;
	}
	/* The first error is usually the root cause; drop the rest. */
	while ((next = ERR_get_error()) != 0)
		;
	ERR_error_string_n(e, buf, len);
	return buf;
}

/* Checks the leaf certificate of every peer against the CA's revocation
 * list. A CRL past its nextUpdate refuses everyone, as it should: make a
 * new one (ferry ca revoke re-signs it). */
static int load_crl(SSL_CTX *ctx, const char *path)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_CRL *crl = NULL;
	char why[256];
	BIO *bio = BIO_new_file(path, "r");

	if (bio)
		crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!crl)
		return fy_err_set(-EINVAL, "TLS: cannot load the CRL %s: %s",
				  path, tls_reason(why, sizeof(why)));
	if (X509_STORE_add_crl(store, crl) != 1) {
		X509_CRL_free(crl);
		return fy_err_set(-EINVAL, "TLS: cannot use the CRL %s: %s",
				  path, tls_reason(why, sizeof(why)));
	}
	X509_CRL_free(crl);
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	return 0;
}

/* ---- why a handshake failed ---------------------------------------------
 * OpenSSL says "certificate verify failed" and the peer sees one alert. The
 * verify callback keeps the first X509_V_ERR_* of the peer's chain with the
 * certificate's name and dates, and the info callback the fatal alert the
 * peer sent us, so that both sides can say why in a sentence. */

static int diag_index = -1;
static pthread_once_t diag_once = PTHREAD_ONCE_INIT;

static void diag_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		      long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	free(ptr);
}

static void diag_init(void)
{
	diag_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, diag_free);
}

static struct tls_diag *diag_of(const SSL *ssl)
{
	pthread_once(&diag_once, diag_init);
	return diag_index < 0 ? NULL : SSL_get_ex_data(ssl, diag_index);
}

int tls_diag_attach(SSL *ssl)
{
	struct tls_diag *d;

	pthread_once(&diag_once, diag_init);
	if (diag_index < 0)
		return fy_err_set(-ENOMEM, "TLS: no room for handshake details");
	d = calloc(1, sizeof(*d));
	if (!d)
		return fy_err_set(-ENOMEM, "out of memory");
	d->alert_received = -1;
	if (!SSL_set_ex_data(ssl, diag_index, d)) {
		free(d);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	return 0;
}

static void asn1_date(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1) {
		snprintf(buf, len, "?");
		return;
	}
	strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

static void name_text(const X509_NAME *n, char *buf, size_t len)
{
	buf[0] = '\0';
	if (n && X509_NAME_get_text_by_NID((X509_NAME *)n, NID_commonName, buf,
					   (int)len) > 0)
		return;
	if (n)
		X509_NAME_oneline(n, buf, (int)len);
	if (!buf[0])
		snprintf(buf, len, "(no name)");
}

/* "certificate NAME (issued by CA, valid A to B)" */
static void cert_text(X509 *cert, char *buf, size_t len)
{
	char subject[256], issuer[256], nb[40], na[40];

	if (!cert) {
		snprintf(buf, len, "no certificate");
		return;
	}
	name_text(X509_get_subject_name(cert), subject, sizeof(subject));
	name_text(X509_get_issuer_name(cert), issuer, sizeof(issuer));
	asn1_date(X509_get0_notBefore(cert), nb, sizeof(nb));
	asn1_date(X509_get0_notAfter(cert), na, sizeof(na));
	snprintf(buf, len, "certificate %s (issued by %s, valid %s to %s)",
		 subject, issuer, nb, na);
}

static int verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
		x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_diag *d = ssl ? diag_of(ssl) : NULL;

	if (ok || !d || d->verify_error)
		return ok;
	d->verify_error = X509_STORE_CTX_get_error(x);
	/* The leaf names who was refused, whatever link of the chain failed. */
	cert_text(X509_STORE_CTX_get0_cert(x), d->cert, sizeof(d->cert));
	return ok;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
	struct tls_diag *d;

	/* Alerts read, not sent: SSL_CB_READ_ALERT and SSL_CB_WRITE_ALERT
	 * share the SSL_CB_ALERT bit, so a bare `where & SSL_CB_READ_ALERT`
	 * took our own alerts (a decode_error for a stream cut mid-record)
	 * for the peer's. */
	if ((where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT ||
	    (ret >> 8) != SSL3_AL_FATAL)
		return;
	d = diag_of(ssl);
	if (d && d->alert_received < 0)
		d->alert_received = ret & 0xff;
}

/* Why the peer's certificate was refused, in words. */
static const char *verify_words(int err)
{
	switch (err) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "it has expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "it is not valid yet";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "it was not issued by the CA trusted here (unknown CA)";
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return "its signature does not verify";
	case X509_V_ERR_CERT_REVOKED:
		return "it has been revoked";
	case X509_V_ERR_INVALID_PURPOSE:
		return "it is not meant for this use (key usage)";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return "it does not carry the name or address asked for";
	default:
		return NULL;
	}
}

const char *tls_verify_reason(const SSL *ssl, char *buf, size_t len)
{
	const struct tls_diag *d = diag_of(ssl);
	const char *words;

	if (!d || !d->verify_error)
		return NULL;
	words = verify_words(d->verify_error);
	snprintf(buf, len, "%s refused: %s%s%s%s", d->cert,
		 words ? words : X509_verify_cert_error_string(d->verify_error),
		 words ? " (" : "",
		 words ? X509_verify_cert_error_string(d->verify_error) : "",
		 words ? ")" : "");
	return buf;
}

/* A fatal alert from the server that refused our certificate, as a
 * sentence; our own certificate's dates tell "expired" from "not valid
 * yet", which TLS sends as one alert. NULL when no alert came. */
static const char *alert_reason(SSL *ssl, char *buf, size_t len)
{
	const struct tls_diag *d = diag_of(ssl);
	X509 *mine = SSL_get_certificate(ssl);
	char ours[600], why[200];
	int a;

	if (!d || d->alert_received < 0)
		return NULL;
	a = d->alert_received;
	if (SSL_is_server(ssl)) {
		/* A client that does not accept our certificate. */
		snprintf(buf, len, "the client sent the TLS alert '%s'",
			 SSL_alert_desc_string_long(a));
		return buf;
	}
	cert_text(mine, ours, sizeof(ours));
	switch (a) {
	case SSL_AD_UNKNOWN_CA:
		snprintf(why, sizeof(why), "it was not issued by a CA the "
			 "server trusts (unknown CA)");
		break;
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_BAD_CERTIFICATE:
		if (mine && X509_cmp_current_time(X509_get0_notBefore(mine)) > 0)
			snprintf(why, sizeof(why), "it is not valid yet");
		else if (mine &&
			 X509_cmp_current_time(X509_get0_notAfter(mine)) < 0)
			snprintf(why, sizeof(why), "it has expired");
		else if (a == SSL_AD_CERTIFICATE_EXPIRED)
			snprintf(why, sizeof(why), "the server says it has "
				 "expired (check both clocks)");
		else
			snprintf(why, sizeof(why), "the server says it is "
				 "bad (not valid yet by the server's clock, or "
				 "unusable; the server's log says which)");
		break;
	case SSL_AD_CERTIFICATE_REVOKED:
		snprintf(why, sizeof(why), "it has been revoked");
		break;
	case SSL_AD_CERTIFICATE_REQUIRED:
		snprintf(why, sizeof(why), "the server requires a client "
			 "certificate (ferry.tls.cert)");
		break;
	case SSL_AD_ACCESS_DENIED:
		snprintf(why, sizeof(why), "the server denies it access");
		break;
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_HANDSHAKE_FAILURE:
	case SSL_AD_DECRYPT_ERROR:
		snprintf(why, sizeof(why), "the server sent the TLS alert '%s'",
			 SSL_alert_desc_string_long(a));
		break;
	default:
		/* Not about certificates (a record the server could not
		 * decode, its internal error...): the certificate is not
		 * blamed. A stream cut in the middle of a record, as when
		 * a server gives up on a client that stopped reading, can
		 * end this way. */
		snprintf(buf, len, "the server ended the connection with the "
			 "TLS alert '%s'", SSL_alert_desc_string_long(a));
		return buf;
	}
	if (a == SSL_AD_CERTIFICATE_REQUIRED)
		snprintf(buf, len, "%s", why);
	else
		snprintf(buf, len, "the server refused our %s: %s", ours, why);
	return buf;
}

static int tls_new(const struct fy_tls_opts *opts, bool server,
		   struct fy_tls **out)
{
	char why[256];
	struct fy_tls *tls;
	int rc = -EINVAL;

	if (!opts->cert || !opts->key || !opts->ca)
		return fy_err_set(-EINVAL,
				  "TLS needs a certificate, a key and a CA "
				  "(ferry.tls.cert, ferry.tls.key, ferry.tls.ca)");
	tls = calloc(1, sizeof(*tls));
	if (!tls)
		return fy_err_set(-ENOMEM, "out of memory");
	tls->server = server;
	tls->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!tls->ctx) {
		rc = fy_err_set(-ENOMEM, "TLS: %s", tls_reason(why, sizeof(why)));
		goto out_free;
	}
	SSL_CTX_set_min_proto_version(tls->ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(tls->ctx, SSL_MODE_AUTO_RETRY);
	if (SSL_CTX_use_certificate_chain_file(tls->ctx, opts->cert) != 1) {
		rc = fy_err_set(-EINVAL, "TLS: cannot load certificate %s: %s",
				opts->cert, tls_reason(why, sizeof(why)));
		goto out_free;
	}
	if (SSL_CTX_use_PrivateKey_file(tls->ctx, opts->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(tls->ctx) != 1) {
		rc = fy_err_set(-EINVAL, "TLS: cannot load key %s: %s",
				opts->key, tls_reason(why, sizeof(why)));
		goto out_free;
	}
	if (SSL_CTX_load_verify_locations(tls->ctx, opts->ca, NULL) != 1) {
		rc = fy_err_set(-EINVAL, "TLS: cannot load CA %s: %s", opts->ca,
				tls_reason(why, sizeof(why)));
		goto out_free;
	}
	if (opts->crl && opts->crl[0]) {
		rc = load_crl(tls->ctx, opts->crl);
		if (rc < 0)
			goto out_free;
	}
	if (server) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(opts->ca);

		if (names)
			SSL_CTX_set_client_CA_list(tls->ctx, names);
		SSL_CTX_set_verify(tls->ctx,
				   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
				   verify_cb);
		/* Stateless tickets are of no use to a handful of agents. */
		SSL_CTX_set_num_tickets(tls->ctx, 0);
	} else {
		SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_PEER, verify_cb);
	}
	SSL_CTX_set_info_callback(tls->ctx, info_cb);
	*out = tls;
	return 0;
out_free:
	fy_tls_free(tls);
	return rc;
}

int fy_tls_new_server(const struct fy_tls_opts *opts, struct fy_tls **out)
{
	return tls_new(opts, true, out);
}

int fy_tls_new_client(const struct fy_tls_opts *opts, struct fy_tls **out)
{
	return tls_new(opts, false, out);
}

void fy_tls_free(struct fy_tls *tls)
{
	if (!tls)
		return;
	SSL_CTX_free(tls->ctx);
	free(tls);
}

static void set_timeouts(int fd, int timeout_ms)
{
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void fy_conn_set_timeout(struct fy_conn *c, int timeout_ms)
{
	set_timeouts(c->fd, timeout_ms);
}

static void tune_socket(int fd)
{
	int one = 1;
	int buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

/* Once the handshake is done: read what the socket holds, up to
 * TLS_READ_BUFFER, in one call rather than a header and a body per 16 KiB
 * record (a 1 MiB block was some 130 read()s, bench/README.md). Not during
 * handshakes, so that a server's pending handshakes hold small buffers.
 * The handshake's buffers are freed so that the next read allocates the
 * larger one; if they hold data, they stay, which is only slower. (From
 * OpenSSL 3.2 the record layer fixes its buffer's size at the handshake:
 * read-ahead then works with the default 17 KiB. Debian 12 has 3.0.) Waits
 * for input ask SSL_has_pending first: bytes read ahead are in OpenSSL's
 * buffer, not the socket's. */
static void read_ahead_on(SSL *ssl)
{
	SSL_set_read_ahead(ssl, 1);
	SSL_set_default_read_buffer_len(ssl, TLS_READ_BUFFER);
	SSL_free_buffers(ssl);
}

/* Once the handshake is done, the other direction: OpenSSL hands every
 * record (16 KiB at most) to write(2) on its own, so a 1 MiB frame was 64
 * system calls and 64 loopback segments, each waking the peer. A buffer
 * of TLS_WRITE_BUFFER sits between the record layer and the socket
 * (fy_ssl_buffer_writes), and write_all empties it (flush_wbio) before it
 * returns, so nothing waits in it when a frame has been sent. */
static int wbuffer_on(SSL *ssl)
{
	return fy_ssl_buffer_writes(ssl, TLS_WRITE_BUFFER);
}

static struct fy_conn *conn_new(int fd)
{
	struct fy_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->tx_max = FY_FRAME_MAX;
	return c;
}

/* "CN=agent1 from 127.0.0.1:4242" */
static void describe_peer(struct fy_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?", port[16] = "?";
	char cn[256] = "";
	X509 *cert = SSL_get1_peer_certificate(c->ssl);

	if (cert) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
					  NID_commonName, cn, sizeof(cn));
		X509_free(cert);
	}
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) != 0) {
		/* Reset already: keep the address we knew, add the name. */
		const char *at = strchr(c->peer, '@');
		char addr[sizeof(c->peer)];

		snprintf(addr, sizeof(addr), "%s", at ? at + 1 : c->peer);
		snprintf(c->peer, sizeof(c->peer), "%s%s%s", cn[0] ? cn : "",
			 cn[0] ? "@" : "", addr[0] ? addr : "?");
		return;
	}
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
		    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(c->peer, sizeof(c->peer), "%s%s%s:%s", cn[0] ? cn : "",
		 cn[0] ? "@" : "", host, port);
}

static int connect_timeout(const char *host, const char *port, int timeout_ms,
			   int *out)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *res, *ai;
	int rc, err = ECONNREFUSED;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc)
		return fy_err_set(-EHOSTUNREACH, "cannot resolve %s: %s", host,
				  gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t sl = sizeof(err);
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			err = errno;
			continue;
		}
		/* Non-blocking only for the connect, to bound its time. */
		fcntl(fd, F_SETFL, O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				err = errno;
				close(fd);
				continue;
			}
			pfd.fd = fd;
			pfd.events = POLLOUT;
			rc = poll(&pfd, 1, timeout_ms);
			if (rc <= 0) {
				err = rc == 0 ? ETIMEDOUT : errno;
				close(fd);
				continue;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 ||
			    err) {
				close(fd);
				continue;
			}
		}
		fcntl(fd, F_SETFL, 0);
		freeaddrinfo(res);
		*out = fd;
		return 0;
	}
	freeaddrinfo(res);
	return fy_err_set(-err, "cannot connect to %s:%s: %s", host, port,
			  strerror(err));
}

static bool is_ip_literal(const char *s)
{
	unsigned char tmp[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

int fy_conn_connect(struct fy_tls *tls, const char *hostport,
		    const char *server_name, int timeout_ms,
		    struct fy_conn **out)
{
	char host[256], port[32], why[256];
	struct fy_conn *c = NULL;
	const char *name;
	int fd = -1, rc;

	rc = fy_split_hostport(hostport, host, sizeof(host), port, sizeof(port));
	if (rc < 0)
		return rc;
	rc = connect_timeout(host, port, timeout_ms, &fd);
	if (rc < 0)
		return rc;
	tune_socket(fd);
	set_timeouts(fd, timeout_ms);
	c = conn_new(fd);
	if (!c) {
		close(fd);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	describe_peer(c);
	c->ssl = SSL_new(tls->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		rc = fy_err_set(-ENOMEM, "TLS: %s", tls_reason(why, sizeof(why)));
		goto fail;
	}
	if ((rc = tls_diag_attach(c->ssl)) < 0)
		goto fail;
	name = server_name && *server_name ? server_name : host;
	if (is_ip_literal(name)) {
		X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);

		X509_VERIFY_PARAM_set1_ip_asc(param, name);
	} else {
		SSL_set_tlsext_host_name(c->ssl, name);
		SSL_set1_host(c->ssl, name);
	}
	if (SSL_connect(c->ssl) != 1) {
		long vr = SSL_get_verify_result(c->ssl);
		char reason[1024];

		if (vr != X509_V_OK)
			rc = fy_err_set(-EPERM,
					"TLS handshake with %s failed: server "
					"certificate not trusted for '%s': %s",
					hostport, name,
					tls_verify_reason(c->ssl, reason,
							  sizeof(reason))
						?: X509_verify_cert_error_string(vr));
		else if (alert_reason(c->ssl, reason, sizeof(reason)))
			rc = fy_err_set(-EACCES, "TLS handshake with %s failed: "
					"%s", hostport, reason);
		else
			rc = fy_err_set(-EPROTO, "TLS handshake with %s failed: %s",
					hostport, tls_reason(why, sizeof(why)));
		goto fail;
	}
	read_ahead_on(c->ssl);
	if ((rc = wbuffer_on(c->ssl)) < 0)
		goto fail;
	describe_peer(c);
	*out = c;
	return 0;
fail:
	fy_conn_close(c);
	return rc;
}

int fy_listen(const char *hostport, int *out, char *bound, size_t boundlen)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct addrinfo *res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[32], nhost[INET6_ADDRSTRLEN], nport[16];
	int fd, rc, one = 1;

	rc = fy_split_hostport(hostport, host, sizeof(host), port, sizeof(port));
	if (rc < 0)
		return rc;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc)
		return fy_err_set(-EINVAL, "cannot resolve %s: %s", hostport,
				  gai_strerror(rc));
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(res);
		return fy_err_set(rc, "socket: %s", strerror(-rc));
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		freeaddrinfo(res);
		close(fd);
		return fy_err_set(rc, "cannot listen on %s: %s", hostport,
				  strerror(-rc));
	}
	freeaddrinfo(res);
	if (bound && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, nhost, sizeof(nhost), nport,
			sizeof(nport), NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(bound, boundlen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
			 nhost, nport);
	*out = fd;
	return 0;
}

SSL_CTX *tls_ctx(struct fy_tls *tls)
{
	return tls->ctx;
}

int tls_conn_adopt(SSL *ssl, int fd, int timeout_ms, struct fy_conn **out)
{
	struct fy_conn *c;
	int rc;

	tune_socket(fd);
	set_timeouts(fd, timeout_ms);
	c = conn_new(fd);
	if (!c) {
		SSL_free(ssl);
		close(fd);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	c->ssl = ssl;
	read_ahead_on(ssl);
	rc = wbuffer_on(ssl);
	if (rc < 0) {
		fy_conn_close(c);
		return rc;
	}
	describe_peer(c);
	*out = c;
	return 0;
}

void fy_conn_cert_text(const struct fy_conn *c, char *buf, size_t len)
{
	X509 *cert = SSL_get1_peer_certificate(c->ssl);

	cert_text(cert, buf, len);
	X509_free(cert);
}

int fy_conn_refuse(const struct fy_conn *c, int code, const char *reason)
{
	char cert[600];

	fy_conn_cert_text(c, cert, sizeof(cert));
	return fy_err_set(code, "%s from %s refused: %s", cert, c->peer,
			  reason);
}

int fy_conn_accept(struct fy_tls *tls, int fd, int timeout_ms,
		   struct fy_conn **out)
{
	char why[256];
	struct fy_conn *c;
	int rc;

	tune_socket(fd);
	set_timeouts(fd, timeout_ms);
	c = conn_new(fd);
	if (!c) {
		close(fd);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	describe_peer(c);
	c->ssl = SSL_new(tls->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		rc = fy_err_set(-ENOMEM, "TLS: %s", tls_reason(why, sizeof(why)));
		goto fail;
	}
	if ((rc = tls_diag_attach(c->ssl)) < 0)
		goto fail;
	if (SSL_accept(c->ssl) != 1) {
		char reason[1024];

		rc = fy_err_set(-EPERM, "TLS handshake from %s refused: %s",
				c->peer,
				tls_verify_reason(c->ssl, reason, sizeof(reason))
					?: tls_reason(why, sizeof(why)));
		goto fail;
	}
	read_ahead_on(c->ssl);
	if ((rc = wbuffer_on(c->ssl)) < 0)
		goto fail;
	describe_peer(c);
	*out = c;
	return 0;
fail:
	fy_conn_close(c);
	return rc;
}

const char *fy_conn_peer(const struct fy_conn *c)
{
	return c->peer;
}

/* The role is the subject's one organizationalUnitName "ferry:ROLE"
 * (common/ca.c writes it); other OUs are someone else's business. */
static int cert_role(X509 *cert, enum fy_role *role)
{
	X509_NAME *subject = X509_get_subject_name(cert);
	int i = -1, found = 0;

	*role = FY_ROLE_NONE;
	while ((i = X509_NAME_get_index_by_NID(subject,
					       NID_organizationalUnitName,
					       i)) >= 0) {
		ASN1_STRING *v = X509_NAME_ENTRY_get_data(
			X509_NAME_get_entry(subject, i));
		const char *text = (const char *)ASN1_STRING_get0_data(v);
		size_t plen = strlen(FY_ROLE_PREFIX);
		int len = ASN1_STRING_length(v);
		char name[32];

		if (len <= (int)plen || strncmp(text, FY_ROLE_PREFIX, plen))
			continue;
		if (found++)
			return fy_err_set(-EACCES, "the certificate names more "
					  "than one Ferry role");
		if (len - (int)plen >= (int)sizeof(name) ||
		    memchr(text, '\0', (size_t)len))
			return fy_err_set(-EACCES, "the certificate's role is "
					  "not one Ferry knows");
		memcpy(name, text + plen, (size_t)len - plen);
		name[len - plen] = '\0';
		if (fy_role_parse(name, role) < 0)
			return fy_err_set(-EACCES, "the certificate's role "
					  "'%s' is not one Ferry knows", name);
	}
	return 0;
}

int fy_conn_identity(const struct fy_conn *c, struct fy_identity *id)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	X509 *cert = c->ssl ? SSL_get1_peer_certificate(c->ssl) : NULL;
	int rc;

	memset(id, 0, sizeof(*id));
	snprintf(id->address, sizeof(id->address), "?");
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, id->address,
			    sizeof(id->address), NULL, 0, NI_NUMERICHOST);
	if (!cert)
		return fy_err_set(-EACCES, "%s presented no certificate",
				  c->peer);
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
				      NID_commonName, id->name,
				      sizeof(id->name)) <= 0 ||
	    !id->name[0]) {
		X509_free(cert);
		return fy_err_set(-EACCES, "%s: the certificate has no name "
				  "(commonName)", c->peer);
	}
	rc = cert_role(cert, &id->role);
	X509_free(cert);
	if (rc < 0)
		return fy_err_wrap(rc, "certificate %s", id->name);
	return 0;
}

enum fy_role fy_identity_role(const struct fy_identity *id)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char warned[64][64];
	static unsigned n_warned;
	bool seen = false;
	unsigned i;

	if (id->role != FY_ROLE_NONE)
		return id->role;
	/* Logged once per name (for the first 64 names): every connection
	 * of an old agent would otherwise repeat it. */
	pthread_mutex_lock(&lock);
	for (i = 0; i < n_warned && !seen; i++)
		seen = !strncmp(warned[i], id->name, sizeof(warned[i]) - 1);
	if (!seen && n_warned < 64)
		snprintf(warned[n_warned++], sizeof(warned[0]), "%s", id->name);
	pthread_mutex_unlock(&lock);
	if (!seen)
		fy_warn("certificate %s has no Ferry role: treated as an agent; "
			"issue it again with `ferry ca issue DIR NAME --role "
			"ROLE` (docs/SECURITY.md)", id->name);
	return FY_ROLE_AGENT;
}

void fy_conn_close(struct fy_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* A quiet shutdown: we do not wait for the peer's close. */
		if (!c->error && SSL_shutdown(c->ssl) >= 0)
			(void)BIO_flush(SSL_get_wbio(c->ssl));
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->wbuf);
	free(c->rbuf);
	free(c);
}

static int io_error(struct fy_conn *c, int ret, const char *what)
{
	char why[1024];
	int e = SSL_get_error(c->ssl, ret);

	/* TLS 1.3: a server that refuses our certificate says so after our
	 * handshake ended, in an alert that ends the first read. */
	if (alert_reason(c->ssl, why, sizeof(why))) {
		ERR_clear_error();
		c->error = fy_err_set(-EACCES, "%s %s: %s", what, c->peer, why);
	} else if (e == SSL_ERROR_ZERO_RETURN ||
	    (e == SSL_ERROR_SYSCALL && errno == 0))
		c->error = fy_err_set(-ECONNRESET, "%s %s: connection closed by peer",
				      what, c->peer);
	else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
		 (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)))
		c->error = fy_err_set(-ETIMEDOUT, "%s %s: timed out", what, c->peer);
	else if (e == SSL_ERROR_SYSCALL)
		c->error = fy_err_set(-errno, "%s %s: %s", what, c->peer,
				      strerror(errno));
	else if (e == SSL_ERROR_SSL &&
		 ERR_GET_REASON(ERR_peek_last_error()) ==
			 SSL_R_UNEXPECTED_EOF_WHILE_READING) {
		ERR_clear_error();
		c->error = fy_err_set(-ECONNRESET, "%s %s: the connection ended "
				      "in the middle of a TLS record (the peer "
				      "gave up or was stopped; its log may say "
				      "why)", what, c->peer);
	} else
		c->error = fy_err_set(-EPROTO, "%s %s: %s", what, c->peer,
				      tls_reason(why, sizeof(why)));
	return c->error;
}

/* Sends what the write buffer holds (wbuffer_on). */
static int flush_wbio(struct fy_conn *c)
{
	errno = 0;
	if (BIO_flush(SSL_get_wbio(c->ssl)) == 1)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		c->error = fy_err_set(-ETIMEDOUT, "sending to %s: timed out",
				      c->peer);
	else if (errno)
		c->error = fy_err_set(-errno, "sending to %s: %s", c->peer,
				      strerror(errno));
	else
		c->error = fy_err_set(-ECONNRESET, "sending to %s: connection "
				      "closed by peer", c->peer);
	ERR_clear_error();
	return c->error;
}

/* Hands len bytes to TLS; the write buffer may keep the last of them
 * (flush_wbio sends it). */
static int write_some(struct fy_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		size_t n = 0;
		int ret;

		errno = 0;
		ret = SSL_write_ex(c->ssl, p, len, &n);
		if (ret <= 0)
			return io_error(c, ret, "sending to");
		p += n;
		len -= n;
	}
	return 0;
}

static int write_all(struct fy_conn *c, const uint8_t *p, size_t len)
{
	int rc = write_some(c, p, len);

	return rc < 0 ? rc : flush_wbio(c);
}

static int read_all(struct fy_conn *c, uint8_t *p, size_t len)
{
	while (len) {
		size_t n = 0;
		int ret;

		errno = 0;
		ret = SSL_read_ex(c->ssl, p, len, &n);
		if (ret <= 0)
			return io_error(c, ret, "receiving from");
		p += n;
		len -= n;
	}
	return 0;
}

int fy_conn_flush(struct fy_conn *c)
{
	int rc;

	if (c->error)
		return fy_err_set(c->error, "connection to %s already failed",
				  c->peer);
	if (!c->wlen)
		return 0;
	rc = write_all(c, c->wbuf, c->wlen);
	c->wlen = 0;
	return rc;
}

int fy_conn_keepalive(struct fy_conn *c)
{
	char why[256];
	int rc, ret;

	if ((rc = fy_conn_flush(c)) < 0)
		return rc;
	if (SSL_key_update(c->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1)
		return c->error = fy_err_set(-EPROTO, "sending to %s: %s",
					     c->peer,
					     tls_reason(why, sizeof(why)));
	/* Sends the KeyUpdate now rather than with the next write. */
	errno = 0;
	ret = SSL_do_handshake(c->ssl);
	if (ret <= 0)
		return io_error(c, ret, "sending to");
	return flush_wbio(c);
}

/* A frame's 4-byte big-endian length prefix. */
static void put_len(uint8_t *p, size_t len)
{
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 64 << 10;
	uint8_t *n;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	n = realloc(*buf, ncap);
	if (!n)
		return fy_err_set(-ENOMEM, "out of memory for a %zu-byte frame",
				  need);
	*buf = n;
	*cap = ncap;
	return 0;
}

size_t fy_conn_max_frame(const struct fy_conn *c)
{
	return c->tx_max;
}

int fy_conn_send(struct fy_conn *c, const fy_frame *f)
{
	return fy_conn_send_message(c, &f->base, c->tx_max, fy_frame_name(f));
}

/* One frame: with v, a Block read in place (1, the receive buffer kept
 * for it); any other frame decoded and checked into *out (0). */
static int recv_frame(struct fy_conn *c, struct fy_block_view *v,
		      fy_frame **out)
{
	const uint8_t *body;
	size_t len;
	int rc = fy_conn_recv_body(c, FY_FRAME_MAX, &body, &len);

	if (rc < 0)
		return rc;
	rc = v ? fy_block_view_parse(body, len, v) : 0;
	if (rc > 0)
		return 1;
	if (rc == 0)
		rc = fy_frame_decode(body, len, out);
	if (rc < 0) {
		c->rx_error = fy_err_wrap(rc, "from %s", c->peer);
		return c->rx_error;
	}
	/* A large frame's buffer is not kept once the stream is idle-sized. */
	if (c->rcap > (4u << 20) && len < (1u << 20)) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
	return 0;
}

int fy_conn_recv(struct fy_conn *c, fy_frame **out)
{
	return recv_frame(c, NULL, out);
}

/* The framing alone, for the protocols beside ferry.proto that share it
 * (control.proto): the same length prefix, bounds and sticky errors. */
/* Checks a frame of len bytes against the connection's state and max,
 * makes room for its length prefix and the first room bytes of its body
 * at the end of the queue, and writes the prefix: *body is where the body
 * goes (the caller adds what it wrote to c->wlen). */
static int frame_start(struct fy_conn *c, size_t len, size_t max, size_t room,
		       const char *what, uint8_t **body)
{
	int rc;

	if (c->error)
		return fy_err_set(c->error, "connection to %s already failed",
				  c->peer);
	if (len == 0 || len > max)
		return fy_err_set(-EMSGSIZE, "%s frame of %zu bytes is over the "
				  "%zu-byte limit", what, len, max);
	rc = grow(&c->wbuf, &c->wcap, c->wlen + 4 + room);
	if (rc < 0)
		return rc;
	put_len(c->wbuf + c->wlen, len);
	c->wlen += 4;
	*body = c->wbuf + c->wlen;
	return 0;
}

int fy_conn_send_message(struct fy_conn *c, const ProtobufCMessage *m,
			 size_t max, const char *what)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *p = NULL;
	int rc = frame_start(c, len, max, len, what, &p);

	if (rc < 0)
		return rc;
	protobuf_c_message_pack(m, p);
	c->wlen += len;
	return c->wlen >= WRITE_FLUSH_AT ? fy_conn_flush(c) : 0;
}

int fy_conn_send_tail(struct fy_conn *c, const uint8_t *head, size_t hlen,
		      const void *tail, size_t tlen, const char *what)
{
	/* A small tail is cheaper queued than written on its own. */
	bool queue = tlen < WRITE_DIRECT_MIN;
	uint8_t *p = NULL;
	int rc = frame_start(c, hlen + tlen, c->tx_max,
			     hlen + (queue ? tlen : 0), what, &p);

	if (rc < 0)
		return rc;
	memcpy(p, head, hlen);
	c->wlen += hlen;
	if (queue) {
		memcpy(p + hlen, tail, tlen);
		c->wlen += tlen;
		return c->wlen >= WRITE_FLUSH_AT ? fy_conn_flush(c) : 0;
	}
	/* What is queued, with this frame's length and head, goes first;
	 * then the tail from the caller's buffer, with no copy of ours. */
	rc = write_some(c, c->wbuf, c->wlen);
	c->wlen = 0;
	if (rc == 0)
		rc = write_some(c, tail, tlen);
	return rc < 0 ? rc : flush_wbio(c);
}

int fy_conn_recv_block(struct fy_conn *c, struct fy_block_view *v,
		       fy_frame **other)
{
	return recv_frame(c, v, other);
}

int fy_conn_recv_body(struct fy_conn *c, size_t max, const uint8_t **body,
		      size_t *len)
{
	uint8_t hdr[4];
	uint32_t n;
	int rc;

	if (c->rx_error)
		return fy_err_set(c->rx_error, "stream from %s is out of step",
				  c->peer);
	rc = fy_conn_flush(c);
	if (rc < 0)
		return rc;
	rc = read_all(c, hdr, 4);
	if (rc < 0)
		return rc;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	/* The bound is checked before a single byte is allocated. */
	if (n == 0 || n > max) {
		c->rx_error = fy_err_set(-EMSGSIZE, "frame of %u bytes from %s "
					 "is outside 1..%zu", n, c->peer, max);
		return c->rx_error;
	}
	rc = grow(&c->rbuf, &c->rcap, n);
	if (rc < 0)
		return rc;
	rc = read_all(c, c->rbuf, n);
	if (rc < 0)
		return rc;
	*body = c->rbuf;
	*len = n;
	return 0;
}

void fy_conn_set_rx_error(struct fy_conn *c, int code)
{
	c->rx_error = code;
}

int fy_conn_wait_readable(struct fy_conn *c, int timeout_ms)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	int rc;

	/* Bytes already buffered (decrypted, or read ahead and not yet
	 * decrypted), or queued output to send first. */
	if (SSL_has_pending(c->ssl) || c->wlen)
		return 1;
	rc = poll(&pfd, 1, timeout_ms);
	if (rc < 0)
		return errno == EINTR ? 0 : fy_err_set(-errno, "poll: %s",
							 strerror(errno));
	return rc > 0;
}

void fy_conn_send_error(struct fy_conn *c, int code, const char *msg)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Error e = FERRY__ERROR__INIT;
	char buf[FY_STRING_MAX];

	if (c->error)
		return;
	snprintf(buf, sizeof(buf), "%s", msg);
	e.code = code;
	e.message = buf;
	f.body_case = FERRY__FRAME__BODY_ERROR;
	f.error = &e;
	if (fy_conn_send(c, &f) == 0)
		fy_conn_flush(c);
}

/* What the repository's HelloReply says it takes: its largest frame (what
 * we send is held to it) and its block sizes (a job whose block size it
 * refuses stops here, with both named). 0 is "not said" (an older
 * repository): the protocol's own bounds hold. */
static int take_limits(struct fy_conn *c, const Ferry__HelloReply *hr,
		       uint32_t block_size)
{
	size_t max = hr->max_frame ? hr->max_frame : FY_FRAME_MAX;

	if (max < FY_FRAME_LEAST)
		return fy_err_set(-EPROTO, "repository %s takes frames of at "
				  "most %zu bytes, fewer than the protocol's "
				  "least (%u)", c->peer, max, FY_FRAME_LEAST);
	if (max > FY_FRAME_MAX)
		max = FY_FRAME_MAX;
	if (block_size && hr->max_block_size &&
	    (block_size < hr->min_block_size ||
	     block_size > hr->max_block_size))
		return fy_err_set(-EINVAL, "repository %s takes blocks of %u to "
				  "%u bytes, not %u: set ferry.blockSize (or "
				  "--block-size) within that range", c->peer,
				  hr->min_block_size, hr->max_block_size,
				  block_size);
	if (block_size && (size_t)block_size + FY_FRAME_PUT_OVERHEAD > max)
		return fy_err_set(-EINVAL, "repository %s takes frames of at "
				  "most %zu bytes: a block of %u bytes would "
				  "not fit; use a smaller ferry.blockSize",
				  c->peer, max, block_size);
	c->tx_max = max;
	return 0;
}

int fy_conn_hello(struct fy_conn *c, const char *software, uint32_t block_size,
		  const char *namespace_, char *repo_id, size_t repo_id_len)
{
	Ferry__Frame f = FERRY__FRAME__INIT;
	Ferry__Hello h = FERRY__HELLO__INIT;
	char *features[] = { "zstd" };
	fy_frame *r = NULL;
	int rc;

	h.protocol_version = FY_PROTOCOL_VERSION;
	h.software = (char *)software;
	h.n_features = 1;
	h.features = features;
	h.block_size = block_size;
	h.namespace_ = (char *)(namespace_ ? namespace_ : "");
	f.body_case = FERRY__FRAME__BODY_HELLO;
	f.hello = &h;
	rc = fy_conn_send(c, &f);
	if (rc == 0)
		rc = fy_conn_recv(c, &r);
	if (rc < 0)
		return rc;
	if (r->body_case == FERRY__FRAME__BODY_ERROR) {
		rc = fy_err_set(r->error->code < 0 ? r->error->code : -EPROTO,
				"repository %s refused us: %s", c->peer,
				r->error->message);
	} else if (r->body_case != FERRY__FRAME__BODY_HELLO_REPLY) {
		rc = fy_err_set(-EPROTO, "repository %s answered Hello with %s",
				c->peer, fy_frame_name(r));
	} else if (r->hello_reply->protocol_version != FY_PROTOCOL_VERSION) {
		rc = fy_err_set(-EPROTONOSUPPORT,
				"repository %s speaks protocol %u, we speak %u",
				c->peer, r->hello_reply->protocol_version,
				FY_PROTOCOL_VERSION);
	} else {
		rc = take_limits(c, r->hello_reply, block_size);
		if (rc == 0 && repo_id)
			snprintf(repo_id, repo_id_len, "%s",
				 r->hello_reply->repository_id);
	}
	fy_frame_free(r);
	return rc;
}
