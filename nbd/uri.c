/*
 * NBD URIs as the NBD project's doc/uri.md defines them:
 *   nbd[s]://host[:port]/export[?tls-hostname=NAME]
 *   nbd[s]+unix:///export?socket=PATH[&tls-hostname=NAME]
 * Every part is bounded; a malformed URI gets one message naming the
 * part that is wrong.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "nbd/nbd_int.h"

struct scheme {
	const char *prefix;
	bool tls;
	bool unix_socket;
};

static const struct scheme schemes[] = {
	{ "nbd://", false, false },
	{ "nbds://", true, false },
	{ "nbd+unix://", false, true },
	{ "nbds+unix://", true, true },
};

static const struct scheme *find_scheme(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncasecmp(s, schemes[i].prefix,
				 strlen(schemes[i].prefix)))
			return &schemes[i];
	return NULL;
}

bool fy_nbd_is_uri(const char *s)
{
	return s && find_scheme(s) != NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes in[0..len) into out (outsize bytes with the NUL).
 * NUL bytes are refused: NBD strings and socket paths cannot hold them. */
static int decode(const char *in, size_t len, char *out, size_t outsize,
		  const char *what)
{
	size_t i, o = 0;
	int hi, lo;
	char c;

	for (i = 0; i < len; i++) {
		c = in[i];
		if (c == '%') {
			hi = i + 2 < len ? hexval(in[i + 1]) : -1;
			lo = i + 2 < len ? hexval(in[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return fy_err_set(-EINVAL,
						  "nbd: bad percent escape in "
						  "the URI's %s",
						  what);
			c = (char)(hi << 4 | lo);
			if (c == '\0')
				return fy_err_set(-EINVAL,
						  "nbd: the URI's %s contains "
						  "%%00",
						  what);
			i += 2;
		} else if ((unsigned char)c < 0x20 || c == 0x7f) {
			return fy_err_set(-EINVAL,
					  "nbd: control character in the "
					  "URI's %s",
					  what);
		}
		if (o + 1 >= outsize)
			return fy_err_set(-EINVAL,
					  "nbd: the URI's %s is longer than "
					  "%zu bytes",
					  what, outsize - 1);
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

static int parse_port(const char *s, size_t len, char *out, size_t outsize)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		goto bad;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			goto bad;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		goto bad;
	if (len >= outsize)
		goto bad;
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
bad:
	return fy_err_set(-EINVAL, "nbd: bad port '%.*s' in URI (1-65535)",
			  (int)(len > 16 ? 16 : len), s);
}

static int parse_authority(const char *a, size_t len, struct nbd_uri *out)
{
	const char *colon = NULL, *end = a + len, *p;
	size_t hostlen;
	int rc;

	if (memchr(a, '@', len))
		return fy_err_set(-EINVAL, "nbd: user names in NBD URIs are "
				  "not supported");
	if (out->unix_socket) {
		if (len)
			return fy_err_set(-EINVAL,
					  "nbd: a Unix socket URI names no "
					  "host (write nbd+unix:///export"
					  "?socket=PATH)");
		return 0;
	}
	if (len == 0)
		return fy_err_set(-EINVAL, "nbd: the URI names no host");

	if (a[0] == '[') {
		p = memchr(a, ']', len);
		if (!p)
			return fy_err_set(-EINVAL, "nbd: unclosed '[' in the "
					  "URI's host");
		hostlen = (size_t)(p - a - 1);
		if (hostlen == 0 || hostlen >= sizeof(out->host))
			return fy_err_set(-EINVAL, "nbd: bad IPv6 address in "
					  "URI");
		memcpy(out->host, a + 1, hostlen);
		out->host[hostlen] = '\0';
		if (strspn(out->host, "0123456789abcdefABCDEF:.%") != hostlen)
			return fy_err_set(-EINVAL, "nbd: bad IPv6 address "
					  "'%s' in URI", out->host);
		p++;
		if (p < end && *p != ':')
			return fy_err_set(-EINVAL, "nbd: junk after ']' in the "
					  "URI's host");
		colon = p < end ? p : NULL;
	} else {
		colon = memchr(a, ':', len);
		hostlen = colon ? (size_t)(colon - a) : len;
		if (hostlen == 0)
			return fy_err_set(-EINVAL,
					  "nbd: the URI names no host");
		rc = decode(a, hostlen, out->host, sizeof(out->host), "host");
		if (rc)
			return rc;
		if (strpbrk(out->host, " /?#[]:@"))
			return fy_err_set(-EINVAL, "nbd: bad host '%s' in URI",
					  out->host);
	}
	if (colon)
		return parse_port(colon + 1, (size_t)(end - colon - 1),
				  out->port, sizeof(out->port));
	snprintf(out->port, sizeof(out->port), "%d", FY_NBD_DEFAULT_PORT);
	return 0;
}

static int parse_query(const char *q, struct nbd_uri *out, bool *have_socket)
{
	const char *p = q, *amp, *eq;
	size_t len, klen;
	bool have_hostname = false;
	int rc;

	while (*p) {
		amp = strchr(p, '&');
		len = amp ? (size_t)(amp - p) : strlen(p);
		eq = memchr(p, '=', len);
		if (!eq)
			return fy_err_set(-EINVAL, "nbd: URI query part '%.*s' "
					  "has no '='",
					  (int)(len > 64 ? 64 : len), p);
		klen = (size_t)(eq - p);
		if (klen == 6 && !memcmp(p, "socket", 6)) {
			if (*have_socket)
				return fy_err_set(-EINVAL, "nbd: socket= given "
						  "twice in URI");
			if (!out->unix_socket)
				return fy_err_set(-EINVAL,
						  "nbd: socket= belongs in "
						  "nbd+unix:// URIs only");
			rc = decode(eq + 1, len - klen - 1, out->socket,
				    sizeof(out->socket), "socket path");
			if (rc)
				return rc;
			*have_socket = true;
		} else if (klen == 12 && !memcmp(p, "tls-hostname", 12)) {
			if (have_hostname)
				return fy_err_set(-EINVAL, "nbd: tls-hostname= "
						  "given twice in URI");
			rc = decode(eq + 1, len - klen - 1, out->tls_hostname,
				    sizeof(out->tls_hostname), "tls-hostname");
			if (rc)
				return rc;
			have_hostname = true;
		} else {
			return fy_err_set(-EINVAL,
					  "nbd: unknown URI query parameter "
					  "'%.*s' (known: socket, "
					  "tls-hostname)",
					  (int)(klen > 64 ? 64 : klen), p);
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return 0;
}

int nbd_uri_parse(const char *uri, struct nbd_uri *out)
{
	const struct scheme *sc;
	const char *p, *auth, *path, *query;
	size_t len;
	bool have_socket = false;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!uri)
		return fy_err_set(-EINVAL, "nbd: no URI given");
	len = strnlen(uri, NBD_MAX_URI + 1);
	if (len > NBD_MAX_URI)
		return fy_err_set(-EINVAL, "nbd: URI longer than %d bytes",
				  NBD_MAX_URI);
	sc = find_scheme(uri);
	if (!sc)
		return fy_err_set(-EINVAL,
				  "nbd: '%.64s' is not an NBD URI (nbd://, "
				  "nbds://, nbd+unix://, nbds+unix://)",
				  uri);
	out->tls = sc->tls;
	out->unix_socket = sc->unix_socket;
	if (strchr(uri, '#'))
		return fy_err_set(-EINVAL, "nbd: URI fragments ('#') are not "
				  "allowed");

	auth = uri + strlen(sc->prefix);
	p = auth + strcspn(auth, "/?");
	rc = parse_authority(auth, (size_t)(p - auth), out);
	if (rc)
		return rc;

	path = p;
	query = strchr(path, '?');
	if (*path == '/') {
		len = query ? (size_t)(query - path) : strlen(path);
		rc = decode(path + 1, len - 1, out->export_name,
			    sizeof(out->export_name), "export name");
		if (rc)
			return rc;
	}
	if (query) {
		rc = parse_query(query + 1, out, &have_socket);
		if (rc)
			return rc;
	}
	if (out->unix_socket && !have_socket)
		return fy_err_set(-EINVAL, "nbd: a Unix socket URI needs "
				  "?socket=PATH");
	if (out->unix_socket && !out->socket[0])
		return fy_err_set(-EINVAL, "nbd: empty socket path in URI");
	return 0;
}
