/*
 * One VM backup job (agent/job.h): what ferry-agent backup --vm runs once
 * and the service runs on a thread per job.
 *
 * The order, each step journaled before it is taken and undone on every
 * path (cancel included): PrepareForAccess (DisableMethods), snapshot (or
 * the caller's), per disk the first transport of the list that can read it
 * (hotadd disks are attached ahead while earlier ones are read), the
 * blocks into the repository, commit, detach, snapshot removal, EndAccess.
 *
 * CBT: a full backup reads what QueryChangedDiskAreas("*") reports as
 * allocated; an incremental reads what changed since the change ID stored
 * in the newest backup of the same source and takes every other block's
 * map entry from that backup, so each backup is complete on its own. A
 * disk that cannot be read incrementally is read in full and the result
 * says why (docs/CBT.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/job.h"
#include "agent/session.h"
#include "agent/transport.h"
#include "vsphere/vsphere.h"

const char *const fy_job_config_keys[] = {
	/* advisory (default) or required: docs/HOTADD.md */
	"ferry.vcenter.prepareForAccess",
	NULL,
};

/* Well under ferry-repo's idle limit (300 s by default). */
#define KEEPALIVE_SECONDS 60

/* What is known of one disk before it is read. */
struct disk_plan {
	unsigned index;                  /* into vm->devices.disks */
	const struct fy_vs_disk *frozen; /* the snapshot's copy */
	/* The modes of the list whose possible() says yes for this disk
	 * (bit 1 << enum fy_transport_mode), decided before the snapshot. */
	unsigned candidates;
	bool hotadd_ok;                  /* hotadd is one of them */
	/* Why each mode of the list that cannot read it cannot. */
	char why[FY_TRANSPORT_N_MODES][FY_JOB_TEXT_MAX];
	struct fy_area *areas;           /* CBT's areas to read, or NULL */
	size_t n_areas;
	const struct fy_manifest_disk *parent; /* incremental from this */
};

struct job {
	const struct fy_config *cfg;
	const struct fy_job_spec *spec;
	atomic_bool *cancel;
	const struct fy_job_events *ev;
	struct fy_job_result *res;

	struct fy_settings s;
	const char *list;                /* the transport list, as given */
	const struct fy_transport *modes[FY_TRANSPORT_N_MODES];
	unsigned n_modes;
	struct fy_transport_env env;     /* what the table's modes look at */
	/* Which modes can read VM disks on this proxy at all. */
	bool proxy_ok[FY_TRANSPORT_N_MODES];
	struct fy_vs_client *vc;
	struct fy_hotadd *h;             /* once a disk needs hotadd */
	/* The job's own journal: its snapshot and disabled methods,
	 * whatever its transports (hotadd journals its attaches). */
	struct fy_journal_file *journal;
	bool access_required;            /* ferry.vcenter.prepareForAccess */
	struct fy_vs_vm *vm;
	struct fy_vs_devices *frozen;
	struct fy_vs_moref snapshot;
	bool own_snapshot;               /* taken here: removed here */
	struct fy_journal_entry snap_entry, access_entry;
	bool access_prepared;
	char identity[FY_VS_IDENTITY_MAX];
	struct fy_backup_info *parent;
	unsigned n;
	struct disk_plan plan[FY_JOB_DISKS_MAX];
	struct fy_source *src[FY_JOB_DISKS_MAX]; /* attached ahead */
	struct attach_ahead *ahead;
	struct fy_session *sess;         /* the backup session, once begun */
};

static bool cancelled(const struct job *j)
{
	return j->cancel && atomic_load(j->cancel);
}

static int check_cancel(const struct job *j)
{
	if (cancelled(j))
		return fy_err_set(-ECANCELED, "cancelled");
	return 0;
}

static void phase(const struct job *j, const char *name, const char *detail)
{
	fy_info("job %s: %s%s%s", j->res->vm_name[0] ? j->res->vm_name
						       : j->spec->vm,
		name, detail ? ": " : "", detail ? detail : "");
	if (j->ev && j->ev->phase)
		j->ev->phase(j->ev->opaque, name, detail);
}

static void note(struct job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note(struct job *j, const char *fmt, ...)
{
	size_t used = strlen(j->res->notes);
	va_list ap;

	if (used + 3 >= sizeof(j->res->notes))
		return;
	if (used)
		used += (size_t)snprintf(j->res->notes + used,
					 sizeof(j->res->notes) - used, "; ");
	va_start(ap, fmt);
	vsnprintf(j->res->notes + used, sizeof(j->res->notes) - used, fmt, ap);
	va_end(ap);
	fy_info("%s", j->res->notes + used);
}

/* ---- attach ahead ----------------------------------------------------------
 * One backup session reads the disks in order, but attaching one costs a
 * reconfigure (30-60 s on a real vCenter): a thread attaches and finds the
 * next hotadd disks while the current one is read, in disk order, at most
 * ferry.hotadd.parallelDisks of the job's disks attached or being attached
 * at once (ferry.hotadd.maxAttached still bounds the proxy as a whole).
 * Only the thread writes src[i] before done[i]; only the reader takes it
 * after. A disk whose attach fails is read over the next mode of the list.
 */
struct attach_ahead {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *j;
	struct fy_file_source_opts fo;
	unsigned window;            /* ferry.hotadd.parallelDisks */
	unsigned closed;            /* disks 0..closed-1 are done with */
	bool stop;                  /* the reader gave up: attach no more */
	bool done[FY_JOB_DISKS_MAX]; /* disk i attached, failed or skipped */
	int rc[FY_JOB_DISKS_MAX];
	char err[FY_JOB_DISKS_MAX][FY_JOB_TEXT_MAX];
};

static void *ahead_main(void *arg)
{
	struct attach_ahead *a = arg;
	struct job *j = a->j;
	unsigned i;

	for (i = 0; i < j->n; i++) {
		const struct disk_plan *p = &j->plan[i];
		struct fy_source *src = NULL;
		int rc;

		pthread_mutex_lock(&a->lock);
		while (!a->stop && i >= a->closed + a->window)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->stop) {
			pthread_mutex_unlock(&a->lock);
			break;
		}
		/* The reader may have read it over another mode already. */
		if (i < a->closed) {
			a->rc[i] = -ENOTSUP;
			a->done[i] = true;
			snprintf(a->err[i], sizeof(a->err[i]), "hotadd: not "
				 "needed");
			pthread_mutex_unlock(&a->lock);
			continue;
		}
		pthread_mutex_unlock(&a->lock);
		if (p->hotadd_ok)
			rc = fy_transports[FY_TRANSPORT_HOTADD].open(
			    &j->env, j->vm, &j->snapshot, p->frozen, &src);
		else
			rc = fy_err_set(-ENOTSUP, "hotadd: %s",
					p->why[FY_TRANSPORT_HOTADD]);
		pthread_mutex_lock(&a->lock);
		if (rc == 0 && i < a->closed) {
			/* The reader went on without it meanwhile. */
			pthread_mutex_unlock(&a->lock);
			fy_source_close(src);
			src = NULL;
			rc = fy_err_set(-ENOTSUP, "hotadd: not needed");
			pthread_mutex_lock(&a->lock);
		}
		a->rc[i] = rc;
		a->done[i] = true;
		if (rc < 0)
			snprintf(a->err[i], sizeof(a->err[i]), "%s",
				 fy_err_msg());
		else
			j->src[i] = src;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->lock);
	}
	return NULL;
}

static int ahead_start(struct job *j, unsigned window,
		       const struct fy_file_source_opts *fo)
{
	struct attach_ahead *a = calloc(1, sizeof(*a));
	int rc;

	if (!a)
		return fy_err_set(-ENOMEM, "out of memory");
	a->j = j;
	a->fo = *fo;
	j->env.file_opts = *fo;
	j->env.hotadd = j->h;
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

/* Waits until disk i is attached and found (its source then belongs to
 * the reader), or its attach failed. */
static int ahead_take(struct job *j, unsigned i, struct fy_source **src)
{
	struct attach_ahead *a = j->ahead;
	int rc;

	pthread_mutex_lock(&a->lock);
	while (!a->done[i]) {
		struct timespec ts;

		/* An attach may wait long for room on the proxy
		 * (ferry.hotadd.maxAttachedWaitSeconds): keep the repository
		 * session from going idle meanwhile. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += KEEPALIVE_SECONDS;
		if (pthread_cond_timedwait(&a->cond, &a->lock, &ts) ==
			    ETIMEDOUT &&
		    !a->done[i] && j->sess) {
			pthread_mutex_unlock(&a->lock);
			rc = fy_session_keepalive(j->sess);
			pthread_mutex_lock(&a->lock);
			if (rc < 0) {
				pthread_mutex_unlock(&a->lock);
				return rc;
			}
		}
	}
	rc = a->rc[i];
	*src = j->src[i];
	j->src[i] = NULL;
	pthread_mutex_unlock(&a->lock);
	if (rc < 0)
		return fy_err_set(rc, "%s", a->err[i]);
	return 0;
}

/* The reader is done with disk i: detach it if it was attached but read
 * over another mode, and let the thread attach further. */
static void ahead_release(struct job *j, unsigned i)
{
	struct attach_ahead *a = j->ahead;
	struct fy_source *src;

	pthread_mutex_lock(&a->lock);
	src = a->done[i] ? j->src[i] : NULL;
	if (src)
		j->src[i] = NULL;
	if (a->closed < i + 1)
		a->closed = i + 1;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	fy_source_close(src);
}

/* Stops the thread on every path. The disks already attached are closed
 * (detached) first: an attach waiting for room under
 * ferry.hotadd.maxAttached may be waiting for exactly those. */
static void ahead_stop(struct job *j)
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
	for (i = 0; i < j->n; i++) {
		fy_source_close(j->src[i]);
		j->src[i] = NULL;
	}
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
	j->ahead = NULL;
}

/* ---- connect, find the VM, pick the disks ------------------------------- */

static int connect_vc(struct job *j)
{
	int rc = fy_vs_client_open(j->cfg, &j->vc);

	if (rc < 0)
		return rc;
	fy_transport_env_init(&j->env, j->cfg, j->vc);
	return 0;
}

static int select_disks(struct job *j)
{
	const struct fy_job_spec *sp = j->spec;
	unsigned i, k;

	if (!sp->n_disks) {
		for (i = 0; i < j->vm->devices.n_disks && i < FY_JOB_DISKS_MAX;
		     i++)
			j->plan[j->n++].index = i;
	} else {
		for (i = 0; i < sp->n_disks && i < FY_JOB_DISKS_MAX; i++) {
			if (sp->disks[i] >= j->vm->devices.n_disks)
				return fy_err_set(-EINVAL, "disk %u: %s has "
						  "disks 0..%zu", sp->disks[i],
						  j->vm->name,
						  j->vm->devices.n_disks - 1);
			for (k = 0; k < j->n; k++)
				if (j->plan[k].index == sp->disks[i])
					return fy_err_set(-EINVAL, "disk %u is "
							  "listed twice",
							  sp->disks[i]);
			j->plan[j->n++].index = sp->disks[i];
		}
	}
	if (!j->n)
		return fy_err_set(-ENOENT, "VM %s has no disks", j->vm->name);
	return 0;
}

/* ---- which mode reads which disk: decided before anything is touched ---- */

/* Appends "; text" (or text) to buf. */
static void append(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 3 >= len)
		return;
	if (used)
		used += (size_t)snprintf(buf + used, len - used, "; ");
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/*
 * Every disk's possible() for every mode of the list, before
 * PrepareForAccess and the snapshot: a job that cannot read every disk
 * fails here, with each disk's reasons, and the VM is never touched.
 * hotadd's proxy handle (and its journal of attaches) is opened only when
 * a disk needs it.
 */
static int decide(struct job *j)
{
	char *err = NULL;
	size_t errlen = 8192;
	unsigned i, m, failing = 0;
	bool want_hotadd = false;
	int rc = 0;

	for (m = 0; m < j->n_modes; m++) {
		const struct fy_transport *t = j->modes[m];
		char why[FY_ERR_MAX];

		j->proxy_ok[t->mode] = t->possible(&j->env, NULL, NULL, why,
						   sizeof(why));
		if (!j->proxy_ok[t->mode])
			fy_info("%s: %s (it cannot read VM disks on this proxy)",
				t->name, why);
	}
	for (i = 0; i < j->n; i++) {
		struct disk_plan *p = &j->plan[i];
		/* The caller's snapshot is known: decide on what it froze.
		 * Else the live disk says what the snapshot will freeze. */
		const struct fy_vs_disk *d =
		    p->frozen ? p->frozen : &j->vm->devices.disks[p->index];

		for (m = 0; m < j->n_modes; m++) {
			const struct fy_transport *t = j->modes[m];

			if (t->possible(&j->env, j->vm, d, p->why[t->mode],
					sizeof(p->why[t->mode])))
				p->candidates |= 1u << t->mode;
		}
		if (p->candidates & (1u << FY_TRANSPORT_HOTADD))
			want_hotadd = true;
	}
	if (want_hotadd) {
		rc = fy_hotadd_open(j->vc, j->cfg, &j->h);
		if (rc < 0) {
			char why[FY_JOB_TEXT_MAX];

			snprintf(why, sizeof(why), "%s", fy_err_msg());
			fy_warn("hotadd cannot work on this machine: %s", why);
			for (i = 0; i < j->n; i++) {
				j->plan[i].candidates &=
				    ~(1u << FY_TRANSPORT_HOTADD);
				snprintf(j->plan[i].why[FY_TRANSPORT_HOTADD],
					 sizeof(j->plan[i].why[0]), "%s", why);
			}
			/* proxy_ok stays: the disks that fall back say why. */
			j->h = NULL;
		}
		j->env.hotadd = j->h;
	}
	for (i = 0; i < j->n; i++) {
		struct disk_plan *p = &j->plan[i];
		const struct fy_vs_disk *d = &j->vm->devices.disks[p->index];

		p->hotadd_ok = p->candidates & (1u << FY_TRANSPORT_HOTADD);
		if (p->candidates)
			continue;
		if (!err && !(err = calloc(1, errlen)))
			return fy_err_set(-ENOMEM, "out of memory");
		{
			char one[4096] = "";
			size_t used;

			for (m = 0; m < j->n_modes; m++)
				append(one, sizeof(one), "%s: %s",
				       j->modes[m]->name,
				       p->why[j->modes[m]->mode]);
			used = strlen(err);
			snprintf(err + used, errlen - used, "%sdisk %u (%s): %s",
				 failing ? " | " : "", p->index, d->file_name,
				 one);
		}
		failing++;
	}
	if (failing)
		rc = fy_err_set(-ENOTSUP, "%u of %u disk(s) of %s cannot be "
				"read by any transport of \"%s\"; nothing was "
				"done to the VM (no snapshot): %s", failing,
				j->n, j->vm->name, j->list, err);
	free(err);
	return rc;
}

/* ---- snapshot and access ------------------------------------------------ */

static int journal_add(struct job *j, struct fy_journal_entry *e)
{
	return fy_journal_add(j->journal, e);
}

static void journal_remove(struct job *j, struct fy_journal_entry *e)
{
	if (e->id && fy_journal_remove(j->journal, e->id) < 0)
		fy_warn("%s", fy_err_msg());
	e->id = 0;
}

/*
 * PrepareForAccess (DisableMethods RelocateVM_Task), journaled first. As in
 * VDDK's own sample it is advisory: a server that cannot disable methods
 * (an ESXi host, a missing privilege, a server without DisableMethods, a
 * Storage vMotion still running after the retries) gets a warning that
 * goes into the job's notes, and the backup goes on.
 * ferry.vcenter.prepareForAccess=required makes it fatal.
 */
static int prepare_access(struct job *j)
{
	struct fy_vs_about about;
	const struct fy_vs_fault *f;
	char why[FY_ERR_MAX];
	int rc;

	if (!fy_vs_client_is_vcenter(j->vc)) {
		fy_vs_client_about(j->vc, &about);
		snprintf(why, sizeof(why), "%s is an ESXi host (%s), which "
			 "cannot disable methods", about.url, about.api_type);
		if (j->access_required)
			return fy_err_set(-ENOTSUP, "PrepareForAccess on %s: "
					  "%s, and ferry.vcenter.prepareForAccess"
					  "=required", j->vm->name, why);
		fy_warn("PrepareForAccess on %s impossible: %s; Storage "
			"vMotion is not blocked during this backup",
			j->vm->name, why);
		note(j, "PrepareForAccess impossible: %s; Storage vMotion of "
		     "%s was not blocked during the backup", why, j->vm->name);
		return 0;
	}
	j->access_entry = (struct fy_journal_entry){
		.kind = FY_JOURNAL_DISABLE, .pid = (int32_t)getpid(),
		.device_key = -1,
	};
	snprintf(j->access_entry.vm, sizeof(j->access_entry.vm), "%s",
		 j->vm->moref.value);
	snprintf(j->access_entry.file, sizeof(j->access_entry.file), "%s",
		 j->identity);
	if ((rc = journal_add(j, &j->access_entry)) < 0)
		return rc;
	rc = fy_vs_prepare_for_access(j->vc, &j->vm->moref, j->identity);
	if (rc == 0) {
		j->access_prepared = true;
		return 0;
	}
	f = fy_vs_last_fault();
	snprintf(why, sizeof(why), "%s%s%s%s%s", fy_err_msg(),
		 f->type[0] ? " [" : "", f->type,
		 f->privilege[0] ? ": missing privilege " : "", f->privilege);
	if (f->type[0])
		strncat(why, "]", sizeof(why) - strlen(why) - 1);
	/* Nothing was disabled: nothing to undo. */
	journal_remove(j, &j->access_entry);
	if (rc == -ECANCELED || cancelled(j))
		return fy_err_set(-ECANCELED, "cancelled");
	if (j->access_required)
		return fy_err_set(rc, "%s (ferry.vcenter.prepareForAccess="
				  "required)", why);
	fy_warn("%s; the backup goes on without it: Storage vMotion is not "
		"blocked (ferry.vcenter.prepareForAccess=required would stop "
		"here)", why);
	note(j, "PrepareForAccess failed, backup went on: %s; Storage "
	     "vMotion of %s was not blocked during the backup", why,
	     j->vm->name);
	return 0;
}

static int frozen_devices(struct job *j);

/* --snapshot MOREF: an existing snapshot of this VM, read (not taken, not
 * removed) by the job. Its frozen disks are known before the decisions,
 * which are then made on them. */
static int given_snapshot(struct job *j)
{
	size_t k;

	/* Disks are matched by key, the same across VMs: another VM's
	 * snapshot would back up that VM's disks under this one's name. */
	for (k = 0; k < j->vm->n_snapshots; k++)
		if (!strcmp(j->vm->snapshots[k].moref.value, j->spec->snapshot))
			break;
	if (k == j->vm->n_snapshots)
		return fy_err_set(-EINVAL, "snapshot %s is not a snapshot of %s",
				  j->spec->snapshot, j->vm->name);
	j->snapshot = j->vm->snapshots[k].moref;
	return frozen_devices(j);
}

/* PrepareForAccess and the snapshot (unless the caller named one), each
 * journaled first; then the frozen devices. */
static int freeze(struct job *j)
{
	struct fy_vs_snapshot_opts so = { 0 };
	char name[80];
	int rc;

	static atomic_uint seq;

	/* Unique per job: the service runs several in one process. */
	snprintf(j->identity, sizeof(j->identity), "ferry-agent-%d-%u",
		 (int)getpid(), atomic_fetch_add(&seq, 1) + 1);
	if ((rc = prepare_access(j)) < 0 || (rc = check_cancel(j)) < 0)
		return rc;

	/* The caller's snapshot was read before the decisions. */
	if (j->frozen)
		return 0;
	snprintf(name, sizeof(name), "ferry-%d-%ld", (int)getpid(),
		 (long)time(NULL));
	j->snap_entry = (struct fy_journal_entry){
		.kind = FY_JOURNAL_SNAPSHOT, .pid = (int32_t)getpid(),
		.device_key = -1,
	};
	snprintf(j->snap_entry.vm, sizeof(j->snap_entry.vm), "%s",
		 j->vm->moref.value);
	snprintf(j->snap_entry.file, sizeof(j->snap_entry.file), "%s",
		 name);
	if ((rc = journal_add(j, &j->snap_entry)) < 0)
		return rc;
	so.name = name;
	so.description = "backup by ferry-agent";
	so.quiesce = j->spec->quiesce;
	rc = fy_vs_snapshot_create(j->vc, &j->vm->moref, &so,
				   &j->snapshot);
	if (rc < 0) {
		journal_remove(j, &j->snap_entry);
		return fy_err_wrap(rc, "snapshot of %s", j->vm->name);
	}
	j->own_snapshot = true;
	snprintf(j->snap_entry.object, sizeof(j->snap_entry.object),
		 "%s", j->snapshot.value);
	if (fy_journal_update(j->journal, &j->snap_entry) < 0)
		fy_warn("%s", fy_err_msg());
	return frozen_devices(j);
}

/* The snapshot's devices: each disk's frozen file. */
static int frozen_devices(struct job *j)
{
	unsigned i;
	int rc;

	rc = fy_vs_snapshot_devices(j->vc, &j->snapshot, &j->frozen);
	if (rc < 0)
		return fy_err_wrap(rc, "devices of snapshot %s",
				   j->snapshot.value);
	for (i = 0; i < j->n; i++) {
		const struct fy_vs_disk *live =
		    &j->vm->devices.disks[j->plan[i].index];

		j->plan[i].frozen = fy_vs_devices_disk(j->frozen, live->key);
		if (!j->plan[i].frozen)
			return fy_err_set(-ENOENT, "snapshot %s has no disk "
					  "with key %d", j->snapshot.value,
					  live->key);
	}
	return 0;
}

/*
 * A snapshot removal whose merge met a locked file (a disk still attached
 * somewhere, as after a failed detach) leaves the VM in need of
 * consolidation. The job consolidates it; failing that, it says so in the
 * notes and returns < 0, so that the snapshot's journal entry stays and the
 * next cleanup retries (fy_journal_cleanup consolidates a VM whose snapshot
 * is already gone).
 */
static int consolidate(struct job *j)
{
	struct fy_vs_vm *v = NULL;
	int rc;

	if (fy_vs_vm_get(j->vc, &j->vm->moref, &v) < 0) {
		fy_warn("after removing snapshot %s: %s", j->snapshot.value,
			fy_err_msg());
		return 0;
	}
	if (!v->consolidation_needed) {
		fy_vs_vm_free(v);
		return 0;
	}
	fy_vs_vm_free(v);
	fy_warn("%s needs consolidation after its snapshot was removed; "
		"consolidating", j->vm->name);
	rc = fy_vs_vm_consolidate(j->vc, &j->vm->moref);
	if (rc == 0) {
		note(j, "%s needed consolidation after the snapshot removal: "
		     "consolidated", j->vm->name);
		return 0;
	}
	fy_error("consolidating %s: %s; the next cleanup retries",
		 j->vm->name, fy_err_msg());
	note(j, "%s needs consolidation after the snapshot removal, which "
	     "failed (%s); the next cleanup retries", j->vm->name,
	     fy_err_msg());
	return rc;
}

/*
 * The VM's configuration as the snapshot froze it, recorded with the
 * backup (docs/FORMAT.md). A backup without it still restores every disk,
 * so a configuration that cannot be read or recorded is a note, not a
 * failed job.
 */
static void record_config(struct job *j, uint8_t **rec, size_t *len)
{
	struct fy_vs_vm_config *vc = NULL;
	int32_t keys[FY_JOB_DISKS_MAX];
	unsigned i;
	int rc;

	for (i = 0; i < j->n; i++)
		keys[i] = j->plan[i].frozen->key;
	rc = fy_vs_snapshot_config(j->vc, &j->snapshot, &vc);
	if (rc == 0)
		rc = fy_vm_record_build(vc, j->vm->name, keys, j->n, rec, len);
	fy_vs_vm_config_free(vc);
	if (rc < 0) {
		fy_warn("%s: the VM's configuration is not recorded: %s",
			j->vm->name, fy_err_msg());
		note(j, "the VM's configuration is not recorded (%s); the "
		     "disks are", fy_err_msg());
	}
}

/* Undoes freeze(): every step whose undo fails stays in the journal for
 * the next cleanup. */
static void thaw(struct job *j)
{
	ahead_stop(j);
	if (j->own_snapshot && j->snapshot.value[0]) {
		if (fy_vs_snapshot_remove(j->vc, &j->snapshot) < 0) {
			fy_error("removing snapshot %s of %s: %s; the next "
				 "cleanup will retry", j->snapshot.value,
				 j->vm->name, fy_err_msg());
			note(j, "snapshot %s of %s could not be removed (%s); "
			     "the next cleanup retries", j->snapshot.value,
			     j->vm->name, fy_err_msg());
		} else if (consolidate(j) == 0) {
			journal_remove(j, &j->snap_entry);
		}
		j->own_snapshot = false;
	}
	if (j->access_prepared) {
		if (fy_vs_end_access(j->vc, &j->vm->moref, j->identity) < 0)
			fy_error("EndAccess on %s: %s; the next cleanup will "
				 "retry", j->vm->name, fy_err_msg());
		else
			journal_remove(j, &j->access_entry);
		j->access_prepared = false;
	}
}

/* ---- CBT: what to read of each disk ------------------------------------- */

/* The disk's identity across backups: its UUID, else its key. */
static void disk_id(const struct fy_vs_disk *d, char *out, size_t len)
{
	if (d->uuid && d->uuid[0])
		snprintf(out, len, "%s", d->uuid);
	else
		snprintf(out, len, "key:%d", d->key);
}

/* The base file of the disk's chain: where the disk lives, the same
 * across snapshots until someone moves it. */
static const char *base_file(const struct fy_vs_disk *d)
{
	if (d->chain_len && d->chain[d->chain_len - 1].file_name)
		return d->chain[d->chain_len - 1].file_name;
	return d->file_name;
}

/* The part of a change ID before '/': the tracking epoch of the disk. A
 * parent's epoch that differs is another disk's or from before a reset. */
static size_t epoch_len(const char *cid)
{
	const char *slash = strrchr(cid, '/');

	return slash ? (size_t)(slash - cid) : strlen(cid);
}

static int take_areas(struct disk_plan *p, struct fy_vs_areas *areas)
{
	size_t k;

	p->areas = calloc(areas->n ? areas->n : 1, sizeof(*p->areas));
	if (!p->areas)
		return fy_err_set(-ENOMEM, "out of memory");
	for (k = 0; k < areas->n; k++) {
		p->areas[k].start = areas->areas[k].start;
		p->areas[k].length = areas->areas[k].length;
	}
	p->n_areas = areas->n;
	return 0;
}

const struct fy_manifest_disk *
fy_job_parent_disk(const struct fy_incr_check *c, char *why, size_t len)
{
	const struct fy_backup_info *pb = c->parent;
	const struct fy_manifest_disk *pd = NULL;
	uint32_t k;

	if (c->mode == FY_JOB_FULL) {
		snprintf(why, len, "a full backup was asked for");
		return NULL;
	}
	if (!pb) {
		snprintf(why, len, "no earlier backup of %s", c->source);
		return NULL;
	}
	if (pb->block_size != c->block_size) {
		snprintf(why, len, "backup %s has blocks of %u bytes, this "
			 "one %u", pb->id, pb->block_size, c->block_size);
		return NULL;
	}
	for (k = 0; k < pb->n_disks; k++)
		if (!strcmp(pb->disks[k].disk_id, c->disk_id))
			pd = &pb->disks[k];
	if (!pd) {
		snprintf(why, len, "backup %s has no disk %s", pb->id,
			 c->disk_id);
		return NULL;
	}
	if (!c->change_id || !c->change_id[0]) {
		snprintf(why, len, "changed block tracking is off%s",
			 c->cbt_enabled ? " for this disk until the next "
					  "snapshot" : "");
		return NULL;
	}
	if (!pd->change_id[0]) {
		snprintf(why, len, "backup %s has no change ID for it (CBT "
			 "was off)", pb->id);
		return NULL;
	}
	if (pd->size != c->capacity) {
		snprintf(why, len, "it was resized from %" PRIu64 " to "
			 "%" PRIu64 " bytes since backup %s", pd->size,
			 c->capacity, pb->id);
		return NULL;
	}
	if (strcmp(pd->label, c->base_file)) {
		snprintf(why, len, "it moved from %s to %s since backup %s",
			 pd->label, c->base_file, pb->id);
		return NULL;
	}
	if (epoch_len(pd->change_id) != epoch_len(c->change_id) ||
	    strncmp(pd->change_id, c->change_id, epoch_len(c->change_id))) {
		snprintf(why, len, "the change ID %s of backup %s is not from "
			 "this disk's tracking (now %s): CBT was reset",
			 pd->change_id, pb->id, c->change_id);
		return NULL;
	}
	return pd;
}

static const struct fy_manifest_disk *
parent_disk(struct job *j, unsigned i, char *why, size_t len)
{
	const struct fy_vs_disk *d = j->plan[i].frozen;
	char id[128];
	struct fy_incr_check c = {
		.mode = j->spec->mode, .parent = j->parent,
		.source = j->res->vm_name, .block_size = j->s.block_size,
		.disk_id = id, .base_file = base_file(d),
		.change_id = d->change_id, .capacity = d->capacity,
		.cbt_enabled = j->vm->cbt_enabled,
	};

	disk_id(d, id, sizeof(id));
	return fy_job_parent_disk(&c, why, len);
}

/* Decides, for every disk, a full or an incremental read and the CBT areas
 * to read; without CBT the whole disk is read. */
static int plan_reads(struct job *j)
{
	unsigned i;
	int rc;

	for (i = 0; i < j->n; i++) {
		struct disk_plan *p = &j->plan[i];
		struct fy_job_disk_result *r = &j->res->disks[i];
		const struct fy_vs_disk *d = p->frozen;
		struct fy_vs_areas *areas = NULL;
		char why[FY_JOB_TEXT_MAX];

		r->index = p->index;
		snprintf(r->file, sizeof(r->file), "%s", d->file_name);
		snprintf(r->change_id, sizeof(r->change_id), "%s",
			 d->change_id ? d->change_id : "");
		p->parent = parent_disk(j, i, why, sizeof(why));
		if (p->parent) {
			rc = fy_vs_changed_areas_get(j->vc, &j->vm->moref,
						     &j->snapshot, d->key,
						     d->capacity,
						     p->parent->change_id,
						     &areas);
			if (rc == -ECANCELED)
				return rc;
			if (rc < 0) {
				snprintf(why, sizeof(why), "vCenter refused "
					 "change ID %s: %s",
					 p->parent->change_id, fy_err_msg());
				p->parent = NULL;
			} else {
				r->incremental = true;
				fy_info("%s: %" PRIu64 " bytes changed since "
					"backup %s", d->file_name,
					areas->bytes, j->parent->id);
			}
		}
		if (!p->parent) {
			snprintf(r->full_reason, sizeof(r->full_reason), "%s",
				 why);
			fy_info("%s: full read: %s", d->file_name, why);
			if (d->change_id && d->change_id[0]) {
				rc = fy_vs_changed_areas_get(
				    j->vc, &j->vm->moref, &j->snapshot, d->key,
				    d->capacity, "*", &areas);
				if (rc < 0) {
					fy_warn("%s: allocated areas unknown "
						"(%s): reading the whole disk",
						d->file_name, fy_err_msg());
					areas = NULL;
				} else {
					fy_info("%s: CBT reports %" PRIu64
						" of %" PRIu64 " bytes "
						"allocated", d->file_name,
						areas->bytes, d->capacity);
				}
			}
		}
		if (areas) {
			rc = take_areas(p, areas);
			fy_vs_areas_free(areas);
			if (rc < 0)
				return rc;
		}
		if ((rc = check_cancel(j)) < 0)
			return rc;
	}
	return 0;
}

/* ---- reading -------------------------------------------------------------- */

/* Opens disk i over the first mode of the list that can read it; every
 * mode's reason goes into the error when none can. */
static int open_disk(struct job *j, unsigned i, struct fy_source **out)
{
	struct disk_plan *p = &j->plan[i];
	char why[2048] = "", fell[2048] = "";
	unsigned m;
	int rc = -ENOTSUP;

	for (m = 0; m < j->n_modes; m++) {
		const struct fy_transport *t = j->modes[m];

		if (!(p->candidates & (1u << t->mode))) {
			append(why, sizeof(why), "%s: %s", t->name,
			       p->why[t->mode]);
			/* A mode this proxy uses that this disk cannot have
			 * is a fallback the admin must see. */
			if (j->proxy_ok[t->mode])
				append(fell, sizeof(fell), "%s: %s", t->name,
				       p->why[t->mode]);
			continue;
		}
		if (t->attaches)
			rc = ahead_take(j, i, out);
		else
			rc = t->open(&j->env, j->vm, &j->snapshot, p->frozen,
				     out);
		if (rc == 0) {
			if (!t->attaches && j->ahead)
				ahead_release(j, i);
			snprintf(j->res->disks[i].transport,
				 sizeof(j->res->disks[i].transport), "%s",
				 t->name);
			if (fell[0]) {
				fy_warn("disk %u (%s) of %s falls back to %s: %s",
					p->index, p->frozen->file_name,
					j->vm->name, t->name, fell);
				note(j, "disk %u (%s) read over %s, not the "
				     "mode before it: %s", p->index,
				     p->frozen->file_name, t->name, fell);
			}
			return 0;
		}
		append(why, sizeof(why), "%s", fy_err_msg());
		append(fell, sizeof(fell), "%s", fy_err_msg());
		if (cancelled(j))
			return check_cancel(j);
	}
	if (j->ahead)
		ahead_release(j, i);
	return fy_err_set(rc < 0 ? rc : -ENOTSUP, "disk %u (%s) of %s: no "
			  "transport of \"%s\" can read it: %s", p->index,
			  p->frozen->file_name, j->vm->name, j->list, why);
}

struct progress_ctx {
	const struct job *j;
	unsigned disk;
};

static void on_progress(void *opaque, const struct fy_disk_stats *st,
			bool done)
{
	const struct progress_ctx *c = opaque;

	c->j->ev->progress(c->j->ev->opaque, c->disk, c->j->n, st, done);
}

/* The parent's map of disk i, over a connection of its own opened just
 * for it (the backup session's connection is mid-session, and one kept
 * open across disks would go idle while a big disk is read). */
static int parent_map(struct job *j, unsigned i, struct fy_parent_map *pm)
{
	const struct disk_plan *p = &j->plan[i];
	struct fy_conn *pconn = NULL;
	char repo_id[128];
	int rc;

	rc = fy_repo_connect(&j->s, "ferry-agent " FERRY_VERSION, &pconn,
			     repo_id, sizeof(repo_id));
	if (rc == 0)
		rc = fy_client_get_map(pconn, j->parent->id, p->parent->index,
				       p->frozen->capacity, j->s.block_size,
				       pm);
	fy_conn_close(pconn);
	return rc;
}

static int read_disk(struct job *j, unsigned i)
{
	struct disk_plan *p = &j->plan[i];
	struct fy_job_disk_result *r = &j->res->disks[i];
	struct fy_parent_map pm = { 0 };
	struct progress_ctx pc = { .j = j, .disk = i };
	struct fy_source *src = NULL, *wrapped = NULL;
	char id[128];
	struct fy_pipeline_opts po = {
		.block_size = j->s.block_size,
		.compression_level = j->s.compression_level,
		.compression_probe = j->s.compression_probe,
		.workers = j->s.workers,
		.queue_depth = j->s.queue_depth,
		.cancel = j->cancel,
	};
	int rc;

	phase(j, "read", p->frozen->file_name);
	if (p->parent) {
		rc = parent_map(j, i, &pm);
		if (rc < 0) {
			/* Read it whole rather than fail the job. */
			snprintf(r->full_reason, sizeof(r->full_reason),
				 "the map of backup %s: %s", j->parent->id,
				 fy_err_msg());
			r->incremental = false;
			p->parent = NULL;
			free(p->areas);
			p->areas = NULL;
			p->n_areas = 0;
			fy_parent_map_free(&pm);
		}
	}
	rc = open_disk(j, i, &src);
	if (rc < 0)
		goto out;
	if (p->areas) {
		rc = fy_area_source_wrap(src, p->areas, p->n_areas, &wrapped);
		if (rc < 0)
			goto out;
		p->areas = NULL; /* the wrapper owns them */
	}
	disk_id(p->frozen, id, sizeof(id));
	po.change_id = r->change_id[0] ? r->change_id : NULL;
	po.disk_id = id;
	po.parent = p->parent ? &pm : NULL;
	if (j->ev && j->ev->progress) {
		po.progress = on_progress;
		po.progress_opaque = &pc;
	}
	rc = fy_pipeline_run(j->sess, wrapped ? wrapped : src, i,
			     base_file(p->frozen), &po, &r->st);
out:
	fy_source_close(wrapped);
	fy_source_close(src);
	if (j->ahead)
		ahead_release(j, i);
	fy_parent_map_free(&pm);
	return rc;
}

/* ---- the job -------------------------------------------------------------- */

static int run(struct job *j)
{
	const struct fy_job_spec *sp = j->spec;
	struct fy_job_result *res = j->res;
	struct fy_conn *conn = NULL;
	const char *name, *access;
	char repo_id[128];
	uint8_t *rec = NULL;
	size_t rec_len = 0;
	int64_t window = 2;
	unsigned i;
	int rc;

	j->list = sp->transports && sp->transports[0]
			  ? sp->transports
			  : fy_config_get(j->cfg, "ferry.transports");
	if (!j->list || !j->list[0])
		j->list = FY_TRANSPORT_DEFAULT;
	if ((rc = fy_settings_load(j->cfg, &j->s)) < 0 ||
	    (rc = fy_transport_list_parse(j->list, j->modes,
					  FY_TRANSPORT_N_MODES,
					  &j->n_modes)) < 0 ||
	    (rc = fy_config_get_int(j->cfg, "ferry.hotadd.parallelDisks", 2,
				    1, 8, &window)) < 0)
		return rc;
	access = fy_config_get(j->cfg, "ferry.vcenter.prepareForAccess");
	if (access && strcmp(access, "advisory") && strcmp(access, "required"))
		return fy_err_set(-EINVAL, "ferry.vcenter.prepareForAccess=%s: "
				  "want advisory (the default: a server that "
				  "cannot disable methods gets a note) or "
				  "required", access);
	j->access_required = access && !strcmp(access, "required");
	/* Every VM job is journaled, whatever its transports: a crash
	 * leaves its snapshot and disabled methods to the next cleanup. */
	if ((rc = fy_hotadd_journal_open(j->cfg, &j->journal)) < 0)
		return fy_err_wrap(rc, "the job journal "
				   "(ferry.stateDirectory)");
	if (sp->repository && sp->repository[0])
		j->s.repository = sp->repository;

	phase(j, "connect", NULL);
	if ((rc = connect_vc(j)) < 0)
		return rc;
	{
		struct fy_vs_moref vm;

		if ((rc = fy_vs_find_vm_spec(j->vc, sp->vm, &vm)) < 0 ||
		    (rc = fy_vs_vm_get(j->vc, &vm, &j->vm)) < 0)
			return rc;
	}
	snprintf(res->vm_name, sizeof(res->vm_name), "%s", j->vm->name);
	snprintf(res->vm_moref, sizeof(res->vm_moref), "%s",
		 j->vm->moref.value);
	if ((rc = select_disks(j)) < 0 ||
	    (sp->snapshot && sp->snapshot[0] && (rc = given_snapshot(j)) < 0) ||
	    (rc = decide(j)) < 0)
		return rc;
	res->n = j->n;
	if (sp->enable_cbt && !j->vm->cbt_enabled) {
		if ((rc = fy_vs_cbt_set(j->vc, &j->vm->moref, true)) < 0)
			return fy_err_wrap(rc, "enabling CBT on %s",
					   j->vm->name);
		j->vm->cbt_enabled = true;
		note(j, "changed block tracking enabled on %s: it takes "
		     "effect at the next snapshot, so disks without a change "
		     "ID in this one are read in full", j->vm->name);
	} else if (!j->vm->cbt_enabled) {
		note(j, "changed block tracking is off on %s: whole disks are "
		     "read (ask for it with --enable-cbt)", j->vm->name);
	}
	if ((rc = check_cancel(j)) < 0)
		return rc;

	phase(j, "snapshot", NULL);
	if ((rc = freeze(j)) < 0 || (rc = check_cancel(j)) < 0)
		return rc;
	rc = fy_repo_connect(&j->s, "ferry-agent " FERRY_VERSION, &conn,
			     repo_id, sizeof(repo_id));
	if (rc < 0)
		goto out;
	name = sp->name && sp->name[0] ? sp->name : j->vm->name;
	if (sp->mode != FY_JOB_FULL) {
		rc = fy_client_latest(conn, name, "vm", &j->parent);
		if (rc == -ENOENT)
			j->parent = NULL;
		else if (rc < 0)
			goto out;
	}
	if ((rc = plan_reads(j)) < 0)
		goto out;
	for (i = 0; i < j->n; i++)
		if (j->plan[i].parent)
			break;
	if (i < j->n)
		snprintf(res->parent_id, sizeof(res->parent_id), "%s",
			 j->parent->id);
	{
		struct fy_backup_begin bb = {
			.source = name, .kind = "vm",
			.parent_id = res->parent_id, .block_size = j->s.block_size,
			.disks = j->n,
		};

		rc = fy_session_wire(conn, &j->sess);
		if (rc == 0)
			rc = fy_session_begin(j->sess, &bb, res->backup_id,
					      sizeof(res->backup_id));
	}
	if (rc < 0)
		goto out;
	if (j->h) {
		struct fy_file_source_opts fo = {
			.queue_depth = j->s.queue_depth,
			.io_size = j->s.io_size,
			.cached = j->s.read_cache,
		};

		if ((rc = ahead_start(j, (unsigned)window, &fo)) < 0)
			goto out;
	}
	for (i = 0; i < j->n && rc == 0; i++)
		if ((rc = read_disk(j, i)) == 0)
			rc = check_cancel(j);
	if (rc < 0)
		goto out;
	/* Every disk may have fallen back to a full read after all. */
	for (i = 0; i < j->n; i++)
		if (res->disks[i].incremental)
			break;
	if (i == j->n)
		res->parent_id[0] = '\0';
	phase(j, "commit", NULL);
	record_config(j, &rec, &rec_len);
	rc = fy_session_commit(j->sess, rec, rec_len, res->backup_id,
			       sizeof(res->backup_id));
out:
	free(rec);
	if (rc < 0 && conn) {
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		if (j->sess)
			fy_session_fail(j->sess, rc, msg);
		else
			fy_conn_send_error(conn, rc, msg);
		fy_err_set(rc, "%s", msg);
	}
	/* thaw() stops the attach thread, which may use the session. */
	ahead_stop(j);
	fy_session_free(j->sess);
	j->sess = NULL;
	fy_conn_close(conn);
	return rc;
}

int fy_job_run(const struct fy_config *cfg, const struct fy_job_spec *spec,
	       atomic_bool *cancel, const struct fy_job_events *ev,
	       struct fy_job_result *res)
{
	struct job *j = calloc(1, sizeof(*j));
	double start = fy_now();
	unsigned i;
	int rc;

	memset(res, 0, sizeof(*res));
	if (!j) {
		res->rc = -ENOMEM;
		snprintf(res->error, sizeof(res->error), "out of memory");
		return -ENOMEM;
	}
	j->cfg = cfg;
	j->spec = spec;
	j->cancel = cancel;
	j->ev = ev;
	j->res = res;
	rc = run(j);
	if (rc < 0) {
		snprintf(res->error, sizeof(res->error), "%s", fy_err_msg());
		if (rc == -ECANCELED || cancelled(j)) {
			rc = -ECANCELED;
			res->cancelled = true;
		}
		res->backup_id[0] = '\0';
	}
	if (j->vm) {
		phase(j, "cleanup", NULL);
		thaw(j);
	}
	res->rc = rc;
	res->seconds = fy_now() - start;
	phase(j, "done", rc < 0 ? res->error : res->backup_id);
	for (i = 0; i < j->n; i++)
		free(j->plan[i].areas);
	fy_backup_info_free(j->parent);
	fy_vs_devices_free(j->frozen);
	fy_vs_vm_free(j->vm);
	fy_transport_env_release(&j->env);
	fy_hotadd_free(j->h);
	fy_journal_close(j->journal);
	fy_vs_client_free(j->vc);
	free(j);
	if (rc < 0)
		fy_err_set(rc, "%s", res->error);
	return rc;
}

/* A restore's result: what it read, what it made. */
static void restore_result_json(FILE *f, const struct fy_job_result *res)
{
	unsigned i;

	fprintf(f, "{\"kind\":\"%s\",\"ok\":%s,\"cancelled\":%s,"
		"\"error\":", FY_JOB_KIND_RESTORE_VM,
		res->rc < 0 ? "false" : "true",
		res->cancelled ? "true" : "false");
	fy_json_string(f, res->error);
	fprintf(f, ",\"backup\":");
	fy_json_string(f, res->backup_id);
	fprintf(f, ",\"source\":");
	fy_json_string(f, res->source);
	fprintf(f, ",\"vm\":");
	fy_json_string(f, res->vm_name);
	fprintf(f, ",\"moref\":");
	fy_json_string(f, res->vm_moref);
	fprintf(f, ",\"datastore\":");
	fy_json_string(f, res->datastore);
	fprintf(f, ",\"host\":");
	fy_json_string(f, res->host);
	fprintf(f, ",\"into\":%s,\"powered_on\":%s,\"notes\":",
		res->into ? "true" : "false",
		res->powered_on ? "true" : "false");
	fy_json_string(f, res->notes);
	fprintf(f, ",\"seconds\":%.3f,\"disks\":[", res->seconds);
	for (i = 0; i < res->n; i++) {
		const struct fy_job_disk_result *d = &res->disks[i];

		fprintf(f, "%s{\"file\":", i ? "," : "");
		fy_json_string(f, d->file);
		fprintf(f, ",\"capacity\":%" PRIu64 ",\"restored\":%s",
			d->st.size, d->skipped ? "false" : "true");
		if (!d->skipped) {
			fprintf(f, ",\"backup_disk\":%u,\"transport\":",
				d->index);
			fy_json_string(f, d->transport);
			if (res->into) {
				fprintf(f, ",\"changed_only\":%s,"
					"\"full_reason\":",
					d->incremental ? "true" : "false");
				fy_json_string(f, d->full_reason);
			}
			fprintf(f, ",\"bytes_data\":%" PRIu64 ",\"bytes_zero\":%"
				PRIu64 ",\"bytes_written\":%" PRIu64
				",\"seconds\":%.3f", d->st.bytes_read,
				d->st.bytes_zero, d->st.bytes_sent,
				d->st.seconds);
		}
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}

void fy_job_result_json(FILE *f, const struct fy_job_result *res)
{
	unsigned i;

	if (!strcmp(res->kind, FY_JOB_KIND_RESTORE_VM)) {
		restore_result_json(f, res);
		return;
	}
	fprintf(f, "{\"backup_id\":");
	fy_json_string(f, res->backup_id);
	fprintf(f, ",\"parent_id\":");
	fy_json_string(f, res->parent_id);
	fprintf(f, ",\"source\":");
	fy_json_string(f, res->vm_name);
	fprintf(f, ",\"vm\":");
	fy_json_string(f, res->vm_moref);
	fprintf(f, ",\"ok\":%s,\"cancelled\":%s,\"error\":",
		res->rc < 0 ? "false" : "true",
		res->cancelled ? "true" : "false");
	fy_json_string(f, res->error);
	fprintf(f, ",\"notes\":");
	fy_json_string(f, res->notes);
	fprintf(f, ",\"seconds\":%.3f,\"disks\":[", res->seconds);
	for (i = 0; i < res->n; i++) {
		const struct fy_job_disk_result *d = &res->disks[i];

		fprintf(f, "%s{\"index\":%u,\"file\":", i ? "," : "",
			d->index);
		fy_json_string(f, d->file);
		fprintf(f, ",\"transport\":");
		fy_json_string(f, d->transport);
		fprintf(f, ",\"incremental\":%s,\"full_reason\":",
			d->incremental ? "true" : "false");
		fy_json_string(f, d->full_reason);
		fprintf(f, ",\"change_id\":");
		fy_json_string(f, d->change_id);
		fprintf(f, ",");
		fy_disk_stats_json(f, &d->st);
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}

/* ---- the self-cleanup ------------------------------------------------------ */

int fy_job_cleanup(const struct fy_config *cfg, bool own_jobs_running,
		   struct fy_hotadd_cleanup_report *rep)
{
	struct fy_vs_client *vc = NULL;
	struct fy_journal_file *jf = NULL;
	struct fy_hotadd *h = NULL;
	char no_proxy[FY_ERR_MAX] = "";
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = fy_hotadd_journal_open(cfg, &jf);
	if (rc == 0)
		rc = fy_vs_client_open(cfg, &vc);
	if (rc < 0)
		goto out;
	/* Snapshots and disabled methods need no proxy: a machine where
	 * hotadd cannot work still cleans up after an https or nbd job. */
	if ((rc = fy_hotadd_open(vc, cfg, &h)) < 0) {
		/* A proxy the configuration names must be this machine:
		 * that is a mistake to fix, not a machine without hotadd. */
		if (fy_config_get(cfg, "ferry.proxy.moref") ||
		    fy_config_get(cfg, "ferry.proxy.instanceUuid"))
			goto out;
		snprintf(no_proxy, sizeof(no_proxy), "%s", fy_err_msg());
		fy_info("cleanup without hotadd: %s", no_proxy);
		h = NULL;
	}
	rc = fy_journal_cleanup(vc, jf, h, no_proxy, own_jobs_running, rep);
out:
	fy_hotadd_free(h);
	fy_vs_client_free(vc);
	fy_journal_close(jf);
	return rc;
}

void fy_job_cleanup_json(FILE *f, const struct fy_hotadd_cleanup_report *rep)
{
	fprintf(f, "{\"numCleanedUp\":%u,\"numRemaining\":%u,\"log\":",
		rep->cleaned, rep->remaining);
	fy_json_string(f, rep->log);
	fprintf(f, "}");
}
