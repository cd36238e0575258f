/*
 * ferry-agent: backs disks up into a Ferry repository.
 *
 *   ferry-agent backup --config FILE --source PATH [--json] ...
 *
 * Reads a local file or block device (VDDK's "file" transport) or, with an
 * nbd:// or nbds:// URI, any NBD export.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/inventory.h"
#include "nbd/nbd.h"

struct backup_args {
	const char *config;
	const char *sources[FY_DISKS_MAX];
	unsigned n_sources;
	const char *name;
	bool json;
	bool quiet;
};

enum {
	OPT_CONFIG = 1000, OPT_SOURCE, OPT_JSON, OPT_SET, OPT_REPOSITORY,
	OPT_BLOCK_SIZE, OPT_LEVEL, OPT_NAME, OPT_QUIET, OPT_LOG_LEVEL,
	OPT_CERT, OPT_KEY, OPT_CA,
};

static const struct option backup_opts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "set", required_argument, NULL, OPT_SET },
	{ "repository", required_argument, NULL, OPT_REPOSITORY },
	{ "cert", required_argument, NULL, OPT_CERT },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "compression-level", required_argument, NULL, OPT_LEVEL },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ NULL, 0, NULL, 0 },
};

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
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

static void print_json(const char *id, const char *name,
		       const struct backup_args *a,
		       const struct fy_disk_stats *st, const char *const *modes,
		       double seconds)
{
	unsigned i;

	printf("{\"backup_id\":");
	json_string(stdout, id);
	printf(",\"source\":");
	json_string(stdout, name);
	printf(",\"seconds\":%.3f,\"disks\":[", seconds);
	for (i = 0; i < a->n_sources; i++) {
		printf("%s{\"index\":%u,\"path\":", i ? "," : "", i);
		json_string(stdout, a->sources[i]);
		printf(",\"transport\":");
		json_string(stdout, modes[i]);
		printf(",\"size\":%" PRIu64 ",\"blocks\":%" PRIu64
		       ",\"bytes_read\":%" PRIu64 ",\"bytes_zero\":%" PRIu64
		       ",\"bytes_deduplicated\":%" PRIu64 ",\"bytes_new\":%" PRIu64
		       ",\"bytes_sent\":%" PRIu64 ",\"blocks_sent\":%" PRIu64
		       ",\"seconds\":%.3f}",
		       st[i].size, st[i].blocks, st[i].bytes_read,
		       st[i].bytes_zero, st[i].bytes_dedup, st[i].bytes_new,
		       st[i].bytes_sent, st[i].blocks_sent, st[i].seconds);
	}
	printf("]}\n");
}

static int open_source(const char *path, const struct fy_config *cfg,
		       const struct fy_settings *s, struct fy_source **out)
{
	if (fy_nbd_is_uri(path)) {
		struct fy_nbd_opts no;
		int rc;

		fy_nbd_opts_default(&no);
		rc = fy_nbd_opts_from_config(&no, cfg);
		if (rc < 0)
			return rc;
		return fy_nbd_source_open(path, &no, out);
	}
	{
		struct fy_file_source_opts fo = {
			.queue_depth = s->queue_depth,
			.io_size = s->io_size,
		};

		return fy_file_source_open(path, &fo, out);
	}
}

static int cmd_backup(int argc, char **argv)
{
	struct backup_args a = { 0 };
	struct fy_config *cfg = fy_config_new();
	struct fy_settings s;
	struct fy_source *src[FY_DISKS_MAX] = { 0 };
	struct fy_disk_stats st[FY_DISKS_MAX];
	const char *modes[FY_DISKS_MAX];
	struct fy_conn *conn = NULL;
	char repo_id[128], id[FY_ID_MAX] = "";
	const char *overrides[64][2];
	unsigned n_overrides = 0, i;
	double start = fy_now();
	int c, rc = 0, level = -1;

	if (!cfg) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		return 1;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", backup_opts, NULL)) != -1) {
		const char *key = NULL;

		switch (c) {
		case OPT_CONFIG: a.config = optarg; break;
		case OPT_SOURCE:
			if (a.n_sources == FY_DISKS_MAX) {
				fprintf(stderr, "ferry-agent: at most %u sources\n",
					FY_DISKS_MAX);
				rc = -EINVAL;
				goto out;
			}
			a.sources[a.n_sources++] = optarg;
			break;
		case OPT_JSON: a.json = true; break;
		case OPT_QUIET: a.quiet = true; break;
		case OPT_NAME: a.name = optarg; break;
		case OPT_LOG_LEVEL: level = atoi(optarg); break;
		case OPT_SET:
			if (n_overrides == 64) {
				rc = -E2BIG;
				goto out;
			}
			overrides[n_overrides][0] = NULL;
			overrides[n_overrides++][1] = optarg;
			break;
		case OPT_REPOSITORY: key = "ferry.repository"; break;
		case OPT_CERT: key = "ferry.tls.cert"; break;
		case OPT_KEY: key = "ferry.tls.key"; break;
		case OPT_CA: key = "ferry.tls.ca"; break;
		case OPT_BLOCK_SIZE: key = "ferry.blockSize"; break;
		case OPT_LEVEL: key = "ferry.compressionLevel"; break;
		default:
			rc = -EINVAL;
			goto usage;
		}
		if (key) {
			if (n_overrides == 64) {
				rc = -E2BIG;
				goto out;
			}
			overrides[n_overrides][0] = key;
			overrides[n_overrides++][1] = optarg;
		}
	}
	if (optind < argc || !a.n_sources) {
		rc = -EINVAL;
		goto usage;
	}
	if (a.config && (rc = fy_config_load(cfg, a.config)) < 0)
		goto fail;
	/* Flags override the file, in the order given. */
	for (i = 0; i < n_overrides; i++) {
		if (overrides[i][0])
			rc = fy_config_set(cfg, overrides[i][0], overrides[i][1]);
		else
			rc = fy_config_set_pair(cfg, overrides[i][1]);
		if (rc < 0)
			goto fail;
	}
	if (level < 0) {
		int64_t v;

		rc = fy_config_get_int(cfg, "vixDiskLib.transport.LogLevel", 3,
				       0, 6, &v);
		if (rc < 0)
			goto fail;
		level = (int)v;
	}
	fy_log_set_level(level);
	if (fy_config_get(cfg, "ferry.logFile") &&
	    (rc = fy_log_set_file(fy_config_get(cfg, "ferry.logFile"))) < 0)
		goto fail;
	fy_config_warn_unknown(cfg, fy_all_known_keys());
	rc = fy_settings_load(cfg, &s);
	if (rc < 0)
		goto fail;

	/* Open everything before talking to the repository: a source that
	 * cannot be read fails the job at once. */
	for (i = 0; i < a.n_sources; i++) {
		rc = open_source(a.sources[i], cfg, &s, &src[i]);
		if (rc < 0)
			goto fail;
		modes[i] = src[i]->ops->name;
	}
	rc = fy_repo_connect(&s, "ferry-agent " FERRY_VERSION, &conn, repo_id,
			     sizeof(repo_id));
	if (rc < 0)
		goto fail;
	if (!a.name)
		a.name = a.sources[0];
	rc = fy_client_begin_backup(conn, a.name, "file", s.block_size,
				    a.n_sources, id, sizeof(id));
	if (rc < 0)
		goto fail;
	for (i = 0; i < a.n_sources; i++) {
		struct fy_pipeline_opts po = {
			.block_size = s.block_size,
			.compression_level = s.compression_level,
			.workers = s.workers,
			.queue_depth = s.queue_depth,
			.progress = (!a.quiet && isatty(STDERR_FILENO))
					    ? fy_progress_print
					    : NULL,
		};

		rc = fy_pipeline_run(conn, src[i], i, a.sources[i], &po, &st[i]);
		if (rc < 0)
			goto fail;
	}
	rc = fy_client_commit(conn, id, sizeof(id));
	if (rc < 0)
		goto fail;
	if (a.json) {
		print_json(id, a.name, &a, st, modes, fy_now() - start);
	} else if (!a.quiet) {
		char sent[32], total[32];
		uint64_t sum_sent = 0, sum_size = 0;

		for (i = 0; i < a.n_sources; i++) {
			sum_sent += st[i].bytes_sent;
			sum_size += st[i].size;
		}
		fy_format_bytes(sum_size, total, sizeof(total));
		fy_format_bytes(sum_sent, sent, sizeof(sent));
		printf("backup %s: %u disk(s), %s, %s sent, %.1f s\n", id,
		       a.n_sources, total, sent, fy_now() - start);
	}
	goto out;

usage:
	fprintf(stderr, "usage: ferry-agent backup [--config FILE] --source PATH|URI "
		"[--source ...]\n"
		"         [--json] [--quiet] [--name NAME] [--repository HOST:PORT]\n"
		"         [--cert F] [--key F] [--ca F] [--block-size N]\n"
		"         [--compression-level N] [--set KEY=VALUE] [--log-level N]\n");
	goto out;
fail:
	fprintf(stderr, "ferry-agent: backup failed: %s\n", fy_err_msg());
	if (conn)
		fy_conn_send_error(conn, rc, fy_err_msg());
out:
	fy_conn_close(conn);
	for (i = 0; i < FY_DISKS_MAX; i++)
		fy_source_close(src[i]);
	fy_config_free(cfg);
	return rc < 0 ? (rc == -EINVAL && !id[0] ? 2 : 1) : 0;
}

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{ "backup", cmd_backup,
	  "back up local files, block devices or NBD exports" },
	{ "inventory", agent_cmd_inventory,
	  "VMs, disks, datastores, CBT, snapshots, hot-add checks" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ferry-agent COMMAND [OPTIONS]\n\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nferry-agent --version prints the version.\n");
}

int main(int argc, char **argv)
{
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ferry-agent %s\n", FERRY_VERSION);
		return 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "ferry-agent: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
