/*
 * What the S3 client is told before it connects: the endpoint and bucket
 * (checked here, once, for every caller) and the credentials, from a file
 * only its owner may read or from the environment. No message written
 * here ever quotes a credential, only the file and line it came from.
 */
#include "s3/s3_int.h"

#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* A credentials file holds two short lines and comments. */
#define CREDENTIALS_FILE_MAX (64u << 10)

bool s3_valid_bucket(const char *name)
{
	size_t len = strlen(name), i;

	if (len < 3 || len > FY_S3_BUCKET_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && c != '.' && c != '-')
			return false;
		if ((i == 0 || i == len - 1) && !alnum)
			return false;
	}
	return true;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static int parse_port(const char *s, size_t len)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return v >= 1 && v <= 65535 ? 0 : -EINVAL;
}

int s3_parse_endpoint(const char *url, struct s3_endpoint *ep)
{
	const char *p, *end, *port = NULL;
	size_t alen, hlen;
	struct in6_addr a6;
	struct in_addr a4;

	memset(ep, 0, sizeof(*ep));
	if (!strncasecmp(url, "https://", 8)) {
		ep->https = true;
		p = url + 8;
	} else if (!strncasecmp(url, "http://", 7)) {
		p = url + 7;
	} else {
		return fy_err_set(-EINVAL,
				  "s3: \"%.200s\" is not an https:// URL", url);
	}
	end = p + strcspn(p, "/");
	alen = (size_t)(end - p);
	if (alen == 0 || alen >= sizeof(ep->authority))
		return fy_err_set(-EINVAL, "s3: \"%.200s\" has no host", url);
	memcpy(ep->authority, p, alen);
	ep->authority[alen] = '\0';
	ep->rest = end;
	if (strpbrk(ep->authority, "@?# \t\r\n"))
		return fy_err_set(-EINVAL,
				  "s3: the host part of \"%.200s\" may not hold user information, a query or spaces",
				  url);
	if (ep->authority[0] == '[') {
		const char *close = strchr(ep->authority, ']');

		if (!close)
			return fy_err_set(-EINVAL,
					  "s3: \"%.200s\": unclosed [ in the host",
					  url);
		hlen = (size_t)(close - ep->authority - 1);
		memcpy(ep->host, ep->authority + 1, hlen);
		ep->host[hlen] = '\0';
		if (inet_pton(AF_INET6, ep->host, &a6) != 1)
			return fy_err_set(-EINVAL,
					  "s3: \"%.200s\": [%s] is not an IPv6 address",
					  url, ep->host);
		ep->ip_literal = true;
		ep->loopback = IN6_IS_ADDR_LOOPBACK(&a6);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return fy_err_set(-EINVAL,
					  "s3: \"%.200s\": junk after the IPv6 address",
					  url);
	} else {
		const char *colon = strchr(ep->authority, ':');
		size_t i;

		hlen = colon ? (size_t)(colon - ep->authority) : alen;
		memcpy(ep->host, ep->authority, hlen);
		ep->host[hlen] = '\0';
		if (hlen == 0)
			return fy_err_set(-EINVAL, "s3: \"%.200s\" has no host",
					  url);
		for (i = 0; i < hlen; i++)
			if (!host_char(ep->host[i]))
				return fy_err_set(-EINVAL,
						  "s3: \"%.200s\": \"%s\" is not a host name or address",
						  url, ep->host);
		if (inet_pton(AF_INET, ep->host, &a4) == 1) {
			ep->ip_literal = true;
			ep->loopback = (ntohl(a4.s_addr) >> 24) == 127;
		} else {
			ep->loopback = !strcasecmp(ep->host, "localhost");
		}
		if (colon)
			port = colon + 1;
	}
	if (port && parse_port(port, strlen(port)) < 0)
		return fy_err_set(-EINVAL,
				  "s3: \"%.200s\": the port must be a number from 1 to 65535",
				  url);
	if (!ep->https && !ep->loopback)
		return fy_err_set(-EINVAL,
				  "s3: \"%.200s\": plain http:// is allowed only for a loopback host (127.0.0.0/8, ::1, localhost); use https://",
				  url);
	return 0;
}

int fy_s3_parse_url(const char *url, struct fy_s3_config *cfg)
{
	struct s3_endpoint ep;
	const char *bucket;
	size_t blen, prefix;
	int rc;

	rc = s3_parse_endpoint(url, &ep);
	if (rc < 0)
		return rc;
	if (ep.rest[0] != '/' || ep.rest[1] == '\0')
		return fy_err_set(-EINVAL,
				  "s3: \"%.200s\" names no bucket: the form is https://HOST[:PORT]/BUCKET",
				  url);
	bucket = ep.rest + 1;
	blen = strcspn(bucket, "/");
	if (bucket[blen] == '/' && bucket[blen + 1] != '\0')
		return fy_err_set(-EINVAL,
				  "s3: \"%.200s\" has a path after the bucket: the form is https://HOST[:PORT]/BUCKET",
				  url);
	if (blen > FY_S3_BUCKET_MAX)
		return fy_err_set(-EINVAL,
				  "s3: the bucket name in \"%.200s\" is longer than %d characters",
				  url, FY_S3_BUCKET_MAX);
	prefix = (size_t)(ep.rest - url);
	memcpy(cfg->bucket, bucket, blen);
	cfg->bucket[blen] = '\0';
	if (!s3_valid_bucket(cfg->bucket)) {
		rc = fy_err_set(-EINVAL,
				"s3: \"%s\" is not a bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit",
				cfg->bucket);
		cfg->bucket[0] = '\0';
		return rc;
	}
	memcpy(cfg->endpoint, url, prefix);
	cfg->endpoint[prefix] = '\0';
	return 0;
}

/* Copies one credential, refusing one that does not fit. */
static int set_secret(char *dst, const char *value, size_t len,
		      const char *what, const char *origin)
{
	if (len == 0)
		return fy_err_set(-EINVAL, "s3: %s: %s is empty", origin, what);
	if (len >= FY_S3_SECRET_MAX)
		return fy_err_set(-EINVAL,
				  "s3: %s: %s is longer than %d bytes", origin,
				  what, FY_S3_SECRET_MAX - 1);
	memcpy(dst, value, len);
	dst[len] = '\0';
	return 0;
}

static int parse_credentials(struct fy_s3_config *cfg, const char *path,
			     char *text, size_t len)
{
	bool have_id = false, have_secret = false;
	char *line = text, *next, origin[4200];
	unsigned lineno = 0;
	int rc;

	for (; line < text + len; line = next) {
		char *end = memchr(line, '\n', (size_t)(text + len - line));
		char *eq, *name, *value;
		size_t nlen, vlen;

		next = end ? end + 1 : text + len;
		if (!end)
			end = text + len;
		lineno++;
		snprintf(origin, sizeof(origin), "%s:%u", path, lineno);
		while (line < end && (*line == ' ' || *line == '\t'))
			line++;
		while (end > line && (end[-1] == ' ' || end[-1] == '\t' ||
				      end[-1] == '\r'))
			end--;
		if (line == end || *line == '#')
			continue;
		eq = memchr(line, '=', (size_t)(end - line));
		if (!eq)
			return fy_err_set(-EINVAL,
					  "s3: %s: not a NAME=VALUE line",
					  origin);
		name = line;
		nlen = (size_t)(eq - line);
		while (nlen && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
			nlen--;
		value = eq + 1;
		while (value < end && (*value == ' ' || *value == '\t'))
			value++;
		vlen = (size_t)(end - value);
		if (nlen == 13 && !memcmp(name, "access_key_id", 13)) {
			rc = set_secret(cfg->access_key, value, vlen,
					"access_key_id", origin);
			have_id = true;
		} else if (nlen == 17 && !memcmp(name, "secret_access_key", 17)) {
			rc = set_secret(cfg->secret_key, value, vlen,
					"secret_access_key", origin);
			have_secret = true;
		} else {
			rc = fy_err_set(-EINVAL,
					"s3: %s: unknown name \"%.*s\" (access_key_id or secret_access_key)",
					origin, (int)(nlen > 64 ? 64 : nlen),
					name);
		}
		if (rc < 0)
			return rc;
	}
	if (!have_id || !have_secret)
		return fy_err_set(-EINVAL, "s3: %s has no %s line", path,
				  have_id ? "secret_access_key" :
					    "access_key_id");
	return 0;
}

static int load_file(struct fy_s3_config *cfg, const char *path)
{
	char *text = NULL;
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return fy_err_set(-errno, "s3: cannot open the credentials file %s: %s",
				  path, strerror(errno));
	/* Checked on the descriptor read, so the file cannot be swapped
	 * between the check and the read. */
	if (fstat(fd, &st) < 0) {
		rc = fy_err_set(-errno, "s3: %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = fy_err_set(-EINVAL,
				"s3: the credentials file %s is not a regular file",
				path);
		goto out;
	}
	if (st.st_mode & 077) {
		rc = fy_err_set(-EACCES,
				"s3: the credentials file %s has mode %04o: group and others may not have any access to it (chmod 600 %s)",
				path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		rc = fy_err_set(-EACCES,
				"s3: the credentials file %s belongs to user %u, not to this process's user %u",
				path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	if (st.st_size > (off_t)CREDENTIALS_FILE_MAX) {
		rc = fy_err_set(-EFBIG,
				"s3: the credentials file %s is over %u bytes",
				path, CREDENTIALS_FILE_MAX);
		goto out;
	}
	text = malloc(CREDENTIALS_FILE_MAX + 1);
	if (!text) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	while (len < CREDENTIALS_FILE_MAX) {
		n = read(fd, text + len, CREDENTIALS_FILE_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = fy_err_set(-errno, "s3: reading %s: %s", path,
					strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	rc = parse_credentials(cfg, path, text, len);
out:
	if (text) {
		OPENSSL_cleanse(text, CREDENTIALS_FILE_MAX + 1);
		free(text);
	}
	close(fd);
	return rc;
}

int fy_s3_load_credentials(struct fy_s3_config *cfg, const char *file)
{
	const char *id, *secret;
	int rc;

	if (file) {
		rc = load_file(cfg, file);
		if (rc < 0) {
			OPENSSL_cleanse(cfg->access_key, sizeof(cfg->access_key));
			OPENSSL_cleanse(cfg->secret_key, sizeof(cfg->secret_key));
		}
		return rc;
	}
	id = getenv("AWS_ACCESS_KEY_ID");
	secret = getenv("AWS_SECRET_ACCESS_KEY");
	if (!id || !*id || !secret || !*secret)
		return fy_err_set(-ENOENT,
				  "s3: no credentials: give a credentials file (access_key_id=, secret_access_key=; mode 0600) or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	rc = set_secret(cfg->access_key, id, strlen(id), "the access key",
			"AWS_ACCESS_KEY_ID");
	if (rc == 0)
		rc = set_secret(cfg->secret_key, secret, strlen(secret),
				"the secret key", "AWS_SECRET_ACCESS_KEY");
	return rc;
}
