/*
 * ferry: the command line for admins and for the central backup server.
 *
 *   ferry [--config FILE] list [--json]
 *   ferry [--config FILE] restore BACKUP --disk N --output PATH|-
 *   ferry ca init DIR
 *   ferry ca issue DIR NAME [--san LIST]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"

struct cli {
	const char *config;
	const char *overrides[64][2];
	unsigned n_overrides;
	bool json;
	const char *output;
	long disk;
	const char *san;
};

enum {
	OPT_CONFIG = 1000, OPT_JSON, OPT_SET, OPT_REPOSITORY, OPT_CERT, OPT_KEY,
	OPT_CA, OPT_DISK, OPT_OUTPUT, OPT_SAN, OPT_LOG_LEVEL,
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
	{ NULL, 0, NULL, 0 },
};

static int fail(const char *what)
{
	fprintf(stderr, "ferry: %s: %s\n", what, fy_err_msg());
	return 1;
}

static int connect_repo(struct cli *cli, struct fy_conn **conn)
{
	struct fy_config *cfg = fy_config_new();
	struct fy_settings s;
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

static int list_one(void *opaque, const Ferry__BackupSummary *b)
{
	struct list_state *ls = opaque;
	char when[32], size[32];
	time_t t = b->created_unix;
	struct tm tm;
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < b->n_disks; i++)
		total += b->disks[i]->size;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!ls->json) {
		if (ls->n == 0)
			printf("%-26s %-20s %5s %10s  %s\n", "ID", "TIME (UTC)",
			       "DISKS", "SIZE", "SOURCE");
		fy_format_bytes(total, size, sizeof(size));
		printf("%-26s %-20s %5zu %10s  %s\n", b->id, when, b->n_disks,
		       size, b->source);
		ls->n++;
		return 0;
	}
	printf("%s{\"id\":", ls->n++ ? "," : "");
	fy_json_string(stdout, b->id);
	printf(",\"source\":");
	fy_json_string(stdout, b->source);
	printf(",\"source_kind\":");
	fy_json_string(stdout, b->source_kind);
	printf(",\"time\":");
	fy_json_string(stdout, when);
	printf(",\"created_unix\":%" PRId64 ",\"parent_id\":", b->created_unix);
	fy_json_string(stdout, b->parent_id);
	printf(",\"block_size\":%u,\"size\":%" PRIu64 ",\"disks\":[",
	       b->block_size, total);
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
		printf("}");
	}
	printf("]}");
	return 0;
}

static int cmd_list(struct cli *cli, int argc, char **argv)
{
	struct list_state ls = { .json = cli->json };
	struct fy_conn *conn = NULL;
	int rc;

	if (argc) {
		fprintf(stderr, "usage: ferry [--config FILE] list [--json]\n");
		return 2;
	}
	rc = connect_repo(cli, &conn);
	if (rc < 0)
		return fail("list");
	if (ls.json)
		printf("[");
	rc = fy_client_list(conn, list_one, &ls);
	if (ls.json)
		printf("]\n");
	else if (rc == 0 && ls.n == 0)
		printf("no backups\n");
	fy_conn_close(conn);
	return rc < 0 ? fail("list") : 0;
}

static int cmd_restore(struct cli *cli, int argc, char **argv)
{
	struct fy_conn *conn = NULL;
	uint64_t written = 0;
	double start = fy_now();
	int rc;

	if (argc != 1 || !cli->output || cli->disk < 0) {
		fprintf(stderr, "usage: ferry [--config FILE] restore BACKUP "
			"--disk N --output PATH|-\n");
		return 2;
	}
	rc = connect_repo(cli, &conn);
	if (rc < 0)
		return fail("restore");
	rc = fy_client_restore(conn, argv[0], (uint32_t)cli->disk, cli->output,
			       isatty(STDERR_FILENO), &written);
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

static int cmd_ca(struct cli *cli, int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[0], "init")) {
		if (fy_ca_init(argv[1]) < 0)
			return fail("ca init");
		printf("created %s/ca.crt and %s/ca.key\n", argv[1], argv[1]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[0], "issue")) {
		if (fy_ca_issue(argv[1], argv[2], cli->san) < 0)
			return fail("ca issue");
		printf("created %s/%s.crt and %s/%s.key\n", argv[1], argv[2],
		       argv[1], argv[2]);
		return 0;
	}
	fprintf(stderr, "usage: ferry ca init DIR\n"
		"       ferry ca issue DIR NAME [--san NAME,IP,...]\n");
	return 2;
}

static const struct command {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
	const char *usage;
} commands[] = {
	{ "list", cmd_list, "list [--json]" },
	{ "restore", cmd_restore, "restore BACKUP --disk N --output PATH|-" },
	{ "ca", cmd_ca, "ca init DIR | ca issue DIR NAME [--san LIST]" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ferry [--config FILE] [--set KEY=VALUE] COMMAND ...\n\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  ferry %s\n", commands[i].usage);
	fprintf(f, "\nThe repository and certificates come from the "
		"configuration file (ferry.repository,\nferry.tls.cert, "
		"ferry.tls.key, ferry.tls.ca) or --repository, --cert, --key, --ca.\n");
}

int main(int argc, char **argv)
{
	struct cli cli = { .disk = -1 };
	const char *cmd = NULL;
	char *rest[16];
	int nrest = 0, c, i;

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
	while ((c = getopt_long(argc, argv, "", cli_opts, NULL)) != -1) {
		const char *key = NULL;
		char *end;

		switch (c) {
		case OPT_CONFIG: cli.config = optarg; break;
		case OPT_JSON: cli.json = true; break;
		case OPT_OUTPUT: cli.output = optarg; break;
		case OPT_SAN: cli.san = optarg; break;
		case OPT_LOG_LEVEL: fy_log_set_level(atoi(optarg)); break;
		case OPT_DISK:
			errno = 0;
			cli.disk = strtol(optarg, &end, 10);
			if (errno || *end || cli.disk < 0 ||
			    cli.disk >= FY_DISKS_MAX) {
				fprintf(stderr, "ferry: --disk takes 0..%u\n",
					FY_DISKS_MAX - 1);
				return 2;
			}
			break;
		case OPT_SET:
			if (cli.n_overrides == 64)
				return 2;
			cli.overrides[cli.n_overrides][0] = NULL;
			cli.overrides[cli.n_overrides++][1] = optarg;
			break;
		case OPT_REPOSITORY: key = "ferry.repository"; break;
		case OPT_CERT: key = "ferry.tls.cert"; break;
		case OPT_KEY: key = "ferry.tls.key"; break;
		case OPT_CA: key = "ferry.tls.ca"; break;
		default:
			usage(stderr);
			return 2;
		}
		if (key) {
			if (cli.n_overrides == 64)
				return 2;
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
		usage(stderr);
		return 2;
	}
	for (i = 0; i < (int)(sizeof(commands) / sizeof(commands[0])); i++)
		if (!strcmp(cmd, commands[i].name))
			return commands[i].run(&cli, nrest, rest);
	fprintf(stderr, "ferry: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
