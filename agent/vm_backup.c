/*
 * ferry-agent backup --vm: a VM's disks read through the hotadd transport,
 * and ferry-agent cleanup: the self-cleanup after a crash.
 *
 *   ferry-agent backup --config FILE --vm NAME|moref [--disk N ...]
 *                      [--transport LIST] [--json] ...
 *   ferry-agent cleanup --config FILE [--json]
 *
 * The order of a VM backup, each step journaled before it is taken and
 * undone on every path: PrepareForAccess (DisableMethods), snapshot, attach
 * each frozen disk to the proxy, read it into the repository, detach,
 * remove the snapshot, EndAccess. docs/HOTADD.md.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "hotadd/hotadd.h"
#include "vsphere/vsphere.h"

#define MAX_SELECTED 64

enum {
	VO_CONFIG = 2000, VO_VM, VO_DISK, VO_TRANSPORT, VO_JSON, VO_QUIET,
	VO_SET, VO_NAME, VO_LOG_LEVEL, VO_REPOSITORY,
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
		fprintf(f, "{\"numCleanedUp\":%u,\"numRemaining\":%u,\"log\":",
			rep->cleaned, rep->remaining);
		fy_json_string(f, rep->log);
		fprintf(f, "}");
		return;
	}
	fputs(rep->log, f);
	fprintf(f, "cleanup: numCleanedUp=%u numRemaining=%u\n", rep->cleaned,
		rep->remaining);
}

/* Connects to vCenter, finds the proxy and runs the self-cleanup. */
static int open_proxy(const struct fy_config *cfg, struct fy_vs_client **vc,
		      struct fy_hotadd **h,
		      struct fy_hotadd_cleanup_report *rep)
{
	int rc = fy_vs_client_open(cfg, vc);

	if (rc < 0)
		return rc;
	rc = fy_hotadd_open(*vc, cfg, h);
	if (rc < 0)
		return rc;
	return fy_hotadd_cleanup(*h, rep);
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
	struct fy_vs_client *vc = NULL;
	struct fy_hotadd *h = NULL;
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
		case VO_LOG_LEVEL: level = atoi(optarg); break;
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
	    (rc = open_proxy(cfg, &vc, &h, rep)) < 0)
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
	fy_hotadd_free(h);
	fy_vs_client_free(vc);
	fy_config_free(cfg);
	free(rep);
	return rc < 0 ? (rc == -EINVAL && !config ? 2 : 1) : 0;
}

/* ---- backup --vm --------------------------------------------------------- */

struct vm_job {
	struct fy_config *cfg;
	struct fy_settings s;
	struct fy_vs_client *vc;
	struct fy_hotadd *h;
	struct fy_vs_vm *vm;
	struct fy_vs_inventory *inv;
	struct fy_vs_devices *frozen;
	struct fy_vs_moref snapshot;
	struct fy_journal_entry snap_entry, access_entry;
	bool access_prepared;
	char identity[FY_VS_IDENTITY_MAX];
	unsigned n;
	unsigned index[MAX_SELECTED];    /* into vm->devices.disks */
	const char *file[MAX_SELECTED];  /* the frozen file of each */
	struct fy_source *src[MAX_SELECTED];
	struct fy_disk_stats st[MAX_SELECTED];
	struct attach_ahead *ahead;
};

/* ---- attach ahead ----------------------------------------------------------
 * One backup session reads the disks in order, but attaching one costs a
 * reconfigure (30-60 s on a real vCenter): a thread attaches and finds the
 * next disks while the current one is read, in disk order, at most
 * ferry.hotadd.parallelDisks of the job's disks attached or being attached
 * at once (ferry.hotadd.maxAttached still bounds the proxy as a whole).
 * Only the thread writes src[i] before done[i]; only the reader takes it
 * after. */
struct attach_ahead {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vm_job *j;
	struct fy_file_source_opts fo;
	unsigned window;            /* ferry.hotadd.parallelDisks */
	unsigned closed;            /* disks 0..closed-1 are closed */
	bool stop;                  /* the reader gave up: attach no more */
	bool done[MAX_SELECTED];    /* disk i attached, or failed */
	int rc[MAX_SELECTED];
	char err[FY_ERR_MAX];       /* the failed attach's message */
};

static void *ahead_main(void *arg)
{
	struct attach_ahead *a = arg;
	struct vm_job *j = a->j;
	unsigned i;

	for (i = 0; i < j->n; i++) {
		const struct fy_vs_disk *d =
		    &j->vm->devices.disks[j->index[i]];
		struct fy_source *src = NULL;
		int rc;

		pthread_mutex_lock(&a->lock);
		while (!a->stop && i >= a->closed + a->window)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->stop) {
			pthread_mutex_unlock(&a->lock);
			break;
		}
		pthread_mutex_unlock(&a->lock);
		rc = fy_hotadd_open_disk(j->h, j->file[i], d->capacity, &a->fo,
					 &src);
		pthread_mutex_lock(&a->lock);
		a->rc[i] = rc;
		a->done[i] = true;
		if (rc < 0)
			snprintf(a->err, sizeof(a->err), "%s", fy_err_msg());
		else
			j->src[i] = src;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->lock);
		if (rc < 0)
			break;
	}
	return NULL;
}

static int ahead_start(struct vm_job *j, unsigned window,
		       const struct fy_file_source_opts *fo)
{
	struct attach_ahead *a = calloc(1, sizeof(*a));
	int rc;

	if (!a)
		return fy_err_set(-ENOMEM, "out of memory");
	a->j = j;
	a->fo = *fo;
	a->window = window;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	rc = pthread_create(&a->thread, NULL, ahead_main, a);
	if (rc) {
		pthread_cond_destroy(&a->cond);
		pthread_mutex_destroy(&a->lock);
		free(a);
		return fy_err_set(-rc, "cannot start the attach thread: %s",
				  strerror(rc));
	}
	j->ahead = a;
	return 0;
}

/* Waits until disk i is attached and found; its source then belongs to the
 * reader. */
static int ahead_take(struct vm_job *j, unsigned i, struct fy_source **src)
{
	struct attach_ahead *a = j->ahead;
	int rc;

	pthread_mutex_lock(&a->lock);
	while (!a->done[i])
		pthread_cond_wait(&a->cond, &a->lock);
	rc = a->rc[i];
	*src = j->src[i];
	pthread_mutex_unlock(&a->lock);
	if (rc < 0)
		return fy_err_set(rc, "%s", a->err);
	return 0;
}

/* The reader is done with disk i: close it, and let the thread attach
 * the next one. */
static void ahead_release(struct vm_job *j, unsigned i)
{
	struct attach_ahead *a = j->ahead;
	struct fy_source *src;

	pthread_mutex_lock(&a->lock);
	src = j->src[i];
	j->src[i] = NULL;
	pthread_mutex_unlock(&a->lock);
	fy_source_close(src);
	pthread_mutex_lock(&a->lock);
	a->closed = i + 1;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/* Stops the thread on every path. The disks already attached are closed
 * first: an attach waiting for room under ferry.hotadd.maxAttached may be
 * waiting for exactly those. What it attaches after that is closed by
 * thaw() once it has ended. */
static void ahead_stop(struct vm_job *j)
{
	struct attach_ahead *a = j->ahead;
	unsigned i;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	for (i = 0; i < j->n; i++) {
		struct fy_source *src;

		pthread_mutex_lock(&a->lock);
		src = j->src[i];
		j->src[i] = NULL;
		pthread_mutex_unlock(&a->lock);
		fy_source_close(src);
	}
	pthread_join(a->thread, NULL);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
	j->ahead = NULL;
}

/* Whether the transport list allows hotadd; the network modes for VM disks
 * are another engineer's work and say so. */
static int check_transports(const char *list)
{
	static const char *const known[] = { "san", "hotadd", "nbdssl", "nbd",
					     "https" };
	char buf[128], *tok, *save = NULL;
	bool hotadd = false;
	size_t i;

	if (!list)
		return 0;
	if (strlen(list) >= sizeof(buf))
		return fy_err_set(-EINVAL, "--transport %s: too long", list);
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ":", &save); tok;
	     tok = strtok_r(NULL, ":", &save)) {
		for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(tok, known[i]))
				break;
		if (i == sizeof(known) / sizeof(known[0]))
			return fy_err_set(-EINVAL, "--transport: unknown mode "
					  "\"%s\" (san, hotadd, nbdssl, nbd, "
					  "https)", tok);
		if (!strcmp(tok, "hotadd"))
			hotadd = true;
	}
	if (!hotadd)
		return fy_err_set(-ENOTSUP, "--transport %s: reading VM disks "
				  "(--vm) over san, nbd, nbdssl or https is "
				  "not yet supported; only hotadd is", list);
	return 0;
}

static int select_disks(struct vm_job *j, const long *wanted,
			unsigned n_wanted, const char *transports)
{
	char why[1024];
	unsigned i;

	if (!n_wanted) {
		for (i = 0; i < j->vm->devices.n_disks && i < MAX_SELECTED; i++)
			j->index[j->n++] = i;
	} else {
		for (i = 0; i < n_wanted; i++) {
			if (wanted[i] < 0 ||
			    (size_t)wanted[i] >= j->vm->devices.n_disks)
				return fy_err_set(-EINVAL, "--disk %ld: %s has "
						  "disks 0..%zu", wanted[i],
						  j->vm->name,
						  j->vm->devices.n_disks - 1);
			j->index[j->n++] = (unsigned)wanted[i];
		}
	}
	if (!j->n)
		return fy_err_set(-ENOENT, "VM %s has no disks", j->vm->name);
	for (i = 0; i < j->n; i++) {
		const struct fy_vs_disk *d = &j->vm->devices.disks[j->index[i]];
		enum fy_vs_hotadd_rule r =
		    fy_hotadd_check(j->h, j->inv, j->vm, d, why, sizeof(why));

		if (r != FY_VS_HOTADD_OK)
			return fy_err_set(-ENOTSUP, "disk %u (%s, %s) of %s "
					  "cannot be hot-added: rule \"%s\" "
					  "failed: %s; no other transport in "
					  "\"%s\" can read VM disks yet "
					  "(nbd, nbdssl, https for --vm: not "
					  "yet)", j->index[i], d->label,
					  d->file_name, j->vm->name,
					  fy_vs_hotadd_rule_name(r), why,
					  transports ? transports : "hotadd");
	}
	return 0;
}

/* PrepareForAccess and the snapshot, each journaled first. */
static int freeze(struct vm_job *j)
{
	struct fy_journal_file *jf = fy_hotadd_journal(j->h);
	struct fy_vs_snapshot_opts so = { 0 };
	char name[80];
	unsigned i;
	int rc;

	snprintf(j->identity, sizeof(j->identity), "ferry-agent-%d",
		 (int)getpid());
	j->access_entry.kind = FY_JOURNAL_DISABLE;
	j->access_entry.pid = (int32_t)getpid();
	j->access_entry.device_key = -1;
	snprintf(j->access_entry.vm, sizeof(j->access_entry.vm), "%s",
		 j->vm->moref.value);
	snprintf(j->access_entry.file, sizeof(j->access_entry.file), "%s",
		 j->identity);
	if ((rc = fy_journal_add(jf, &j->access_entry)) < 0)
		return rc;
	rc = fy_vs_prepare_for_access(j->vc, &j->vm->moref, j->identity);
	if (rc < 0) {
		fy_journal_remove(jf, j->access_entry.id);
		j->access_entry.id = 0;
		return fy_err_wrap(rc, "PrepareForAccess on %s", j->vm->name);
	}
	j->access_prepared = true;

	snprintf(name, sizeof(name), "ferry-%d-%ld", (int)getpid(),
		 (long)time(NULL));
	j->snap_entry = (struct fy_journal_entry){
		.kind = FY_JOURNAL_SNAPSHOT, .pid = (int32_t)getpid(),
		.device_key = -1,
	};
	snprintf(j->snap_entry.vm, sizeof(j->snap_entry.vm), "%s",
		 j->vm->moref.value);
	snprintf(j->snap_entry.file, sizeof(j->snap_entry.file), "%s", name);
	if ((rc = fy_journal_add(jf, &j->snap_entry)) < 0)
		return rc;
	so.name = name;
	so.description = "backup by ferry-agent";
	rc = fy_vs_snapshot_create(j->vc, &j->vm->moref, &so, &j->snapshot);
	if (rc < 0) {
		fy_journal_remove(jf, j->snap_entry.id);
		j->snap_entry.id = 0;
		return fy_err_wrap(rc, "snapshot of %s", j->vm->name);
	}
	snprintf(j->snap_entry.object, sizeof(j->snap_entry.object), "%s",
		 j->snapshot.value);
	if (fy_journal_update(jf, &j->snap_entry) < 0)
		fy_warn("%s", fy_err_msg());
	rc = fy_vs_snapshot_devices(j->vc, &j->snapshot, &j->frozen);
	if (rc < 0)
		return fy_err_wrap(rc, "devices of snapshot %s",
				   j->snapshot.value);
	for (i = 0; i < j->n; i++) {
		const struct fy_vs_disk *live =
		    &j->vm->devices.disks[j->index[i]];
		const struct fy_vs_disk *d =
		    fy_vs_devices_disk(j->frozen, live->key);

		if (!d)
			return fy_err_set(-ENOENT, "snapshot %s has no disk "
					  "with key %d", j->snapshot.value,
					  live->key);
		j->file[i] = d->file_name;
	}
	return 0;
}

/*
 * With CBT on, a full backup reads only what QueryChangedDiskAreas("*")
 * reports as allocated in the snapshot: *wrapped gets a source whose extents
 * say so, and the snapshot disk's change ID is returned for the manifest
 * (the next incremental starts from it). Without CBT, or when the query
 * fails (said in the log), the whole disk is read and NULL is returned.
 */
static const char *cbt_allocated(struct vm_job *j, unsigned i,
				 struct fy_source *src,
				 struct fy_source **wrapped)
{
	const struct fy_vs_disk *live = &j->vm->devices.disks[j->index[i]];
	const struct fy_vs_disk *d = fy_vs_devices_disk(j->frozen, live->key);
	struct fy_vs_areas *areas = NULL;
	struct fy_area *copy;
	size_t k;

	*wrapped = NULL;
	if (!j->vm->cbt_enabled || !d || !d->change_id || !d->change_id[0]) {
		fy_info("%s: changed block tracking is off: reading the whole "
			"disk", d ? d->file_name : live->file_name);
		return NULL;
	}
	if (fy_vs_changed_areas_get(j->vc, &j->vm->moref, &j->snapshot,
				    d->key, d->capacity, "*", &areas) < 0) {
		fy_warn("%s: allocated areas unknown (%s): reading the whole "
			"disk", d->file_name, fy_err_msg());
		return NULL;
	}
	copy = calloc(areas->n ? areas->n : 1, sizeof(*copy));
	if (!copy) {
		fy_vs_areas_free(areas);
		return NULL;
	}
	for (k = 0; k < areas->n; k++) {
		copy[k].start = areas->areas[k].start;
		copy[k].length = areas->areas[k].length;
	}
	fy_info("%s: CBT reports %" PRIu64 " of %" PRIu64 " bytes allocated",
		d->file_name, areas->bytes, d->capacity);
	if (fy_area_source_wrap(src, copy, areas->n, wrapped) < 0) {
		free(copy);
		*wrapped = NULL;
	}
	fy_vs_areas_free(areas);
	return d->change_id;
}

/* Undoes freeze(): every step whose undo fails stays in the journal. */
static void thaw(struct vm_job *j)
{
	struct fy_journal_file *jf =
	    j->h ? fy_hotadd_journal(j->h) : NULL;
	unsigned i;

	ahead_stop(j);
	for (i = 0; i < j->n; i++) {
		fy_source_close(j->src[i]);
		j->src[i] = NULL;
	}
	if (j->snapshot.value[0]) {
		if (fy_vs_snapshot_remove(j->vc, &j->snapshot) < 0)
			fy_error("removing snapshot %s of %s: %s; ferry-agent "
				 "cleanup will retry", j->snapshot.value,
				 j->vm->name, fy_err_msg());
		else if (j->snap_entry.id)
			fy_journal_remove(jf, j->snap_entry.id);
		j->snapshot.value[0] = '\0';
	}
	if (j->access_prepared) {
		if (fy_vs_end_access(j->vc, &j->vm->moref, j->identity) < 0)
			fy_error("EndAccess on %s: %s; ferry-agent cleanup "
				 "will retry", j->vm->name, fy_err_msg());
		else if (j->access_entry.id)
			fy_journal_remove(jf, j->access_entry.id);
		j->access_prepared = false;
	}
}

static void print_result(const struct vm_job *j, const char *id,
			 double seconds,
			 const struct fy_hotadd_cleanup_report *rep)
{
	unsigned i;

	printf("{\"backup_id\":");
	fy_json_string(stdout, id);
	printf(",\"source\":");
	fy_json_string(stdout, j->vm->name);
	printf(",\"vm\":");
	fy_json_string(stdout, j->vm->moref.value);
	printf(",\"cleanup\":");
	print_cleanup(rep, true, stdout);
	printf(",\"seconds\":%.3f,\"disks\":[", seconds);
	for (i = 0; i < j->n; i++) {
		const struct fy_disk_stats *st = &j->st[i];

		printf("%s{\"index\":%u,\"file\":", i ? "," : "", i);
		fy_json_string(stdout, j->file[i]);
		printf(",\"transport\":\"hotadd\",");
		fy_disk_stats_json(stdout, st);
		printf("}");
	}
	printf("]}\n");
}

int agent_cmd_vm_backup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, VO_CONFIG },
		{ "vm", required_argument, NULL, VO_VM },
		{ "disk", required_argument, NULL, VO_DISK },
		{ "transport", required_argument, NULL, VO_TRANSPORT },
		{ "json", no_argument, NULL, VO_JSON },
		{ "quiet", no_argument, NULL, VO_QUIET },
		{ "set", required_argument, NULL, VO_SET },
		{ "name", required_argument, NULL, VO_NAME },
		{ "repository", required_argument, NULL, VO_REPOSITORY },
		{ "log-level", required_argument, NULL, VO_LOG_LEVEL },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_job *j = calloc(1, sizeof(*j));
	struct fy_hotadd_cleanup_report *rep = calloc(1, sizeof(*rep));
	const char *config = NULL, *vm_spec = NULL, *transports = NULL;
	const char *name = NULL, *sets[64];
	char repo_override[300], repo_id[128], id[FY_ID_MAX] = "";
	long wanted[MAX_SELECTED];
	unsigned n_wanted = 0, n_sets = 0, i;
	struct fy_conn *conn = NULL;
	bool json = false, quiet = false;
	double start = fy_now();
	int64_t window = 2;
	int c, rc = 0, level = -1;

	if (!j || !rep || !(j->cfg = fy_config_new())) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		free(j);
		free(rep);
		return 1;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case VO_CONFIG: config = optarg; break;
		case VO_VM: vm_spec = optarg; break;
		case VO_TRANSPORT: transports = optarg; break;
		case VO_JSON: json = true; break;
		case VO_QUIET: quiet = true; break;
		case VO_NAME: name = optarg; break;
		case VO_LOG_LEVEL: level = atoi(optarg); break;
		case VO_DISK: {
			char *end;

			if (n_wanted == MAX_SELECTED) {
				rc = -E2BIG;
				goto usage;
			}
			wanted[n_wanted++] = strtol(optarg, &end, 10);
			if (*end || !*optarg) {
				rc = -EINVAL;
				goto usage;
			}
			break;
		}
		case VO_REPOSITORY:
		case VO_SET:
			if (n_sets == 63) {
				rc = -E2BIG;
				goto usage;
			}
			if (c == VO_REPOSITORY) {
				snprintf(repo_override, sizeof(repo_override),
					 "ferry.repository=%s", optarg);
				sets[n_sets++] = repo_override;
			} else {
				sets[n_sets++] = optarg;
			}
			break;
		default:
			rc = -EINVAL;
			goto usage;
		}
	}
	if (optind < argc || !config || !vm_spec) {
		rc = -EINVAL;
		goto usage;
	}
	if ((rc = load_config(j->cfg, config, sets, n_sets, level)) < 0 ||
	    (rc = fy_settings_load(j->cfg, &j->s)) < 0 ||
	    (rc = check_transports(transports)) < 0 ||
	    (rc = fy_config_get_int(j->cfg, "ferry.hotadd.parallelDisks", 2,
				    1, 8, &window)) < 0)
		goto fail;
	rc = open_proxy(j->cfg, &j->vc, &j->h, rep);
	if (rc < 0)
		goto fail;
	if (rep->cleaned || rep->remaining)
		print_cleanup(rep, false, stderr);
	{
		struct fy_vs_moref vm;

		if ((rc = fy_vs_find_vm_spec(j->vc, vm_spec, &vm)) < 0 ||
		    (rc = fy_vs_vm_get(j->vc, &vm, &j->vm)) < 0 ||
		    (rc = fy_vs_inventory_get(j->vc, false, &j->inv)) < 0)
			goto fail;
	}
	if ((rc = select_disks(j, wanted, n_wanted, transports)) < 0 ||
	    (rc = freeze(j)) < 0)
		goto fail;
	rc = fy_repo_connect(&j->s, "ferry-agent " FERRY_VERSION, &conn,
			     repo_id, sizeof(repo_id));
	if (rc < 0)
		goto fail;
	rc = fy_client_begin_backup(conn, name ? name : j->vm->name, "vm",
				    j->s.block_size, j->n, id, sizeof(id));
	if (rc < 0)
		goto fail;
	{
		struct fy_file_source_opts fo = {
			.queue_depth = j->s.queue_depth,
			.io_size = j->s.io_size,
		};

		if ((rc = ahead_start(j, (unsigned)window, &fo)) < 0)
			goto fail;
	}
	for (i = 0; i < j->n; i++) {
		struct fy_pipeline_opts po = {
			.block_size = j->s.block_size,
			.compression_level = j->s.compression_level,
			.workers = j->s.workers,
			.queue_depth = j->s.queue_depth,
			.progress = (!quiet && isatty(STDERR_FILENO))
					    ? fy_progress_print
					    : NULL,
		};
		const char *slash = strrchr(j->file[i], '/');
		const char *label = slash ? slash + 1 : j->file[i];
		struct fy_source *src;

		struct fy_source *cbt_src = NULL;

		rc = ahead_take(j, i, &src);
		if (rc < 0)
			goto fail;
		po.change_id = cbt_allocated(j, i, src, &cbt_src);
		rc = fy_pipeline_run(conn, cbt_src ? cbt_src : src, i, label,
				     &po, &j->st[i]);
		fy_source_close(cbt_src);
		if (rc < 0)
			goto fail;
		ahead_release(j, i);
	}
	rc = fy_client_commit(conn, id, sizeof(id));
	if (rc < 0)
		goto fail;
	thaw(j);
	if (json)
		print_result(j, id, fy_now() - start, rep);
	else if (!quiet)
		printf("backup %s: VM %s, %u disk(s) over hotadd, %.1f s\n", id,
		       j->vm->name, j->n, fy_now() - start);
	goto out;
usage:
	fprintf(stderr, "usage: ferry-agent backup --config FILE --vm "
		"NAME|MOREF [--disk N ...]\n"
		"         [--transport hotadd] [--json] [--quiet] [--name NAME]\n"
		"         [--repository HOST:PORT] [--set KEY=VALUE] "
		"[--log-level N]\n");
	goto out;
fail:
	fprintf(stderr, "ferry-agent: backup failed: %s\n", fy_err_msg());
	if (conn)
		fy_conn_send_error(conn, rc, fy_err_msg());
out:
	if (j->vm)
		thaw(j);
	fy_conn_close(conn);
	fy_vs_devices_free(j->frozen);
	fy_vs_inventory_free(j->inv);
	fy_vs_vm_free(j->vm);
	fy_hotadd_free(j->h);
	fy_vs_client_free(j->vc);
	fy_config_free(j->cfg);
	free(j);
	free(rep);
	return rc < 0 ? (rc == -EINVAL && !id[0] ? 2 : 1) : 0;
}
