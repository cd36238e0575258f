/*
 * AWS Signature Version 4, as S3 wants it: the canonical request (method,
 * path as sent, canonical query, lower-cased trimmed headers, the signed
 * header list, the payload hash), the string to sign, and the HMAC-SHA256
 * chain from "AWS4" + secret through date, region, service and
 * "aws4_request". S3 differs from the other services in one place: the path
 * is signed as sent, never normalised or encoded a second time.
 *
 * Also the digests every body needs (SHA-256 for x-amz-content-sha256, MD5
 * for Content-MD5), since they are part of what gets signed.
 */
#include "s3/s3_int.h"

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Bounds on one request's signed parts. */
#define SIGV4_HEADERS_MAX 32
#define SIGV4_PARAMS_MAX 64
#define SIGV4_CANONICAL_MAX 16384

/* A bounded string builder: an append that does not fit sets overflow and
 * keeps what fitted, so the caller checks once at the end. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool overflow;
};

static void sbuf_init(struct sbuf *b, char *p, size_t cap)
{
	b->p = p;
	b->len = 0;
	b->cap = cap;
	b->overflow = cap == 0;
	if (cap)
		p[0] = '\0';
}

static void sbuf_addn(struct sbuf *b, const char *s, size_t n)
{
	if (b->overflow)
		return;
	if (n >= b->cap - b->len) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sbuf_add(struct sbuf *b, const char *s)
{
	sbuf_addn(b, s, strlen(s));
}

static bool is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

static void encode_into(struct sbuf *b, const char *in, size_t n,
			bool keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		char esc[3];

		if (is_unreserved(c) || (keep_slash && c == '/')) {
			sbuf_addn(b, (const char *)&in[i], 1);
			continue;
		}
		esc[0] = '%';
		esc[1] = digits[c >> 4];
		esc[2] = digits[c & 0xf];
		sbuf_addn(b, esc, 3);
	}
}

int fy_s3_uri_encode(const char *in, bool keep_slash, char *out,
		     size_t out_len)
{
	struct sbuf b;

	sbuf_init(&b, out, out_len);
	encode_into(&b, in, strlen(in), keep_slash);
	if (b.overflow)
		return fy_err_set(-ENAMETOOLONG,
				  "s3: %zu bytes do not fit in %zu once URI-encoded",
				  strlen(in), out_len);
	return 0;
}

/* Percent-decodes in[0..n) into out (at most n bytes); a '%' not followed
 * by two hex digits stays as it is. Returns the decoded length. */
static size_t percent_decode(const char *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (in[i] == '%' && i + 2 < n) {
			int hi = fy_hex_digit(in[i + 1]), lo = fy_hex_digit(in[i + 2]);

			if (hi >= 0 && lo >= 0) {
				out[o++] = (char)(hi << 4 | lo);
				i += 2;
				continue;
			}
		}
		out[o++] = in[i];
	}
	return o;
}

struct canon_param {
	char *name, *value; /* encoded, NUL-terminated, in the scratch */
};

static int param_cmp(const void *a, const void *b)
{
	const struct canon_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* Decodes one query component and encodes it again into the scratch
 * area, each string followed by its own NUL; NULL when it does not fit. */
static char *scratch_encode(struct sbuf *scratch, const char *s, size_t n,
			    char *tmp)
{
	size_t start = scratch->len;

	encode_into(scratch, tmp, percent_decode(s, n, tmp), false);
	if (scratch->overflow || scratch->cap - scratch->len < 2) {
		scratch->overflow = true;
		return NULL;
	}
	scratch->len++; /* past this string's NUL */
	scratch->p[scratch->len] = '\0';
	return scratch->p + start;
}

static int canonical_query(const char *query, struct sbuf *out)
{
	struct canon_param params[SIGV4_PARAMS_MAX];
	char scratch_mem[SIGV4_CANONICAL_MAX];
	char *tmp = NULL;
	struct sbuf scratch;
	size_t n = 0, i, qlen;
	const char *p, *end;
	int rc = 0;

	if (!query || !*query)
		return 0;
	qlen = strlen(query);
	tmp = malloc(qlen + 1);
	if (!tmp)
		return fy_err_set(-ENOMEM, "out of memory");
	sbuf_init(&scratch, scratch_mem, sizeof(scratch_mem));
	for (p = query; p <= query + qlen; p = end + 1) {
		const char *eq;

		end = strchr(p, '&');
		if (!end)
			end = query + qlen;
		if (end == p)
			continue; /* "a=1&&b=2": nothing between */
		if (n == SIGV4_PARAMS_MAX) {
			rc = fy_err_set(-EINVAL,
					"sigv4: more than %d query parameters",
					SIGV4_PARAMS_MAX);
			goto out;
		}
		eq = memchr(p, '=', (size_t)(end - p));
		params[n].name = scratch_encode(&scratch, p,
						(size_t)((eq ? eq : end) - p),
						tmp);
		params[n].value = eq ? scratch_encode(&scratch, eq + 1,
						      (size_t)(end - eq - 1),
						      tmp) :
				       scratch_encode(&scratch, "", 0, tmp);
		if (!params[n].name || !params[n].value) {
			rc = fy_err_set(-ENAMETOOLONG,
					"sigv4: the query is too long to sign");
			goto out;
		}
		n++;
	}
	qsort(params, n, sizeof(params[0]), param_cmp);
	for (i = 0; i < n; i++) {
		if (i)
			sbuf_add(out, "&");
		sbuf_add(out, params[i].name);
		sbuf_add(out, "=");
		sbuf_add(out, params[i].value);
	}
out:
	free(tmp);
	return rc;
}

struct canon_header {
	char name[64];
	const char *value;
	size_t index; /* the caller's order, for stable joins of repeats */
};

static int header_cmp(const void *a, const void *b)
{
	const struct canon_header *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* A header value trimmed, with runs of spaces and tabs as one space. */
static void add_trimmed(struct sbuf *b, const char *v)
{
	bool space = false;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			space = true;
			continue;
		}
		if (space)
			sbuf_add(b, " ");
		space = false;
		sbuf_addn(b, v, 1);
	}
}

static int canonical_headers(const struct fy_sigv4_request *req,
			     struct sbuf *headers, struct sbuf *signed_names)
{
	struct canon_header h[SIGV4_HEADERS_MAX];
	bool have_host = false, have_date = false;
	size_t i, j;

	if (req->n_headers > SIGV4_HEADERS_MAX)
		return fy_err_set(-EINVAL, "sigv4: more than %d headers",
				  SIGV4_HEADERS_MAX);
	for (i = 0; i < req->n_headers; i++) {
		const char *name = req->headers[i].name;
		size_t len = strlen(name);

		if (len == 0 || len >= sizeof(h[i].name))
			return fy_err_set(-EINVAL,
					  "sigv4: header name of %zu bytes",
					  len);
		for (j = 0; j <= len; j++)
			h[i].name[j] = (char)((name[j] >= 'A' && name[j] <= 'Z') ?
						      name[j] - 'A' + 'a' :
						      name[j]);
		h[i].value = req->headers[i].value ? req->headers[i].value : "";
		h[i].index = i;
		have_host |= !strcmp(h[i].name, "host");
		have_date |= !strcmp(h[i].name, "x-amz-date");
	}
	if (!have_host || !have_date)
		return fy_err_set(-EINVAL,
				  "sigv4: the request has no %s header to sign",
				  have_host ? "x-amz-date" : "host");
	qsort(h, req->n_headers, sizeof(h[0]), header_cmp);
	for (i = 0; i < req->n_headers; i++) {
		/* Repeats of one name are signed once, values joined by a
		 * comma in the order they are sent. */
		if (i && !strcmp(h[i].name, h[i - 1].name)) {
			headers->len--; /* the previous value's newline */
			headers->p[headers->len] = '\0';
			sbuf_add(headers, ",");
		} else {
			if (i)
				sbuf_add(signed_names, ";");
			sbuf_add(signed_names, h[i].name);
			sbuf_add(headers, h[i].name);
			sbuf_add(headers, ":");
		}
		add_trimmed(headers, h[i].value);
		sbuf_add(headers, "\n");
		if (headers->overflow)
			break;
	}
	return 0;
}

static int hmac(const void *key, size_t key_len, const char *data,
		uint8_t out[32])
{
	unsigned int out_len = 32;

	if (!HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)data,
		  strlen(data), out, &out_len) ||
	    out_len != 32)
		return fy_err_set(-ENOMEM, "sigv4: HMAC-SHA256 failed");
	return 0;
}

/* The signing key: HMAC chain over date, region, service, "aws4_request". */
static int signing_key(const struct fy_sigv4_request *req, const char *date,
		       uint8_t key[32])
{
	char first[4 + FY_S3_SECRET_MAX];
	size_t secret_len = strlen(req->secret_key);
	int rc;

	if (secret_len >= FY_S3_SECRET_MAX)
		return fy_err_set(-EINVAL, "sigv4: the secret key is too long");
	memcpy(first, "AWS4", 4);
	memcpy(first + 4, req->secret_key, secret_len);
	rc = hmac(first, 4 + secret_len, date, key);
	OPENSSL_cleanse(first, sizeof(first));
	if (rc == 0)
		rc = hmac(key, 32, req->region, key);
	if (rc == 0)
		rc = hmac(key, 32, req->service, key);
	if (rc == 0)
		rc = hmac(key, 32, "aws4_request", key);
	return rc;
}

static void copy_out(char *dst, size_t dst_len, const char *src)
{
	if (dst && dst_len) {
		size_t n = strlen(src);

		if (n >= dst_len)
			n = dst_len - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
}

int fy_sigv4_sign(const struct fy_sigv4_request *req, char *auth,
		  size_t auth_len, char *canonical, size_t canonical_len,
		  char *to_sign, size_t to_sign_len)
{
	char canon_mem[SIGV4_CANONICAL_MAX], headers_mem[SIGV4_CANONICAL_MAX];
	char names_mem[1024], sts_mem[512], date[9], stamp[17];
	char canon_hash[65], sig_hex[65];
	uint8_t key[32], sig[32];
	struct sbuf canon, headers, names, sts, out;
	struct tm tm;
	int rc;

	if (!req->method || !req->path || req->path[0] != '/' ||
	    !req->payload_hash || !req->region || !*req->region ||
	    !req->service || !req->access_key || !req->secret_key)
		return fy_err_set(-EINVAL, "sigv4: incomplete request to sign");
	if (!gmtime_r(&req->when, &tm))
		return fy_err_set(-EINVAL, "sigv4: bad request time");
	strftime(date, sizeof(date), "%Y%m%d", &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);

	sbuf_init(&headers, headers_mem, sizeof(headers_mem));
	sbuf_init(&names, names_mem, sizeof(names_mem));
	rc = canonical_headers(req, &headers, &names);
	if (rc < 0)
		return rc;

	sbuf_init(&canon, canon_mem, sizeof(canon_mem));
	sbuf_add(&canon, req->method);
	sbuf_add(&canon, "\n");
	sbuf_add(&canon, req->path);
	sbuf_add(&canon, "\n");
	rc = canonical_query(req->query, &canon);
	if (rc < 0)
		return rc;
	sbuf_add(&canon, "\n");
	sbuf_add(&canon, headers.p);
	sbuf_add(&canon, "\n");
	sbuf_add(&canon, names.p);
	sbuf_add(&canon, "\n");
	sbuf_add(&canon, req->payload_hash);
	if (canon.overflow || headers.overflow || names.overflow)
		return fy_err_set(-ENAMETOOLONG,
				  "sigv4: the request is too long to sign (over %d bytes)",
				  SIGV4_CANONICAL_MAX);
	rc = s3_sha256_hex(canon.p, canon.len, canon_hash);
	if (rc < 0)
		return rc;

	sbuf_init(&sts, sts_mem, sizeof(sts_mem));
	sbuf_add(&sts, "AWS4-HMAC-SHA256\n");
	sbuf_add(&sts, stamp);
	sbuf_add(&sts, "\n");
	sbuf_add(&sts, date);
	sbuf_add(&sts, "/");
	sbuf_add(&sts, req->region);
	sbuf_add(&sts, "/");
	sbuf_add(&sts, req->service);
	sbuf_add(&sts, "/aws4_request\n");
	sbuf_add(&sts, canon_hash);
	if (sts.overflow)
		return fy_err_set(-ENAMETOOLONG,
				  "sigv4: region or service name too long");

	rc = signing_key(req, date, key);
	if (rc == 0)
		rc = hmac(key, sizeof(key), sts.p, sig);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc < 0)
		return rc;
	fy_hex(sig, sizeof(sig), sig_hex);

	if (auth) {
		sbuf_init(&out, auth, auth_len);
		sbuf_add(&out, "AWS4-HMAC-SHA256 Credential=");
		sbuf_add(&out, req->access_key);
		sbuf_add(&out, "/");
		sbuf_add(&out, date);
		sbuf_add(&out, "/");
		sbuf_add(&out, req->region);
		sbuf_add(&out, "/");
		sbuf_add(&out, req->service);
		sbuf_add(&out, "/aws4_request, SignedHeaders=");
		sbuf_add(&out, names.p);
		sbuf_add(&out, ", Signature=");
		sbuf_add(&out, sig_hex);
		if (out.overflow)
			return fy_err_set(-ENAMETOOLONG,
					  "sigv4: the Authorization header does not fit in %zu bytes",
					  auth_len);
	}
	copy_out(canonical, canonical_len, canon.p);
	copy_out(to_sign, to_sign_len, sts.p);
	return 0;
}

/* ---- body digests -------------------------------------------------------- */

int s3_sha256_hex(const void *data, size_t len, char out[65])
{
	uint8_t d[FY_DIGEST_LEN];
	int rc = fy_sha256(data, len, d);

	if (rc == 0)
		fy_hex(d, sizeof(d), out);
	return rc;
}

int s3_md5_base64(const void *data, size_t len, char out[25])
{
	uint8_t d[16];

	if (EVP_Digest(data, len, d, NULL, EVP_md5(), NULL) != 1)
		return fy_err_set(-ENOMEM, "MD5 failed");
	EVP_EncodeBlock((unsigned char *)out, d, sizeof(d));
	return 0;
}

struct s3_body_digest {
	EVP_MD_CTX *sha256, *md5;
};

struct s3_body_digest *s3_body_digest_new(void)
{
	struct s3_body_digest *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->sha256 = EVP_MD_CTX_new();
	d->md5 = EVP_MD_CTX_new();
	if (!d->sha256 || !d->md5 ||
	    EVP_DigestInit_ex(d->sha256, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(d->md5, EVP_md5(), NULL) != 1) {
		s3_body_digest_free(d);
		return NULL;
	}
	return d;
}

int s3_body_digest_update(struct s3_body_digest *d, const void *data,
			  size_t len)
{
	if (EVP_DigestUpdate(d->sha256, data, len) != 1 ||
	    EVP_DigestUpdate(d->md5, data, len) != 1)
		return fy_err_set(-ENOMEM, "digest update failed");
	return 0;
}

int s3_body_digest_final(struct s3_body_digest *d, char sha256_hex[65],
			 char md5_base64[25])
{
	uint8_t sha[32], md5[16];

	if (EVP_DigestFinal_ex(d->sha256, sha, NULL) != 1 ||
	    EVP_DigestFinal_ex(d->md5, md5, NULL) != 1)
		return fy_err_set(-ENOMEM, "digest failed");
	fy_hex(sha, sizeof(sha), sha256_hex);
	EVP_EncodeBlock((unsigned char *)md5_base64, md5, sizeof(md5));
	return 0;
}

void s3_body_digest_free(struct s3_body_digest *d)
{
	if (!d)
		return;
	EVP_MD_CTX_free(d->sha256);
	EVP_MD_CTX_free(d->md5);
	free(d);
}
