/* Small helpers: hex, SHA-256, zero detection, sizes, time, host:port. */
#include "common/common.h"

#include <errno.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest "host:port" accepted: a DNS name (253) plus brackets and port. */
#define HOSTPORT_MAX 512

void fy_hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

int fy_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int fy_unhex(const char *in, uint8_t *out, size_t len)
{
	size_t n = strnlen(in, 2 * len + 1);
	size_t i;

	if (n != 2 * len)
		return fy_err_set(-EINVAL,
				  "expected %zu hex digits, got %s%zu", 2 * len,
				  n > 2 * len ? "more than " : "", n);
	for (i = 0; i < len; i++) {
		int hi = fy_hex_digit(in[2 * i]);
		int lo = fy_hex_digit(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return fy_err_set(-EINVAL,
					  "invalid hex digit at position %zu",
					  hi < 0 ? 2 * i : 2 * i + 1);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/*
 * OpenSSL 3 looks the algorithm up in its provider tables on every
 * EVP_sha256() digest; fetching once saves that on every chunk hashed.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int fy_sha256(const void *data, size_t len, uint8_t out[FY_DIGEST_LEN])
{
	const EVP_MD *md;

	pthread_once(&sha256_once, sha256_fetch);
	md = sha256_md ? sha256_md : EVP_sha256();
	/* EVP_Digest fails only when OpenSSL cannot allocate a context; the
	 * digest is then garbage and must not be used. */
	if (EVP_Digest(data, len, out, NULL, md, NULL) != 1)
		return fy_err_set(-ENOMEM, "SHA-256 failed (out of memory?)");
	return 0;
}

int fy_ssl_buffer_writes(SSL *ssl, size_t size)
{
	BIO *sock = SSL_get_wbio(ssl);
	BIO *buf = BIO_new(BIO_f_buffer());

	/* The chain holds a reference of its own to the socket BIO, which
	 * SSL_set0_wbio's release of the old wbio leaves to the rbio. */
	if (!buf || !sock || size > INT32_MAX ||
	    BIO_set_write_buffer_size(buf, (long)size) != 1 ||
	    BIO_up_ref(sock) != 1) {
		BIO_free(buf);
		return fy_err_set(-ENOMEM, "out of memory for a TLS write "
				  "buffer");
	}
	BIO_push(buf, sock);
	SSL_set0_wbio(ssl, buf);
	return 0;
}

bool fy_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t head = len < 16 ? len : 16;
	size_t i;

	for (i = 0; i < head; i++)
		if (p[i])
			return false;
	if (len <= 16)
		return true;
	/*
	 * The first 16 bytes are zero; if every byte equals the one 16 bytes
	 * before it, all are zero. memcmp does this with wide vector loads.
	 */
	return memcmp(p, p + 16, len - 16) == 0;
}

int fy_parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t n = 0, mult = 1;
	unsigned shift = 0;

	if (*p < '0' || *p > '9')
		return fy_err_set(-EINVAL,
				  "invalid size '%.64s': expected a number of "
				  "bytes like 4096, 64K, 1M or 8MiB", s);
	while (*p >= '0' && *p <= '9') {
		unsigned digit = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - digit) / 10)
			return fy_err_set(-ERANGE, "size '%.64s' is too large",
					  s);
		n = n * 10 + digit;
		p++;
	}
	switch (*p) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		break;
	}
	if (shift) {
		p++;
		/* KiB and KB both mean 1024: sizes here are always binary. */
		if ((p[0] == 'i' || p[0] == 'I') &&
		    (p[1] == 'B' || p[1] == 'b'))
			p += 2;
		else if (p[0] == 'B' || p[0] == 'b')
			p++;
		mult = UINT64_C(1) << shift;
	} else if (*p == 'B' || *p == 'b') {
		p++;
	}
	if (*p)
		return fy_err_set(-EINVAL,
				  "invalid size '%.64s': unknown unit (use K, "
				  "M, G or T, optionally followed by iB or B)",
				  s);
	if (n > UINT64_MAX / mult)
		return fy_err_set(-ERANGE, "size '%.64s' is too large", s);
	*out = n * mult;
	return 0;
}

void fy_format_bytes(uint64_t n, char *out, size_t outlen)
{
	static const char *const units[] = { "KiB", "MiB", "GiB",
					     "TiB", "PiB", "EiB" };
	double value = (double)n;
	size_t unit = 0;

	if (n < 1024) {
		snprintf(out, outlen, "%u B", (unsigned)n);
		return;
	}
	value /= 1024;
	/* Move up while the value would print as 1024.0 or more. */
	while (value >= 1023.95 &&
	       unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024;
		unit++;
	}
	if (n % (UINT64_C(1) << (10 * (unit + 1))) == 0)
		snprintf(out, outlen, "%.0f %s", value, units[unit]);
	else
		snprintf(out, outlen, "%.1f %s", value, units[unit]);
}

double fy_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int copy_part(const char *what, const char *s, const char *start,
		     size_t len, char *out, size_t outlen)
{
	if (len >= outlen)
		return fy_err_set(-ENAMETOOLONG, "%s in '%.128s' is too long",
				  what, s);
	memcpy(out, start, len);
	out[len] = '\0';
	return 0;
}

static int bad_address(const char *s, const char *why)
{
	return fy_err_set(-EINVAL, "address '%.128s': %s", s, why);
}

int fy_split_hostport(const char *s, char *host, size_t hostlen, char *port,
		      size_t portlen)
{
	const char *host_start, *host_end, *colon, *p;
	size_t len = strnlen(s, HOSTPORT_MAX + 1);
	unsigned long port_value = 0;
	int rc;

	if (len > HOSTPORT_MAX)
		return fy_err_set(-EINVAL, "address '%.64s...' is too long", s);
	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return bad_address(s, "whitespace or a control "
					      "character");
	if (s[0] == '[') {
		host_start = s + 1;
		host_end = strchr(host_start, ']');
		if (!host_end)
			return bad_address(s, "'[' without ']'");
		colon = host_end + 1;
		if (*colon != ':')
			return bad_address(s, "expected ':port' after ']'");
		if (host_end == host_start)
			return bad_address(s, "nothing between the brackets");
		if (memchr(host_start, '[', (size_t)(host_end - host_start)))
			return bad_address(s, "a stray '['");
	} else {
		host_start = s;
		colon = strrchr(s, ':');
		if (!colon)
			return bad_address(s, "no port: expected host:port or "
					      "[ipv6]:port");
		host_end = colon;
		if (memchr(s, ':', (size_t)(colon - s)))
			return fy_err_set(-EINVAL,
					  "address '%.128s': an IPv6 address "
					  "must be in brackets, as [%.*s]:port",
					  s, (int)(colon - s), s);
		if (memchr(s, '[', len) || memchr(s, ']', len))
			return bad_address(s, "a stray bracket");
	}
	/* An empty host is allowed: ":7443" listens on every address. */
	p = colon + 1;
	if (!*p)
		return bad_address(s, "no port");
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || port_value > 65535)
			break;
		port_value = port_value * 10 + (unsigned long)(*p - '0');
	}
	if (*p || port_value > 65535)
		return bad_address(s, "the port must be a number from 0 to "
				      "65535");
	rc = copy_part("host", s, host_start, (size_t)(host_end - host_start),
		       host, hostlen);
	if (rc < 0)
		return rc;
	return copy_part("port", s, colon + 1, strlen(colon + 1), port,
			 portlen);
}

void fy_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void fy_memory_tune(void)
{
	/* Frames and blocks of up to 16 MiB come from the heap, not from
	 * mmap (whose every free is an munmap); the heap's top is given back
	 * only past FY_MALLOC_KEEP. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, FY_MALLOC_KEEP);
}
