/*
 * A small certificate authority for mutual TLS between Ferry's agent,
 * proxies and repository (ferry ca init / issue / revoke). EC P-256 keys,
 * SHA-256 signatures, OpenSSL 3 APIs only.
 *
 * A certificate's role (docs/SECURITY.md) is one subject field,
 * organizationalUnitName "ferry:ROLE": visible in `openssl x509 -subject`,
 * covered by the CA's signature, and read back by both ends of every
 * connection (proto/tls.c, fy_conn_identity).
 */
#include "common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CA_DAYS 3652   /* ten years */
#define LEAF_DAYS 1826 /* five years */
/* Certificates are made on one host and used on others: allow for skew. */
#define BACKDATE_SECONDS 3600
/* X.520's upper bound on a commonName. */
#define NAME_MAX_LEN 64
#define SAN_MAX_LEN 253 /* a DNS name */
#define SANS_MAX 64
#define SANS_TEXT_MAX 4096
#define PEM_FILE_MAX (64u << 10)
/* A CRL lists every revoked serial; 100000 entries are about 4 MiB. */
#define CRL_FILE_MAX (8u << 20)
/* Servers refuse every client once a CRL is past its nextUpdate: keep it
 * as long as the certificates it revokes. */
#define CRL_DAYS CA_DAYS

/* Records the oldest OpenSSL error (the cause) under what, and clears. */
static int ssl_error(int code, const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "unknown OpenSSL error";

	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	return fy_err_set(code, "%s: %s", what, reason);
}

static int make_path(char *out, size_t outlen, const char *dir,
		     const char *name, const char *ext)
{
	int n = snprintf(out, outlen, "%s/%s%s", dir, name, ext);

	if (n < 0 || (size_t)n >= outlen)
		return fy_err_set(-ENAMETOOLONG, "path %s/%s%s is too long",
				  dir, name, ext);
	return 0;
}

static int refuse_existing(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return fy_err_set(-EEXIST, "%s already exists; refusing to "
				  "overwrite it", path);
	if (errno != ENOENT) {
		int rc = -errno;

		return fy_err_set(rc, "cannot check %s: %s", path,
				  strerror(-rc));
	}
	return 0;
}

/* Creates path (never replacing a file) with exactly mode, and syncs it. */
static int write_new_file(const char *path, const void *data, size_t len,
			  mode_t mode)
{
	int fd, rc = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		  mode);
	if (fd < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			return fy_err_set(rc, "%s already exists; refusing to "
					  "overwrite it", path);
		return fy_err_set(rc, "cannot create %s: %s", path,
				  strerror(-rc));
	}
	/* The umask may have taken bits away; the mode is part of the
	 * contract (a key must be 0600, not 0400). */
	if (fchmod(fd, mode) < 0) {
		rc = -errno;
		fy_err_set(rc, "chmod of %s: %s", path, strerror(-rc));
		goto out;
	}
	rc = fy_write_all(fd, data, len);
	if (rc < 0) {
		fy_err_wrap(rc, "%s", path);
		goto out;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		fy_err_set(rc, "fsync of %s: %s", path, strerror(-rc));
	}
out:
	close(fd);
	if (rc < 0)
		unlink(path);
	return rc;
}

/* Writes the PEM of key, or else of cert, to a new file. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
	BIO *mem;
	char *data;
	long len;
	int rc;

	/* secmem: the key's PEM is wiped from memory when freed. */
	mem = BIO_new(key ? BIO_s_secmem() : BIO_s_mem());
	if (!mem)
		return ssl_error(-ENOMEM, path);
	if (key ? !PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL,
					     NULL) :
		  !PEM_write_bio_X509(mem, cert)) {
		rc = ssl_error(-EIO, path);
		goto out;
	}
	len = BIO_get_mem_data(mem, &data);
	rc = write_new_file(path, data, (size_t)len, key ? 0600 : 0644);
out:
	BIO_free(mem);
	return rc;
}

static int new_key(EVP_PKEY **out)
{
	*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!*out)
		return ssl_error(-EIO, "cannot generate an EC P-256 key");
	return 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return ssl_error(-EIO, OBJ_nid2sn(nid));
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : ssl_error(-EIO, OBJ_nid2sn(nid));
}

/*
 * A certificate for key named cn, valid for days, issued by issuer (NULL
 * for self-signed): everything but the extensions and the signature.
 */
static int new_cert(EVP_PKEY *key, const char *cn, enum fy_role role,
		    long days, X509 *issuer, X509 **out)
{
	unsigned char serial[16];
	char ou[64];
	X509_NAME *subject;
	BIGNUM *bn = NULL;
	X509 *cert;
	int rc = -EIO;

	snprintf(ou, sizeof(ou), "%s%s", FY_ROLE_PREFIX, fy_role_name(role));
	cert = X509_new();
	if (!cert)
		return ssl_error(-ENOMEM, "cannot create a certificate");
	/* 128 random bits, top bit clear so the DER integer is positive. */
	if (RAND_bytes(serial, sizeof(serial)) != 1) {
		ssl_error(-EIO, "cannot make a random serial number");
		goto out;
	}
	serial[0] &= 0x7f;
	if (serial[0] == 0)
		serial[0] = 1;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	subject = X509_get_subject_name(cert);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) ||
	    !X509_set_version(cert, X509_VERSION_3) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert), -BACKDATE_SECONDS) ||
	    !X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, NULL) ||
	    (role != FY_ROLE_NONE &&
	     !X509_NAME_add_entry_by_txt(subject, "OU", MBSTRING_UTF8,
					 (const unsigned char *)ou, -1, -1, 0)) ||
	    !X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer)
					       : subject) ||
	    !X509_set_pubkey(cert, key)) {
		ssl_error(-EIO, "cannot fill in the certificate");
		goto out;
	}
	*out = cert;
	cert = NULL;
	rc = 0;
out:
	BN_free(bn);
	X509_free(cert);
	return rc;
}

/* Writes key then certificate; if the second fails, removes the first. */
static int write_pair(const char *key_path, EVP_PKEY *key,
		      const char *crt_path, X509 *cert, const char *dir)
{
	int rc;

	rc = write_pem(key_path, key, NULL);
	if (rc < 0)
		return rc;
	rc = write_pem(crt_path, NULL, cert);
	if (rc < 0) {
		unlink(key_path);
		return rc;
	}
	return fy_fsync_dir(dir);
}

static int write_crl(const char *dir, const char *path, X509 *ca,
		     EVP_PKEY *ca_key, X509_CRL *old,
		     const ASN1_INTEGER *serial);

int fy_ca_init(const char *dir)
{
	char key_path[PATH_MAX], crt_path[PATH_MAX], crl_path[PATH_MAX];
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc;

	rc = make_path(key_path, sizeof(key_path), dir, "ca", ".key");
	if (rc < 0)
		goto out;
	rc = make_path(crt_path, sizeof(crt_path), dir, "ca", ".crt");
	if (rc < 0)
		goto out;
	rc = fy_mkdirs(dir, 0700);
	if (rc < 0)
		goto out;
	/* Check both before writing either: never leave half a CA. */
	rc = refuse_existing(key_path);
	if (rc < 0)
		goto out;
	rc = refuse_existing(crt_path);
	if (rc < 0)
		goto out;

	rc = new_key(&key);
	if (rc < 0)
		goto out;
	rc = new_cert(key, "Ferry CA", FY_ROLE_NONE, CA_DAYS, NULL, &cert);
	if (rc < 0)
		goto out;
	if ((rc = add_ext(cert, cert, NID_basic_constraints,
			  "critical,CA:TRUE")) < 0 ||
	    (rc = add_ext(cert, cert, NID_key_usage,
			  "critical,keyCertSign,cRLSign")) < 0 ||
	    (rc = add_ext(cert, cert, NID_subject_key_identifier, "hash")) < 0)
		goto out;
	if (!X509_sign(cert, key, EVP_sha256())) {
		rc = ssl_error(-EIO, "cannot sign the CA certificate");
		goto out;
	}
	rc = write_pair(key_path, key, crt_path, cert, dir);
	if (rc < 0)
		goto out;
	/* An empty list from the start, so servers can be pointed at it
	 * before the first revocation. */
	rc = make_path(crl_path, sizeof(crl_path), dir, "ca", ".crl");
	if (rc == 0)
		rc = write_crl(dir, crl_path, cert, key, NULL, NULL);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	if (rc < 0)
		fy_err_wrap(rc, "ca init in %s", dir);
	return rc;
}

/* Reads a PEM file; *data is wiped and freed by the caller. */
static int read_pem(const char *path, BIO **out, void **data, size_t *len)
{
	int rc = fy_read_file(path, PEM_FILE_MAX, data, len);

	if (rc < 0)
		return rc;
	*out = BIO_new_mem_buf(*data, (int)*len);
	if (!*out) {
		OPENSSL_cleanse(*data, *len);
		free(*data);
		return ssl_error(-ENOMEM, path);
	}
	return 0;
}

static int load_ca(const char *dir, X509 **ca, EVP_PKEY **ca_key)
{
	char path[PATH_MAX];
	void *data;
	size_t len;
	BIO *bio;
	int rc;

	rc = make_path(path, sizeof(path), dir, "ca", ".crt");
	if (rc < 0)
		return rc;
	rc = read_pem(path, &bio, &data, &len);
	if (rc < 0)
		return rc;
	*ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	free(data);
	if (!*ca)
		return ssl_error(-EINVAL, path);
	if (X509_check_ca(*ca) != 1)
		return fy_err_set(-EINVAL, "%s is not a CA certificate", path);

	rc = make_path(path, sizeof(path), dir, "ca", ".key");
	if (rc < 0)
		return rc;
	rc = read_pem(path, &bio, &data, &len);
	if (rc < 0)
		return rc;
	/* An empty passphrase: an encrypted key fails, never prompts. */
	*ca_key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
	BIO_free(bio);
	OPENSSL_cleanse(data, len);
	free(data);
	if (!*ca_key)
		return ssl_error(-EINVAL, path);
	if (X509_check_private_key(*ca, *ca_key) != 1)
		return ssl_error(-EINVAL, "ca.key does not match ca.crt");
	return 0;
}

/* An IP address in binary (4 or 16 bytes), or 0 when s is not one. */
static int parse_ip(const char *s, unsigned char ip[16])
{
	if (inet_pton(AF_INET, s, ip) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, ip) == 1)
		return 16;
	return 0;
}

/* A DNS name as certificates hold them: letters, digits, '-', '.', and
 * '*' for a wildcard label. Underscores appear in real hostnames too. */
static bool is_dns_name(const char *s)
{
	size_t i;

	if (!s[0] || s[0] == '.' || s[0] == '-')
		return false;
	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_' || c == '*'))
			return false;
	}
	return true;
}

static int add_san(GENERAL_NAMES *gens, const char *name)
{
	unsigned char ip[16];
	GENERAL_NAME *gen;
	int iplen = parse_ip(name, ip);

	if (!iplen && (strlen(name) > SAN_MAX_LEN || !is_dns_name(name)))
		return fy_err_set(-EINVAL, "'%.64s' is neither a DNS name nor "
				  "an IP address", name);
	gen = GENERAL_NAME_new();
	if (!gen)
		return ssl_error(-ENOMEM, "subjectAltName");
	if (iplen) {
		ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

		if (!os || !ASN1_OCTET_STRING_set(os, ip, iplen)) {
			ASN1_OCTET_STRING_free(os);
			goto fail;
		}
		GENERAL_NAME_set0_value(gen, GEN_IPADD, os);
	} else {
		ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

		if (!ia5 || !ASN1_STRING_set(ia5, name, -1)) {
			ASN1_IA5STRING_free(ia5);
			goto fail;
		}
		GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
	}
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto fail;
	return 0;
fail:
	GENERAL_NAME_free(gen);
	return ssl_error(-ENOMEM, "subjectAltName");
}

/* name and each comma-separated entry of sans, once each. */
static int add_sans(X509 *cert, const char *name, const char *sans)
{
	char copy[SANS_TEXT_MAX + 1], *item, *save = NULL;
	const char *seen[SANS_MAX + 1];
	GENERAL_NAMES *gens;
	size_t nseen = 0, i;
	int rc;

	if (sans && strnlen(sans, SANS_TEXT_MAX + 1) > SANS_TEXT_MAX)
		return fy_err_set(-EINVAL, "the list of extra names is longer "
				  "than %u bytes", SANS_TEXT_MAX);
	snprintf(copy, sizeof(copy), "%s", sans ? sans : "");
	gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		return ssl_error(-ENOMEM, "subjectAltName");
	rc = add_san(gens, name);
	if (rc < 0)
		goto out;
	seen[nseen++] = name;
	for (item = strtok_r(copy, ",", &save); item;
	     item = strtok_r(NULL, ",", &save)) {
		char *end;

		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		/* "a,,b" or a trailing comma: nothing to add. */
		if (!*item)
			continue;
		for (i = 0; i < nseen && strcmp(seen[i], item) != 0; i++)
			;
		if (i < nseen)
			continue;
		if (nseen > SANS_MAX) {
			rc = fy_err_set(-EINVAL, "more than %u extra names",
					SANS_MAX);
			goto out;
		}
		rc = add_san(gens, item);
		if (rc < 0)
			goto out;
		seen[nseen++] = item;
	}
	if (!X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0,
			       X509V3_ADD_DEFAULT))
		rc = ssl_error(-EIO, "subjectAltName");
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

/* NAME becomes a file name and a certificate name: keep it plain. */
static int check_name(const char *name)
{
	unsigned char ip[16];
	size_t len = strnlen(name, NAME_MAX_LEN + 1);

	if (len == 0)
		return fy_err_set(-EINVAL, "the name is empty");
	if (len > NAME_MAX_LEN)
		return fy_err_set(-EINVAL, "name '%.64s...' is longer than %u "
				  "characters", name, NAME_MAX_LEN);
	if (strcmp(name, "ca") == 0)
		return fy_err_set(-EINVAL, "'ca' is the CA's own name");
	if (!parse_ip(name, ip) && (!is_dns_name(name) || strchr(name, '*')))
		return fy_err_set(-EINVAL, "name '%s' is neither a host name "
				  "nor an IP address", name);
	return 0;
}

/* A repository only serves, a controller or admin only connects; an agent
 * does both (it serves the control API and connects to the repository),
 * and so does a certificate without a role, as before roles existed. */
static const char *extended_usage(enum fy_role role)
{
	switch (role) {
	case FY_ROLE_REPOSITORY:
		return "serverAuth";
	case FY_ROLE_CONTROLLER:
	case FY_ROLE_ADMIN:
		return "clientAuth";
	default:
		return "serverAuth,clientAuth";
	}
}

int fy_ca_issue(const char *dir, const char *name, const char *sans,
		enum fy_role role)
{
	char key_path[PATH_MAX], crt_path[PATH_MAX];
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *cert = NULL;
	int rc;

	rc = check_name(name);
	if (rc < 0)
		goto out;
	rc = make_path(key_path, sizeof(key_path), dir, name, ".key");
	if (rc < 0)
		goto out;
	rc = make_path(crt_path, sizeof(crt_path), dir, name, ".crt");
	if (rc < 0)
		goto out;
	rc = refuse_existing(key_path);
	if (rc < 0)
		goto out;
	rc = refuse_existing(crt_path);
	if (rc < 0)
		goto out;
	rc = load_ca(dir, &ca, &ca_key);
	if (rc < 0)
		goto out;

	rc = new_key(&key);
	if (rc < 0)
		goto out;
	rc = new_cert(key, name, role, LEAF_DAYS, ca, &cert);
	if (rc < 0)
		goto out;
	if ((rc = add_ext(cert, ca, NID_basic_constraints,
			  "critical,CA:FALSE")) < 0 ||
	    (rc = add_ext(cert, ca, NID_key_usage,
			  "critical,digitalSignature,keyEncipherment")) < 0 ||
	    (rc = add_ext(cert, ca, NID_ext_key_usage,
			  extended_usage(role))) < 0 ||
	    (rc = add_ext(cert, ca, NID_subject_key_identifier, "hash")) < 0 ||
	    (rc = add_ext(cert, ca, NID_authority_key_identifier,
			  "keyid:always")) < 0)
		goto out;
	rc = add_sans(cert, name, sans);
	if (rc < 0)
		goto out;
	if (!X509_sign(cert, ca_key, EVP_sha256())) {
		rc = ssl_error(-EIO, "cannot sign the certificate");
		goto out;
	}
	rc = write_pair(key_path, key, crt_path, cert, dir);
out:
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	if (rc < 0)
		fy_err_wrap(rc, "ca issue of '%.64s' in %s", name, dir);
	return rc;
}

/* ---- roles ------------------------------------------------------------- */

static const char *const role_names[] = {
	[FY_ROLE_NONE] = "",
	[FY_ROLE_AGENT] = "agent",
	[FY_ROLE_CONTROLLER] = "controller",
	[FY_ROLE_ADMIN] = "admin",
	[FY_ROLE_REPOSITORY] = "repository",
};

const char *fy_role_name(enum fy_role role)
{
	if ((unsigned)role >= sizeof(role_names) / sizeof(role_names[0]))
		return "?";
	return role_names[role];
}

int fy_role_parse(const char *s, enum fy_role *out)
{
	unsigned i;

	for (i = FY_ROLE_AGENT; i < sizeof(role_names) / sizeof(role_names[0]);
	     i++)
		if (s && !strcmp(s, role_names[i])) {
			*out = (enum fy_role)i;
			return 0;
		}
	return fy_err_set(-EINVAL, "unknown role '%.64s' (roles: agent, "
			  "controller, admin, repository)", s ? s : "");
}

/* ---- revocation -------------------------------------------------------- */

static int load_cert(const char *path, X509 **out)
{
	void *data;
	size_t len;
	BIO *bio;
	int rc;

	rc = read_pem(path, &bio, &data, &len);
	if (rc < 0)
		return rc;
	*out = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	free(data);
	return *out ? 0 : ssl_error(-EINVAL, path);
}

/* The current CRL's entries, or none when the file does not exist yet. */
static int load_crl(const char *path, X509 *ca, X509_CRL **out)
{
	EVP_PKEY *pub;
	void *data;
	size_t len;
	BIO *bio;
	int rc, ok;

	*out = NULL;
	rc = fy_read_file(path, CRL_FILE_MAX, &data, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	bio = BIO_new_mem_buf(data, (int)len);
	*out = bio ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	free(data);
	if (!*out)
		return ssl_error(-EINVAL, path);
	/* Never carry over entries of a list the CA did not sign. */
	pub = X509_get0_pubkey(ca);
	ok = pub && X509_CRL_verify(*out, pub) == 1;
	if (!ok) {
		X509_CRL_free(*out);
		*out = NULL;
		return fy_err_set(-EINVAL, "%s is not signed by this CA", path);
	}
	return 0;
}

/* Builds and signs a CRL holding old's entries plus serial (may be NULL),
 * then replaces path with it durably. */
static int write_crl(const char *dir, const char *path, X509 *ca,
		     EVP_PKEY *ca_key, X509_CRL *old,
		     const ASN1_INTEGER *serial)
{
	STACK_OF(X509_REVOKED) *entries = old ? X509_CRL_get_REVOKED(old) : NULL;
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *now = ASN1_TIME_new(), *next = ASN1_TIME_new();
	BIO *mem = NULL;
	char *pem;
	long len;
	int i, rc = -EIO;

	if (!crl || !now || !next || !X509_gmtime_adj(now, 0) ||
	    !X509_time_adj_ex(next, CRL_DAYS, 0, NULL) ||
	    !X509_CRL_set_version(crl, 1) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
	    !X509_CRL_set1_lastUpdate(crl, now) ||
	    !X509_CRL_set1_nextUpdate(crl, next)) {
		ssl_error(-EIO, "cannot fill in the CRL");
		goto out;
	}
	for (i = 0; i < sk_X509_REVOKED_num(entries); i++) {
		X509_REVOKED *r = X509_REVOKED_dup(sk_X509_REVOKED_value(entries, i));

		if (!r || !X509_CRL_add0_revoked(crl, r)) {
			X509_REVOKED_free(r);
			ssl_error(-EIO, "cannot copy a CRL entry");
			goto out;
		}
	}
	if (serial) {
		X509_REVOKED *r = X509_REVOKED_new();

		if (!r || !X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)serial) ||
		    !X509_REVOKED_set_revocationDate(r, now) ||
		    !X509_CRL_add0_revoked(crl, r)) {
			X509_REVOKED_free(r);
			ssl_error(-EIO, "cannot add the CRL entry");
			goto out;
		}
	}
	X509_CRL_sort(crl);
	if (!X509_CRL_sign(crl, ca_key, EVP_sha256())) {
		ssl_error(-EIO, "cannot sign the CRL");
		goto out;
	}
	mem = BIO_new(BIO_s_mem());
	if (!mem || !PEM_write_bio_X509_CRL(mem, crl)) {
		ssl_error(-EIO, path);
		goto out;
	}
	len = BIO_get_mem_data(mem, &pem);
	rc = fy_write_durable(dir, dir, "ca.crl", pem, (size_t)len, true);
	if (rc < 0)
		fy_err_wrap(rc, "%s", path);
	/* Public, unlike the keys beside it: every server reads it. */
	else if (chmod(path, 0644) < 0)
		rc = fy_err_set(-errno, "chmod of %s: %s", path, strerror(errno));
out:
	BIO_free(mem);
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
	return rc;
}

int fy_ca_revoke(const char *dir, const char *name)
{
	char crt_path[PATH_MAX], crl_path[PATH_MAX];
	EVP_PKEY *ca_key = NULL;
	X509 *ca = NULL, *cert = NULL;
	X509_CRL *crl = NULL;
	X509_REVOKED *already = NULL;
	int rc;

	rc = check_name(name);
	if (rc < 0)
		goto out;
	rc = make_path(crt_path, sizeof(crt_path), dir, name, ".crt");
	if (rc < 0)
		goto out;
	rc = make_path(crl_path, sizeof(crl_path), dir, "ca", ".crl");
	if (rc < 0)
		goto out;
	rc = load_ca(dir, &ca, &ca_key);
	if (rc < 0)
		goto out;
	rc = load_cert(crt_path, &cert);
	if (rc < 0)
		goto out;
	if (X509_check_issued(ca, cert) != X509_V_OK) {
		rc = fy_err_set(-EINVAL, "%s was not issued by this CA",
				crt_path);
		goto out;
	}
	rc = load_crl(crl_path, ca, &crl);
	if (rc < 0)
		goto out;
	if (crl && X509_CRL_get0_by_serial(crl, &already,
					   X509_get0_serialNumber(cert)) == 1) {
		rc = fy_err_set(-EEXIST, "%s is revoked already", name);
		goto out;
	}
	rc = write_crl(dir, crl_path, ca, ca_key, crl,
		       X509_get0_serialNumber(cert));
out:
	X509_CRL_free(crl);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	if (rc < 0)
		fy_err_wrap(rc, "ca revoke of '%.64s' in %s", name, dir);
	return rc;
}
