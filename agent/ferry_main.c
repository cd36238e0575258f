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
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/ferry_cli.h"


enum {
	OPT_CONFIG = 1000, OPT_JSON, OPT_SET, OPT_REPOSITORY, OPT_CERT, OPT_KEY,
	OPT_CA, OPT_DISK, OPT_OUTPUT, OPT_SAN, OPT_LOG_LEVEL, OPT_AGENT, OPT_VM,
	OPT_TRANSPORT, OPT_FULL, OPT_INCREMENTAL, OPT_ENABLE_CBT, OPT_QUIESCE,
	OPT_NAME, OPT_SNAPSHOT, OPT_WAIT, OPT_QUIET, OPT_DETACH, OPT_ROLE,
	OPT_NAMESPACE, OPT_ALL_NAMESPACES, OPT_LISTEN, OPT_SOCKET, OPT_TLS,
	OPT_CACHE_MB, OPT_READY_FILE, OPT_NBD_CERT, OPT_NBD_KEY, OPT_FORCE,
	OPT_DATASTORE, OPT_HOST, OPT_POOL, OPT_FOLDER, OPT_NETWORK,
	OPT_PROVISIONING, OPT_KEEP_MAC, OPT_POWER_ON, OPT_INTO,
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
	{ "into", required_argument, NULL, OPT_INTO },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

int ferry_fail(const char *what)
{
	fprintf(stderr, "ferry: %s: %s\n", what, fy_err_msg());
	return 1;
}

/* --config, then the flags that override it, in the order given. */
int ferry_load_config(struct cli *cli, struct fy_config **out)
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

	rc = ferry_load_config(cli, &cfg);
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
		return ferry_fail("list");
	if (ls.json)
		printf("[");
	rc = fy_client_list_ex(conn, cli->all_namespaces, list_one, &ls);
	if (ls.json)
		printf("]\n");
	else if (rc == 0 && ls.n == 0)
		printf("no backups\n");
	fy_conn_close(conn);
	return rc < 0 ? ferry_fail("list") : 0;
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
		return ferry_fail("show");
	rc = fy_client_list_one(conn, true, ss.id, show_one, &ss);
	fy_conn_close(conn);
	if (rc < 0)
		return ferry_fail("show");
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
		return ferry_fail("restore");
	rc = fy_client_restore(conn, argv[0], (uint32_t)cli->disk, cli->output,
			       isatty(STDERR_FILENO), cli->force, &written);
	fy_conn_close(conn);
	if (rc < 0)
		return ferry_fail("restore");
	if (strcmp(cli->output, "-")) {
		char w[32];

		fy_format_bytes(written, w, sizeof(w));
		fprintf(stderr, "restored disk %ld of %s to %s: %s of data in "
			"%.1f s\n", cli->disk, argv[0], cli->output, w,
			fy_now() - start);
	}
	return 0;
}

/* Whether HOST:PORT (or [V6]:PORT) names this machine's loopback only:
 * an IPv4 address in 127/8, ::1 or a v4-mapped 127/8, or "localhost". A
 * name is not trusted to resolve there ("127.example.net"). */
static bool listen_is_loopback(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
	struct in6_addr a6;
	struct in_addr a4;
	char host[64];

	if (n >= 2 && listen[0] == '[' && listen[n - 1] == ']') {
		listen++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, listen, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return !strcasecmp(host, "localhost");
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
	/* Plain NBD has no authentication: on an address other machines
	 * reach, anyone who connects reads the disk. */
	if (cli->listen && !cli->tls && !listen_is_loopback(cli->listen))
		fprintf(stderr, "ferry mount: warning: %s is not a loopback "
			"address and --tls is not given: anyone who can reach "
			"it reads this disk\n", cli->listen);
	rc = ferry_load_config(cli, &cfg);
	if (rc == 0)
		rc = fy_settings_load(cfg, &s);
	if (rc == 0)
		rc = fy_mount_run(&s, &o);
	fy_config_free(cfg);
	return rc < 0 ? ferry_fail("mount") : 0;
}

static int cmd_ca(struct cli *cli, int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[0], "init")) {
		if (fy_ca_init(argv[1]) < 0)
			return ferry_fail("ca init");
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
			return ferry_fail("ca issue");
		if (fy_ca_issue(argv[1], argv[2], cli->san, role) < 0)
			return ferry_fail("ca issue");
		printf("created %s/%s.crt and %s/%s.key (role %s)\n", argv[1],
		       argv[2], argv[1], argv[2], fy_role_name(role));
		return 0;
	}
	if (argc == 3 && !strcmp(argv[0], "revoke")) {
		if (fy_ca_revoke(argv[1], argv[2]) < 0)
			return ferry_fail("ca revoke");
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

static const struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const char *usage;
} commands[] = {
	{ "list", cmd_list, "list [--namespace NS|--all-namespaces] [--json]" },
	{ "show", cmd_show, "show BACKUP [--json]" },
	{ "restore", cmd_restore, "restore BACKUP --disk N --output PATH|- "
	  "[--force] [--namespace NS]" },
	{ "restore-vm", ferry_cmd_restore_vm, "restore-vm BACKUP --name NEW "
	  "[--datastore DS] [--host H | --resource-pool PATH]\n          "
	  "[--folder PATH] [--network OLD=NEW ...] "
	  "[--disk-provisioning thin|thick|same]\n          [--keep-mac] "
	  "[--power-on] [--transport LIST] [--json] [--detach]\n"
	  "       ferry restore-vm BACKUP --into VM [--disk N ...] [--power-on] "
	  "[--transport LIST] [--json]" },
	{ "mount", cmd_mount, "mount BACKUP --disk N (--listen HOST:PORT [--tls] "
	  "| --socket PATH) [--cache-mb N]" },
	{ "ca", cmd_ca, "ca init DIR | ca issue DIR NAME --role ROLE "
	  "[--san LIST] | ca revoke DIR NAME" },
	{ "agent", ferry_cmd_agent, "agent status [--json]" },
	{ "backup", ferry_cmd_backup, "backup --vm X [--disk N ...] [--transport LIST] "
	  "[--full|--incremental]\n          [--enable-cbt] [--quiesce] "
	  "[--name NAME] [--snapshot MOREF] [--json] [--detach]" },
	{ "jobs", ferry_cmd_jobs, "jobs [--json]" },
	{ "watch", ferry_cmd_watch, "watch JOB [--json]" },
	{ "cancel", ferry_cmd_cancel, "cancel JOB [--wait]" },
	{ "cleanup", ferry_cmd_cleanup, "cleanup [--json]" },
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

	fy_memory_tune();
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
		case OPT_INTO: cli.into = optarg; break;
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
