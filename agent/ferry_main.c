/*
 * ferry: the command line for admins and for the central backup server.
 *
 *   ferry [--config FILE] list [--namespace NS|--all-namespaces] [--json]
 *   ferry [--config FILE] show BACKUP [--json]
 *   ferry [--config FILE] restore BACKUP --disk N --output PATH|-
 *                [--namespace NS]
 *   ferry ca init DIR
 *   ferry ca issue DIR NAME --role ROLE [--san LIST]
 *   ferry ca revoke DIR NAME
 *   ferry [--config FILE] mount BACKUP --disk N (--listen HOST:PORT |
 *                --socket PATH) [--tls] [--cache-mb N]
 *
 * and, against an agent service (ferry-agent run; docs/CONTROL.md):
 *
 *   ferry [--agent HOST:PORT] agent status [--json]
 *   ferry backup --vm X [--disk N ...] [--transport LIST] [--full|
 *                --incremental] [--enable-cbt] [--quiesce] [--name NAME]
 *                [--json]
 *   ferry jobs [--json]
 *   ferry watch JOB [--json]
 *   ferry cancel JOB [--wait]
 *   ferry restore-vm BACKUP --name NEW [...] [--detach]
 *   ferry cleanup [--json]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/control.h"

struct cli {
	const char *config;
	const char *overrides[FY_CLI_SETS_MAX][2];
	unsigned n_overrides;
	bool json;
	const char *output;
	long disk;
	const char *san;
	const char *role;
	bool all_namespaces;
	/* mount */
	const char *listen, *socket, *ready_file, *nbd_cert, *nbd_key;
	bool tls, force;
	long cache_mb;
	/* the agent service's commands */
	const char *agent;
	const char *vm;
	const char *transport;
	const char *name;
	const char *snapshot;
	const char *repository;  /* --repository as given, for ferry backup */
	unsigned disks[FY_JOB_DISKS_MAX];
	unsigned n_disks;
	int mode;                /* FY_JOB_AUTO, FY_JOB_FULL, FY_JOB_INCREMENTAL */
	bool enable_cbt, quiesce, wait, quiet, detach;
	/* restore-vm */
	const char *datastore, *host, *pool, *folder, *provisioning;
	const char *networks[FY_RESTORE_NETWORKS_MAX];
	unsigned n_networks;
	bool keep_mac, power_on;
};

enum {
	OPT_CONFIG = 1000, OPT_JSON, OPT_SET, OPT_REPOSITORY, OPT_CERT, OPT_KEY,
	OPT_CA, OPT_DISK, OPT_OUTPUT, OPT_SAN, OPT_LOG_LEVEL, OPT_AGENT, OPT_VM,
	OPT_TRANSPORT, OPT_FULL, OPT_INCREMENTAL, OPT_ENABLE_CBT, OPT_QUIESCE,
	OPT_NAME, OPT_SNAPSHOT, OPT_WAIT, OPT_QUIET, OPT_DETACH, OPT_ROLE,
	OPT_NAMESPACE, OPT_ALL_NAMESPACES, OPT_LISTEN, OPT_SOCKET, OPT_TLS,
	OPT_CACHE_MB, OPT_READY_FILE, OPT_NBD_CERT, OPT_NBD_KEY, OPT_FORCE,
	OPT_DATASTORE, OPT_HOST, OPT_POOL, OPT_FOLDER, OPT_NETWORK,
	OPT_PROVISIONING, OPT_KEEP_MAC, OPT_POWER_ON,
	OPT_HELP,
};

static const struct option cli_opts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "set", required_argument, NULL, OPT_SET },
	{ "repository", required_argument, NULL, OPT_REPOSITORY },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "output", required_argument, NULL, OPT_OUTPUT },
	{ "san", required_argument, NULL, OPT_SAN },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "agent", required_argument, NULL, OPT_AGENT },
	{ "vm", required_argument, NULL, OPT_VM },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "full", no_argument, NULL, OPT_FULL },
	{ "incremental", no_argument, NULL, OPT_INCREMENTAL },
	{ "enable-cbt", no_argument, NULL, OPT_ENABLE_CBT },
	{ "quiesce", no_argument, NULL, OPT_QUIESCE },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "snapshot", required_argument, NULL, OPT_SNAPSHOT },
	{ "wait", no_argument, NULL, OPT_WAIT },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "detach", no_argument, NULL, OPT_DETACH },
	{ "role", required_argument, NULL, OPT_ROLE },
	{ "namespace", required_argument, NULL, OPT_NAMESPACE },
	{ "all-namespaces", no_argument, NULL, OPT_ALL_NAMESPACES },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "tls", no_argument, NULL, OPT_TLS },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "cache-mb", required_argument, NULL, OPT_CACHE_MB },
	{ "ready-file", required_argument, NULL, OPT_READY_FILE },
	{ "nbd-cert", required_argument, NULL, OPT_NBD_CERT },
	{ "nbd-key", required_argument, NULL, OPT_NBD_KEY },
	{ "datastore", required_argument, NULL, OPT_DATASTORE },
	{ "host", required_argument, NULL, OPT_HOST },
	{ "resource-pool", required_argument, NULL, OPT_POOL },
	{ "folder", required_argument, NULL, OPT_FOLDER },
	{ "network", required_argument, NULL, OPT_NETWORK },
	{ "disk-provisioning", required_argument, NULL, OPT_PROVISIONING },
	{ "keep-mac", no_argument, NULL, OPT_KEEP_MAC },
	{ "power-on", no_argument, NULL, OPT_POWER_ON },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static int fail(const char *what)
{
	fprintf(stderr, "ferry: %s: %s\n", what, fy_err_msg());
	return 1;
}

/* --config, then the flags that override it, in the order given. */
static int load_config(struct cli *cli, struct fy_config **out)
{
	struct fy_config *cfg = fy_config_new();
	unsigned i;
	int rc;

	if (!cfg)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = cli->config ? fy_config_load(cfg, cli->config) : 0;
	for (i = 0; rc == 0 && i < cli->n_overrides; i++)
		rc = cli->overrides[i][0]
			     ? fy_config_set(cfg, cli->overrides[i][0],
					     cli->overrides[i][1])
			     : fy_config_set_pair(cfg, cli->overrides[i][1]);
	if (rc == 0)
		rc = fy_config_check_unknown(cfg, fy_all_known_keys(), "ferry.");
	if (rc < 0) {
		fy_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return 0;
}

static int connect_repo(struct cli *cli, struct fy_conn **conn)
{
	struct fy_config *cfg = NULL;
	struct fy_settings s;
	int rc;

	rc = load_config(cli, &cfg);
	if (rc < 0)
		return rc;
	rc = fy_settings_load(cfg, &s);
	if (rc == 0)
		rc = fy_repo_connect(&s, "ferry " FERRY_VERSION, conn, NULL, 0);
	fy_config_free(cfg);
	return rc;
}

struct list_state {
	bool json;
	unsigned n;
};

/* A backup's VM configuration record, decoded here again: the bytes come
 * from the repository, and this client trusts no peer's bounds. *c is
 * NULL when the backup has none. */
static int decode_record(const Ferry__BackupSummary *b, struct fy_vmconfig **c)
{
	*c = NULL;
	if (!b->vm_config.len)
		return 0;
	return fy_vmconfig_decode(b->vm_config.data, b->vm_config.len, c);
}

/* What list's CONFIG column says: the record is there ("yes"), from a
 * later Ferry ("newer"), damaged ("bad"), missing from a VM backup
 * ("none": made before records existed), or not a VM backup ("-"). */
static const char *record_state(const Ferry__BackupSummary *b)
{
	struct fy_vmconfig *c = NULL;
	const char *state;

	if (!b->vm_config.len)
		return strcmp(b->source_kind, "vm") ? "-" : "none";
	if (decode_record(b, &c) < 0)
		return "bad";
	state = c->newer ? "newer" : "yes";
	fy_vmconfig_free(c);
	return state;
}

static void backup_time(const Ferry__BackupSummary *b, char *when, size_t len)
{
	time_t t = b->created_unix;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(when, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static uint64_t backup_size(const Ferry__BackupSummary *b)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < b->n_disks; i++)
		total += b->disks[i]->size;
	return total;
}

/* One backup as the JSON object list --json and show --json print;
 * vm_config is null without a record, {"error": ...} for one this build
 * cannot read. */
static void backup_json(const Ferry__BackupSummary *b)
{
	struct fy_vmconfig *c = NULL;
	char when[32];
	size_t i;

	backup_time(b, when, sizeof(when));
	printf("{\"id\":");
	fy_json_string(stdout, b->id);
	printf(",\"source\":");
	fy_json_string(stdout, b->source);
	printf(",\"source_kind\":");
	fy_json_string(stdout, b->source_kind);
	printf(",\"owner\":");
	fy_json_string(stdout, b->owner);
	printf(",\"namespace\":");
	fy_json_string(stdout, b->namespace_);
	printf(",\"time\":");
	fy_json_string(stdout, when);
	printf(",\"created_unix\":%" PRId64 ",\"parent_id\":", b->created_unix);
	fy_json_string(stdout, b->parent_id);
	printf(",\"block_size\":%u,\"size\":%" PRIu64 ",\"disks\":[",
	       b->block_size, backup_size(b));
	for (i = 0; i < b->n_disks; i++) {
		const Ferry__DiskSummary *d = b->disks[i];

		printf("%s{\"index\":%u,\"label\":", i ? "," : "", d->index);
		fy_json_string(stdout, d->label);
		printf(",\"size\":%" PRIu64 ",\"data_blocks\":%" PRIu64
		       ",\"hole_blocks\":%" PRIu64 ",\"transport\":",
		       d->size, d->data_blocks, d->hole_blocks);
		fy_json_string(stdout, d->transport);
		printf(",\"change_id\":");
		fy_json_string(stdout, d->change_id);
		printf(",\"disk_id\":");
		fy_json_string(stdout, d->disk_id);
		printf("}");
	}
	printf("],\"vm_config\":");
	if (!b->vm_config.len) {
		printf("null");
	} else if (decode_record(b, &c) < 0) {
		printf("{\"error\":");
		fy_json_string(stdout, fy_err_msg());
		printf("}");
	} else {
		fy_vmconfig_print(c, stdout, true);
		fy_vmconfig_free(c);
	}
	printf("}");
}

static int list_one(void *opaque, const Ferry__BackupSummary *b)
{
	struct list_state *ls = opaque;
	char when[32], size[32];

	if (ls->json) {
		if (ls->n++)
			printf(",");
		backup_json(b);
		return 0;
	}
	if (ls->n == 0)
		printf("%-26s %-20s %5s %10s %-6s  %-16s %s\n", "ID",
		       "TIME (UTC)", "DISKS", "SIZE", "CONFIG", "OWNER",
		       "SOURCE");
	backup_time(b, when, sizeof(when));
	fy_format_bytes(backup_size(b), size, sizeof(size));
	printf("%-26s %-20s %5zu %10s %-6s  %-16s %s%s%s\n", b->id, when,
	       b->n_disks, size, record_state(b),
	       b->owner[0] ? b->owner : "-", b->namespace_[0] ? b->namespace_ : "",
	       b->namespace_[0] ? "/" : "", b->source);
	ls->n++;
	return 0;
}

static int cmd_list(struct cli *cli, int argc, char **argv)
{
	struct list_state ls = { .json = cli->json };
	struct fy_conn *conn = NULL;
	int rc;

	if (argc) {
		fprintf(stderr, "usage: ferry [--config FILE] list "
			"[--namespace NS|--all-namespaces] [--json]\n");
		return 2;
	}
	rc = connect_repo(cli, &conn);
	if (rc < 0)
		return fail("list");
	if (ls.json)
		printf("[");
	rc = fy_client_list_ex(conn, cli->all_namespaces, list_one, &ls);
	if (ls.json)
		printf("]\n");
	else if (rc == 0 && ls.n == 0)
		printf("no backups\n");
	fy_conn_close(conn);
	return rc < 0 ? fail("list") : 0;
}

struct show_state {
	const char *id;
	bool json, found;
};

static void show_text(const Ferry__BackupSummary *b)
{
	struct fy_vmconfig *c = NULL;
	char when[32], size[32];
	size_t i;

	backup_time(b, when, sizeof(when));
	fy_format_bytes(backup_size(b), size, sizeof(size));
	printf("backup      %s\n", b->id);
	printf("source      %s (%s)\n", b->source, b->source_kind);
	printf("namespace   %s\n", b->namespace_[0] ? b->namespace_ : "-");
	printf("owner       %s\n", b->owner[0] ? b->owner : "- (legacy)");
	printf("time        %s\n", when);
	printf("parent      %s\n", b->parent_id[0] ? b->parent_id : "-");
	printf("block size  %u\n", b->block_size);
	printf("disks       %zu, %s\n", b->n_disks, size);
	for (i = 0; i < b->n_disks; i++) {
		const Ferry__DiskSummary *d = b->disks[i];

		fy_format_bytes(d->size, size, sizeof(size));
		printf("  %-3u %10s  %-8s %s\n", d->index, size,
		       d->transport[0] ? d->transport : "-", d->label);
	}
	if (!b->vm_config.len) {
		if (strcmp(b->source_kind, "vm"))
			printf("VM configuration: none (not a VM backup)\n");
		else
			printf("VM configuration: not recorded (made before "
			       "Ferry recorded it); the disks restore as "
			       "usual\n");
		return;
	}
	if (decode_record(b, &c) < 0) {
		printf("VM configuration: cannot be read: %s\n", fy_err_msg());
		return;
	}
	fy_vmconfig_print(c, stdout, false);
	fy_vmconfig_free(c);
}

static int show_one(void *opaque, const Ferry__BackupSummary *b)
{
	struct show_state *ss = opaque;

	if (ss->found || strcmp(b->id, ss->id))
		return 0;
	ss->found = true;
	if (ss->json) {
		backup_json(b);
		printf("\n");
	} else {
		show_text(b);
	}
	return 0;
}

/* The repository has no "get one backup" request: the listing already
 * carries all a backup is, and the client may read only what it lists. */
static int cmd_show(struct cli *cli, int argc, char **argv)
{
	struct show_state ss = { .json = cli->json };
	struct fy_conn *conn = NULL;
	int rc;

	if (argc != 1) {
		fprintf(stderr, "usage: ferry [--config FILE] show BACKUP "
			"[--json]\n");
		return 2;
	}
	ss.id = argv[0];
	rc = connect_repo(cli, &conn);
	if (rc < 0)
		return fail("show");
	rc = fy_client_list_ex(conn, true, show_one, &ss);
	fy_conn_close(conn);
	if (rc < 0)
		return fail("show");
	if (!ss.found) {
		fprintf(stderr, "ferry: show: no backup %s that this "
			"certificate may read\n", ss.id);
		return 1;
	}
	return 0;
}

static int cmd_restore(struct cli *cli, int argc, char **argv)
{
	struct fy_conn *conn = NULL;
	uint64_t written = 0;
	double start = fy_now();
	int rc;

	if (argc != 1 || !cli->output || cli->disk < 0) {
		fprintf(stderr, "usage: ferry [--config FILE] restore BACKUP "
			"--disk N --output PATH|- [--force]\n");
		return 2;
	}
	if (!cli->force && strcmp(cli->output, "-")) {
		struct stat st;

		/* Said before anything is read; checked again when the file
		 * is opened. */
		if (stat(cli->output, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size) {
			fprintf(stderr, "ferry: restore: %s exists; --force "
				"replaces it\n", cli->output);
			return 1;
		}
	}
	rc = connect_repo(cli, &conn);
	if (rc < 0)
		return fail("restore");
	rc = fy_client_restore(conn, argv[0], (uint32_t)cli->disk, cli->output,
			       isatty(STDERR_FILENO), cli->force, &written);
	fy_conn_close(conn);
	if (rc < 0)
		return fail("restore");
	if (strcmp(cli->output, "-")) {
		char w[32];

		fy_format_bytes(written, w, sizeof(w));
		fprintf(stderr, "restored disk %ld of %s to %s: %s of data in "
			"%.1f s\n", cli->disk, argv[0], cli->output, w,
			fy_now() - start);
	}
	return 0;
}

static int cmd_mount(struct cli *cli, int argc, char **argv)
{
	struct fy_mount_opts o = { .cache_mb = 256 };
	struct fy_config *cfg = NULL;
	struct fy_settings s;
	int rc;

	if (argc != 1 || cli->disk < 0 || !cli->listen == !cli->socket ||
	    (cli->tls && !cli->listen)) {
		fprintf(stderr, "usage: ferry [--config FILE] mount BACKUP "
			"--disk N (--listen HOST:PORT [--tls] | --socket PATH)\n"
			"         [--cache-mb N] [--nbd-cert F --nbd-key F] "
			"[--ready-file F]\n");
		return 2;
	}
	o.backup_id = argv[0];
	o.disk = (uint32_t)cli->disk;
	o.listen = cli->listen;
	o.socket = cli->socket;
	o.tls = cli->tls;
	o.tls_cert = cli->nbd_cert;
	o.tls_key = cli->nbd_key;
	o.ready_file = cli->ready_file;
	if (cli->cache_mb)
		o.cache_mb = (unsigned)cli->cache_mb;
	rc = load_config(cli, &cfg);
	if (rc == 0)
		rc = fy_settings_load(cfg, &s);
	if (rc == 0)
		rc = fy_mount_run(&s, &o);
	fy_config_free(cfg);
	return rc < 0 ? fail("mount") : 0;
}

static int cmd_ca(struct cli *cli, int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[0], "init")) {
		if (fy_ca_init(argv[1]) < 0)
			return fail("ca init");
		printf("created %s/ca.crt and %s/ca.key\n", argv[1], argv[1]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[0], "issue")) {
		enum fy_role role;

		if (!cli->role) {
			fprintf(stderr, "ferry: ca issue needs --role agent|"
				"controller|admin|repository "
				"(docs/SECURITY.md)\n");
			return 2;
		}
		if (fy_role_parse(cli->role, &role) < 0)
			return fail("ca issue");
		if (fy_ca_issue(argv[1], argv[2], cli->san, role) < 0)
			return fail("ca issue");
		printf("created %s/%s.crt and %s/%s.key (role %s)\n", argv[1],
		       argv[2], argv[1], argv[2], fy_role_name(role));
		return 0;
	}
	if (argc == 3 && !strcmp(argv[0], "revoke")) {
		if (fy_ca_revoke(argv[1], argv[2]) < 0)
			return fail("ca revoke");
		printf("revoked %s: %s/ca.crl now lists it; copy it to every "
		       "server (ferry.tls.crl, ferry-repo serve --crl) and "
		       "reload them\n", argv[2], argv[1]);
		return 0;
	}
	fprintf(stderr, "usage: ferry ca init DIR\n"
		"       ferry ca issue DIR NAME --role agent|controller|admin|"
		"repository [--san NAME,IP,...]\n"
		"       ferry ca revoke DIR NAME\n");
	return 2;
}

/* ---- the agent service (ferry-agent run): docs/CONTROL.md --------------- */

/* Connects to the agent (--agent, else ferry.agent) with this side's
 * certificate (ferry.tls.cert, ferry.tls.key) and the CA the agent's
 * certificate must chain to (ferry.tls.ca), and greets it. */
static int connect_agent(struct cli *cli, struct fy_conn **conn)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Hello h = FERRY__CONTROL__HELLO__INIT;
	struct fy_config *cfg = NULL;
	struct fy_tls_opts o = { 0 };
	struct fy_tls *tls = NULL;
	fy_control_frame *r = NULL;
	const char *agent;
	char software[64];
	int64_t timeout;
	int rc;

	*conn = NULL;
	if ((rc = load_config(cli, &cfg)) < 0)
		return rc;
	agent = cli->agent ? cli->agent : fy_config_get(cfg, "ferry.agent");
	if (!agent) {
		rc = fy_err_set(-EINVAL, "which agent? --agent HOST:PORT, or "
				"ferry.agent in the configuration");
		goto out;
	}
	o.cert = fy_config_get(cfg, "ferry.tls.cert");
	o.key = fy_config_get(cfg, "ferry.tls.key");
	o.ca = fy_config_get(cfg, "ferry.tls.ca");
	o.crl = fy_config_get(cfg, "ferry.tls.crl");
	if ((rc = fy_config_get_int(cfg, "ferry.timeoutSeconds", 300, 1, 86400,
				    &timeout)) < 0 ||
	    (rc = fy_tls_new_client(&o, &tls)) < 0)
		goto out;
	rc = fy_conn_connect(tls, agent,
			     fy_config_get(cfg, "ferry.agent.serverName"),
			     (int)timeout * 1000, conn);
	if (rc == 0) {
		rc = fy_check_server_role(*conn, FY_ROLE_AGENT, "agent");
		if (rc < 0) {
			fy_conn_close(*conn);
			*conn = NULL;
		}
	}
	if (rc < 0) {
		rc = fy_err_wrap(rc, "agent %s", agent);
		goto out;
	}
	snprintf(software, sizeof(software), "ferry %s", FERRY_VERSION);
	h.protocol_version = FY_CONTROL_PROTOCOL_VERSION;
	h.software = software;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO;
	f.hello = &h;
	if ((rc = fy_control_send(*conn, &f)) < 0 ||
	    (rc = fy_control_recv(*conn, &r)) < 0) {
		rc = fy_err_wrap(rc, "agent %s", agent);
		goto out;
	}
	if (r->body_case == FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR)
		rc = fy_err_set(r->error->code < 0 ? r->error->code : -EPROTO,
				"agent %s refused us: %s", agent,
				r->error->message);
	else if (r->body_case != FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO_REPLY)
		rc = fy_err_set(-EPROTO, "agent %s answered Hello with %s",
				agent, fy_control_name(r));
	else if (r->hello_reply->protocol_version != FY_CONTROL_PROTOCOL_VERSION)
		rc = fy_err_set(-EPROTONOSUPPORT, "agent %s speaks control "
				"protocol %u, we speak %u", agent,
				r->hello_reply->protocol_version,
				FY_CONTROL_PROTOCOL_VERSION);
out:
	fy_control_free(r);
	if (rc < 0) {
		fy_conn_close(*conn);
		*conn = NULL;
	}
	fy_tls_free(tls);
	fy_config_free(cfg);
	return rc;
}

/* Sends one request and receives its answer, which must be of type want;
 * an Error frame becomes the error it carries. */
static int request(struct fy_conn *c, fy_control_frame *req,
		   Ferry__Control__ControlFrame__BodyCase want,
		   fy_control_frame **out)
{
	fy_control_frame *r = NULL;
	int rc = fy_control_send(c, req);

	if (rc == 0)
		rc = fy_control_recv(c, &r);
	if (rc < 0)
		return rc;
	if (r->body_case == FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR) {
		rc = fy_err_set(r->error->code < 0 ? r->error->code : -EPROTO,
				"%s", r->error->message);
		fy_control_free(r);
		return rc;
	}
	if (r->body_case != want) {
		rc = fy_err_set(-EPROTO, "the agent answered %s with %s",
				fy_control_name(req), fy_control_name(r));
		fy_control_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* Connects to the agent and sends req. With reply, receives the answer,
 * which must be of type want; without, the caller receives what follows
 * (a Watch's events). With conn the connection stays open for the
 * caller, else it is closed; on failure nothing stays open. */
static int ask(struct cli *cli, fy_control_frame *req,
	       Ferry__Control__ControlFrame__BodyCase want,
	       fy_control_frame **reply, struct fy_conn **conn)
{
	struct fy_conn *c = NULL;
	int rc = connect_agent(cli, &c);

	if (rc == 0)
		rc = reply ? request(c, req, want, reply)
			   : fy_control_send(c, req);
	if (rc < 0 || !conn) {
		fy_conn_close(c);
		c = NULL;
	}
	if (conn)
		*conn = c;
	return rc;
}

static void time_text(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t) {
		snprintf(buf, len, "-");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void job_info_json(const Ferry__Control__JobInfo *j)
{
	printf("{\"job_id\":");
	fy_json_string(stdout, j->job_id);
	printf(",\"kind\":");
	fy_json_string(stdout, j->kind[0] ? j->kind : FY_JOB_KIND_BACKUP);
	printf(",\"vm\":");
	fy_json_string(stdout, j->vm);
	printf(",\"vm_moref\":");
	fy_json_string(stdout, j->vm_moref);
	printf(",\"name\":");
	fy_json_string(stdout, j->name);
	printf(",\"state\":\"%s\",\"phase\":", fy_control_state_name(j->state));
	fy_json_string(stdout, j->phase);
	printf(",\"started_unix\":%" PRId64 ",\"finished_unix\":%" PRId64
	       ",\"disks\":%u,\"size\":%" PRIu64 ",\"bytes_read\":%" PRIu64
	       ",\"backup_id\":", j->started_unix, j->finished_unix, j->n_disks,
	       j->size, j->bytes_read);
	fy_json_string(stdout, j->backup_id);
	printf(",\"error\":");
	fy_json_string(stdout, j->error);
	printf(",\"client\":");
	fy_json_string(stdout, j->client);
	printf("}");
}

static void jobs_table(Ferry__Control__JobInfo **jobs, size_t n)
{
	size_t i;

	printf("%-20s %-9s %-8s %-20s %-20s %s\n", "JOB", "STATE", "PHASE",
	       "VM", "STARTED (UTC)", "BACKUP / ERROR");
	for (i = 0; i < n; i++) {
		const Ferry__Control__JobInfo *j = jobs[i];
		char when[32];

		time_text(j->started_unix, when, sizeof(when));
		printf("%-20s %-9s %-8s %-20s %-20s %s\n", j->job_id,
		       fy_control_state_name(j->state), j->phase, j->vm, when,
		       j->error[0] ? j->error : j->backup_id);
	}
}

static void cleanup_json(const Ferry__Control__CleanupResult *c)
{
	printf("{\"ran\":%s,\"ok\":%s,\"error\":", c->ran ? "true" : "false",
	       c->ran && c->code == 0 ? "true" : "false");
	fy_json_string(stdout, c->error);
	printf(",\"time_unix\":%" PRId64 ",\"numCleanedUp\":%u,"
	       "\"numRemaining\":%u,\"log\":", c->time_unix, c->num_cleaned_up,
	       c->num_remaining);
	fy_json_string(stdout, c->log);
	printf("}");
}

static void cleanup_text(const Ferry__Control__CleanupResult *c, FILE *f)
{
	char when[32];

	time_text(c->time_unix, when, sizeof(when));
	if (!c->ran)
		fprintf(f, "not run yet\n");
	else if (c->code < 0)
		fprintf(f, "failed at %s: %s\n", when, c->error);
	else
		fprintf(f, "%s numCleanedUp=%u numRemaining=%u\n", when,
			c->num_cleaned_up, c->num_remaining);
}

static int cmd_agent(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StatusRequest sr = FERRY__CONTROL__STATUS_REQUEST__INIT;
	fy_control_frame *r = NULL;
	const Ferry__Control__Status *s;
	char when[32];
	size_t i;

	if (argc != 1 || strcmp(argv[0], "status")) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"agent status [--json]\n");
		return 2;
	}
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS_REQUEST;
	req.status_request = &sr;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS, &r,
		NULL) < 0)
		return fail("agent status");
	s = r->status;
	if (cli->json) {
		printf("{\"software\":");
		fy_json_string(stdout, s->software);
		printf(",\"protocol_version\":%u,\"started_unix\":%" PRId64
		       ",\"config_file\":", s->protocol_version, s->started_unix);
		fy_json_string(stdout, s->config_file);
		printf(",\"transports\":");
		fy_json_string(stdout, s->transports);
		printf(",\"transport_modes\":[");
		for (i = 0; i < s->n_transport_modes; i++) {
			printf("%s{\"name\":", i ? "," : "");
			fy_json_string(stdout, s->transport_modes[i]->name);
			printf(",\"available\":%s,\"reason\":",
			       s->transport_modes[i]->available ? "true"
								: "false");
			fy_json_string(stdout, s->transport_modes[i]->reason);
			printf("}");
		}
		printf("],\"max_jobs\":%u,\"jobs\":[", s->max_jobs);
		for (i = 0; i < s->n_jobs; i++) {
			printf("%s", i ? "," : "");
			job_info_json(s->jobs[i]);
		}
		printf("],\"last_cleanup\":");
		if (s->last_cleanup)
			cleanup_json(s->last_cleanup);
		else
			printf("null");
		printf("}\n");
	} else {
		time_text(s->started_unix, when, sizeof(when));
		printf("agent:        %s (control protocol %u), up since %s\n",
		       s->software, s->protocol_version, when);
		printf("config:       %s\n", s->config_file);
		printf("transports:   %s\n",
		       s->transports[0] ? s->transports : "(none)");
		for (i = 0; i < s->n_transport_modes; i++)
			if (!s->transport_modes[i]->available)
				printf("              %s: %s\n",
				       s->transport_modes[i]->name,
				       s->transport_modes[i]->reason);
		printf("jobs:         %zu running (at most %u)\n", s->n_jobs,
		       s->max_jobs);
		if (s->n_jobs)
			jobs_table(s->jobs, s->n_jobs);
		printf("last cleanup: ");
		if (s->last_cleanup)
			cleanup_text(s->last_cleanup, stdout);
		else
			printf("unknown\n");
	}
	fy_control_free(r);
	return 0;
}

/* What a watcher prints while a job runs: phases as lines, and on a
 * terminal the progress line of the disk being read. */
struct watch_state {
	bool tty, quiet, line_open;
	unsigned disk;
};

/* "disk 1/2  45% of 64.0 MiB  read ...  sent ...  12.0 MiB/s  ETA 3s" */
static void progress_line(unsigned disk, unsigned n_disks,
			  const struct fy_disk_stats *st)
{
	char size[32], rd[32], zero[32], sent[32], rate[32];
	uint64_t done = st->bytes_read + st->bytes_zero + st->bytes_unchanged;
	double bps = st->seconds > 0 ? done / st->seconds : 0;
	double eta = bps > 0 && st->size > done ? (st->size - done) / bps : 0;

	if (done > st->size)
		done = st->size;
	fy_format_bytes(st->size, size, sizeof(size));
	fy_format_bytes(st->bytes_read, rd, sizeof(rd));
	fy_format_bytes(st->bytes_zero, zero, sizeof(zero));
	fy_format_bytes(st->bytes_sent, sent, sizeof(sent));
	fy_format_bytes((uint64_t)bps, rate, sizeof(rate));
	fprintf(stderr, "\r\033[Kdisk %u/%u  %3.0f%% of %s  read %s  zero %s  "
		"sent %s  %s/s  ETA %.0fs", disk + 1, n_disks,
		st->size ? 100.0 * done / st->size : 100.0, size, rd, zero,
		sent, rate, eta);
	fflush(stderr);
}

static void show_event(struct watch_state *w, const Ferry__Control__JobEvent *e)
{
	if (w->quiet)
		return;
	if (e->phase && e->phase[0] && strcmp(e->phase, "done")) {
		if (w->line_open)
			fprintf(stderr, "\n");
		w->line_open = false;
		fprintf(stderr, "job %s: %s%s%s\n", e->job_id, e->phase,
			e->detail[0] ? " " : "", e->detail);
	}
	if (e->progress && w->tty) {
		struct fy_disk_stats st;

		fy_control_progress_from(e->progress, &st);
		if (w->line_open && e->progress->disk != w->disk)
			fprintf(stderr, "\n");
		w->disk = e->progress->disk;
		progress_line(e->progress->disk, e->progress->n_disks, &st);
		w->line_open = !e->progress->done;
		if (e->progress->done)
			fprintf(stderr, "\n");
	}
}

/* Receives a job's events until its final one; the result is filled from
 * it. */
static int follow_job(struct fy_conn *c, bool quiet, struct fy_job_result *res)
{
	struct watch_state w = { .tty = isatty(STDERR_FILENO), .quiet = quiet };
	int rc;

	for (;;) {
		fy_control_frame *r = NULL;

		rc = fy_control_recv(c, &r);
		if (rc < 0)
			break;
		if (r->body_case == FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR) {
			rc = fy_err_set(r->error->code < 0 ? r->error->code
							   : -EPROTO,
					"%s", r->error->message);
			fy_control_free(r);
			break;
		}
		if (r->body_case != FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT) {
			rc = fy_err_set(-EPROTO, "the agent sent %s amid a job's "
					"events", fy_control_name(r));
			fy_control_free(r);
			break;
		}
		show_event(&w, r->job_event);
		if (r->job_event->final) {
			fy_control_result_from(r->job_event->result, res);
			fy_control_free(r);
			break;
		}
		fy_control_free(r);
	}
	if (w.line_open)
		fprintf(stderr, "\n");
	return rc;
}

/* Follows a job to its end and reports it as ferry backup does: the
 * result (JSON with --json), and its error on stderr. 0 when it made a
 * backup, 1 otherwise. */
static int follow_and_report(struct cli *cli, struct fy_conn *c,
			     const char *job, struct fy_job_result *res)
{
	unsigned i;

	int rc = follow_job(c, cli->quiet, res);

	if (rc == -ENOENT) {
		fprintf(stderr, "ferry: %s\n", fy_err_msg());
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "ferry: lost job %s: %s; it may still run on "
			"the agent (ferry watch %s, ferry jobs)\n", job,
			fy_err_msg(), job);
		return 1;
	}
	if (cli->json) {
		fy_job_result_json(stdout, res);
		printf("\n");
	} else if (res->rc == 0 && !strcmp(res->kind, FY_JOB_KIND_RESTORE_VM)) {
		fy_restore_vm_result_text(stdout, res);
	} else if (res->rc == 0) {
		printf("backup %s: VM %s, %u disk(s)", res->backup_id,
		       res->vm_name, res->n);
		for (i = 0; i < res->n; i++) {
			unsigned k;

			/* Each transport once: "over hotadd,nbdssl". */
			for (k = 0; k < i; k++)
				if (!strcmp(res->disks[k].transport,
					    res->disks[i].transport))
					break;
			if (k == i)
				printf("%s%s", i ? "," : " over ",
				       res->disks[i].transport);
		}
		printf(", %.1f s (job %s)\n", res->seconds, job);
	}
	if (res->rc < 0) {
		fprintf(stderr, "ferry: %s %s: %s\n",
			!strcmp(res->kind, FY_JOB_KIND_RESTORE_VM) ? "restore-vm"
								   : "backup",
			res->cancelled ? "cancelled" : "failed", res->error);
		return 1;
	}
	return 0;
}

/* ferry watch JOB: follows a job already running (after ferry backup was
 * interrupted, or one another controller started) to its end. */
static int cmd_watch(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Watch wt = FERRY__CONTROL__WATCH__INIT;
	struct fy_job_result *res;
	struct fy_conn *c = NULL;
	int status;

	if (argc != 1) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"watch JOB [--json] [--quiet]\n");
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		fprintf(stderr, "ferry: out of memory\n");
		return 1;
	}
	wt.job_id = argv[0];
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH;
	req.watch = &wt;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY__NOT_SET, NULL,
		&c) < 0) {
		free(res);
		return fail("watch");
	}
	status = follow_and_report(cli, c, argv[0], res);
	fy_conn_close(c);
	free(res);
	return status;
}

/* Shared by backup and restore-vm: asks for a job, then follows it, or
 * prints its id with --detach. */
static int start_and_follow(struct cli *cli, fy_control_frame *req,
			    const char *what, struct fy_job_result *res)
{
	fy_control_frame *r = NULL;
	struct fy_conn *c = NULL;
	char job[FY_CONTROL_NAME_MAX + 1] = "";
	int status = 1;

	if (ask(cli, req, FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_STARTED, &r,
		&c) < 0) {
		fail(!strcmp(res->kind, FY_JOB_KIND_RESTORE_VM) ? "restore-vm"
								: "backup");
		goto out;
	}
	snprintf(job, sizeof(job), "%s", r->job_started->job_id);
	fy_control_free(r);
	if (cli->detach) {
		/* The job runs on without us: ferry watch, jobs, cancel. */
		if (cli->json) {
			printf("{\"job_id\":");
			fy_json_string(stdout, job);
			printf("}\n");
		} else {
			printf("%s\n", job);
		}
		status = 0;
		goto out;
	}
	if (!cli->quiet)
		fprintf(stderr, "job %s: %s started (ferry cancel %s stops "
			"it)\n", job, what, job);
	status = follow_and_report(cli, c, job, res);
out:
	fy_conn_close(c);
	return status;
}

/* ferry restore-vm: the agent service creates the VM and writes its
 * disks (docs/RESTORE.md); the same as ferry-agent restore-vm there. */
static int cmd_restore_vm(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StartRestoreVm m = FERRY__CONTROL__START_RESTORE_VM__INIT;
	struct fy_restore_vm_spec sp = { 0 };
	struct fy_job_result *res;
	char what[2 * FY_CONTROL_NAME_MAX];
	unsigned i;
	int status;

	if (argc != 1 || !cli->name) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"restore-vm BACKUP --name NEW [...]\n"
			"       (ferry restore-vm --help)\n");
		return 2;
	}
	sp.backup_id = argv[0];
	sp.name = cli->name;
	sp.host = cli->host;
	sp.pool = cli->pool;
	sp.provisioning = cli->provisioning;
	sp.transports = cli->transport;
	sp.n_networks = cli->n_networks;
	for (i = 0; i < cli->n_networks; i++)
		sp.networks[i] = cli->networks[i];
	/* What needs no agent is checked here, with the agent's words. */
	if (fy_restore_vm_check(&sp) < 0) {
		fprintf(stderr, "ferry: %s\n", fy_err_msg());
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		fprintf(stderr, "ferry: out of memory\n");
		return 1;
	}
	snprintf(res->kind, sizeof(res->kind), "%s", FY_JOB_KIND_RESTORE_VM);
	m.backup_id = argv[0];
	m.name = (char *)cli->name;
	m.datastore = (char *)(cli->datastore ? cli->datastore : "");
	m.host = (char *)(cli->host ? cli->host : "");
	m.resource_pool = (char *)(cli->pool ? cli->pool : "");
	m.folder = (char *)(cli->folder ? cli->folder : "");
	m.n_networks = cli->n_networks;
	m.networks = (char **)cli->networks;
	m.disk_provisioning = (char *)(cli->provisioning ? cli->provisioning
							 : "");
	m.keep_mac = cli->keep_mac;
	m.power_on = cli->power_on;
	m.transports = (char *)(cli->transport ? cli->transport : "");
	m.watch = !cli->detach;
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM;
	req.start_restore_vm = &m;
	snprintf(what, sizeof(what), "restore of backup %s as VM %s", argv[0],
		 cli->name);
	status = start_and_follow(cli, &req, what, res);
	free(res);
	return status;
}

static int cmd_backup(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StartBackup sb = FERRY__CONTROL__START_BACKUP__INIT;
	struct fy_job_result *res;
	uint32_t disks[FY_JOB_DISKS_MAX];
	char what[FY_CONTROL_NAME_MAX + 32];
	unsigned i;
	int status;

	(void)argv;
	if (argc || !cli->vm) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"backup --vm NAME|MOREF [--disk N ...]\n"
			"         [--transport LIST] [--full|--incremental] "
			"[--enable-cbt] [--quiesce]\n"
			"         [--name NAME] [--snapshot MOREF] "
			"[--repository HOST:PORT] [--json] [--quiet] "
			"[--detach]\n");
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		fprintf(stderr, "ferry: out of memory\n");
		return 1;
	}
	for (i = 0; i < cli->n_disks; i++)
		disks[i] = cli->disks[i];
	sb.vm = (char *)cli->vm;
	sb.n_disks = cli->n_disks;
	sb.disks = disks;
	sb.transports = (char *)(cli->transport ? cli->transport : "");
	sb.quiesce = cli->quiesce;
	sb.mode = cli->mode == FY_JOB_FULL ? FERRY__CONTROL__MODE__MODE_FULL
		  : cli->mode == FY_JOB_INCREMENTAL
		      ? FERRY__CONTROL__MODE__MODE_INCREMENTAL
		      : FERRY__CONTROL__MODE__MODE_AUTO;
	sb.enable_cbt = cli->enable_cbt;
	sb.name = (char *)(cli->name ? cli->name : "");
	sb.repository = (char *)(cli->repository ? cli->repository : "");
	sb.snapshot = (char *)(cli->snapshot ? cli->snapshot : "");
	sb.watch = !cli->detach;
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP;
	req.start_backup = &sb;
	snprintf(what, sizeof(what), "backup of VM %s", cli->vm);
	status = start_and_follow(cli, &req, what, res);
	free(res);
	return status;
}

static int cmd_jobs(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__ListJobs lj = FERRY__CONTROL__LIST_JOBS__INIT;
	fy_control_frame *r = NULL;
	size_t i;

	(void)argv;
	if (argc) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"jobs [--json]\n");
		return 2;
	}
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_LIST_JOBS;
	req.list_jobs = &lj;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_LIST, &r,
		NULL) < 0)
		return fail("jobs");
	if (cli->json) {
		printf("[");
		for (i = 0; i < r->job_list->n_jobs; i++) {
			printf("%s", i ? "," : "");
			job_info_json(r->job_list->jobs[i]);
		}
		printf("]\n");
	} else if (!r->job_list->n_jobs) {
		printf("no jobs\n");
	} else {
		jobs_table(r->job_list->jobs, r->job_list->n_jobs);
	}
	fy_control_free(r);
	return 0;
}

static int cmd_cancel(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Cancel cn = FERRY__CONTROL__CANCEL__INIT;
	Ferry__Control__Watch wt = FERRY__CONTROL__WATCH__INIT;
	fy_control_frame *r = NULL;
	struct fy_conn *c = NULL;
	Ferry__Control__JobState state;
	struct fy_job_result *res;
	int rc;

	if (argc != 1) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"cancel JOB [--wait]\n");
		return 2;
	}
	cn.job_id = argv[0];
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL;
	req.cancel = &cn;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL_REPLY, &r,
		&c) < 0)
		return fail("cancel");
	state = r->cancel_reply->state;
	fy_control_free(r);
	if (state != FERRY__CONTROL__JOB_STATE__JOB_STATE_RUNNING &&
	    state != FERRY__CONTROL__JOB_STATE__JOB_STATE_QUEUED) {
		printf("job %s already ended: %s\n", argv[0],
		       fy_control_state_name(state));
		fy_conn_close(c);
		return 0;
	}
	printf("job %s: cancelling; it undoes what it did (detach, snapshot "
	       "removal, EndAccess)\n", argv[0]);
	if (!cli->wait) {
		fy_conn_close(c);
		return 0;
	}
	fflush(stdout);
	res = calloc(1, sizeof(*res));
	wt.job_id = argv[0];
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH;
	req.watch = &wt;
	rc = res ? fy_control_send(c, &req)
		 : fy_err_set(-ENOMEM, "out of memory");
	if (rc == 0)
		rc = follow_job(c, true, res);
	fy_conn_close(c);
	if (rc < 0) {
		free(res);
		return fail("cancel --wait");
	}
	printf("job %s: %s%s%s\n", argv[0],
	       res->cancelled ? "cancelled" : res->rc < 0 ? "failed" : "done",
	       res->rc < 0 ? ": " : "", res->rc < 0 ? res->error : "");
	free(res);
	return 0;
}

static int cmd_cleanup(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Cleanup cl = FERRY__CONTROL__CLEANUP__INIT;
	fy_control_frame *r = NULL;
	const Ferry__Control__CleanupResult *cr;
	int status;

	(void)argv;
	if (argc) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"cleanup [--json]\n");
		return 2;
	}
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP;
	req.cleanup = &cl;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP_REPLY,
		&r, NULL) < 0)
		return fail("cleanup");
	cr = r->cleanup_reply->result;
	if (!cr) {
		fy_control_free(r);
		fy_err_set(-EPROTO, "the agent sent no cleanup result");
		return fail("cleanup");
	}
	if (cli->json) {
		cleanup_json(cr);
		printf("\n");
	} else {
		fputs(cr->log, stdout);
		if (cr->log[0] && cr->log[strlen(cr->log) - 1] != '\n')
			printf("\n");
		if (cr->code == 0)
			printf("cleanup: numCleanedUp=%u numRemaining=%u\n",
			       cr->num_cleaned_up, cr->num_remaining);
	}
	status = cr->code < 0 ? 1 : 0;
	if (cr->code < 0)
		fprintf(stderr, "ferry: cleanup failed: %s\n", cr->error);
	fy_control_free(r);
	return status;
}

static const struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const char *usage;
} commands[] = {
	{ "list", cmd_list, "list [--namespace NS|--all-namespaces] [--json]" },
	{ "show", cmd_show, "show BACKUP [--json]" },
	{ "restore", cmd_restore, "restore BACKUP --disk N --output PATH|- "
	  "[--force] [--namespace NS]" },
	{ "restore-vm", cmd_restore_vm, "restore-vm BACKUP --name NEW "
	  "[--datastore DS] [--host H | --resource-pool PATH]\n          "
	  "[--folder PATH] [--network OLD=NEW ...] "
	  "[--disk-provisioning thin|thick|same]\n          [--keep-mac] "
	  "[--power-on] [--transport LIST] [--json] [--detach]" },
	{ "mount", cmd_mount, "mount BACKUP --disk N (--listen HOST:PORT [--tls] "
	  "| --socket PATH) [--cache-mb N]" },
	{ "ca", cmd_ca, "ca init DIR | ca issue DIR NAME --role ROLE "
	  "[--san LIST] | ca revoke DIR NAME" },
	{ "agent", cmd_agent, "agent status [--json]" },
	{ "backup", cmd_backup, "backup --vm X [--disk N ...] [--transport LIST] "
	  "[--full|--incremental]\n          [--enable-cbt] [--quiesce] "
	  "[--name NAME] [--snapshot MOREF] [--json] [--detach]" },
	{ "jobs", cmd_jobs, "jobs [--json]" },
	{ "watch", cmd_watch, "watch JOB [--json]" },
	{ "cancel", cmd_cancel, "cancel JOB [--wait]" },
	{ "cleanup", cmd_cleanup, "cleanup [--json]" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ferry [--config FILE] [--set KEY=VALUE] COMMAND ...\n\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  ferry %s\n", commands[i].usage);
	fprintf(f, "\nferry COMMAND --help prints the command's usage.\n");
	fprintf(f, "\nThe repository and certificates come from the "
		"configuration file (ferry.repository,\nferry.tls.cert, "
		"ferry.tls.key, ferry.tls.ca) or --repository, --cert, --key, --ca.\n"
		"agent, backup, jobs, cancel and cleanup talk to an agent service "
		"(ferry-agent run)\nat --agent HOST:PORT or ferry.agent, with "
		"the same certificates (docs/CONTROL.md).\n");
}

int main(int argc, char **argv)
{
	struct cli cli = { .disk = -1 };
	const char *cmd = NULL;
	char *rest[16];
	int nrest = 0, c, i, level;
	bool help = false;

	signal(SIGPIPE, SIG_IGN);
	fy_log_set_level(FY_LOG_WARN);
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("ferry %s\n", FERRY_VERSION);
		return 0;
	}
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	/* Options may come before or after the command's words. */
	while ((c = getopt_long(argc, argv, "h", cli_opts, NULL)) != -1) {
		const char *key = NULL;
		char *end;

		switch (c) {
		case OPT_CONFIG: cli.config = optarg; break;
		case OPT_JSON: cli.json = true; break;
		case OPT_OUTPUT: cli.output = optarg; break;
		case OPT_SAN: cli.san = optarg; break;
		case OPT_LOG_LEVEL:
			if (fy_cli_log_level(optarg, &level) < 0) {
				fprintf(stderr, "ferry: %s\n", fy_err_msg());
				return 2;
			}
			fy_log_set_level(level);
			break;
		case OPT_HELP:
		case 'h':
			help = true;
			break;
		case OPT_DISK:
			errno = 0;
			cli.disk = strtol(optarg, &end, 10);
			if (errno || *end || !*optarg || cli.disk < 0 ||
			    cli.disk >= FY_DISKS_MAX) {
				fprintf(stderr, "ferry: --disk takes 0..%u\n",
					FY_DISKS_MAX - 1);
				return 2;
			}
			/* backup takes several. */
			if (cli.n_disks == FY_JOB_DISKS_MAX) {
				fprintf(stderr, "ferry: at most %u --disk\n",
					FY_JOB_DISKS_MAX);
				return 2;
			}
			cli.disks[cli.n_disks++] = (unsigned)cli.disk;
			break;
		case OPT_AGENT: cli.agent = optarg; break;
		case OPT_VM: cli.vm = optarg; break;
		case OPT_TRANSPORT: cli.transport = optarg; break;
		case OPT_NAME: cli.name = optarg; break;
		case OPT_SNAPSHOT: cli.snapshot = optarg; break;
		case OPT_ENABLE_CBT: cli.enable_cbt = true; break;
		case OPT_QUIESCE: cli.quiesce = true; break;
		case OPT_WAIT: cli.wait = true; break;
		case OPT_QUIET: cli.quiet = true; break;
		case OPT_DETACH: cli.detach = true; break;
		case OPT_ROLE: cli.role = optarg; break;
		case OPT_ALL_NAMESPACES: cli.all_namespaces = true; break;
		case OPT_LISTEN: cli.listen = optarg; break;
		case OPT_SOCKET: cli.socket = optarg; break;
		case OPT_TLS: cli.tls = true; break;
		case OPT_FORCE: cli.force = true; break;
		case OPT_READY_FILE: cli.ready_file = optarg; break;
		case OPT_NBD_CERT: cli.nbd_cert = optarg; break;
		case OPT_NBD_KEY: cli.nbd_key = optarg; break;
		case OPT_DATASTORE: cli.datastore = optarg; break;
		case OPT_HOST: cli.host = optarg; break;
		case OPT_POOL: cli.pool = optarg; break;
		case OPT_FOLDER: cli.folder = optarg; break;
		case OPT_PROVISIONING: cli.provisioning = optarg; break;
		case OPT_KEEP_MAC: cli.keep_mac = true; break;
		case OPT_POWER_ON: cli.power_on = true; break;
		case OPT_NETWORK:
			if (cli.n_networks == FY_RESTORE_NETWORKS_MAX) {
				fprintf(stderr, "ferry: at most %d --network\n",
					FY_RESTORE_NETWORKS_MAX);
				return 2;
			}
			cli.networks[cli.n_networks++] = optarg;
			break;
		case OPT_CACHE_MB:
			errno = 0;
			cli.cache_mb = strtol(optarg, &end, 10);
			if (errno || *end || !*optarg || cli.cache_mb < 0 ||
			    cli.cache_mb > 65536) {
				fprintf(stderr, "ferry: --cache-mb takes "
					"0..65536\n");
				return 2;
			}
			break;
		case OPT_NAMESPACE: key = "ferry.repository.namespace"; break;
		case OPT_FULL:
		case OPT_INCREMENTAL:
			if (cli.mode) {
				fprintf(stderr, "ferry: --full or --incremental, "
					"not both\n");
				return 2;
			}
			cli.mode = c == OPT_FULL ? FY_JOB_FULL
						 : FY_JOB_INCREMENTAL;
			break;
		case OPT_SET:
			if (cli.n_overrides == FY_CLI_SETS_MAX) {
				fprintf(stderr, "ferry: at most %d --set and key "
					"flags\n", FY_CLI_SETS_MAX);
				return 2;
			}
			cli.overrides[cli.n_overrides][0] = NULL;
			cli.overrides[cli.n_overrides++][1] = optarg;
			break;
		case OPT_REPOSITORY:
			key = "ferry.repository";
			cli.repository = optarg;
			break;
		case OPT_CERT: key = "ferry.tls.cert"; break;
		case OPT_KEY: key = "ferry.tls.key"; break;
		case OPT_CA: key = "ferry.tls.ca"; break;
		default:
			usage(stderr);
			return 2;
		}
		if (key) {
			if (cli.n_overrides == FY_CLI_SETS_MAX) {
				fprintf(stderr, "ferry: at most %d --set and key "
					"flags\n", FY_CLI_SETS_MAX);
				return 2;
			}
			cli.overrides[cli.n_overrides][0] = key;
			cli.overrides[cli.n_overrides++][1] = optarg;
		}
	}
	for (i = optind; i < argc; i++) {
		if (!cmd) {
			cmd = argv[i];
			continue;
		}
		if (nrest == 16) {
			fprintf(stderr, "ferry: too many arguments\n");
			return 2;
		}
		rest[nrest++] = argv[i];
	}
	if (!cmd) {
		usage(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	for (i = 0; i < (int)(sizeof(commands) / sizeof(commands[0])); i++) {
		if (strcmp(cmd, commands[i].name))
			continue;
		if (help) {
			printf("usage: ferry [--config FILE] [--set KEY=VALUE] "
			       "[--log-level N] %s\n", commands[i].usage);
			return 0;
		}
		return commands[i].run(&cli, nrest, rest);
	}
	fprintf(stderr, "ferry: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
