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
 * a VM disk file through the first transport of --transport that works
 * (docs/TRANSPORTS.md).
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
#include "nbd/nbd.h"
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
	OPT_CERT, OPT_KEY, OPT_CA, OPT_TRANSPORT, OPT_VERBOSE,
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

/* VDDK's order of preference, as VixDiskLib_ListTransportModes gives it,
 * with the https datastore access last. */
static const char *const all_modes[] = { "san", "hotadd", "nbdssl", "nbd",
					 "https" };
#define N_MODES (sizeof(all_modes) / sizeof(all_modes[0]))
#define VM_DISK_PREFIX "vsphere-ds:"

struct modes {
	const char *m[N_MODES];
	unsigned n;
};

/* "nbdssl:https" -> modes, in the order given; unknown or repeated names
 * are refused. NULL gives the default order. */
static int parse_modes(const char *list, struct modes *out)
{
	const char *p = list;
	unsigned i;

	out->n = 0;
	if (!list) {
		for (i = 0; i < N_MODES; i++)
			out->m[out->n++] = all_modes[i];
		return 0;
	}
	while (*p) {
		size_t n = strcspn(p, ":");
		unsigned k;

		for (i = 0; i < N_MODES; i++)
			if (strlen(all_modes[i]) == n &&
			    !strncmp(p, all_modes[i], n))
				break;
		if (i == N_MODES)
			return fy_err_set(-EINVAL, "--transport %s: '%.*s' is not "
					  "one of san, hotadd, nbdssl, nbd, "
					  "https", list, (int)n, p);
		for (k = 0; k < out->n; k++)
			if (out->m[k] == all_modes[i])
				return fy_err_set(-EINVAL, "--transport %s names "
						  "%s twice", list, all_modes[i]);
		out->m[out->n++] = all_modes[i];
		p += n;
		if (*p == ':' && *++p == '\0')
			break;
	}
	if (!out->n)
		return fy_err_set(-EINVAL, "--transport is empty");
	return 0;
}

static bool modes_has(const struct modes *m, const char *mode)
{
	unsigned i;

	for (i = 0; i < m->n; i++)
		if (!strcmp(m->m[i], mode))
			return true;
	return false;
}

/* hotadd attaches disks to the proxy VM this agent runs in: a VM the
 * configuration names, or a VMware VM that hotadd finds by its BIOS UUID
 * (docs/HOTADD.md). Local facts only. */
static bool hotadd_possible(const struct fy_config *cfg, char *why,
			    size_t whylen)
{
	const char *root = fy_config_get(cfg, "ferry.hotadd.sysfsRoot");
	char path[4096], vendor[128] = "";
	FILE *f;

	if (!fy_config_get(cfg, "ferry.vcenter.server")) {
		snprintf(why, whylen, "ferry.vcenter.server is not configured");
		return false;
	}
	if (fy_config_get(cfg, "ferry.proxy.moref") ||
	    fy_config_get(cfg, "ferry.proxy.instanceUuid"))
		return true;
	snprintf(path, sizeof(path), "%s/sys/class/dmi/id/sys_vendor",
		 root && strcmp(root, "/") ? root : "");
	if ((f = fopen(path, "r"))) {
		if (!fgets(vendor, sizeof(vendor), f))
			vendor[0] = '\0';
		vendor[strcspn(vendor, "\r\n")] = '\0';
		fclose(f);
	}
	if (!strcmp(vendor, "VMware, Inc."))
		return true;
	snprintf(why, whylen, "this proxy is not a VMware VM (sys_vendor "
		 "'%s') and ferry.proxy.moref / ferry.proxy.instanceUuid are "
		 "not set", vendor[0] ? vendor : "unknown");
	return false;
}

/* Whether this build and this proxy can read VM disks with mode, from
 * the configuration alone (no network); why says what is missing. */
static bool mode_possible(const char *mode, const struct fy_config *cfg,
			  char *why, size_t whylen)
{
	struct fy_nbd_vddk_opts vo;

	why[0] = '\0';
	if (!strcmp(mode, "san")) {
		snprintf(why, whylen, "not built yet (a later issue)");
		return false;
	}
	if (!strcmp(mode, "hotadd"))
		return hotadd_possible(cfg, why, whylen);
	if (!strcmp(mode, "https")) {
		if (fy_config_get(cfg, "ferry.vcenter.server"))
			return true;
		snprintf(why, whylen, "ferry.vcenter.server is not configured");
		return false;
	}
	fy_nbd_vddk_opts_default(&vo);
	if (fy_nbd_vddk_opts_from_config(&vo, cfg) < 0) {
		snprintf(why, whylen, "%s", fy_err_msg());
		return false;
	}
	return fy_nbd_vddk_available(&vo, why, whylen);
}

/* The mode an NBD URI is read with: nbds, or TLS required, is nbdssl. */
static const char *nbd_uri_mode(const char *uri, const struct fy_config *cfg)
{
	bool tls = false;

	fy_config_get_bool(cfg, "ferry.nbd.TlsRequired", false, &tls);
	return !strncmp(uri, "nbds", 4) || tls ? "nbdssl" : "nbd";
}

static int vs_client(const struct fy_config *cfg, struct fy_vs_client **c)
{
	return *c ? 0 : fy_vs_client_open(cfg, c);
}

/* The VDDK path for one VM disk: nbdkit's vddk plugin in VDDK mode. */
static int open_vddk(const char *file, const char *mode,
		     const struct fy_config *cfg, struct fy_vs_client **vc,
		     struct fy_source **out)
{
	struct fy_nbd_vddk_opts vo;
	struct fy_nbd_opts no;
	struct fy_vs_moref vm;
	char thumb[64] = "";
	int rc;

	fy_nbd_vddk_opts_default(&vo);
	fy_nbd_opts_default(&no);
	if ((rc = fy_nbd_vddk_opts_from_config(&vo, cfg)) < 0 ||
	    (rc = fy_nbd_opts_from_config(&no, cfg)) < 0 ||
	    (rc = vs_client(cfg, vc)) < 0 ||
	    (rc = fy_vs_find_disk_vm(*vc, file, &vm)) < 0)
		return rc;
	/* VDDK checks the certificate Ferry's own policy accepted. */
	if (fy_vs_client_sha1_thumbprint(*vc, thumb, sizeof(thumb)) < 0)
		fy_warn("vddk: %s; VDDK gets no thumbprint", fy_err_msg());
	vo.vm_moref = vm.value;
	vo.file = file;
	vo.thumbprint = thumb[0] ? thumb : NULL;
	vo.transports = mode;
	vo.nbd = &no;
	return fy_nbd_vddk_open(&vo, out);
}

/* A VM disk file ("vsphere-ds:[ds1] vm/vm.vmdk"): the first mode of the
 * list that can open it, as VDDK tries its modes in order; else every
 * mode's reason, before anything is read. */
static int open_vm_disk(const char *spec, const struct modes *allowed,
			const struct fy_config *cfg, struct fy_vs_client **vc,
			struct fy_source **out)
{
	const char *file = spec + strlen(VM_DISK_PREFIX);
	char reasons[FY_ERR_MAX] = "", why[FY_ERR_MAX], list[64] = "";
	unsigned i;
	int rc = -ENOTSUP;

	for (i = 0; i < allowed->n; i++) {
		const char *mode = allowed->m[i];

		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", i ? ":" : "", mode);
		if (!mode_possible(mode, cfg, why, sizeof(why))) {
			rc = -ENOTSUP;
		} else if (!strcmp(mode, "hotadd")) {
			/* hotadd works on a VM's snapshot, not on a file. */
			snprintf(why, sizeof(why), "reads whole VMs (ferry-agent "
				 "backup --vm), not a single disk file");
			rc = -ENOTSUP;
		} else {
			if (!strcmp(mode, "https")) {
				struct fy_vs_ds_opts o;

				fy_vs_ds_opts_default(&o);
				rc = fy_vs_ds_opts_from_config(&o, cfg);
				if (rc == 0)
					rc = vs_client(cfg, vc);
				if (rc == 0)
					rc = fy_vs_datastore_source_open(
					    *vc, NULL, file, &o, out);
			} else {
				rc = open_vddk(file, mode, cfg, vc, out);
			}
			if (rc == 0) {
				fy_info("%s: read with the %s transport", file,
					mode);
				return 0;
			}
			/* "https: https: x" reads badly in the list. */
			snprintf(why, sizeof(why), "%s",
				 !strncmp(fy_err_msg(), mode, strlen(mode)) &&
					 !strncmp(fy_err_msg() + strlen(mode),
						  ": ", 2)
				     ? fy_err_msg() + strlen(mode) + 2
				     : fy_err_msg());
		}
		fy_debug("%s: transport %s: %s", file, mode, why);
		snprintf(reasons + strlen(reasons),
			 sizeof(reasons) - strlen(reasons), "%s%s: %s",
			 i ? "; " : "", mode, why);
	}
	return fy_err_set(rc, "no transport in %s can read %s: %s", list, file,
			  reasons);
}

static int open_source(const char *path, const struct fy_config *cfg,
		       const struct fy_settings *s, const char *transport,
		       struct fy_vs_client **vc, struct fy_source **out)
{
	struct modes allowed;
	int rc;

	if ((rc = parse_modes(transport, &allowed)) < 0)
		return rc;
	if (!strncmp(path, VM_DISK_PREFIX, strlen(VM_DISK_PREFIX)))
		return open_vm_disk(path, &allowed, cfg, vc, out);
	if (fy_nbd_is_uri(path)) {
		struct fy_nbd_opts no;

		/* An NBD URI says its mode; a list must allow it. */
		if (transport && !modes_has(&allowed, nbd_uri_mode(path, cfg)))
			return fy_err_set(-ENOTSUP, "%s is read with the %s "
					  "transport, which --transport %s does "
					  "not allow", path,
					  nbd_uri_mode(path, cfg), transport);
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
	struct fy_vs_client *vc = NULL;
	char repo_id[128], id[FY_ID_MAX] = "";
	const char *overrides[64][2];
	unsigned n_overrides = 0, i;
	double start = fy_now();
	int c, rc = 0, level = -1;

	if (!cfg) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		return 1;
	}
	/* A VM's disks (hotadd): agent/vm_backup.c. */
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
	rc = fy_agent_setup_logging(cfg, level);
	if (rc < 0)
		goto fail;
	rc = fy_settings_load(cfg, &s);
	if (rc < 0)
		goto fail;

	/* Open everything before talking to the repository: a source that
	 * cannot be read fails the job at once. */
	for (i = 0; i < a.n_sources; i++) {
		rc = open_source(a.sources[i], cfg, &s, a.transport, &vc,
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
	rc = fy_client_begin_backup(conn, a.name, "file", NULL, s.block_size,
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
		"       ferry-agent backup --config FILE --vm VM [--disk N ...] "
		"(hotadd)\n"
		"         [--transport san:hotadd:nbdssl:nbd:https]\n"
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
	fy_vs_client_free(vc);
	fy_config_free(cfg);
	return rc < 0 ? (rc == -EINVAL && !id[0] ? 2 : 1) : 0;
}

void fy_agent_transport_modes(const struct fy_config *cfg,
			      struct fy_agent_mode out[FY_AGENT_MODES])
{
	unsigned i;

	for (i = 0; i < N_MODES && i < FY_AGENT_MODES; i++) {
		out[i].name = all_modes[i];
		out[i].available = mode_possible(all_modes[i], cfg, out[i].why,
						 sizeof(out[i].why));
	}
}

/* ferry-agent transports: the modes this build and this proxy can use, in
 * priority order, colon separated (VixDiskLib_ListTransportModes). */
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
	char why[N_MODES][FY_ERR_MAX];
	bool ok[N_MODES], json = false, verbose = false;
	unsigned n_sources = 0, i, k;
	int c, rc = 0;

	if (!cfg)
		return 1;
	fy_log_set_level(FY_LOG_WARN);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG: config = optarg; break;
		case OPT_JSON: json = true; break;
		case OPT_VERBOSE: verbose = true; break;
		case OPT_LOG_LEVEL: fy_log_set_level(atoi(optarg)); break;
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
	fy_config_warn_unknown(cfg, fy_all_known_keys());
	for (i = 0; i < N_MODES; i++) {
		ok[i] = mode_possible(all_modes[i], cfg, why[i], sizeof(why[i]));
		/* An NBD export named in the job is readable whatever VDDK. */
		for (k = 0; !ok[i] && k < n_sources; k++)
			if (fy_nbd_is_uri(sources[k]) &&
			    !strcmp(nbd_uri_mode(sources[k], cfg), all_modes[i]))
				ok[i] = true;
	}
	if (json) {
		printf("{\"modes\":\"");
		for (i = 0, k = 0; i < N_MODES; i++)
			if (ok[i])
				printf("%s%s", k++ ? ":" : "", all_modes[i]);
		printf("\",\"transports\":[");
		for (i = 0; i < N_MODES; i++) {
			printf("%s{\"name\":\"%s\",\"available\":%s,\"reason\":",
			       i ? "," : "", all_modes[i],
			       ok[i] ? "true" : "false");
			fy_json_string(stdout, ok[i] ? "" : why[i]);
			printf("}");
		}
		printf("]}\n");
	} else {
		for (i = 0, k = 0; i < N_MODES; i++)
			if (ok[i])
				printf("%s%s", k++ ? ":" : "", all_modes[i]);
		printf("\n");
		for (i = 0; verbose && i < N_MODES; i++)
			if (!ok[i])
				printf("%s: %s\n", all_modes[i], why[i]);
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
	fy_config_free(cfg);
	return rc < 0 ? (rc == -EINVAL ? 2 : 1) : 0;
}

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{ "backup", cmd_backup,
	  "back up local files, block devices, NBD exports or VM disks" },
	{ "cleanup", agent_cmd_cleanup,
	  "undo what a crashed agent left: attached disks, snapshots" },
	{ "run", agent_cmd_run,
	  "the service: self-cleanup, then the control API (ferry ...)" },
	{ "inventory", agent_cmd_inventory,
	  "VMs, disks, datastores, CBT, snapshots, hot-add checks" },
	{ "transports", cmd_transports,
	  "the transport modes this build and proxy can use, in order" },
	{ "ovf-env", agent_cmd_ovf_env,
	  "the appliance: OVF properties (ovf-env.xml) to configuration" },
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
