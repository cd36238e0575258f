/*
 * The one-shot commands around a VM backup job (agent/job.c):
 *
 *   ferry-agent backup --config FILE --vm NAME|moref [--disk N ...]
 *                      [--transport LIST] [--snapshot MOREF]
 *                      [--full|--incremental] [--enable-cbt] [--quiesce]
 *                      [--json] ...
 *   ferry-agent cleanup --config FILE [--json]
 *
 * Both run the self-cleanup first (docs/HOTADD.md).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/job.h"

enum {
	VO_CONFIG = 2000, VO_VM, VO_DISK, VO_TRANSPORT, VO_JSON, VO_QUIET,
	VO_SET, VO_NAME, VO_LOG_LEVEL, VO_REPOSITORY, VO_SNAPSHOT, VO_FULL,
	VO_NAMESPACE, VO_LEVEL,
	VO_INCREMENTAL, VO_ENABLE_CBT, VO_QUIESCE,
};

/* Loads --config, applies --set pairs and the log settings. */
static int load_config(struct fy_config *cfg, const char *path,
		       const char *const *sets, unsigned n_sets, int level)
{
	unsigned i;
	int rc;

	if (path && (rc = fy_config_load(cfg, path)) < 0)
		return rc;
	for (i = 0; i < n_sets; i++)
		if ((rc = fy_config_set_pair(cfg, sets[i])) < 0)
			return rc;
	return fy_agent_setup_logging(cfg, level);
}

static void print_cleanup(const struct fy_hotadd_cleanup_report *rep,
			  bool json, FILE *f)
{
	if (json) {
		fy_job_cleanup_json(f, rep);
		return;
	}
	fputs(rep->log, f);
	fprintf(f, "cleanup: numCleanedUp=%u numRemaining=%u\n", rep->cleaned,
		rep->remaining);
}

int agent_cmd_cleanup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, VO_CONFIG },
		{ "json", no_argument, NULL, VO_JSON },
		{ "set", required_argument, NULL, VO_SET },
		{ "log-level", required_argument, NULL, VO_LOG_LEVEL },
		{ NULL, 0, NULL, 0 },
	};
	struct fy_config *cfg = fy_config_new();
	struct fy_hotadd_cleanup_report *rep = calloc(1, sizeof(*rep));
	const char *config = NULL, *sets[64];
	unsigned n_sets = 0;
	bool json = false;
	int c, rc = 0, level = -1;

	if (!cfg || !rep) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		rc = -ENOMEM;
		goto out;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case VO_CONFIG: config = optarg; break;
		case VO_JSON: json = true; break;
		case VO_LOG_LEVEL:
			if ((rc = fy_cli_log_level(optarg, &level)) < 0)
				goto fail;
			break;
		case VO_SET:
			if (n_sets < 64)
				sets[n_sets++] = optarg;
			break;
		default:
			rc = -EINVAL;
			goto usage;
		}
	}
	if (optind < argc || !config) {
		rc = -EINVAL;
		goto usage;
	}
	if ((rc = load_config(cfg, config, sets, n_sets, level)) < 0 ||
	    (rc = fy_job_cleanup(cfg, false, rep)) < 0)
		goto fail;
	print_cleanup(rep, json, stdout);
	if (json)
		printf("\n");
	goto out;
usage:
	fprintf(stderr, "usage: ferry-agent cleanup --config FILE [--json] "
		"[--set KEY=VALUE] [--log-level N]\n"
		"  Detaches disks a crashed agent left on this proxy, removes "
		"its snapshots\n  and re-enables the methods it disabled "
		"(docs/HOTADD.md).\n");
	goto out;
fail:
	fprintf(stderr, "ferry-agent: cleanup failed: %s\n", fy_err_msg());
out:
	fy_config_free(cfg);
	free(rep);
	return rc < 0 ? (rc == -EINVAL && !config ? 2 : 1) : 0;
}


/* ---- backup --vm --------------------------------------------------------- */

static void tty_progress(void *opaque, unsigned disk, unsigned n_disks,
			 const struct fy_disk_stats *st, bool done)
{
	(void)disk;
	(void)n_disks;
	fy_progress_print(opaque, st, done);
}

int agent_cmd_vm_backup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, VO_CONFIG },
		{ "vm", required_argument, NULL, VO_VM },
		{ "disk", required_argument, NULL, VO_DISK },
		{ "transport", required_argument, NULL, VO_TRANSPORT },
		{ "snapshot", required_argument, NULL, VO_SNAPSHOT },
		{ "full", no_argument, NULL, VO_FULL },
		{ "incremental", no_argument, NULL, VO_INCREMENTAL },
		{ "enable-cbt", no_argument, NULL, VO_ENABLE_CBT },
		{ "quiesce", no_argument, NULL, VO_QUIESCE },
		{ "json", no_argument, NULL, VO_JSON },
		{ "quiet", no_argument, NULL, VO_QUIET },
		{ "set", required_argument, NULL, VO_SET },
		{ "name", required_argument, NULL, VO_NAME },
		{ "repository", required_argument, NULL, VO_REPOSITORY },
		{ "namespace", required_argument, NULL, VO_NAMESPACE },
		{ "compression-level", required_argument, NULL, VO_LEVEL },
		{ "log-level", required_argument, NULL, VO_LOG_LEVEL },
		{ NULL, 0, NULL, 0 },
	};
	struct fy_job_spec spec = { 0 };
	struct fy_job_result *res = calloc(1, sizeof(*res));
	struct fy_hotadd_cleanup_report *rep = calloc(1, sizeof(*rep));
	struct fy_config *cfg = fy_config_new();
	struct fy_job_events ev = { 0 };
	const char *config = NULL, *sets[64];
	char repo_override[300], ns_override[300], level_override[64];
	unsigned n_sets = 0;
	bool json = false, quiet = false, full = false, incr = false;
	int c, rc = 0, level = -1;

	if (!res || !rep || !cfg) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		rc = -ENOMEM;
		goto out;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case VO_CONFIG: config = optarg; break;
		case VO_VM: spec.vm = optarg; break;
		case VO_TRANSPORT: spec.transports = optarg; break;
		case VO_SNAPSHOT: spec.snapshot = optarg; break;
		case VO_FULL: full = true; break;
		case VO_INCREMENTAL: incr = true; break;
		case VO_ENABLE_CBT: spec.enable_cbt = true; break;
		case VO_QUIESCE: spec.quiesce = true; break;
		case VO_JSON: json = true; break;
		case VO_QUIET: quiet = true; break;
		case VO_NAME: spec.name = optarg; break;
		case VO_LOG_LEVEL:
			if ((rc = fy_cli_log_level(optarg, &level)) < 0)
				goto fail;
			break;
		case VO_DISK: {
			char *end;
			long v;

			if (spec.n_disks == FY_JOB_DISKS_MAX) {
				rc = -E2BIG;
				goto usage;
			}
			v = strtol(optarg, &end, 10);
			if (*end || !*optarg || v < 0 || v >= FY_JOB_DISKS_MAX) {
				rc = -EINVAL;
				goto usage;
			}
			spec.disks[spec.n_disks++] = (unsigned)v;
			break;
		}
		case VO_REPOSITORY:
		case VO_NAMESPACE:
		case VO_LEVEL:
		case VO_SET:
			if (n_sets == 63) {
				rc = -E2BIG;
				goto usage;
			}
			if (c == VO_REPOSITORY) {
				snprintf(repo_override, sizeof(repo_override),
					 "ferry.repository=%s", optarg);
				sets[n_sets++] = repo_override;
			} else if (c == VO_NAMESPACE) {
				snprintf(ns_override, sizeof(ns_override),
					 "ferry.repository.namespace=%s", optarg);
				sets[n_sets++] = ns_override;
			} else if (c == VO_LEVEL) {
				/* Checked where the key is, as for backup
				 * --source. */
				if (snprintf(level_override,
					     sizeof(level_override),
					     "ferry.compressionLevel=%s",
					     optarg) >=
				    (int)sizeof(level_override)) {
					rc = -EINVAL;
					goto usage;
				}
				sets[n_sets++] = level_override;
			} else {
				sets[n_sets++] = optarg;
			}
			break;
		default:
			rc = -EINVAL;
			goto usage;
		}
	}
	if (optind < argc || !config || !spec.vm || (full && incr)) {
		rc = -EINVAL;
		goto usage;
	}
	spec.mode = full ? FY_JOB_FULL : incr ? FY_JOB_INCREMENTAL : FY_JOB_AUTO;
	if (!quiet && isatty(STDERR_FILENO))
		ev.progress = tty_progress;
	if ((rc = load_config(cfg, config, sets, n_sets, level)) < 0)
		goto fail;
	/* A crashed run's leftovers first; a proxy where hotadd cannot work
	 * (not a VM) has none, and the network modes may still read. */
	if (fy_job_cleanup(cfg, false, rep) < 0)
		fy_info("self-cleanup skipped: %s", fy_err_msg());
	else if (rep->cleaned || rep->remaining)
		print_cleanup(rep, false, stderr);
	rc = fy_job_run(cfg, &spec, NULL, &ev, res);
	if (json) {
		fy_job_result_json(stdout, res);
		printf("\n");
	}
	if (rc < 0)
		goto fail;
	if (!json && !quiet) {
		unsigned i;

		printf("backup %s: VM %s, %u disk(s), %.1f s%s%s\n",
		       res->backup_id, res->vm_name, res->n, res->seconds,
		       res->parent_id[0] ? ", incremental from " : "",
		       res->parent_id);
		for (i = 0; i < res->n; i++)
			printf("  disk %u %s over %s: %s%s%s\n",
			       res->disks[i].index, res->disks[i].file,
			       res->disks[i].transport,
			       res->disks[i].incremental ? "incremental"
							 : "full",
			       res->disks[i].full_reason[0] ? ": " : "",
			       res->disks[i].full_reason);
		if (res->notes[0])
			printf("  note: %s\n", res->notes);
	}
	goto out;
usage:
	fprintf(stderr, "usage: ferry-agent backup --config FILE --vm "
		"NAME|MOREF [--disk N ...]\n"
		"         [--transport LIST] [--snapshot MOREF] "
		"[--full|--incremental]\n"
		"         [--enable-cbt] [--quiesce] [--json] [--quiet] "
		"[--name NAME]\n"
		"         [--repository HOST:PORT] [--set KEY=VALUE] "
		"[--log-level N]\n");
	goto out;
fail:
	fprintf(stderr, "ferry-agent: backup failed: %s\n", fy_err_msg());
out:
	fy_config_free(cfg);
	free(res);
	free(rep);
	return rc < 0 ? (rc == -EINVAL && !config ? 2 : 1) : 0;
}
