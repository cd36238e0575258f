/*
 * The client: configuration, API version negotiation, login, the session
 * cookie shared by every thread, and one SOAP call with re-login.
 */
#include "vsphere/vs_int.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Request bodies are small; the bound catches a runaway builder. */
#define REQUEST_MAX (4u << 20)
#define PASSWORD_FILE_MAX 4096
#define VERSIONS_MAX (1u << 20)
#define VS_RELOGINS_MAX 2

const char *const fy_vs_config_keys[] = {
	"ferry.vcenter.server",
	"ferry.vcenter.user",
	"ferry.vcenter.passwordFile",
	"ferry.vcenter.thumbprint",
	"ferry.vcenter.caFile",
	"ferry.vcenter.apiVersion",
	"ferry.vcenter.connectTimeoutSeconds",
	"ferry.vcenter.requestTimeoutSeconds",
	"ferry.vcenter.stallTimeoutSeconds",
	"ferry.vcenter.taskTimeoutSeconds",
	"ferry.vcenter.maxResponseBytes",
	"ferry.vcenter.maxElements",
	"ferry.vcenter.maxDepth",
	"ferry.vcenter.pageSize",
	"ferry.vcenter.connections",
	"ferry.vcenter.prepareRetries",
	"ferry.vcenter.prepareRetrySeconds",
	"ferry.vcenter.datacenter",
	"ferry.https.maxInFlight",
	"ferry.https.requestSize",
	"ferry.https.sessionRenewSeconds",
	"ferry.proxy.moref",
	"ferry.proxy.instanceUuid",
	"vixDiskLib.linuxSSL.verifyCertificates",
	NULL,
};

void vs_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* "vc", "vc:8443", "https://vc", "https://vc:8443/sdk" -> the SDK URL and
 * the versions URL. */
static int build_urls(struct fy_vs_client *c, const char *server)
{
	const char *host = server, *slash;
	char hostport[256];
	size_t n;

	if (!strncmp(server, "http://", 7))
		return fy_err_set(-EINVAL, "ferry.vcenter.server %s: plain http "
				  "is not supported, use https", server);
	if (!strncmp(server, "https://", 8))
		host = server + 8;
	slash = strchr(host, '/');
	n = slash ? (size_t)(slash - host) : strlen(host);
	if (n == 0 || n >= sizeof(hostport))
		return fy_err_set(-EINVAL, "ferry.vcenter.server '%s' is not a "
				  "host name or URL", server);
	memcpy(hostport, host, n);
	hostport[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)hostport[i]) || hostport[i] == '@')
			return fy_err_set(-EINVAL, "ferry.vcenter.server '%s' is "
					  "not a host name or URL", server);
	if (asprintf(&c->url, "https://%s%s", hostport,
		     slash && strcmp(slash, "/") ? slash : "/sdk") < 0 ||
	    asprintf(&c->versions_url, "https://%s/sdk/vimServiceVersions.xml",
		     hostport) < 0)
		return fy_err_set(-ENOMEM, "out of memory");
	snprintf(c->about.url, sizeof(c->about.url), "%s", c->url);
	return 0;
}

static int parse_thumbprint(struct fy_vs_client *c, const char *text)
{
	uint8_t out[64];
	size_t n = 0;
	const char *p;

	for (p = text; *p; p++) {
		int hi, lo;

		if (*p == ':' || *p == ' ')
			continue;
		if (!isxdigit((unsigned char)p[0]) ||
		    !isxdigit((unsigned char)p[1]) || n == sizeof(out))
			goto bad;
		hi = isdigit((unsigned char)p[0]) ? p[0] - '0'
						  : (tolower(p[0]) - 'a' + 10);
		lo = isdigit((unsigned char)p[1]) ? p[1] - '0'
						  : (tolower(p[1]) - 'a' + 10);
		out[n++] = (uint8_t)(hi << 4 | lo);
		p++;
	}
	if (n == 20)
		return fy_err_set(-EINVAL, "ferry.vcenter.thumbprint is a SHA-1 "
				  "thumbprint; Ferry pins SHA-256 ones "
				  "(openssl x509 -noout -fingerprint -sha256)");
	if (n != 32)
		goto bad;
	memcpy(c->pin, out, 32);
	c->pinned = true;
	return 0;
bad:
	return fy_err_set(-EINVAL, "ferry.vcenter.thumbprint '%s' is not a "
			  "SHA-256 thumbprint (32 hex bytes, AA:BB:...)", text);
}

static int read_password(struct fy_vs_client *c, const struct fy_config *cfg)
{
	const char *file = fy_config_get(cfg, "ferry.vcenter.passwordFile");
	const char *env = getenv("FERRY_VCENTER_PASSWORD");
	void *data = NULL;
	size_t len = 0;
	struct stat sb;
	int rc;

	if (!file) {
		if (!env)
			return fy_err_set(-EINVAL, "no vCenter password: set "
					  "ferry.vcenter.passwordFile or the "
					  "FERRY_VCENTER_PASSWORD environment "
					  "variable");
		c->password = strdup(env);
		return c->password ? 0 : fy_err_set(-ENOMEM, "out of memory");
	}
	rc = fy_read_file(file, PASSWORD_FILE_MAX, &data, &len);
	if (rc < 0)
		return fy_err_wrap(rc, "ferry.vcenter.passwordFile");
	if (stat(file, &sb) == 0 && (sb.st_mode & 077))
		fy_warn("vsphere: password file %s can be read by other users "
			"(mode %03o); chmod 600 it", file,
			(unsigned)(sb.st_mode & 0777));
	/* One line; the newline editors add is not part of it. */
	while (len && (((char *)data)[len - 1] == '\n' ||
		       ((char *)data)[len - 1] == '\r'))
		len--;
	if (memchr(data, '\0', len) || memchr(data, '\n', len)) {
		OPENSSL_cleanse(data, len);
		free(data);
		return fy_err_set(-EINVAL, "password file %s must hold one line",
				  file);
	}
	c->password = malloc(len + 1);
	if (c->password) {
		memcpy(c->password, data, len);
		c->password[len] = '\0';
	}
	OPENSSL_cleanse(data, len);
	free(data);
	return c->password ? 0 : fy_err_set(-ENOMEM, "out of memory");
}

static int get_seconds(const struct fy_config *cfg, const char *key,
		       int64_t def, int64_t min, int64_t max, long *out)
{
	int64_t v;
	int rc = fy_config_get_int(cfg, key, def, min, max, &v);

	if (rc == 0)
		*out = (long)v;
	return rc;
}

int fy_vs_client_create(const struct fy_config *cfg, struct fy_vs_client **out)
{
	struct fy_vs_client *c;
	const char *server, *s;
	int64_t v;
	long l = 0;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return fy_err_set(-ENOMEM, "out of memory");
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->login_lock, NULL);
	pthread_mutex_init(&c->reconfig_lock, NULL);
	pthread_cond_init(&c->conn_free, NULL);
	fy_vs_limits_default(&c->limits);

	server = fy_config_get(cfg, "ferry.vcenter.server");
	if (!server) {
		rc = fy_err_set(-EINVAL, "ferry.vcenter.server is not set");
		goto fail;
	}
	if ((rc = build_urls(c, server)) < 0)
		goto fail;
	s = fy_config_get(cfg, "ferry.vcenter.user");
	if (!s || !*s) {
		rc = fy_err_set(-EINVAL, "ferry.vcenter.user is not set");
		goto fail;
	}
	c->user = strdup(s);
	if (!c->user) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = read_password(c, cfg)) < 0)
		goto fail;
	if ((s = fy_config_get(cfg, "ferry.vcenter.thumbprint")) && *s &&
	    (rc = parse_thumbprint(c, s)) < 0)
		goto fail;
	if ((s = fy_config_get(cfg, "ferry.vcenter.caFile")) && *s &&
	    !(c->ca_file = strdup(s))) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	rc = fy_config_get_bool(cfg, "vixDiskLib.linuxSSL.verifyCertificates",
				true, &c->verify);
	if (rc < 0)
		goto fail;
	if ((s = fy_config_get(cfg, "ferry.vcenter.apiVersion")))
		snprintf(c->forced_version, sizeof(c->forced_version), "%s", s);
	if ((s = fy_config_get(cfg, "ferry.vcenter.datacenter")) && *s &&
	    !(c->datacenter = strdup(s))) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}

	if ((rc = get_seconds(cfg, "ferry.vcenter.connectTimeoutSeconds", 30, 1,
			      3600, &l)) < 0)
		goto fail;
	c->connect_timeout_ms = l * 1000;
	if ((rc = get_seconds(cfg, "ferry.vcenter.requestTimeoutSeconds", 600,
			      1, 86400, &l)) < 0)
		goto fail;
	c->request_timeout_ms = l * 1000;
	if ((rc = get_seconds(cfg, "ferry.vcenter.stallTimeoutSeconds", 60, 1,
			      3600, &c->stall_seconds)) < 0)
		goto fail;
	if ((rc = get_seconds(cfg, "ferry.vcenter.taskTimeoutSeconds", 3600, 1,
			      7 * 86400, &l)) < 0)
		goto fail;
	c->task_timeout_s = (int)l;
	if ((s = fy_config_get(cfg, "ferry.vcenter.maxResponseBytes"))) {
		uint64_t size;

		if (fy_parse_size(s, &size) < 0 || size < 4096 ||
		    size > (1ull << 32)) {
			rc = fy_err_set(-EINVAL, "ferry.vcenter.maxResponseBytes "
					"'%s' must be a size from 4K to 4G", s);
			goto fail;
		}
		c->limits.max_response = (size_t)size;
	}
	if ((rc = fy_config_get_int(cfg, "ferry.vcenter.maxElements",
				    (int64_t)c->limits.max_elements, 100,
				    100000000, &v)) < 0)
		goto fail;
	c->limits.max_elements = (size_t)v;
	if ((rc = fy_config_get_int(cfg, "ferry.vcenter.maxDepth",
				    c->limits.max_depth, 16, 256, &v)) < 0)
		goto fail;
	c->limits.max_depth = (unsigned)v;
	if ((rc = fy_config_get_int(cfg, "ferry.vcenter.pageSize", 100, 1,
				    10000, &v)) < 0)
		goto fail;
	c->page_size = (unsigned)v;
	if ((rc = fy_config_get_int(cfg, "ferry.vcenter.connections", 4, 1, 64,
				    &v)) < 0)
		goto fail;
	c->max_conns = (unsigned)v;
	if ((rc = fy_config_get_int(cfg, "ferry.vcenter.prepareRetries", 10, 0,
				    1000, &v)) < 0)
		goto fail;
	c->prepare_retries = (int)v;
	if ((rc = fy_config_get_int(cfg, "ferry.vcenter.prepareRetrySeconds", 60,
				    0, 3600, &v)) < 0)
		goto fail;
	c->prepare_interval_s = (int)v;
	*out = c;
	return 0;
fail:
	fy_vs_client_free(c);
	return rc;
}

void vs_client_set_transport(struct fy_vs_client *c, vs_transport_fn fn,
			     void *opaque)
{
	c->transport = fn;
	c->transport_opaque = opaque;
	snprintf(c->version, sizeof(c->version), "6.7");
	snprintf(c->about.api_type, sizeof(c->about.api_type), "VirtualCenter");
	c->is_vcenter = true;
	c->logged_in = true;
	c->logins = 1;
	c->login_time = fy_now();
	vs_moref_set(&c->root_folder, "Folder", "group-d1");
	vs_moref_set(&c->property_collector, "PropertyCollector",
		     "propertyCollector");
	vs_moref_set(&c->view_manager, "ViewManager", "ViewManager");
	vs_moref_set(&c->session_manager, "SessionManager", "SessionManager");
	vs_moref_set(&c->search_index, "SearchIndex", "SearchIndex");
	vs_moref_set(&c->authorization_manager, "AuthorizationManager",
		     "AuthorizationManager");
}

/* ---- one SOAP call ----------------------------------------------------- */

static int call_once(struct fy_vs_client *c, const char *method,
		     const char *body, size_t len, bool login,
		     struct vs_reply *reply, struct fy_vs_fault *fault)
{
	struct vs_http_resp resp;
	char action[64];
	int rc;

	snprintf(action, sizeof(action), "urn:vim25/%s", c->version);
	if (c->transport)
		rc = c->transport(c->transport_opaque, method, body, len, &resp);
	else
		rc = vs_http(c, c->url, action, body, len, true, login, &resp);
	if (rc < 0)
		return rc;
	fy_log(FY_LOG_TRIVIA, "vsphere: %s: HTTP %ld, %zu bytes", method,
	       resp.status, resp.len);
	rc = vs_soap_parse(resp.data, resp.len, &c->limits, method, reply,
			   fault);
	if (rc == -EBADMSG) {
		/* Say what the server answered, not only what it was not. */
		if (resp.status != 200 && resp.status != 500)
			rc = fy_err_wrap(rc, "HTTP %ld%s%s", resp.status,
					 resp.content_type[0] ? ", " : "",
					 resp.content_type);
	}
	vs_http_resp_release(&resp);
	return rc;
}

int vs_call(struct fy_vs_client *c, const char *method, const char *ns,
	    const struct fy_vs_moref *this, const char *body, const char *what,
	    struct vs_reply *reply)
{
	struct fy_vs_fault fault;
	struct vs_buf b;
	uint64_t gen;
	int rc, attempt;
	bool login = !strcmp(method, "Login");

	memset(reply, 0, sizeof(*reply));
	vs_buf_init(&b, REQUEST_MAX);
	vs_buf_str(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
		   "<soapenv:Envelope "
		   "xmlns:soapenv=\"" VS_NS_SOAPENV "\" "
		   "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" "
		   "xmlns:xsi=\"" VS_NS_XSI "\"><soapenv:Body>");
	vs_buf_printf(&b, "<%s xmlns=\"%s\">", method, ns ? ns : "urn:vim25");
	if (this)
		vs_buf_moref(&b, "_this", this);
	vs_buf_str(&b, body ? body : "");
	vs_buf_printf(&b, "</%s></soapenv:Body></soapenv:Envelope>", method);
	if (b.err) {
		rc = fy_err_set(b.err, "%s request too large", method);
		goto out;
	}
	for (attempt = 0;; attempt++) {
		pthread_mutex_lock(&c->lock);
		gen = c->generation;
		pthread_mutex_unlock(&c->lock);
		rc = call_once(c, method, b.data, b.len, login, reply, &fault);
		reply->generation = gen;
		/* Login and Logout never log in again. An expired session is
		 * renewed, twice at most per call (the server may expire it
		 * again while other threads' calls run). */
		if (rc == -EACCES && !strcmp(fault.type, "NotAuthenticated") &&
		    attempt < VS_RELOGINS_MAX && !login &&
		    strcmp(method, "Logout") && c->logged_in) {
			fy_info("vsphere: session expired during %s; logging in "
				"again", method);
			rc = vs_login(c, gen);
			if (rc < 0)
				goto out;
			continue;
		}
		break;
	}
	if (rc < 0) {
		if (fault.type[0]) {
			snprintf(fault.method, sizeof(fault.method), "%s", method);
			vs_fault_record(&fault);
		}
		rc = fy_err_wrap(rc, "%s%s%s", method, what ? " on " : "",
				 what ? what : "");
	}
out:
	/* A Login body holds the password. */
	if (b.data)
		OPENSSL_cleanse(b.data, b.len);
	vs_buf_release(&b);
	return rc;
}

/* ---- versions, service content, login ---------------------------------- */

/* Versions this library was written against, oldest first. */
static const char *const known_versions[] = {
	"6.5", "6.7", "6.7.1", "6.7.2", "6.7.3", "7.0", "7.0.1.0", "7.0.2.0",
	"7.0.3.0", "8.0.0.0", "8.0.1.0", "8.0.2.0", "8.0.3.0",
};
#define N_KNOWN (sizeof(known_versions) / sizeof(known_versions[0]))

int vs_version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		long x = 0, y = 0;
		char *end;

		if (*a) {
			x = strtol(a, &end, 10);
			a = *end == '.' ? end + 1 : end;
			if (*end && *end != '.')
				a = "";
		}
		if (*b) {
			y = strtol(b, &end, 10);
			b = *end == '.' ? end + 1 : end;
			if (*end && *end != '.')
				b = "";
		}
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

int vs_version_supported(const char *v, char *out, size_t outlen)
{
	size_t i;

	if (vs_version_cmp(v, known_versions[0]) < 0)
		return fy_err_set(-ENOTSUP, "API version %s is older than 6.5, "
				  "the oldest Ferry supports (vCenter and ESXi "
				  "6.5 to 8.x)", v);
	for (i = N_KNOWN; i-- > 0;)
		if (vs_version_cmp(known_versions[i], v) <= 0)
			break;
	snprintf(out, outlen, "%s", known_versions[i]);
	return 0;
}

int vs_pick_version(const char *data, size_t len,
		    const struct fy_vs_limits *lim, char *out, size_t outlen)
{
	const struct vs_node *ns, *prior, *v;
	struct vs_doc *doc = NULL;
	const char *best = NULL;
	int rc;

	rc = vs_xml_parse(data, len, lim, &doc);
	if (rc < 0)
		return fy_err_wrap(rc, "vimServiceVersions.xml");
	for (ns = vs_child(doc->root, "namespace"); ns; ns = vs_next_same(ns)) {
		const char *name = vs_child_text(ns, "name");

		if (name && !strcmp(name, "urn:vim25"))
			break;
	}
	if (!ns || !vs_child_text(ns, "version")) {
		rc = fy_err_set(-EBADMSG, "vimServiceVersions.xml names no "
				"urn:vim25 version");
		goto out;
	}
	/* The newest of the server's versions that we know; failing that,
	 * our newest not newer than the server's. */
	best = vs_child_text(ns, "version");
	rc = vs_version_supported(best, out, outlen);
	if (rc < 0)
		goto out;
	prior = vs_child(ns, "priorVersions");
	for (v = vs_child(prior, "version"); v; v = vs_next_same(v))
		if (vs_version_cmp(v->text, out) > 0 &&
		    vs_version_cmp(v->text, best) <= 0) {
			size_t i;

			for (i = 0; i < N_KNOWN; i++)
				if (!vs_version_cmp(v->text, known_versions[i]))
					snprintf(out, outlen, "%s", v->text);
		}
out:
	vs_doc_free(doc);
	return rc;
}

static int negotiate(struct fy_vs_client *c)
{
	struct vs_http_resp resp;
	int rc;

	if (c->forced_version[0]) {
		snprintf(c->version, sizeof(c->version), "%s", c->forced_version);
		return 0;
	}
	/* Until we know better, the oldest version we support: every server
	 * we support understands it. */
	snprintf(c->version, sizeof(c->version), "6.5");
	rc = vs_http(c, c->versions_url, NULL, NULL, 0, false, false, &resp);
	if (rc < 0)
		return rc;
	if (resp.status == 200 && resp.len <= VERSIONS_MAX) {
		rc = vs_pick_version(resp.data, resp.len, &c->limits, c->version,
				     sizeof(c->version));
		if (rc == -ENOTSUP) {
			vs_http_resp_release(&resp);
			return rc;
		}
		if (rc < 0)
			fy_warn("vsphere: %s; using API version %s", fy_err_msg(),
				c->version);
	} else {
		fy_info("vsphere: %s answered HTTP %ld; using API version %s "
			"until the server says more", c->versions_url,
			resp.status, c->version);
	}
	vs_http_resp_release(&resp);
	return 0;
}

static int read_service_content(struct fy_vs_client *c)
{
	static const struct {
		const char *name;
		size_t off;
	} refs[] = {
		{ "rootFolder", offsetof(struct fy_vs_client, root_folder) },
		{ "propertyCollector",
		  offsetof(struct fy_vs_client, property_collector) },
		{ "viewManager", offsetof(struct fy_vs_client, view_manager) },
		{ "sessionManager", offsetof(struct fy_vs_client, session_manager) },
		{ "searchIndex", offsetof(struct fy_vs_client, search_index) },
		{ "authorizationManager",
		  offsetof(struct fy_vs_client, authorization_manager) },
	};
	struct fy_vs_moref si;
	struct vs_reply r;
	const struct vs_node *about;
	char version[32];
	size_t i;
	int rc;

	vs_moref_set(&si, "ServiceInstance", "ServiceInstance");
	rc = vs_call(c, "RetrieveServiceContent", NULL, &si, NULL, NULL, &r);
	if (rc < 0)
		return rc;
	if (!r.returnval) {
		rc = fy_err_set(-EBADMSG, "RetrieveServiceContent returned nothing");
		goto out;
	}
	for (i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
		const struct vs_node *n = vs_child(r.returnval, refs[i].name);
		struct fy_vs_moref *m =
		    (struct fy_vs_moref *)((char *)c + refs[i].off);

		if (n)
			vs_node_moref(n, m);
	}
	if (!c->property_collector.value[0] || !c->session_manager.value[0] ||
	    !c->root_folder.value[0]) {
		rc = fy_err_set(-EBADMSG, "service content lacks the property "
				"collector, session manager or root folder");
		goto out;
	}
	about = vs_child(r.returnval, "about");
#define ABOUT(field, name)                                                 \
	snprintf(c->about.field, sizeof(c->about.field), "%s",             \
		 vs_child_text(about, name) ? vs_child_text(about, name) : "")
	ABOUT(api_type, "apiType");
	ABOUT(api_version, "apiVersion");
	ABOUT(full_name, "fullName");
	ABOUT(instance_uuid, "instanceUuid");
#undef ABOUT
	c->is_vcenter = !strcmp(c->about.api_type, "VirtualCenter");
	if (c->about.api_version[0] && !c->forced_version[0]) {
		rc = vs_version_supported(c->about.api_version, version,
					  sizeof(version));
		if (rc < 0)
			goto out;
		/* about.apiVersion is the truth when vimServiceVersions.xml
		 * was missing or said less. */
		if (vs_version_cmp(version, c->version) != 0) {
			fy_debug("vsphere: server API %s: speaking %s instead "
				 "of %s", c->about.api_version, version,
				 c->version);
			snprintf(c->version, sizeof(c->version), "%s", version);
		}
	}
	snprintf(c->about.used_version, sizeof(c->about.used_version), "%s",
		 c->version);
out:
	vs_reply_release(&r);
	return rc;
}

int vs_login(struct fy_vs_client *c, uint64_t seen_generation)
{
	struct vs_reply r;
	struct vs_buf b;
	int rc = 0;

	pthread_mutex_lock(&c->login_lock);
	pthread_mutex_lock(&c->lock);
	/* Another thread logged in since this one saw the fault. */
	if (c->generation != seen_generation) {
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	c->cookie[0] = '\0';
	pthread_mutex_unlock(&c->lock);

	vs_buf_init(&b, REQUEST_MAX);
	vs_buf_elem(&b, "userName", c->user);
	vs_buf_elem(&b, "password", c->password);
	vs_buf_elem(&b, "locale", "en");
	rc = b.err ? fy_err_set(b.err, "login request too large")
		   : vs_call(c, "Login", NULL, &c->session_manager, b.data,
			     NULL, &r);
	OPENSSL_cleanse(b.data, b.len);
	vs_buf_release(&b);
	if (rc < 0) {
		if (!strcmp(fy_vs_last_fault()->type, "InvalidLogin"))
			rc = fy_err_set(rc, "login to %s as %s refused: wrong "
					"user name or password (InvalidLogin)",
					c->url, c->user);
		else
			rc = fy_err_wrap(rc, "login to %s as %s", c->url,
					 c->user);
		goto out;
	}
	vs_reply_release(&r);
	pthread_mutex_lock(&c->lock);
	if (!c->cookie[0] && !c->transport) {
		pthread_mutex_unlock(&c->lock);
		rc = fy_err_set(-EPROTO, "login to %s: the server set no "
				"session cookie", c->url);
		goto out;
	}
	c->generation++;
	c->logins++;
	c->logged_in = true;
	c->login_time = fy_now();
	pthread_mutex_unlock(&c->lock);
	fy_info("vsphere: logged in to %s as %s (%s, API %s)", c->url, c->user,
		c->about.full_name, c->version);
out:
	pthread_mutex_unlock(&c->login_lock);
	return rc;
}

int fy_vs_client_connect(struct fy_vs_client *c)
{
	int rc;

	vs_fault_clear();
	if (c->pinned)
		fy_info("vsphere: %s: certificate pinned by SHA-256 thumbprint",
			c->url);
	else if (!c->verify)
		fy_warn("vsphere: certificate verification is OFF for %s "
			"(vixDiskLib.linuxSSL.verifyCertificates=0): anyone on "
			"the path can read the vCenter password; set "
			"ferry.vcenter.thumbprint or ferry.vcenter.caFile",
			c->url);
	rc = negotiate(c);
	if (rc < 0)
		return fy_err_wrap(rc, "connect to %s", c->url);
	rc = read_service_content(c);
	if (rc < 0)
		return fy_err_wrap(rc, "connect to %s", c->url);
	rc = vs_login(c, c->generation);
	if (rc < 0)
		return rc;
	if (!c->is_vcenter)
		fy_info("vsphere: %s is an ESXi host (%s), not a vCenter", c->url,
			c->about.api_type);
	return 0;
}

int fy_vs_client_open(const struct fy_config *cfg, struct fy_vs_client **out)
{
	struct fy_vs_client *c;
	int rc;

	*out = NULL;
	rc = fy_vs_client_create(cfg, &c);
	if (rc < 0)
		return rc;
	rc = fy_vs_client_connect(c);
	if (rc < 0) {
		/* Keep the message: free may log out and overwrite it. */
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		fy_vs_client_free(c);
		return fy_err_set(rc, "%s", msg);
	}
	*out = c;
	return 0;
}

int fy_vs_client_logout(struct fy_vs_client *c)
{
	struct vs_reply r;
	int rc;

	if (!c->logged_in)
		return 0;
	rc = vs_call(c, "Logout", NULL, &c->session_manager, NULL, NULL, &r);
	vs_reply_release(&r);
	c->logged_in = false;
	pthread_mutex_lock(&c->lock);
	c->cookie[0] = '\0';
	pthread_mutex_unlock(&c->lock);
	/* An expired session is logged out already. */
	if (rc == -EACCES)
		rc = 0;
	return rc;
}

void fy_vs_client_free(struct fy_vs_client *c)
{
	if (!c)
		return;
	if (c->logged_in) {
		vs_access_end_all(c);
		if (!c->transport && fy_vs_client_logout(c) < 0)
			fy_debug("vsphere: logout: %s", fy_err_msg());
	}
	vs_http_pool_free(c);
	if (c->password) {
		OPENSSL_cleanse(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->url);
	free(c->versions_url);
	free(c->user);
	free(c->ca_file);
	free(c->datacenter);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->login_lock);
	pthread_mutex_destroy(&c->reconfig_lock);
	pthread_cond_destroy(&c->conn_free);
	free(c);
}

void fy_vs_client_about(const struct fy_vs_client *c, struct fy_vs_about *out)
{
	*out = c->about;
	snprintf(out->used_version, sizeof(out->used_version), "%s", c->version);
}

bool fy_vs_client_is_vcenter(const struct fy_vs_client *c)
{
	return c->is_vcenter;
}

unsigned fy_vs_client_logins(const struct fy_vs_client *c)
{
	return c->logins;
}

void fy_vs_client_set_progress(struct fy_vs_client *c, fy_vs_progress_cb cb,
			       void *opaque)
{
	c->progress = cb;
	c->progress_opaque = opaque;
}

void vs_session_get(struct fy_vs_client *c, char *cookie, size_t cookielen,
		    uint64_t *generation, double *login_time)
{
	pthread_mutex_lock(&c->lock);
	snprintf(cookie, cookielen, "%s", c->cookie);
	*generation = c->generation;
	*login_time = c->login_time;
	pthread_mutex_unlock(&c->lock);
}

int fy_vs_client_sha1_thumbprint(struct fy_vs_client *c, char *out,
				 size_t outlen)
{
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->sha1_thumbprint[0])
		rc = fy_err_set(-ENOENT, "no certificate of %s was checked "
				"(certificate verification is off)", c->url);
	else
		snprintf(out, outlen, "%s", c->sha1_thumbprint);
	pthread_mutex_unlock(&c->lock);
	return rc;
}
