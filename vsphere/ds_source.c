/*
 * The https transport: a disk's flat extents read through vSphere's
 * datastore file access,
 *
 *   GET https://HOST/folder/<path>?dcPath=<datacenter>&dsName=<datastore>
 *   Cookie: vmware_soap_session=...      Range: bytes=A-B
 *
 * Open fetches the descriptor (at most FY_VMDK_MAX_DESCRIPTOR bytes, with a
 * Range request so a binary VMDK is never downloaded whole), refuses what
 * fy_vmdk_check_flat refuses, and sizes every extent file with HEAD. A
 * batch of reads becomes Range requests of at most request_size bytes,
 * split at extent boundaries, up to max_in_flight at once on a curl multi
 * handle, each on its own kept-alive HTTP/1.1 connection.
 *
 * Every response is checked before its bytes count: the status, the
 * Content-Range (exactly the bytes asked, of a file of the size HEAD
 * gave), the Content-Length, and the body, which may be neither shorter
 * nor longer than the range. Bodies of error answers never reach the
 * caller's buffer.
 *
 * Sessions: the client's cookie goes with every request. A 401 or 403
 * means the session expired (vCenter restarted, idle timeout): the client
 * logs in again once (its generation counter makes concurrent noticers
 * log in only once) and the request is sent again; a second refusal is an
 * error. Like virt-v2v, which renews its cookie every 25 minutes, a
 * session older than renew_seconds is renewed before the next batch.
 *
 * Certificates are checked by the SOAP client's own code
 * (vs_http_tls_setup): the same pin, CA file or verifyCertificates=0.
 */
#include "vsphere/vs_int.h"

#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#define DS_MAX_IN_FLIGHT 64
#define DS_MIN_REQUEST (64u * 1024)
#define DS_MAX_REQUEST (64u * 1024 * 1024)
/* Bytes of an error answer's body read (and thrown away) at most. */
#define DS_ERROR_BODY_MAX (64u * 1024)
#define DS_URL_MAX 4096

struct ds_extent {
	uint64_t start;       /* bytes into the disk */
	uint64_t length;
	uint64_t file_offset; /* bytes into the file */
	uint64_t file_size;   /* as HEAD said */
	char *url;            /* NULL for a ZERO extent */
	char *label;          /* "[ds1] vm/vm-flat.vmdk" */
};

/* One transfer slot: an easy handle and what its current request is. */
struct xfer {
	CURL *easy;
	struct vs_tls_state tls;
	char errbuf[CURL_ERROR_SIZE];
	/* the request */
	const struct ds_extent *ext;
	const char *url, *label;
	uint64_t file_off;
	size_t len;
	uint8_t *buf;         /* where the body goes (len bytes) */
	size_t io;            /* index in the batch */
	bool retried;         /* sent again after a new login */
	uint64_t generation;  /* the login whose cookie went with it */
	/* the response */
	long status;
	size_t got;
	bool overflow;
	char content_range[128];
	int64_t content_length;
};

struct ds_source {
	struct fy_source base;
	struct fy_vs_client *c;
	pthread_mutex_t lock;
	CURLM *multi;
	struct xfer *xfers;
	unsigned n_xfers;
	struct ds_extent *ext;
	size_t n_ext;
	size_t request_size;
	unsigned renew_seconds;
	char *base_url;       /* "https://host:port" */
	char *dc_query;       /* "?dcPath=...&dsName=..." */
};

static const struct fy_source_ops ds_ops;

void fy_vs_ds_opts_default(struct fy_vs_ds_opts *o)
{
	o->max_in_flight = 8;
	o->request_size = 4u * 1024 * 1024;
	o->renew_seconds = 1500;
}

int fy_vs_ds_opts_from_config(struct fy_vs_ds_opts *o,
			      const struct fy_config *cfg)
{
	const char *s;
	int64_t v;
	int rc;

	rc = fy_config_get_int(cfg, "ferry.https.maxInFlight", o->max_in_flight,
			       1, DS_MAX_IN_FLIGHT, &v);
	if (rc < 0)
		return rc;
	o->max_in_flight = (unsigned)v;
	if ((s = fy_config_get(cfg, "ferry.https.requestSize"))) {
		uint64_t size;

		if (fy_parse_size(s, &size) < 0 || size < DS_MIN_REQUEST ||
		    size > DS_MAX_REQUEST)
			return fy_err_set(-EINVAL, "ferry.https.requestSize '%s' "
					  "(from %s) must be a size from 64K to "
					  "64M", s,
					  fy_config_origin(cfg,
							   "ferry.https.requestSize"));
		o->request_size = size;
	}
	rc = fy_config_get_int(cfg, "ferry.https.sessionRenewSeconds",
			       o->renew_seconds, 0, 86400, &v);
	if (rc < 0)
		return rc;
	o->renew_seconds = (unsigned)v;
	return 0;
}

/* ---- names and URLs ---------------------------------------------------- */

int fy_vs_ds_path_split(const char *ds_file, char *ds, size_t dslen,
			char *path, size_t pathlen)
{
	const char *close, *p;
	size_t n;

	if (ds_file[0] != '[' || !(close = strchr(ds_file, ']')))
		return fy_err_set(-EINVAL, "'%s' is not a datastore path like "
				  "'[ds1] vm/vm.vmdk'", ds_file);
	n = (size_t)(close - ds_file - 1);
	if (n == 0 || n >= dslen)
		return fy_err_set(-EINVAL, "'%s': the datastore name is empty "
				  "or too long", ds_file);
	memcpy(ds, ds_file + 1, n);
	ds[n] = '\0';
	p = close + 1;
	while (*p == ' ')
		p++;
	while (*p == '/')
		p++;
	n = strlen(p);
	if (n == 0 || n >= pathlen)
		return fy_err_set(-EINVAL, "'%s': the file path is empty or "
				  "too long", ds_file);
	memcpy(path, p, n + 1);
	/* ".." would leave the folder the descriptor names. */
	for (p = path; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if ((len == 2 && !memcmp(p, "..", 2)) ||
		    (len == 1 && p[0] == '.'))
			return fy_err_set(-EINVAL, "'%s': '.' and '..' are not "
					  "allowed in a datastore path", ds_file);
		p += len;
		while (*p == '/')
			p++;
	}
	for (p = ds_file; *p; p++)
		if ((unsigned char)*p < 0x20)
			return fy_err_set(-EINVAL, "datastore path with a "
					  "control character");
	return 0;
}

/* Percent-encodes s into b; keep_slash leaves '/' alone (paths). */
static void url_escape(struct vs_buf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' ||
		    ch == '~' || (keep_slash && ch == '/')) {
			vs_buf_add(b, s, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			vs_buf_add(b, e, 3);
		}
	}
}

/* https://host:port from the client's SDK URL. */
static char *base_url(const struct fy_vs_client *c)
{
	const char *host = strstr(c->url, "://");
	const char *slash;

	host = host ? host + 3 : c->url;
	slash = strchr(host, '/');
	return strndup(c->url, slash ? (size_t)(slash - c->url)
				     : strlen(c->url));
}

static char *file_url(const struct ds_source *s, const char *path)
{
	struct vs_buf b;

	vs_buf_init(&b, DS_URL_MAX);
	vs_buf_str(&b, s->base_url);
	vs_buf_str(&b, "/folder/");
	url_escape(&b, path, true);
	vs_buf_str(&b, s->dc_query);
	if (b.err) {
		vs_buf_release(&b);
		fy_err_set(-ENAMETOOLONG, "datastore URL of %s is longer than "
			   "%u bytes", path, DS_URL_MAX);
		return NULL;
	}
	return b.data;
}

/* The datacenter's inventory path without the leading '/'. */
static int resolve_datacenter(struct fy_vs_client *c, const char *given,
			      const char *ds, char **out)
{
	struct fy_vs_inventory *inv = NULL;
	const struct fy_vs_datastore *found = NULL;
	size_t i, n = 0;
	int rc = 0;

	*out = NULL;
	if (!given)
		given = c->datacenter;
	if (given) {
		while (*given == '/')
			given++;
		*out = strdup(given);
		return *out ? 0 : fy_err_set(-ENOMEM, "out of memory");
	}
	rc = fy_vs_inventory_get(c, false, &inv);
	if (rc < 0)
		return fy_err_wrap(rc, "finding the datacenter of datastore %s",
				   ds);
	for (i = 0; i < inv->n_datastores; i++)
		if (!strcmp(inv->datastores[i].name, ds)) {
			if (found && !vs_moref_eq(&found->datacenter,
						  &inv->datastores[i].datacenter))
				n++;
			if (!found)
				n++;
			found = &inv->datastores[i];
		}
	if (!found) {
		rc = fy_err_set(-ENOENT, "no datastore named %s on %s", ds,
				c->url);
		goto out;
	}
	if (n > 1) {
		rc = fy_err_set(-EEXIST, "datastores named %s exist in several "
				"datacenters: set ferry.vcenter.datacenter to "
				"the one to read from", ds);
		goto out;
	}
	for (i = 0; i < inv->n_datacenters; i++)
		if (vs_moref_eq(&inv->datacenters[i].moref, &found->datacenter)) {
			const char *p = inv->datacenters[i].path;

			while (*p == '/')
				p++;
			*out = strdup(p);
			if (!*out)
				rc = fy_err_set(-ENOMEM, "out of memory");
			goto out;
		}
	rc = fy_err_set(-ENOENT, "the datacenter of datastore %s (%s) is not "
			"in the inventory: set ferry.vcenter.datacenter", ds,
			found->datacenter.value);
out:
	fy_vs_inventory_free(inv);
	return rc;
}

/* ---- one transfer ------------------------------------------------------ */

/* Digits only (what HTTP allows in lengths), at most 18 of them: the
 * value fits an int64_t. */
static bool parse_dec(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; s[n] >= '0' && s[n] <= '9'; n++) {
		if (n == 18)
			return false;
		v = v * 10 + (uint64_t)(s[n] - '0');
	}
	*out = v;
	return n > 0 && s[n] == '\0';
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct xfer *x = opaque;
	size_t n = size * nmemb;

	/* An error page, or any answer to a PUT (no buffer), is counted,
	 * bounded and thrown away. */
	if (x->status < 200 || x->status > 299 || !x->buf) {
		x->got += n;
		return x->got > DS_ERROR_BODY_MAX ? 0 : n;
	}
	if (n > x->len - x->got) {
		x->overflow = true;
		return 0; /* aborts the transfer */
	}
	memcpy(x->buf + x->got, ptr, n);
	x->got += n;
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *opaque)
{
	struct xfer *x = opaque;
	size_t n = size * nitems, m;
	const char *v;

	if (n > 5 && !strncmp(buf, "HTTP/", 5)) {
		/* A new response (after a 100 Continue, say) starts over. */
		const char *sp = memchr(buf, ' ', n);

		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->content_range[0] = '\0';
		x->content_length = -1;
		x->got = 0;
	} else if (n > 14 && !strncasecmp(buf, "Content-Range:", 14)) {
		v = buf + 14;
		m = n - 14;
		while (m && (*v == ' ' || *v == '\t')) {
			v++;
			m--;
		}
		while (m && (v[m - 1] == '\r' || v[m - 1] == '\n' ||
			     v[m - 1] == ' '))
			m--;
		if (m >= sizeof(x->content_range))
			m = sizeof(x->content_range) - 1;
		memcpy(x->content_range, v, m);
		x->content_range[m] = '\0';
	} else if (n > 15 && !strncasecmp(buf, "Content-Length:", 15)) {
		char tmp[32];
		uint64_t len;

		v = buf + 15;
		m = n - 15;
		while (m && (*v == ' ' || *v == '\t')) {
			v++;
			m--;
		}
		while (m && (v[m - 1] == '\r' || v[m - 1] == '\n' ||
			     v[m - 1] == ' '))
			m--;
		if (m < sizeof(tmp)) {
			memcpy(tmp, v, m);
			tmp[m] = '\0';
			x->content_length = parse_dec(tmp, &len)
						    ? (int64_t)len
						    : -2; /* unparsable */
		} else {
			x->content_length = -2;
		}
	}
	return n;
}

/* Sets x's handle up for url: GET of len bytes at file_off (len 0: HEAD). */
static void xfer_setup(struct ds_source *s, struct xfer *x, const char *url)
{
	struct fy_vs_client *c = s->c;
	CURL *e = x->easy;
	char cookie[sizeof(c->cookie)], range[64];
	double login_time;

	curl_easy_reset(e);
	x->status = 0;
	x->got = 0;
	x->overflow = false;
	x->content_range[0] = '\0';
	x->content_length = -1;
	x->errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->request_timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->stall_seconds);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	vs_http_tls_setup(c, e, &x->tls);
	vs_session_get(c, cookie, sizeof(cookie), &x->generation, &login_time);
	if (cookie[0])
		curl_easy_setopt(e, CURLOPT_COOKIE, cookie);
	if (x->len == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else {
		snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64,
			 x->file_off, x->file_off + x->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	}
	explicit_bzero(cookie, sizeof(cookie));
}

/* What a finished transfer's failure was, as a sentence. */
static int xfer_curl_error(struct ds_source *s, struct xfer *x, CURLcode cc)
{
	const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc);

	if (vs_http_tls_failed(&x->tls, cc))
		return vs_http_tls_error(&x->tls, x->url, why);
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return fy_err_set(-ETIMEDOUT, "https: %s: no answer in time "
				  "reading %zu bytes at offset %" PRIu64 " (%s)",
				  x->label, x->len, x->file_off, why);
	return fy_err_set(-EIO, "https: %s: reading %zu bytes at offset %"
			  PRIu64 " failed: %s", x->label, x->len, x->file_off,
			  why);
}

/* 1: the session was refused and the request may go again after a
 * login; 0: x->buf holds exactly the range; else -errno. */
#define XFER_RELOGIN 1

static int xfer_check_range(struct ds_source *s, struct xfer *x, CURLcode cc)
{
	uint64_t a, b, total;
	char slash_total[32];

	if (x->status == 401 || x->status == 403) {
		if (!x->retried)
			return XFER_RELOGIN;
		return fy_err_set(-EACCES, "https: %s refused (HTTP %ld) even "
				  "after logging in again", x->label, x->status);
	}
	if (x->status == 404)
		return fy_err_set(-ENOENT, "https: %s not found (HTTP 404)",
				  x->label);
	if (x->status && x->status != 200 && x->status != 206)
		return fy_err_set(-EIO, "https: %s: HTTP %ld reading %zu bytes "
				  "at offset %" PRIu64, x->label, x->status,
				  x->len, x->file_off);
	/* Only a range that is the whole file may come back whole. */
	if (x->status == 200 &&
	    (x->file_off != 0 || x->len != x->ext->file_size))
		return fy_err_set(-EPROTO, "https: %s: the server ignored the "
				  "Range request (HTTP 200 for %zu bytes at "
				  "offset %" PRIu64 ")", x->label, x->len,
				  x->file_off);
	if (x->overflow)
		return fy_err_set(-EPROTO, "https: %s: the server sent more "
				  "than the %zu bytes asked for at offset %"
				  PRIu64, x->label, x->len, x->file_off);
	if (cc != CURLE_OK)
		return xfer_curl_error(s, x, cc);
	if (x->status == 200) {
		/* the whole file, checked above */
	} else if (x->status == 206) {
		if (sscanf(x->content_range, "bytes %" SCNu64 "-%" SCNu64 "/%31s",
			   &a, &b, slash_total) != 3)
			return fy_err_set(-EPROTO, "https: %s: HTTP 206 without a "
					  "usable Content-Range ('%s')", x->label,
					  x->content_range);
		if (a != x->file_off || b != x->file_off + x->len - 1)
			return fy_err_set(-EPROTO, "https: %s: asked for bytes %"
					  PRIu64 "-%" PRIu64 ", got '%s'",
					  x->label, x->file_off,
					  x->file_off + x->len - 1,
					  x->content_range);
		if (strcmp(slash_total, "*") &&
		    (!parse_dec(slash_total, &total) ||
		     total != x->ext->file_size))
			return fy_err_set(-EPROTO, "https: %s: Content-Range '%s' "
					  "names a file size other than the %"
					  PRIu64 " bytes HEAD gave", x->label,
					  x->content_range, x->ext->file_size);
	} else {
		return fy_err_set(-EPROTO, "https: %s: no HTTP status reading "
				  "%zu bytes at offset %" PRIu64, x->label,
				  x->len, x->file_off);
	}
	if (x->content_length != -1 && x->content_length != (int64_t)x->len)
		return fy_err_set(-EPROTO, "https: %s: Content-Length %" PRId64
				  " for a range of %zu bytes", x->label,
				  x->content_length, x->len);
	if (x->got != x->len)
		return fy_err_set(-EIO, "https: %s: short body: %zu of %zu "
				  "bytes at offset %" PRIu64, x->label, x->got,
				  x->len, x->file_off);
	return 0;
}

static int relogin(struct ds_source *s, uint64_t generation, long status)
{
	int rc;

	fy_info("https: %s: HTTP %ld, the session expired; logging in again",
		s->base.name, status);
	rc = vs_login(s->c, generation);
	if (rc < 0)
		return fy_err_wrap(rc, "https: %s: logging in again after HTTP "
				   "%ld", s->base.name, status);
	return 0;
}

/* Renews a session older than renew_seconds before it can expire under
 * a long read. */
static int maybe_renew(struct ds_source *s)
{
	char cookie[sizeof(s->c->cookie)];
	uint64_t gen;
	double t;
	int rc;

	if (!s->renew_seconds)
		return 0;
	vs_session_get(s->c, cookie, sizeof(cookie), &gen, &t);
	explicit_bzero(cookie, sizeof(cookie));
	if (fy_now() - t < s->renew_seconds)
		return 0;
	fy_info("https: session older than %u s; logging in again to renew it "
		"(ferry.https.sessionRenewSeconds)", s->renew_seconds);
	rc = vs_login(s->c, gen);
	return rc < 0 ? fy_err_wrap(rc, "https: renewing the session") : 0;
}

/* One request outside a batch, on slot 0: len bytes at 0 into buf, or a
 * HEAD when len is 0. A refused session logs in again once. */
static int single(struct ds_source *s, const char *url, const char *label,
		  uint8_t *buf, size_t len)
{
	struct xfer *x = &s->xfers[0];
	CURLcode cc;
	int attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		x->url = url;
		x->label = label;
		x->file_off = 0;
		x->len = len;
		x->buf = buf;
		x->retried = attempt > 0;
		xfer_setup(s, x, url);
		cc = curl_easy_perform(x->easy);
		if ((x->status == 401 || x->status == 403) && !x->retried) {
			int rc = relogin(s, x->generation, x->status);

			if (rc < 0)
				return rc;
			continue;
		}
		break;
	}
	if (x->status == 401 || x->status == 403)
		return fy_err_set(-EACCES, "https: %s refused (HTTP %ld) even "
				  "after logging in again", label, x->status);
	if (x->status == 404)
		return fy_err_set(-ENOENT, "https: %s not found (HTTP 404 from "
				  "%s)", label, url);
	if (x->status && x->status != 200 && x->status != 206)
		return fy_err_set(-EIO, "https: %s: HTTP %ld from %s", label,
				  x->status, url);
	/* Overflowing the buffer is how a too large descriptor shows. */
	if (cc != CURLE_OK && !(x->overflow && len))
		return xfer_curl_error(s, x, cc);
	return 0;
}

/* ---- reading ----------------------------------------------------------- */

struct batch {
	struct fy_io *ios;
	size_t n;
	size_t cur;        /* next io with bytes to request */
	uint64_t pos;      /* bytes of ios[cur] handled */
	int first_error;
};

static const struct ds_extent *find_extent(const struct ds_source *s,
					   uint64_t off)
{
	size_t lo = 0, hi = s->n_ext;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (off < s->ext[mid].start)
			hi = mid;
		else if (off >= s->ext[mid].start + s->ext[mid].length)
			lo = mid + 1;
		else
			return &s->ext[mid];
	}
	return NULL;
}

/* The next range to request into x; ZERO extents and bytes past the end
 * are filled on the way. false when the batch has nothing left. */
static bool next_piece(struct ds_source *s, struct batch *b, struct xfer *x)
{
	while (b->cur < b->n) {
		struct fy_io *io = &b->ios[b->cur];
		uint64_t want, off, n;
		const struct ds_extent *e;

		want = io->offset >= s->base.size ? 0
			: io->len < s->base.size - io->offset
				? io->len
				: s->base.size - io->offset;
		if (b->pos == 0 && want < io->len)
			memset((uint8_t *)io->buf + want, 0, io->len - want);
		if (b->pos >= want) {
			b->cur++;
			b->pos = 0;
			continue;
		}
		off = io->offset + b->pos;
		e = find_extent(s, off);
		if (!e) /* the extents cover the disk: cannot happen */
			return false;
		n = want - b->pos;
		if (n > e->start + e->length - off)
			n = e->start + e->length - off;
		if (!e->url) {
			memset((uint8_t *)io->buf + b->pos, 0, n);
			b->pos += n;
			continue;
		}
		if (n > s->request_size)
			n = s->request_size;
		x->ext = e;
		x->url = e->url;
		x->label = e->label;
		x->file_off = e->file_offset + (off - e->start);
		x->len = (size_t)n;
		x->buf = (uint8_t *)io->buf + b->pos;
		x->io = b->cur;
		x->retried = false;
		b->pos += n;
		return true;
	}
	return false;
}

static void fail_io(struct batch *b, size_t io, int rc)
{
	if (b->ios[io].result == 0)
		b->ios[io].result = rc;
	if (b->first_error == 0)
		b->first_error = rc;
}

static int ds_read_batch(struct fy_source *src, struct fy_io *ios, size_t n)
{
	struct ds_source *s = (struct ds_source *)src;
	struct batch b = { ios, n, 0, 0, 0 };
	bool *busy = NULL;
	unsigned active = 0, i;
	size_t k;
	int rc;

	for (k = 0; k < n; k++)
		ios[k].result = 0;
	pthread_mutex_lock(&s->lock);
	busy = calloc(s->n_xfers, sizeof(*busy));
	if (!busy) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	rc = maybe_renew(s);
	if (rc < 0)
		goto out;
	for (;;) {
		CURLMsg *msg;
		CURLMcode mc;
		int running = 0, left;

		/* Keep every slot busy while there is work and no error. */
		for (i = 0; i < s->n_xfers && !b.first_error; i++) {
			if (busy[i])
				continue;
			if (!next_piece(s, &b, &s->xfers[i]))
				break;
			xfer_setup(s, &s->xfers[i], s->xfers[i].url);
			curl_multi_add_handle(s->multi, s->xfers[i].easy);
			busy[i] = true;
			active++;
		}
		if (!active)
			break;
		mc = curl_multi_perform(s->multi, &running);
		if (mc != CURLM_OK) {
			fail_io(&b, 0, fy_err_set(-EIO, "https: %s: %s",
						  src->name,
						  curl_multi_strerror(mc)));
			break;
		}
		while ((msg = curl_multi_info_read(s->multi, &left))) {
			struct xfer *x = NULL;
			CURLcode cc = msg->data.result;
			int r;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
					  (char **)&x);
			curl_multi_remove_handle(s->multi, x->easy);
			i = (unsigned)(x - s->xfers);
			r = b.first_error ? -ECANCELED
					  : xfer_check_range(s, x, cc);
			if (r == XFER_RELOGIN) {
				r = relogin(s, x->generation, x->status);
				if (r == 0) {
					x->retried = true;
					xfer_setup(s, x, x->url);
					curl_multi_add_handle(s->multi, x->easy);
					continue;
				}
			}
			busy[i] = false;
			active--;
			if (r < 0)
				fail_io(&b, x->io, r);
		}
		if (b.first_error) {
			/* Stop what is still in flight: the batch failed. */
			for (i = 0; i < s->n_xfers; i++)
				if (busy[i]) {
					curl_multi_remove_handle(s->multi,
								 s->xfers[i].easy);
					fail_io(&b, s->xfers[i].io, -ECANCELED);
					busy[i] = false;
				}
			active = 0;
			break;
		}
		if (running)
			curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
	}
	rc = b.first_error;
	/* What was never requested did not happen either. */
	if (rc < 0)
		for (k = b.cur; k < n; k++)
			if (ios[k].result == 0)
				ios[k].result = -ECANCELED;
out:
	free(busy);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int ds_read(struct fy_source *src, void *buf, size_t len,
		   uint64_t offset)
{
	struct fy_io io = { buf, len, offset, 0 };

	return ds_read_batch(src, &io, 1);
}

static void ds_free(struct ds_source *s)
{
	unsigned i;
	size_t k;

	if (!s)
		return;
	for (i = 0; s->xfers && i < s->n_xfers; i++)
		if (s->xfers[i].easy)
			curl_easy_cleanup(s->xfers[i].easy);
	if (s->multi)
		curl_multi_cleanup(s->multi);
	for (k = 0; s->ext && k < s->n_ext; k++) {
		free(s->ext[k].url);
		free(s->ext[k].label);
	}
	free(s->ext);
	free(s->xfers);
	free(s->base_url);
	free(s->dc_query);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static void ds_close(struct fy_source *src)
{
	ds_free((struct ds_source *)src);
}

static const struct fy_source_ops ds_ops = {
	.name = "https",
	.read = ds_read,
	.read_batch = ds_read_batch,
	.close = ds_close,
};

/* ---- opening ----------------------------------------------------------- */

/* Fetches and checks the descriptor at path (dir/name.vmdk). */
static int load_descriptor(struct ds_source *s, const char *path,
			   struct fy_vmdk_descriptor *d)
{
	/* One byte more than a descriptor may hold tells "too large". */
	size_t cap = FY_VMDK_MAX_DESCRIPTOR + 1;
	uint8_t *buf = malloc(cap);
	struct xfer *x = &s->xfers[0];
	char *url = file_url(s, path);
	int rc;

	if (!buf || !url) {
		rc = url ? fy_err_set(-ENOMEM, "out of memory") : -ENAMETOOLONG;
		goto out;
	}
	rc = single(s, url, s->base.name, buf, cap);
	if (rc < 0)
		goto out;
	/* The answer may be the first cap bytes of something larger (206)
	 * or the whole file (200, cut at cap by the overflow check). */
	rc = fy_vmdk_parse((const char *)buf,
			   x->overflow ? cap : x->got, s->base.name, d);
	if (rc == 0 && x->status == 206) {
		const char *slash = strrchr(x->content_range, '/');
		uint64_t total;

		if (slash && parse_dec(slash + 1, &total) &&
		    total > FY_VMDK_MAX_DESCRIPTOR)
			rc = fy_err_set(-EFBIG, "%s is larger than %u bytes: not "
					"a VMDK text descriptor", s->base.name,
					FY_VMDK_MAX_DESCRIPTOR);
	}
	if (rc == 0)
		rc = fy_vmdk_check_flat(d, s->base.name);
out:
	free(url);
	free(buf);
	return rc;
}

/* The extents of d, their URLs and their files' sizes (HEAD). */
static int load_extents(struct ds_source *s, const char *ds,
			const char *path, const struct fy_vmdk_descriptor *d)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
	uint64_t start = 0;
	size_t i;
	int rc;

	s->ext = calloc(d->n_extents, sizeof(*s->ext));
	if (!s->ext)
		return fy_err_set(-ENOMEM, "out of memory");
	for (i = 0; i < d->n_extents; i++) {
		const struct fy_vmdk_extent *fe = &d->extents[i];
		struct ds_extent *e = &s->ext[s->n_ext++];
		char file[4096];

		e->start = start;
		e->length = fe->sectors * FY_VMDK_SECTOR;
		e->file_offset = fe->offset * FY_VMDK_SECTOR;
		start += e->length;
		if (fe->kind == FY_VMDK_ZERO)
			continue;
		if (dirlen + strlen(fe->file) >= sizeof(file))
			return fy_err_set(-ENAMETOOLONG, "extent path too long");
		snprintf(file, sizeof(file), "%.*s%s", (int)dirlen, path,
			 fe->file);
		e->url = file_url(s, file);
		if (!e->url)
			return -ENAMETOOLONG;
		if (asprintf(&e->label, "[%s] %s", ds, file) < 0) {
			e->label = NULL;
			return fy_err_set(-ENOMEM, "out of memory");
		}
		rc = single(s, e->url, e->label, NULL, 0);
		if (rc == -ENOENT)
			return fy_err_set(rc, "https: extent file %s of %s not "
					  "found (HTTP 404)", e->label,
					  s->base.name);
		if (rc < 0)
			return rc;
		if (s->xfers[0].content_length < 0)
			return fy_err_set(-EPROTO, "https: HEAD of %s gave no "
					  "usable Content-Length", e->label);
		e->file_size = (uint64_t)s->xfers[0].content_length;
		if (e->file_offset > e->file_size ||
		    e->length > e->file_size - e->file_offset)
			return fy_err_set(-EIO, "https: extent file %s is %"
					  PRIu64 " bytes, shorter than the %"
					  PRIu64 " its descriptor %s needs",
					  e->label, e->file_size,
					  e->file_offset + e->length,
					  s->base.name);
	}
	return 0;
}

int fy_vs_datastore_source_open(struct fy_vs_client *c,
				const char *datacenter_path,
				const char *ds_file,
				const struct fy_vs_ds_opts *opts,
				struct fy_source **out)
{
	struct fy_vmdk_descriptor *d = NULL;
	struct fy_vs_ds_opts o;
	struct ds_source *s;
	char ds[256], path[2048], *dc = NULL;
	struct vs_buf q;
	unsigned i;
	int rc;

	*out = NULL;
	if (opts)
		o = *opts;
	else
		fy_vs_ds_opts_default(&o);
	if (o.max_in_flight < 1 || o.max_in_flight > DS_MAX_IN_FLIGHT ||
	    o.request_size < DS_MIN_REQUEST || o.request_size > DS_MAX_REQUEST)
		return fy_err_set(-EINVAL, "https: max_in_flight 1..%d and "
				  "request_size 64K..64M", DS_MAX_IN_FLIGHT);
	rc = fy_vs_ds_path_split(ds_file, ds, sizeof(ds), path, sizeof(path));
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	d = calloc(1, sizeof(*d));
	if (!s || !d) {
		free(s);
		free(d);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	pthread_mutex_init(&s->lock, NULL);
	s->base.ops = &ds_ops;
	s->base.align = 1;
	snprintf(s->base.name, sizeof(s->base.name), "%s", ds_file);
	s->c = c;
	s->request_size = (size_t)o.request_size;
	s->renew_seconds = o.renew_seconds;
	s->n_xfers = o.max_in_flight;
	s->xfers = calloc(s->n_xfers, sizeof(*s->xfers));
	s->multi = curl_multi_init();
	s->base_url = base_url(c);
	if (!s->xfers || !s->multi || !s->base_url) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	for (i = 0; i < s->n_xfers; i++)
		if (!(s->xfers[i].easy = curl_easy_init())) {
			rc = fy_err_set(-ENOMEM, "cannot create a curl handle");
			goto fail;
		}
	curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			  (long)s->n_xfers);
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)s->n_xfers);

	rc = resolve_datacenter(c, datacenter_path, ds, &dc);
	if (rc < 0)
		goto fail;
	vs_buf_init(&q, DS_URL_MAX);
	vs_buf_str(&q, "?dcPath=");
	url_escape(&q, dc, false);
	vs_buf_str(&q, "&dsName=");
	url_escape(&q, ds, false);
	if (q.err) {
		vs_buf_release(&q);
		rc = fy_err_set(-ENAMETOOLONG, "datacenter path too long");
		goto fail;
	}
	s->dc_query = q.data;

	rc = maybe_renew(s);
	if (rc < 0)
		goto fail;
	rc = load_descriptor(s, path, d);
	if (rc < 0)
		goto fail;
	rc = load_extents(s, ds, path, d);
	if (rc < 0)
		goto fail;
	s->base.size = d->capacity;
	fy_info("https: %s: %" PRIu64 " bytes in %zu extent(s) of %s "
		"(datacenter %s), %u requests of up to %zu bytes at once",
		ds_file, d->capacity, d->n_extents,
		d->create_type, dc, s->n_xfers, s->request_size);
	free(dc);
	free(d);
	*out = &s->base;
	return 0;
fail:
	free(dc);
	free(d);
	ds_free(s);
	return rc;
}

/* ---- which VM owns a disk file ----------------------------------------- */

int fy_vs_find_disk_vm(struct fy_vs_client *c, const char *ds_file,
		       struct fy_vs_moref *vm)
{
	struct fy_vs_inventory *inv = NULL;
	size_t i, j, k, found = 0;
	char names[512] = "";
	int rc;

	rc = fy_vs_inventory_get(c, true, &inv);
	if (rc < 0)
		return fy_err_wrap(rc, "finding the VM of %s", ds_file);
	for (i = 0; i < inv->n_vms; i++) {
		const struct fy_vs_vm *v = inv->vms[i];
		bool mine = false;

		for (j = 0; j < v->devices.n_disks && !mine; j++)
			for (k = 0; k < v->devices.disks[j].chain_len; k++)
				if (!strcmp(v->devices.disks[j].chain[k].file_name,
					    ds_file))
					mine = true;
		if (!mine)
			continue;
		if (found++ == 0)
			*vm = vs_typed(&v->moref, "VirtualMachine");
		snprintf(names + strlen(names), sizeof(names) - strlen(names),
			 "%s%s (%s)", found > 1 ? ", " : "", v->name,
			 v->moref.value);
	}
	fy_vs_inventory_free(inv);
	if (found == 0)
		return fy_err_set(-ENOENT, "no VM on %s has %s in its disks' "
				  "backing chains", c->url, ds_file);
	if (found > 1)
		return fy_err_set(-EEXIST, "several VMs have %s in their disks' "
				  "backing chains: %s", ds_file, names);
	return 0;
}

/* ---- writing a whole disk: PUT of its flat file ------------------------- */

struct fy_vs_ds_put {
	struct ds_source *s;        /* descriptor and extent, slot 0 */
	const struct ds_extent *e;
	int rfd, wfd;               /* the pipe the restore writes into */
	pthread_t thread;
	bool started;
	atomic_bool abort;          /* set before the write end closes */
	atomic_bool ended;          /* the upload ended by itself */
	CURLcode cc;
	uint64_t sent;
};

static size_t put_read(char *buf, size_t size, size_t nitems, void *opaque)
{
	struct fy_vs_ds_put *p = opaque;
	ssize_t n;

	for (;;) {
		n = read(p->rfd, buf, size * nitems);
		if (n >= 0 || errno != EINTR)
			break;
	}
	if (n < 0 || atomic_load(&p->abort))
		return CURL_READFUNC_ABORT;
	/* A short body (the writer stopped early) is an error curl reports
	 * against the announced length. */
	p->sent += (uint64_t)n;
	return (size_t)n;
}

static void *put_thread(void *opaque)
{
	struct fy_vs_ds_put *p = opaque;
	struct xfer *x = &p->s->xfers[0];
	struct curl_slist *hdr;
	CURL *e = x->easy;

	x->url = p->e->url;
	x->label = p->e->label;
	x->file_off = 0;
	x->len = 0;
	x->buf = NULL;
	xfer_setup(p->s, x, p->e->url);
	hdr = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, put_read);
	curl_easy_setopt(e, CURLOPT_READDATA, p);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
			 (curl_off_t)p->e->file_size);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
	/* A whole disk takes as long as it takes; a stall still ends it. */
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
	p->cc = curl_easy_perform(e);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	/* Whatever happened, the writer must not block on a full pipe. */
	atomic_store(&p->ended, true);
	close(p->rfd);
	p->rfd = -1;
	return NULL;
}

int fy_vs_datastore_put_open(struct fy_vs_client *c,
			     const char *datacenter_path, const char *ds_file,
			     uint64_t size, int *fd, struct fy_vs_ds_put **out)
{
	struct fy_vs_ds_opts o;
	struct fy_vs_ds_put *p;
	struct fy_source *src = NULL;
	int pfd[2], rc;

	*out = NULL;
	*fd = -1;
	fy_vs_ds_opts_default(&o);
	o.max_in_flight = 1;
	rc = fy_vs_datastore_source_open(c, datacenter_path, ds_file, &o, &src);
	if (rc < 0)
		return rc;
	p = calloc(1, sizeof(*p));
	if (!p) {
		src->ops->close(src);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	p->s = (struct ds_source *)src;
	p->rfd = p->wfd = -1;
	if (p->s->n_ext != 1 || !p->s->ext[0].url ||
	    p->s->ext[0].file_offset != 0 ||
	    p->s->ext[0].file_size != p->s->ext[0].length) {
		rc = fy_err_set(-ENOTSUP, "https: %s is not one flat file of "
				"the disk's size; writing it over https is not "
				"supported", ds_file);
		goto fail;
	}
	p->e = &p->s->ext[0];
	if (p->e->length != size) {
		rc = fy_err_set(-EINVAL, "https: %s holds %" PRIu64 " bytes, "
				"the backup's disk %" PRIu64, ds_file,
				p->e->length, size);
		goto fail;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		rc = fy_err_set(-errno, "pipe: %s", strerror(errno));
		goto fail;
	}
	p->rfd = pfd[0];
	p->wfd = pfd[1];
	/* Larger pipe writes, fewer wakeups (best effort). */
	(void)fcntl(p->wfd, F_SETPIPE_SZ, 1 << 20);
	rc = -pthread_create(&p->thread, NULL, put_thread, p);
	if (rc < 0) {
		rc = fy_err_set(rc, "cannot start the upload thread");
		goto fail;
	}
	p->started = true;
	fy_info("https: writing %s (%" PRIu64 " bytes) by PUT of %s",
		ds_file, size, p->e->label);
	*fd = p->wfd;
	*out = p;
	return 0;
fail:
	if (p->rfd >= 0)
		close(p->rfd);
	if (p->wfd >= 0)
		close(p->wfd);
	ds_free(p->s);
	free(p);
	return rc;
}

/* What the upload's own end says, as an error (0: the server took it). */
static int put_outcome(struct fy_vs_ds_put *p)
{
	struct xfer *x = &p->s->xfers[0];

	if (p->cc != CURLE_OK) {
		const char *why = x->errbuf[0] ? x->errbuf
					       : curl_easy_strerror(p->cc);

		if (vs_http_tls_failed(&x->tls, p->cc))
			return vs_http_tls_error(&x->tls, x->url, why);
		return fy_err_set(p->cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
								    : -EIO,
				  "https: PUT of %s failed after %" PRIu64
				  " of %" PRIu64 " bytes%s%.0ld: %s",
				  p->e->label, p->sent, p->e->length,
				  x->status ? ", HTTP " : "", x->status, why);
	}
	if (x->status != 200 && x->status != 201 && x->status != 204)
		return fy_err_set(x->status == 401 || x->status == 403
					  ? -EACCES
				  : x->status == 404 ? -ENOENT
						     : -EIO,
				  "https: PUT of %s: HTTP %ld", p->e->label,
				  x->status);
	if (p->sent != p->e->length)
		return fy_err_set(-EIO, "https: PUT of %s sent %" PRIu64 " of %"
				  PRIu64 " bytes", p->e->label, p->sent,
				  p->e->length);
	return 0;
}

int fy_vs_datastore_put_finish(struct fy_vs_ds_put *p, bool ok)
{
	bool by_itself;
	int rc;

	if (!p)
		return 0;
	/* An upload that ended before the writer gave up is the cause of
	 * the writer's failure (EPIPE): its error is the one to report. */
	by_itself = atomic_load(&p->ended);
	if (!ok)
		atomic_store(&p->abort, true);
	if (p->wfd >= 0)
		close(p->wfd);
	pthread_join(p->thread, NULL);
	if (!ok && !by_itself) {
		rc = -ECANCELED;
	} else {
		rc = put_outcome(p);
		if (rc == 0 && !ok)
			rc = -ECANCELED;
	}
	if (rc == 0)
		fy_info("https: wrote %s (%" PRIu64 " bytes)", p->e->label,
			p->sent);
	ds_free(p->s);
	free(p);
	return rc;
}
