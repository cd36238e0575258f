/*
 * ferry-agent ovf-env: the proxy appliance's OVF properties become the
 * agent's configuration (docs/APPLIANCE.md). The appliance's first-boot unit
 * runs it on every boot with the ovf-env.xml it found; it checks every
 * property first and writes nothing unless all are good, so the agent never
 * starts on half a configuration. Each problem is one line naming the
 * property; the unit puts them on the console.
 *
 * Written, under --root (default /), only when the content changed:
 *   etc/ferry/agent.conf, etc/ferry/pki/{ca.crt,agent.crt,agent.key (0600)},
 *   etc/ferry/vcenter.password (0600), etc/hostname,
 *   etc/systemd/network/10-ferry.network (removed for DHCP),
 *   root/.ssh/authorized_keys (0600; removed when no key is given).
 * Each file written is printed on stdout as "changed PATH".
 */
#include "agent/agent.h"
#include "vsphere/vsphere.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

/* Every property the appliance's OVF descriptor declares
 * (packaging/appliance/mkova.py); tests/appliance/check_ova.py checks the
 * two lists agree. */
static const char *const known_keys[] = {
	"ferry.repository",	 "ferry.tls.ca",
	"ferry.tls.cert",	 "ferry.tls.key",
	"ferry.control.listen",	 "ferry.control.allowedClients",
	"ferry.vcenter.server",	 "ferry.vcenter.thumbprint",
	"ferry.vcenter.user",	 "ferry.vcenter.password",
	"network.hostname",	 "network.address",
	"network.gateway",	 "network.dns",
	"appliance.sshAuthorizedKey",
};

#define OVF_MAX_FILE (FY_OVF_ENV_MAX_VALUE + 4096)

struct ovf_out {
	const char *path; /* relative to the root */
	unsigned mode;
	char *data;	  /* NULL: the file must not exist */
	size_t len;
};

struct ovf_check {
	const struct fy_ovf_env *env;
	int errors;
};

static void problem(struct ovf_check *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct ovf_check *c, const char *key, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ovf-env: property %s: ", key);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	c->errors++;
}

/* The value, "" when absent; every value goes into one configuration line,
 * so control characters are refused for all. */
static const char *value(struct ovf_check *c, const char *key, bool required)
{
	const char *v = fy_ovf_env_get(c->env, key);
	size_t i;

	if (!v)
		v = "";
	for (i = 0; v[i]; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
			problem(c, key, "holds a control character at byte %zu", i);
			return "";
		}
	if (required && !v[0])
		problem(c, key, "is required and empty");
	return v;
}

static bool valid_port(const char *s)
{
	char *end;
	long p;

	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 5)
		return false;
	p = strtol(s, &end, 10);
	return p >= 1 && p <= 65535;
}

/* HOST:PORT with a DNS name, an IPv4 address or [IPv6]. */
static bool valid_host_port(const char *v)
{
	const char *colon;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		char a[INET6_ADDRSTRLEN];
		struct in6_addr in6;
		size_t n;

		if (!close || close[1] != ':')
			return false;
		n = (size_t)(close - v - 1);
		if (n == 0 || n >= sizeof(a))
			return false;
		memcpy(a, v + 1, n);
		a[n] = '\0';
		return inet_pton(AF_INET6, a, &in6) == 1 && valid_port(close + 2);
	}
	colon = strrchr(v, ':');
	if (!colon || colon == v || (size_t)(colon - v) > 253)
		return false;
	if (strcspn(v, ":") != (size_t)(colon - v))
		return false;
	if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
	    (size_t)(colon - v))
		return false;
	return valid_port(colon + 1);
}

static bool valid_hostname(const char *v)
{
	size_t label = 0, i, n = strlen(v);

	if (n == 0 || n > 253)
		return false;
	for (i = 0; i < n; i++) {
		char c = v[i];
		if (c == '.') {
			if (label == 0 || v[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && v[n - 1] != '-';
}

static bool valid_ipv4(const char *v)
{
	struct in_addr a;

	return inet_pton(AF_INET, v, &a) == 1;
}

static bool valid_cidr(const char *v)
{
	char a[INET_ADDRSTRLEN];
	const char *slash = strchr(v, '/');
	size_t n;

	if (!slash)
		return false;
	n = (size_t)(slash - v);
	if (n == 0 || n >= sizeof(a) || !valid_port(slash + 1) ||
	    atoi(slash + 1) > 32)
		return false;
	memcpy(a, v, n);
	a[n] = '\0';
	return valid_ipv4(a);
}

/* Strict base64 (no whitespace, padding only at the end) of a PEM file. */
static int decode_base64(struct ovf_check *c, const char *key, const char *v,
			 unsigned char **out, size_t *outlen)
{
	size_t n = strlen(v), i;
	unsigned char *buf;
	int len, pad = 0;

	*out = NULL;
	for (i = 0; i < n; i++) {
		char ch = v[i];
		if (ch == '=') {
			pad++;
			continue;
		}
		if (pad || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			     (ch >= '0' && ch <= '9') || ch == '+' || ch == '/')) {
			problem(c, key, "is not base64: character %zu ('%c') is not in the alphabet%s",
				i, ch >= 0x20 && ch < 0x7f ? ch : '?',
				pad ? " (after padding)" : "");
			return -EINVAL;
		}
	}
	if (n % 4 != 0 || pad > 2) {
		problem(c, key, "is not base64: %zu characters, not a multiple of 4 (truncated?)", n);
		return -EINVAL;
	}
	buf = malloc(n / 4 * 3 + 1);
	if (!buf) {
		problem(c, key, "out of memory");
		return -ENOMEM;
	}
	len = EVP_DecodeBlock(buf, (const unsigned char *)v, (int)n);
	if (len < 0) {
		free(buf);
		problem(c, key, "is not base64");
		return -EINVAL;
	}
	*outlen = (size_t)len - (size_t)pad;
	buf[*outlen] = '\0';
	*out = buf;
	return 0;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

struct tls_material {
	unsigned char *ca, *cert, *key;
	size_t ca_len, cert_len, key_len;
};

/* The three PEM files: each parses, the key is the certificate's, and the
 * certificate chains to the CA (so the agent's TLS setup cannot fail on
 * them later). */
static void check_tls(struct ovf_check *c, struct tls_material *m)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509 *cert = NULL, *ca;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	int n_ca = 0;
	const char *v;

	v = value(c, "ferry.tls.ca", true);
	if (v[0] && decode_base64(c, "ferry.tls.ca", v, &m->ca, &m->ca_len) == 0) {
		store = X509_STORE_new();
		bio = BIO_new_mem_buf(m->ca, (int)m->ca_len);
		while (store && bio && (ca = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
			X509_STORE_add_cert(store, ca);
			X509_free(ca);
			n_ca++;
		}
		ERR_clear_error();
		BIO_free(bio);
		bio = NULL;
		if (n_ca == 0)
			problem(c, "ferry.tls.ca", "decodes to no PEM certificate");
	}
	v = value(c, "ferry.tls.cert", true);
	if (v[0] && decode_base64(c, "ferry.tls.cert", v, &m->cert, &m->cert_len) == 0) {
		bio = BIO_new_mem_buf(m->cert, (int)m->cert_len);
		cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
		ERR_clear_error();
		BIO_free(bio);
		bio = NULL;
		if (!cert)
			problem(c, "ferry.tls.cert", "decodes to no PEM certificate");
	}
	v = value(c, "ferry.tls.key", true);
	if (v[0] && decode_base64(c, "ferry.tls.key", v, &m->key, &m->key_len) == 0) {
		bio = BIO_new_mem_buf(m->key, (int)m->key_len);
		pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
		ERR_clear_error();
		BIO_free(bio);
		bio = NULL;
		if (!pkey)
			problem(c, "ferry.tls.key", "decodes to no PEM private key (or one with a passphrase)");
	}
	if (cert && pkey && X509_check_private_key(cert, pkey) != 1)
		problem(c, "ferry.tls.key", "does not match the certificate in ferry.tls.cert");
	ERR_clear_error();
	if (cert && n_ca > 0) {
		ctx = X509_STORE_CTX_new();
		if (ctx && X509_STORE_CTX_init(ctx, store, cert, NULL) == 1 &&
		    X509_verify_cert(ctx) != 1)
			problem(c, "ferry.tls.cert", "is not signed by ferry.tls.ca: %s",
				X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		ERR_clear_error();
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(cert);
	EVP_PKEY_free(pkey);
}

/* One OpenSSH public key line: type, base64 blob, optional comment; no
 * options (from=, command=): the appliance gives root one plain key. */
static bool valid_ssh_key(const char *v)
{
	static const char *const types[] = {
		"ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-nistp256 ",
		"ecdsa-sha2-nistp384 ", "ecdsa-sha2-nistp521 ",
		"sk-ssh-ed25519@openssh.com ", "sk-ecdsa-sha2-nistp256@openssh.com ",
	};
	const char *blob = NULL;
	size_t i, n;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strncmp(v, types[i], strlen(types[i])) == 0)
			blob = v + strlen(types[i]);
	if (!blob)
		return false;
	n = strspn(blob, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
	return n >= 16 && (blob[n] == '\0' || blob[n] == ' ');
}

/* The dns list: IPv4 addresses, comma (and optionally space) separated,
 * written one "DNS=" line each into out (NULL: only checked). */
static bool dns_list(const char *v, char *out, size_t outlen)
{
	char buf[1024], *save = NULL, *tok;
	size_t used = 0;
	int n = 0;

	if (strlen(v) >= sizeof(buf))
		return false;
	strcpy(buf, v);
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (!valid_ipv4(tok) || ++n > 8)
			return false;
		if (out) {
			int w = snprintf(out + used, outlen - used, "DNS=%s\n", tok);
			if (w < 0 || (size_t)w >= outlen - used)
				return false;
			used += (size_t)w;
		}
	}
	return true;
}

static int write_outputs(const char *root, struct ovf_out *outs, size_t n)
{
	char path[PATH_MAX], dir[PATH_MAX], *slash;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		void *old = NULL;
		size_t old_len = 0;
		struct stat st;
		bool same;

		if (snprintf(path, sizeof(path), "%s/%s", root, outs[i].path) >= (int)sizeof(path))
			return fy_err_set(-ENAMETOOLONG, "%s/%s: path too long", root, outs[i].path);
		if (!outs[i].data) {
			if (unlink(path) == 0)
				printf("changed %s\n", outs[i].path);
			else if (errno != ENOENT)
				return fy_err_set(-errno, "cannot remove %s: %s", path,
						  strerror(errno));
			continue;
		}
		same = fy_read_file(path, OVF_MAX_FILE, &old, &old_len) == 0 &&
		       old_len == outs[i].len && memcmp(old, outs[i].data, old_len) == 0 &&
		       stat(path, &st) == 0 && (st.st_mode & 07777) == outs[i].mode;
		free(old);
		fy_err_clear();
		if (same)
			continue;
		strcpy(dir, path);
		slash = strrchr(dir, '/');
		*slash = '\0';
		rc = fy_mkdirs(dir, strstr(outs[i].path, ".ssh") ? 0700 : 0755);
		if (rc < 0)
			return rc;
		/* The temporary file is created 0600, so a key is never readable
		 * by others, not even for a moment. */
		rc = fy_write_durable(dir, dir, slash + 1, outs[i].data, outs[i].len, true);
		if (rc < 0)
			return rc;
		if (chmod(path, outs[i].mode) < 0)
			return fy_err_set(-errno, "chmod %s: %s", path, strerror(errno));
		printf("changed %s\n", outs[i].path);
	}
	return 0;
}

int agent_cmd_ovf_env(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root = "/", *file;
	struct fy_ovf_env *env = NULL;
	struct tls_material tls = { 0 };
	struct ovf_check c = { 0 };
	struct ovf_out outs[9];
	char dns[1024] = "", *net = NULL, *conf = NULL, *hostname = NULL,
	     *password = NULL, *ssh = NULL;
	const char *repo, *listen, *allowed, *vc, *thumb, *user, *pass, *host,
	    *addr, *gw, *dnsv, *key;
	void *data = NULL;
	size_t len = 0, i, j;
	int opt, rc, ret = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			root = optarg;
			break;
		case 'h':
			printf("usage: ferry-agent ovf-env [--root DIR] FILE|-\n");
			return 0;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1)
		goto usage;
	file = argv[optind];

	rc = fy_read_file(strcmp(file, "-") ? file : "/dev/stdin",
			  FY_OVF_ENV_MAX_BYTES, &data, &len);
	if (rc < 0) {
		fprintf(stderr, "ovf-env: %s\n", fy_err_msg());
		goto out;
	}
	rc = fy_ovf_env_parse(data, len, &env);
	if (rc < 0) {
		fprintf(stderr, "ovf-env: %s: %s\n", file, fy_err_msg());
		goto out;
	}
	for (i = 0; i < env->n; i++) {
		bool known = false;
		for (j = 0; j < sizeof(known_keys) / sizeof(known_keys[0]); j++)
			known |= strcmp(env->props[i].key, known_keys[j]) == 0;
		if (!known)
			fprintf(stderr, "ovf-env: warning: property %s is not one of the appliance's; ignored\n",
				env->props[i].key);
	}

	c.env = env;
	repo = value(&c, "ferry.repository", true);
	if (repo[0] && !valid_host_port(repo))
		problem(&c, "ferry.repository", "\"%s\" is not HOST:PORT", repo);
	check_tls(&c, &tls);
	listen = value(&c, "ferry.control.listen", false);
	if (!listen[0])
		listen = "0.0.0.0:7301";
	if (!valid_host_port(listen))
		problem(&c, "ferry.control.listen", "\"%s\" is not ADDRESS:PORT", listen);
	allowed = value(&c, "ferry.control.allowedClients", false);
	vc = value(&c, "ferry.vcenter.server", true);
	if (vc[0] && strpbrk(vc, " \"'\\"))
		problem(&c, "ferry.vcenter.server", "\"%s\" is not a host name, host:port or URL", vc);
	thumb = value(&c, "ferry.vcenter.thumbprint", false);
	if (thumb[0]) {
		size_t hex = 0;
		for (i = 0; thumb[i]; i++) {
			if (strchr("0123456789abcdefABCDEF", thumb[i]))
				hex++;
			else if (thumb[i] != ':')
				hex = 1000;
		}
		if (hex != 64)
			problem(&c, "ferry.vcenter.thumbprint", "is not a SHA-256 thumbprint (64 hex digits, colons allowed)");
	}
	user = value(&c, "ferry.vcenter.user", true);
	pass = value(&c, "ferry.vcenter.password", true);
	host = value(&c, "network.hostname", false);
	if (!host[0])
		host = "ferry-proxy";
	if (!valid_hostname(host))
		problem(&c, "network.hostname", "\"%s\" is not a host name", host);
	addr = value(&c, "network.address", false);
	gw = value(&c, "network.gateway", false);
	dnsv = value(&c, "network.dns", false);
	if (addr[0] && !valid_cidr(addr))
		problem(&c, "network.address", "\"%s\" is not an IPv4 address with a prefix length (192.0.2.10/24); empty means DHCP",
			addr);
	if (gw[0] && !valid_ipv4(gw))
		problem(&c, "network.gateway", "\"%s\" is not an IPv4 address", gw);
	if (gw[0] && !addr[0])
		problem(&c, "network.gateway", "is set but network.address is empty (DHCP gives the gateway)");
	if (dnsv[0] && !dns_list(dnsv, dns, sizeof(dns)))
		problem(&c, "network.dns", "\"%s\" is not a list of at most 8 IPv4 addresses", dnsv);
	key = value(&c, "appliance.sshAuthorizedKey", false);
	if (key[0] && !valid_ssh_key(key))
		problem(&c, "appliance.sshAuthorizedKey", "is not one OpenSSH public key line (ssh-ed25519 AAAA... comment)");
	if (c.errors) {
		fprintf(stderr, "ovf-env: %d propert%s wrong; nothing was written\n",
			c.errors, c.errors == 1 ? "y is" : "ies are");
		goto out;
	}

	conf = dup_printf(
	    "# Written by `ferry-agent ovf-env` from this appliance's OVF properties\n"
	    "# on every boot: change the VM's vApp properties, not this file.\n"
	    "ferry.repository=%s\n"
	    "ferry.tls.ca=/etc/ferry/pki/ca.crt\n"
	    "ferry.tls.cert=/etc/ferry/pki/agent.crt\n"
	    "ferry.tls.key=/etc/ferry/pki/agent.key\n"
	    "ferry.control.listen=%s\n"
	    "%s%s%s"
	    "ferry.vcenter.server=%s\n"
	    "ferry.vcenter.user=%s\n"
	    "ferry.vcenter.passwordFile=/etc/ferry/vcenter.password\n"
	    "%s%s%s",
	    repo, listen, allowed[0] ? "ferry.control.allowedClients=" : "",
	    allowed, allowed[0] ? "\n" : "", vc, user,
	    thumb[0] ? "ferry.vcenter.thumbprint=" : "", thumb, thumb[0] ? "\n" : "");
	password = dup_printf("%s\n", pass);
	hostname = dup_printf("%s\n", host);
	if (addr[0])
		net = dup_printf("# Written by `ferry-agent ovf-env` from network.* properties.\n"
				 "[Match]\nType=ether\n\n[Network]\nAddress=%s\n%s%s%s%s",
				 addr, gw[0] ? "Gateway=" : "", gw, gw[0] ? "\n" : "", dns);
	if (key[0])
		ssh = dup_printf("%s\n", key);
	if (!conf || !password || !hostname || (addr[0] && !net) || (key[0] && !ssh)) {
		fprintf(stderr, "ovf-env: out of memory\n");
		goto out;
	}
	outs[0] = (struct ovf_out){ "etc/ferry/pki/ca.crt", 0644, (char *)tls.ca, tls.ca_len };
	outs[1] = (struct ovf_out){ "etc/ferry/pki/agent.crt", 0644, (char *)tls.cert, tls.cert_len };
	outs[2] = (struct ovf_out){ "etc/ferry/pki/agent.key", 0600, (char *)tls.key, tls.key_len };
	outs[3] = (struct ovf_out){ "etc/ferry/vcenter.password", 0600, password, strlen(password) };
	outs[4] = (struct ovf_out){ "etc/ferry/agent.conf", 0644, conf, strlen(conf) };
	outs[5] = (struct ovf_out){ "etc/hostname", 0644, hostname, strlen(hostname) };
	outs[6] = (struct ovf_out){ "etc/systemd/network/10-ferry.network", 0644, net,
				    net ? strlen(net) : 0 };
	outs[7] = (struct ovf_out){ "root/.ssh/authorized_keys", 0600, ssh, ssh ? strlen(ssh) : 0 };
	rc = write_outputs(root, outs, 8);
	if (rc < 0) {
		fprintf(stderr, "ovf-env: %s\n", fy_err_msg());
		goto out;
	}
	ret = 0;
out:
	fy_ovf_env_free(env);
	free(data);
	free(tls.ca);
	free(tls.cert);
	if (tls.key)
		OPENSSL_cleanse(tls.key, tls.key_len);
	free(tls.key);
	if (password)
		OPENSSL_cleanse(password, strlen(password));
	free(password);
	free(conf);
	free(hostname);
	free(net);
	free(ssh);
	return ret;
usage:
	fprintf(stderr, "usage: ferry-agent ovf-env [--root DIR] FILE|-\n");
	return 2;
}
