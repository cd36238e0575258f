/* ferry ca: a CA and certificates that OpenSSL itself accepts for mutual
 * TLS, with the names, usages and file modes promised. */
#include "common/common.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[64];

static X509 *load_cert(const char *dir, const char *name)
{
	char path[512];
	X509 *x = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
	f = fopen(path, "r");
	CHECK(f != NULL);
	if (f) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	CHECK(x != NULL);
	return x;
}

static EVP_PKEY *load_key(const char *dir, const char *name)
{
	char path[512];
	EVP_PKEY *k = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	f = fopen(path, "r");
	CHECK(f != NULL);
	if (f) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	CHECK(k != NULL);
	return k;
}

static unsigned file_mode(const char *dir, const char *file)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (stat(path, &st) < 0)
		return 0xffff;
	return st.st_mode & 07777;
}

static bool exists(const char *dir, const char *file)
{
	return file_mode(dir, file) != 0xffff;
}

/* X509_verify_cert of leaf against ca alone, for one TLS purpose. */
static int verify(X509 *ca, X509 *leaf, int purpose)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = -1;

	if (!store || !ctx || !X509_STORE_add_cert(store, ca) ||
	    !X509_STORE_CTX_init(ctx, store, leaf, NULL))
		goto out;
	X509_STORE_CTX_set_purpose(ctx, purpose);
	ok = X509_verify_cert(ctx);
	if (ok != 1 && purpose != X509_PURPOSE_ANY)
		fprintf(stderr, "verify: %s\n",
			X509_verify_cert_error_string(
				X509_STORE_CTX_get_error(ctx)));
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return ok;
}

/* Counts the subjectAltName entries of a type, and finds one. */
static int count_san(X509 *x, int type, const char *want, bool *found)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
					       NULL);
	unsigned char ip[16];
	int iplen = 0, i, n = 0;

	if (want && inet_pton(AF_INET, want, ip) == 1)
		iplen = 4;
	else if (want && inet_pton(AF_INET6, want, ip) == 1)
		iplen = 16;
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *s;

		if (g->type != type)
			continue;
		n++;
		s = type == GEN_DNS ? g->d.dNSName : g->d.iPAddress;
		if (!want)
			continue;
		if (type == GEN_DNS &&
		    (size_t)ASN1_STRING_length(s) == strlen(want) &&
		    !memcmp(ASN1_STRING_get0_data(s), want, strlen(want)))
			*found = true;
		if (type == GEN_IPADD && ASN1_STRING_length(s) == iplen &&
		    !memcmp(ASN1_STRING_get0_data(s), ip, (size_t)iplen))
			*found = true;
	}
	GENERAL_NAMES_free(gens);
	return n;
}

static bool has_san(X509 *x, int type, const char *want)
{
	bool found = false;

	count_san(x, type, want, &found);
	return found;
}

/* Days from now until the certificate expires. */
static int days_left(X509 *x)
{
	int days = 0, secs = 0;

	CHECK(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)));
	return days;
}

static void test_ca(void)
{
	char dir[128], other[128];
	X509 *ca, *leaf, *ipleaf, *v6leaf, *foreign;
	EVP_PKEY *key;
	const ASN1_INTEGER *serial;

	snprintf(dir, sizeof(dir), "%s/pki/ferry", base);
	snprintf(other, sizeof(other), "%s/other", base);

	/* The directory is created, private to its owner. */
	CHECK_RC(fy_ca_init(dir));
	CHECK(file_mode(dir, "") == 0700);
	CHECK(file_mode(dir, "ca.key") == 0600);
	CHECK(file_mode(dir, "ca.crt") == 0644);
	CHECK(fy_ca_init(dir) == -EEXIST);
	CHECK(strstr(fy_err_msg(), "refusing to overwrite") != NULL);

	CHECK_RC(fy_ca_issue(dir, "repo.example.com",
			     " backup.example.com, 10.1.2.3,,::1,"
			     "repo.example.com", FY_ROLE_NONE));
	CHECK_RC(fy_ca_issue(dir, "192.168.1.10", NULL, FY_ROLE_NONE));
	CHECK_RC(fy_ca_issue(dir, "fd00::7", "proxy-7.example.com",
			     FY_ROLE_NONE));
	CHECK(file_mode(dir, "repo.example.com.key") == 0600);
	CHECK(file_mode(dir, "192.168.1.10.key") == 0600);
	CHECK(file_mode(dir, "repo.example.com.crt") == 0644);
	/* Issuing twice refuses, and leaves the first pair alone. */
	CHECK(fy_ca_issue(dir, "repo.example.com", NULL, FY_ROLE_AGENT) == -EEXIST);
	CHECK(strstr(fy_err_msg(), "repo.example.com.key already exists") !=
	      NULL);

	ca = load_cert(dir, "ca");
	leaf = load_cert(dir, "repo.example.com");
	ipleaf = load_cert(dir, "192.168.1.10");
	v6leaf = load_cert(dir, "fd00::7");
	if (!ca || !leaf || !ipleaf || !v6leaf)
		return;

	/* The CA. */
	CHECK(X509_check_ca(ca) == 1);
	CHECK(X509_EXTENSION_get_critical(X509_get_ext(
		ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1))) == 1);
	CHECK(X509_EXTENSION_get_critical(X509_get_ext(
		ca, X509_get_ext_by_NID(ca, NID_key_usage, -1))) == 1);
	CHECK((X509_get_key_usage(ca) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) ==
	      (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
	CHECK(X509_get0_subject_key_id(ca) != NULL);
	CHECK(X509_check_issued(ca, ca) == X509_V_OK);
	CHECK(days_left(ca) >= 3650 && days_left(ca) <= 3653);
	serial = X509_get0_serialNumber(ca);
	CHECK(ASN1_STRING_length(serial) >= 15 &&
	      ASN1_STRING_length(serial) <= 16);
	key = load_key(dir, "ca");
	CHECK(EVP_PKEY_is_a(key, "EC"));
	CHECK(EVP_PKEY_get_bits(key) == 256);
	CHECK(X509_check_private_key(ca, key) == 1);
	EVP_PKEY_free(key);

	/* The leaves: trusted by the CA as server and as client. */
	CHECK(verify(ca, leaf, X509_PURPOSE_SSL_SERVER) == 1);
	CHECK(verify(ca, leaf, X509_PURPOSE_SSL_CLIENT) == 1);
	CHECK(verify(ca, ipleaf, X509_PURPOSE_SSL_SERVER) == 1);
	CHECK(verify(ca, v6leaf, X509_PURPOSE_SSL_CLIENT) == 1);
	CHECK(X509_check_ca(leaf) == 0);
	CHECK((X509_get_key_usage(leaf) &
	       (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT)) ==
	      (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
	CHECK(!(X509_get_key_usage(leaf) & KU_KEY_CERT_SIGN));
	CHECK((X509_get_extended_key_usage(leaf) &
	       (XKU_SSL_SERVER | XKU_SSL_CLIENT)) ==
	      (XKU_SSL_SERVER | XKU_SSL_CLIENT));
	CHECK(X509_get0_subject_key_id(leaf) != NULL);
	CHECK(X509_get0_authority_key_id(leaf) != NULL &&
	      !ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf),
				     X509_get0_subject_key_id(ca)));
	CHECK(days_left(leaf) >= 1824 && days_left(leaf) <= 1827);
	CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf),
			       X509_get0_serialNumber(ipleaf)) != 0);
	key = load_key(dir, "repo.example.com");
	CHECK(X509_check_private_key(leaf, key) == 1);
	EVP_PKEY_free(key);

	/* Names: what a TLS client will check. */
	CHECK(X509_check_host(leaf, "repo.example.com", 0, 0, NULL) == 1);
	CHECK(X509_check_host(leaf, "backup.example.com", 0, 0, NULL) == 1);
	CHECK(X509_check_host(leaf, "other.example.com", 0, 0, NULL) == 0);
	CHECK(X509_check_ip_asc(leaf, "10.1.2.3", 0) == 1);
	CHECK(X509_check_ip_asc(leaf, "::1", 0) == 1);
	CHECK(has_san(leaf, GEN_DNS, "repo.example.com"));
	/* Duplicates and empty entries are dropped. */
	CHECK(count_san(leaf, GEN_DNS, NULL, NULL) == 2);
	CHECK(count_san(leaf, GEN_IPADD, NULL, NULL) == 2);
	CHECK(has_san(ipleaf, GEN_IPADD, "192.168.1.10"));
	CHECK(count_san(ipleaf, GEN_DNS, NULL, NULL) == 0);
	CHECK(X509_check_ip_asc(ipleaf, "192.168.1.10", 0) == 1);
	CHECK(has_san(v6leaf, GEN_IPADD, "fd00::7"));
	CHECK(has_san(v6leaf, GEN_DNS, "proxy-7.example.com"));
	{
		char cn[64] = "";

		X509_NAME_get_text_by_NID(X509_get_subject_name(leaf),
					  NID_commonName, cn, sizeof(cn));
		CHECK(!strcmp(cn, "repo.example.com"));
	}

	/* A certificate of another CA is not trusted by this one. */
	CHECK_RC(fy_ca_init(other));
	CHECK_RC(fy_ca_issue(other, "repo.example.com", NULL, FY_ROLE_REPOSITORY));
	foreign = load_cert(other, "repo.example.com");
	/* (X509_PURPOSE_ANY: this failure is expected, so not printed.) */
	CHECK(foreign && verify(ca, foreign, X509_PURPOSE_ANY) != 1);
	X509_free(foreign);

	X509_free(ca);
	X509_free(leaf);
	X509_free(ipleaf);
	X509_free(v6leaf);
}

static bool has_ou(X509 *cert, const char *want)
{
	char ou[64] = "";

	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
				      NID_organizationalUnitName, ou,
				      sizeof(ou)) < 0)
		return want == NULL;
	return want && !strcmp(ou, want);
}

/* Roles go into the subject and decide the extended key usage; revoke
 * lists the serial in a CRL signed by the CA that OpenSSL then refuses. */
static void test_roles_and_revocation(void)
{
	static const struct {
		const char *name;
		enum fy_role role;
		const char *ou;
		unsigned xku;
	} leaves[] = {
		{ "agent1", FY_ROLE_AGENT, "ferry:agent",
		  XKU_SSL_SERVER | XKU_SSL_CLIENT },
		{ "central", FY_ROLE_CONTROLLER, "ferry:controller",
		  XKU_SSL_CLIENT },
		{ "alice", FY_ROLE_ADMIN, "ferry:admin", XKU_SSL_CLIENT },
		{ "repo1", FY_ROLE_REPOSITORY, "ferry:repository",
		  XKU_SSL_SERVER },
	};
	char dir[128], path[256];
	enum fy_role role;
	X509 *ca, *cert;
	X509_CRL *crl;
	X509_REVOKED *rev = NULL;
	FILE *f;
	size_t i;

	snprintf(dir, sizeof(dir), "%s/roles", base);
	CHECK_RC(fy_ca_init(dir));
	CHECK(exists(dir, "ca.crl"));
	CHECK(file_mode(dir, "ca.crl") == 0644);
	ca = load_cert(dir, "ca");
	for (i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		CHECK_RC(fy_ca_issue(dir, leaves[i].name, NULL, leaves[i].role));
		cert = load_cert(dir, leaves[i].name);
		CHECK(cert && has_ou(cert, leaves[i].ou));
		CHECK(cert && (X509_get_extended_key_usage(cert) &
			       (XKU_SSL_SERVER | XKU_SSL_CLIENT)) ==
				      leaves[i].xku);
		X509_free(cert);
	}
	CHECK_RC(fy_role_parse("controller", &role));
	CHECK(role == FY_ROLE_CONTROLLER);
	CHECK(fy_role_parse("root", &role) == -EINVAL);
	CHECK(strstr(fy_err_msg(), "agent, controller, admin, repository"));

	CHECK_RC(fy_ca_revoke(dir, "agent1"));
	CHECK(fy_ca_revoke(dir, "agent1") == -EEXIST);
	CHECK(fy_ca_revoke(dir, "nobody") == -ENOENT);
	snprintf(path, sizeof(path), "%s/ca.crl", dir);
	f = fopen(path, "r");
	crl = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	CHECK(crl != NULL);
	cert = load_cert(dir, "agent1");
	if (crl && cert && ca) {
		CHECK(X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1);
		CHECK(X509_CRL_get0_by_serial(crl, &rev,
					      X509_get0_serialNumber(cert)) == 1);
		CHECK(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) == 1);
	}
	X509_free(cert);
	X509_CRL_free(crl);
	/* A second revocation keeps the first. */
	CHECK_RC(fy_ca_revoke(dir, "central"));
	f = fopen(path, "r");
	crl = f ? PEM_read_X509_CRL(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	CHECK(crl && sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) == 2);
	X509_CRL_free(crl);
	X509_free(ca);
}

static void test_refusals(void)
{
	static const char *const bad_names[] = {
		"", "ca", "../escape", "a/b", "a b", ".hidden", "-flag",
		"*.example.com", "x\n",
		("a-name-that-is-much-longer-than-sixty-four-characters-which-"
		 "cannot-be-a-common-name"),
	};
	char dir[128], empty[128];
	size_t i;

	snprintf(dir, sizeof(dir), "%s/pki/ferry", base);
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		if (fy_ca_issue(dir, bad_names[i], NULL, FY_ROLE_AGENT) != -EINVAL) {
			fprintf(stderr, "accepted name '%s'\n", bad_names[i]);
			CHECK(!"bad name");
		}
	}
	/* A bad extra name fails before anything is written. */
	CHECK(fy_ca_issue(dir, "good.example.com", "ok.example.com,not ok!",
		          FY_ROLE_AGENT) ==
	      -EINVAL);
	CHECK(strstr(fy_err_msg(), "not ok!") != NULL);
	CHECK(!exists(dir, "good.example.com.key"));
	CHECK(!exists(dir, "good.example.com.crt"));

	/* No CA there: the message names the missing file. */
	snprintf(empty, sizeof(empty), "%s/empty", base);
	CHECK_RC(fy_mkdirs(empty, 0700));
	CHECK(fy_ca_issue(empty, "host", NULL, FY_ROLE_AGENT) == -ENOENT);
	CHECK(strstr(fy_err_msg(), "ca.crt") != NULL);
	CHECK(!exists(empty, "host.key"));
}

int main(void)
{
	char cmd[128];

	snprintf(base, sizeof(base), "test_ca_XXXXXX");
	if (!mkdtemp(base))
		return 1;
	test_ca();
	test_refusals();
	test_roles_and_revocation();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	CHECK(system(cmd) == 0);
	CHECK_DONE();
}
