/*
 * ferry-agent: backs disks up into a Ferry repository.
 *
 *   ferry-agent backup --config FILE --source PATH [--json] ...
 *   ferry-agent backup --config FILE --vm VM [--disk N ...] (vm_backup.c)
 *   ferry-agent cleanup --config FILE [--json]                (vm_backup.c)
 *   ferry-agent transports [--config FILE] [--json] [--verbose]
 *   ferry-agent run --config FILE                             (service.c)
 *
 * Reads a local file or block device (VDDK's "file" transport), with an
 * nbd:// or nbds:// URI any NBD export, and with "vsphere-ds:[ds] path"
 * a VM disk file through the first mode of the transport table
 * (agent/transport.h) in --transport that works (docs/TRANSPORTS.md).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/control.h"
#include "agent/inventory.h"
#include "agent/session.h"
#include "agent/transport.h"
#include "nbd/nbd.h"
#include "san/san.h"
#include "vsphere/vsphere.h"

struct backup_args {
	const char *config;
	const char *sources[FY_DISKS_MAX];
	unsigned n_sources;
	const char *name;
	const char *transport;
	bool json;
	bool quiet;
};

enum {
	OPT_CONFIG = 1000, OPT_SOURCE, OPT_JSON, OPT_SET, OPT_REPOSITORY,
	OPT_BLOCK_SIZE, OPT_LEVEL, OPT_NAME, OPT_QUIET, OPT_LOG_LEVEL,
	OPT_CERT, OPT_KEY, OPT_CA, OPT_TRANSPORT, OPT_VERBOSE, OPT_NAMESPACE,
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
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "namespace", required_argument, NULL, OPT_NAMESPACE },
	{ NULL, 0, NULL, 0 },
};

static void print_json(const char *id, const char *name,
		       const struct backup_args *a,
		       const struct fy_disk_stats *st, const char *const *modes,
		       double seconds)
{
	unsigned i;

	printf("{\"backup_id\":");
	fy_json_string(stdout, id);
	printf(",\"source\":");
	fy_json_string(stdout, name);
	printf(",\"seconds\":%.3f,\"disks\":[", seconds);
	for (i = 0; i < a->n_sources; i++) {
		printf("%s{\"index\":%u,\"path\":", i ? "," : "", i);
		fy_json_string(stdout, a->sources[i]);
		printf(",\"transport\":");
		fy_json_string(stdout, modes[i]);
		printf(",");
		fy_disk_stats_json(stdout, &st[i]);
		printf("}");
	}
	printf("]}\n");
}

/* ---- transports: which way a VM disk is read ---------------------------- */

#define VM_DISK_PREFIX "vsphere-ds:"
/* A flat file straight off a VMFS6 volume's LUNs (san/san.h). */
#define VMFS_PREFIX "vmfs:"

/* The mode an NBD URI is read with: nbds, or TLS required, is nbdssl. */
static enum fy_transport_mode nbd_uri_mode(const char *uri,
					   const struct fy_config *cfg)
{
	bool tls = false;

	fy_config_get_bool(cfg, "ferry.nbd.TlsRequired", false, &tls);
	return !strncmp(uri, "nbds", 4) || tls ? FY_TRANSPORT_NBDSSL
					       : FY_TRANSPORT_NBD;
}

static bool list_has(const struct fy_transport *const *m, unsigned n,
		     enum fy_transport_mode mode)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (m[i]->mode == mode)
			return true;
	return false;
}

/* A VM disk file ("vsphere-ds:[ds1] vm/vm.vmdk"): the first mode of the
 * list that can open it, as VDDK tries its modes in order; else every
 * mode's reason, before anything is read. */
static int open_vm_disk(const char *spec, const struct fy_transport *const *m,
			unsigned n, struct fy_transport_env *env,
			struct fy_source **out)
{
	const char *file = spec + strlen(VM_DISK_PREFIX);
	char reasons[FY_ERR_MAX] = "", why[FY_ERR_MAX], list[64] = "";
	unsigned i;
	int rc = -ENOTSUP;

	for (i = 0; i < n; i++) {
		const struct fy_transport *t = m[i];

		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", i ? ":" : "", t->name);
		if (!t->possible(env, NULL, NULL, why, sizeof(why))) {
			rc = -ENOTSUP;
		} else if (!t->open_file) {
			snprintf(why, sizeof(why), "%s", t->file_why);
			rc = -ENOTSUP;
		} else {
			size_t len = strlen(t->name);

			rc = t->open_file(env, file, out);
			if (rc == 0) {
				fy_info("%s: read with the %s transport", file,
					t->name);
				return 0;
			}
			/* "https: https: x" reads badly in the list. */
			snprintf(why, sizeof(why), "%s",
				 !strncmp(fy_err_msg(), t->name, len) &&
					 !strncmp(fy_err_msg() + len, ": ", 2)
				     ? fy_err_msg() + len + 2
				     : fy_err_msg());
		}
		fy_debug("%s: transport %s: %s", file, t->name, why);
		snprintf(reasons + strlen(reasons),
			 sizeof(reasons) - strlen(reasons), "%s%s: %s",
			 i ? "; " : "", t->name, why);
	}
	return fy_err_set(rc, "no transport in %s can read %s: %s", list, file,
			  reasons);
}

/* "vmfs:LUN[,LUN2...]:PATH": the san source, whatever else the proxy
 * could do; a --transport list must allow san. */
static int open_vmfs(const char *spec, const struct fy_settings *s,
		     const char *transport, const struct fy_transport *const *m,
		     unsigned n_modes, struct fy_source **out)
{
	struct fy_file_source_opts fo = {
		.queue_depth = s->queue_depth,
		.io_size = s->io_size,
	};
	const char *luns[FY_VMFS_MAX_LUNS], *path;
	char buf[4096];
	size_t n;
	int rc;

	if (transport && !list_has(m, n_modes, FY_TRANSPORT_SAN))
		return fy_err_set(-ENOTSUP, "vmfs:%s is read with the san "
				  "transport, which --transport %s does not "
				  "allow", spec, transport);
	rc = fy_san_parse_spec(spec, buf, sizeof(buf), luns, FY_VMFS_MAX_LUNS,
			       &n, &path);
	if (rc < 0)
		return rc;
	return fy_san_source_open(luns, n, path, &fo, out);
}

static int open_source(const char *path, const struct fy_config *cfg,
		       const struct fy_settings *s, const char *transport,
		       struct fy_transport_env *env, struct fy_source **out)
{
	const struct fy_transport *m[FY_TRANSPORT_N_MODES];
	unsigned n;
	int rc;

	/* The one default, as for --vm jobs: ferry.transports, else
	 * FY_TRANSPORT_DEFAULT (https only when a list names it). */
	if ((rc = fy_transport_list_parse(
		 transport ? transport
			   : fy_config_get(cfg, "ferry.transports"),
		 m, FY_TRANSPORT_N_MODES, &n)) < 0)
		return rc;
	if (!strncmp(path, VM_DISK_PREFIX, strlen(VM_DISK_PREFIX)))
		return open_vm_disk(path, m, n, env, out);
	if (!strncmp(path, VMFS_PREFIX, strlen(VMFS_PREFIX)))
		return open_vmfs(path + strlen(VMFS_PREFIX), s, transport, m,
				 n, out);
	if (fy_nbd_is_uri(path)) {
		enum fy_transport_mode um = nbd_uri_mode(path, cfg);
		struct fy_nbd_opts no;

		/* An NBD URI says its mode; a list must allow it. */
		if (transport && !list_has(m, n, um))
			return fy_err_set(-ENOTSUP, "%s is read with the %s "
					  "transport, which --transport %s does "
					  "not allow", path,
					  fy_transports[um].name, transport);
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
			.cached = s->read_cache,
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
	struct fy_session *sess = NULL;
	struct fy_transport_env env;
	char repo_id[128], id[FY_ID_MAX] = "";
	const char *overrides[FY_CLI_SETS_MAX][2];
	unsigned n_overrides = 0, i;
	double start = fy_now();
	int c, rc = 0, level = -1;

	if (!cfg) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		return 1;
	}
	fy_transport_env_init(&env, cfg, NULL);
	/* A VM's disks (the VM job): agent/vm_backup.c. */
	for (i = 1; i < (unsigned)argc; i++)
		if (!strcmp(argv[i], "--vm") || !strncmp(argv[i], "--vm=", 5)) {
			fy_config_free(cfg);
			return agent_cmd_vm_backup(argc, argv);
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
		case OPT_TRANSPORT: a.transport = optarg; break;
		case OPT_LOG_LEVEL:
			if ((rc = fy_cli_log_level(optarg, &level)) < 0)
				goto fail;
			break;
		case OPT_SET:
			if (n_overrides == FY_CLI_SETS_MAX) {
				rc = fy_err_set(-E2BIG, "at most %d --set and "
						"key flags", FY_CLI_SETS_MAX);
				goto fail;
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
		case OPT_NAMESPACE: key = "ferry.repository.namespace"; break;
		default:
			rc = -EINVAL;
			goto usage;
		}
		if (key) {
			if (n_overrides == FY_CLI_SETS_MAX) {
				rc = fy_err_set(-E2BIG, "at most %d --set and "
						"key flags", FY_CLI_SETS_MAX);
				goto fail;
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
	rc = fy_agent_setup_logging(cfg, level);
	if (rc < 0)
		goto fail;
	rc = fy_settings_load(cfg, &s);
	if (rc < 0)
		goto fail;

	/* Open everything before talking to the repository: a source that
	 * cannot be read fails the job at once. */
	for (i = 0; i < a.n_sources; i++) {
		rc = open_source(a.sources[i], cfg, &s, a.transport, &env,
				 &src[i]);
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
	{
		struct fy_backup_begin bb = {
			.source = a.name, .kind = "file",
			.block_size = s.block_size, .disks = a.n_sources,
		};

		rc = fy_session_wire(conn, &sess);
		if (rc == 0)
			rc = fy_session_begin(sess, &bb, id, sizeof(id));
	}
	if (rc < 0)
		goto fail;
	for (i = 0; i < a.n_sources; i++) {
		struct fy_pipeline_opts po = {
			.block_size = s.block_size,
			.compression_level = s.compression_level,
			.compression_probe = s.compression_probe,
			.workers = s.workers,
			.queue_depth = s.queue_depth,
			.progress = (!a.quiet && isatty(STDERR_FILENO))
					    ? fy_progress_print
					    : NULL,
		};

		rc = fy_pipeline_run(sess, src[i], i, a.sources[i], &po, &st[i]);
		if (rc < 0)
			goto fail;
	}
	rc = fy_session_commit(sess, NULL, 0, id, sizeof(id));
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
	fprintf(stderr, "usage: ferry-agent backup [--config FILE] --source PATH|URI|"
		"vmfs:LUN[,LUN2...]:PATH "
		"[--source ...]\n"
		"       ferry-agent backup --config FILE --vm VM [--disk N ...]\n"
		"         [--transport LIST (default san:hotadd:nbdssl:nbd; "
		"modes san, hotadd,\n"
		"          nbdssl, nbd, https)]\n"
		"         [--json] [--quiet] [--name NAME] [--repository HOST:PORT]\n"
		"         [--cert F] [--key F] [--ca F] [--block-size N]\n"
		"         [--compression-level N] [--set KEY=VALUE] [--log-level N]\n");
	goto out;
fail:
	fprintf(stderr, "ferry-agent: backup failed: %s\n", fy_err_msg());
	if (sess)
		fy_session_fail(sess, rc, fy_err_msg());
	else if (conn)
		fy_conn_send_error(conn, rc, fy_err_msg());
out:
	fy_session_free(sess);
	fy_conn_close(conn);
	for (i = 0; i < FY_DISKS_MAX; i++)
		fy_source_close(src[i]);
	fy_transport_env_release(&env);
	fy_config_free(cfg);
	return rc < 0 ? (rc == -EINVAL && !id[0] ? 2 : 1) : 0;
}

/* ferry-agent transports: the modes this build and this proxy can use, in
 * priority order, colon separated (VixDiskLib_ListTransportModes), by the
 * table's own rules (hotadd: this proxy found in vCenter as a job finds
 * it). */
static int cmd_transports(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "source", required_argument, NULL, OPT_SOURCE },
		{ "set", required_argument, NULL, OPT_SET },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "verbose", no_argument, NULL, OPT_VERBOSE },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ NULL, 0, NULL, 0 },
	};
	struct fy_config *cfg = fy_config_new();
	const char *config = NULL, *sources[FY_DISKS_MAX];
	struct fy_transport_status *st = calloc(FY_TRANSPORT_N_MODES,
						sizeof(*st));
	struct fy_transport_env env;
	bool json = false, verbose = false;
	unsigned n_sources = 0, i, k;
	int c, rc = 0;

	fy_transport_env_init(&env, cfg, NULL);
	if (!cfg || !st) {
		rc = -ENOMEM;
		goto out;
	}
	fy_log_set_level(FY_LOG_WARN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG: config = optarg; break;
		case OPT_JSON: json = true; break;
		case OPT_VERBOSE: verbose = true; break;
		case OPT_LOG_LEVEL: {
			int level;

			if ((rc = fy_cli_log_level(optarg, &level)) < 0)
				goto fail;
			fy_log_set_level(level);
			break;
		}
		case OPT_SOURCE:
			if (n_sources < FY_DISKS_MAX)
				sources[n_sources++] = optarg;
			break;
		case OPT_SET:
			if ((rc = fy_config_set_pair(cfg, optarg)) < 0)
				goto fail;
			break;
		default:
			rc = -EINVAL;
			goto usage;
		}
	}
	if (optind < argc) {
		rc = -EINVAL;
		goto usage;
	}
	if (config && (rc = fy_config_load(cfg, config)) < 0)
		goto fail;
	if ((rc = fy_config_check_unknown(cfg, fy_all_known_keys(),
					  "ferry.")) < 0)
		goto fail;
	fy_transport_status_all(&env, st);
	/* An NBD export named in the job is readable whatever VDDK. */
	for (k = 0; k < n_sources; k++)
		if (fy_nbd_is_uri(sources[k]))
			st[nbd_uri_mode(sources[k], cfg)].available = true;
	if (json) {
		printf("{\"modes\":\"");
		for (i = 0, k = 0; i < FY_TRANSPORT_N_MODES; i++)
			if (st[i].available)
				printf("%s%s", k++ ? ":" : "", st[i].t->name);
		printf("\",\"default\":\"%s\",\"transports\":[",
		       FY_TRANSPORT_DEFAULT);
		for (i = 0; i < FY_TRANSPORT_N_MODES; i++) {
			printf("%s{\"name\":\"%s\",\"available\":%s,"
			       "\"reason\":", i ? "," : "", st[i].t->name,
			       st[i].available ? "true" : "false");
			fy_json_string(stdout, st[i].available ? "" : st[i].why);
			printf("}");
		}
		printf("]}\n");
	} else {
		for (i = 0, k = 0; i < FY_TRANSPORT_N_MODES; i++)
			if (st[i].available)
				printf("%s%s", k++ ? ":" : "", st[i].t->name);
		printf("\n");
		for (i = 0; verbose && i < FY_TRANSPORT_N_MODES; i++)
			if (!st[i].available)
				printf("%s: %s\n", st[i].t->name, st[i].why);
	}
	goto out;
usage:
	fprintf(stderr, "usage: ferry-agent transports [--config FILE] "
		"[--source URI ...] [--json] [--verbose]\n"
		"         [--set KEY=VALUE] [--log-level N]\n");
	goto out;
fail:
	fprintf(stderr, "ferry-agent: transports: %s\n", fy_err_msg());
out:
	fy_transport_env_release(&env);
	free(st);
	fy_config_free(cfg);
	return rc < 0 ? (rc == -EINVAL ? 2 : 1) : 0;
}

/* help: one line for the list; usage: what `ferry-agent NAME --help`
 * prints. */
static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
	const char *usage;
} commands[] = {
	{ "backup", cmd_backup,
	  "back up local files, block devices, NBD exports or VM disks",
	  "backup [--config FILE] --source PATH|URI [--source ...]\n"
	  "         [--transport san:hotadd:nbdssl:nbd:https] [--json] [--quiet]\n"
	  "         [--name NAME] [--repository HOST:PORT] [--cert F] [--key F]\n"
	  "         [--ca F] [--block-size N] [--compression-level N]\n"
	  "         [--set KEY=VALUE] [--log-level N]\n"
	  "       ferry-agent backup --config FILE --vm NAME|MOREF [--disk N ...]\n"
	  "         [--transport LIST] [--snapshot MOREF] [--full|--incremental]\n"
	  "         [--enable-cbt] [--quiesce] [--json] [--quiet] [--name NAME]\n"
	  "         [--repository HOST:PORT] [--namespace NS]\n"
	  "         [--compression-level N] [--set KEY=VALUE] [--log-level N]" },
	{ "restore-vm", agent_cmd_restore_vm,
	  "restore a whole VM from a backup: create it, write its disks",
	  "restore-vm --config FILE BACKUP --name NEW [--datastore DS]\n"
	  "         [--host H | --resource-pool PATH] [--folder PATH]\n"
	  "         [--network OLD=NEW ...] [--disk-provisioning thin|thick|same]\n"
	  "         [--keep-mac] [--power-on] [--transport LIST] [--json] [--quiet]\n"
	  "         [--set KEY=VALUE] [--log-level N]\n"
	  "       ferry-agent restore-vm --config FILE BACKUP --into VM [--disk N ...]\n"
	  "         [--power-on] [--transport LIST] [--json] [--quiet]\n"
	  "  Creates VM NEW with the backup's recorded hardware and writes its\n"
	  "  disks (hotadd:https by default; docs/RESTORE.md). Never replaces\n"
	  "  a VM. --into: overwrites a powered-off VM's disks, only what\n"
	  "  changed since the backup where CBT says." },
	{ "cleanup", agent_cmd_cleanup,
	  "undo what a crashed agent left: attached disks, snapshots",
	  "cleanup --config FILE [--json] [--set KEY=VALUE] [--log-level N]\n"
	  "  Detaches disks a crashed agent left on this proxy, removes its\n"
	  "  snapshots and re-enables the methods it disabled (docs/HOTADD.md)." },
	{ "run", agent_cmd_run,
	  "the service: self-cleanup, then the control API (ferry ...)",
	  "run --config FILE [--set KEY=VALUE] [--log-level N] [--ready-file F]\n"
	  "  The agent service: self-cleanup, then the control API on\n"
	  "  ferry.control.listen (mutual TLS; docs/CONTROL.md)." },
	{ "inventory", agent_cmd_inventory,
	  "VMs, disks, datastores, CBT, snapshots, hot-add checks",
	  "inventory --config FILE [--vm VM] [--proxy VM] [--json]\n"
	  "         [--set KEY=VALUE] [--log-level N]\n"
	  "  VM: vm-42, /DC/vm/folder/name, a name, an instance or BIOS UUID,\n"
	  "      or moref:/name:/path:/uuid:/bios: followed by one\n"
	  "  The proxy is --proxy, else ferry.proxy.moref or "
	  "ferry.proxy.instanceUuid." },
	{ "transports", cmd_transports,
	  "the transport modes this build and proxy can use, in order",
	  "transports [--config FILE] [--source URI ...] [--json] [--verbose]\n"
	  "         [--set KEY=VALUE] [--log-level N]" },
	{ "ovf-env", agent_cmd_ovf_env,
	  "the appliance: OVF properties (ovf-env.xml) to configuration",
	  "ovf-env [--root DIR] FILE|-" },
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: ferry-agent COMMAND [OPTIONS]\n\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nferry-agent COMMAND --help prints the command's usage; "
		"ferry-agent --version the version.\n");
}

int main(int argc, char **argv)
{
	size_t i;

	fy_memory_tune();
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ferry-agent %s\n", FERRY_VERSION);
		return 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		if (fy_cli_wants_help(argc - 1, argv + 1)) {
			printf("usage: ferry-agent %s\n", commands[i].usage);
			return 0;
		}
		return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "ferry-agent: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
