/*
 * The agent service's job registry (docs/CONTROL.md): the table of job
 * kinds (backup: fy_job_run; restore-vm: fy_restore_vm_run; cleanup:
 * fy_job_cleanup), the running and finished jobs, a thread per job
 * recording its phases and counters, and the watchers that send them. A
 * job never waits for a controller: it records its events under svc->lock
 * and the connection threads that watch it send them. The requests that
 * start, watch and cancel jobs are in service_cmds.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/service_int.h"

void job_unref_locked(struct svc_job *j)
{
	if (--j->refs)
		return;
	if (j->cfg)
		cfg_unref(j->cfg);
	free(j->restore);
	free(j->cleanup);
	free(j->result);
	free(j);
}

static void on_phase(void *opaque, const char *phase, const char *detail)
{
	struct svc_job *j = opaque;
	struct phase_event *e;

	fy_debug("job %s: %s%s%s", j->id, phase, detail && *detail ? ": " : "",
		 detail ? detail : "");
	pthread_mutex_lock(&j->svc->lock);
	e = &j->phases[j->n_phases % PHASES_KEPT];
	snprintf(e->phase, sizeof(e->phase), "%s", phase ? phase : "");
	snprintf(e->detail, sizeof(e->detail), "%s", detail ? detail : "");
	j->n_phases++;
	pthread_cond_broadcast(&j->svc->cond);
	pthread_mutex_unlock(&j->svc->lock);
}

static void on_progress(void *opaque, unsigned disk, unsigned n_disks,
			const struct fy_disk_stats *st, bool done)
{
	struct svc_job *j = opaque;
	double now = fy_now();

	if (disk >= FY_JOB_DISKS_MAX)
		return;
	pthread_mutex_lock(&j->svc->lock);
	j->disk[disk] = *st;
	j->disk_done[disk] = done;
	j->n_disks = n_disks < FY_JOB_DISKS_MAX ? n_disks : FY_JOB_DISKS_MAX;
	j->last_disk = disk;
	j->progress_seq++;
	/* Watchers sample the counters; waking them for each block is waste. */
	if (done || now - j->last_broadcast >= 0.1) {
		j->last_broadcast = now;
		pthread_cond_broadcast(&j->svc->cond);
	}
	pthread_mutex_unlock(&j->svc->lock);
}

/* Finished jobs beyond the JOBS_KEPT newest are forgotten, cleanups
 * beyond the CLEANUPS_KEPT newest apart from them: each failed job brings
 * a cleanup, which must not push real results out. */
static void prune_locked(struct svc *svc)
{
	struct svc_job **pp = &svc->jobs;
	unsigned finished = 0, cleanups = 0;

	while (*pp) {
		struct svc_job *j = *pp;

		if (j->res && (j->kind->cleanup ? ++cleanups > CLEANUPS_KEPT
						: ++finished > JOBS_KEPT)) {
			*pp = j->next;
			job_unref_locked(j);
			continue;
		}
		pp = &j->next;
	}
}

static void *job_main(void *arg)
{
	struct svc_job *j = arg;
	struct svc *svc = j->svc;
	struct fy_job_events ev = {
		.phase = on_phase, .progress = on_progress, .opaque = j,
	};
	struct fy_job_result *res = j->result;
	struct svc_job *after = NULL;
	bool ran = false, stopped = false;
	int rc;

	/* A cleanup without running jobs treats this process's journal
	 * entries as a dead process's: no job starts under it, and cleanups
	 * run one at a time. None starts once the agent is stopping. */
	pthread_mutex_lock(&svc->lock);
	if (j->kind->cleanup && !j->reserved) {
		while (svc->cleanup_running && !svc->stopping &&
		       !atomic_load(&j->cancel))
			pthread_cond_wait(&svc->cond, &svc->lock);
		stopped = svc->stopping;
		if (!stopped && !atomic_load(&j->cancel)) {
			svc->cleanup_running = true;
			j->reserved = true;
			j->own_jobs = svc->active > 0;
		}
	} else if (!j->kind->cleanup) {
		while (svc->cleanup_running && !atomic_load(&j->cancel))
			pthread_cond_wait(&svc->cond, &svc->lock);
	}
	j->state = JOB_RUNNING;
	pthread_mutex_unlock(&svc->lock);

	if (stopped) {
		rc = -ESHUTDOWN;
		res->rc = rc;
		snprintf(res->error, sizeof(res->error), "the agent is "
			 "stopping; its next start runs the self-cleanup");
	} else if (atomic_load(&j->cancel) && !(j->kind->cleanup &&
						 j->reserved)) {
		/* Cancelled before it began: nothing to undo. */
		rc = -ECANCELED;
		res->rc = rc;
		res->cancelled = true;
		snprintf(res->error, sizeof(res->error), "cancelled before "
			 "it started");
	} else {
		fy_warn("job %s: %s started by %s", j->id, j->what, j->client);
		ran = true;
		rc = j->kind->run(j, &ev, res);
		if (rc < 0 && res->rc == 0) {
			res->rc = rc;
			snprintf(res->error, sizeof(res->error), "%s",
				 fy_err_msg());
		}
	}
	/* A job that never ran is still reported as its kind. */
	snprintf(res->kind, sizeof(res->kind), "%s", j->kind->name);
	if (rc == 0)
		fy_warn("job %s: %s done in %.1f s", j->id, j->what,
			res->seconds);
	else if (res->cancelled)
		fy_warn("job %s: cancelled; what it did is undone%s%s", j->id,
			res->error[0] ? ": " : "", res->error);
	else
		fy_error("job %s: %s failed: %s", j->id, j->what, res->error);

	pthread_mutex_lock(&svc->lock);
	j->res = res;
	j->finished = time(NULL);
	j->state = rc == 0 ? JOB_SUCCEEDED
		   : res->cancelled ? JOB_CANCELLED : JOB_FAILED;
	if (j->kind->cleanup) {
		if (j->reserved)
			svc->cleanup_running = false;
	} else {
		svc->active--;
	}
	/* What a failed job could not undo (a detach, a snapshot removal)
	 * stays in the journal under this process's pid, which `ferry
	 * cleanup` leaves alone while any job runs. With no other job
	 * running, clean up once now, as a cleanup job; jobs asked for
	 * meanwhile queue. */
	if (ran && rc < 0 && !j->kind->cleanup && !svc->active &&
	    !svc->cleanup_running && !svc->stopping) {
		after = svc_cleanup_job_new(svc, j->cfg, "the agent");
		if (after) {
			after->after_failure = true;
			snprintf(after->what, sizeof(after->what),
				 "self-cleanup after job %s", j->id);
			if (svc_start_locked(svc, after) < 0)
				fy_warn("no self-cleanup after job %s: %s",
					j->id, fy_err_msg());
			/* The list and the thread hold it, or nothing. */
			job_unref_locked(after);
		}
	}
	prune_locked(svc);
	job_unref_locked(j);
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
	return NULL;
}

static uint64_t sum_size(const struct svc_job *j, uint64_t *read)
{
	uint64_t size = 0;
	unsigned i;

	*read = 0;
	for (i = 0; i < j->n_disks; i++) {
		size += j->disk[i].size;
		*read += j->disk[i].bytes_read;
	}
	return size;
}

/* A job as a JobInfo, pointing into j (call under the lock, send before
 * unlocking or copy). */
void job_info_locked(const struct svc_job *j,
			    Ferry__Control__JobInfo *m)
{
	uint64_t read;

	ferry__control__job_info__init(m);
	m->job_id = (char *)j->id;
	m->vm = (char *)j->vm;
	m->vm_moref = (char *)(j->res && j->res->vm_moref[0] ? j->res->vm_moref
							     : j->vm_moref);
	m->name = (char *)j->name;
	m->state = j->state;
	if (j->n_phases)
		m->phase = (char *)j->phases[(j->n_phases - 1) % PHASES_KEPT].phase;
	else
		m->phase = j->state == JOB_QUEUED ? "queued" : "starting";
	m->started_unix = j->started;
	m->finished_unix = j->finished;
	m->n_disks = j->res ? j->res->n : j->n_disks;
	m->size = sum_size(j, &read);
	m->bytes_read = read;
	m->backup_id = (char *)(j->res ? j->res->backup_id : "");
	m->error = (char *)(j->res && j->res->rc < 0 ? j->res->error : "");
	m->client = (char *)j->client;
	m->kind = (char *)j->kind->name;
}

int svc_send_job_list(struct svc *svc, struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__JobList l = FERRY__CONTROL__JOB_LIST__INIT;
	Ferry__Control__JobInfo info[FY_CONTROL_JOBS_MAX];
	Ferry__Control__JobInfo *ip[FY_CONTROL_JOBS_MAX];
	fy_control_frame *copy;
	struct svc_job *j;
	unsigned n = 0, pass;

	pthread_mutex_lock(&svc->lock);
	/* Running and queued first, then finished; each newest first. */
	for (pass = 0; pass < 2; pass++)
		for (j = svc->jobs; j && n < FY_CONTROL_JOBS_MAX; j = j->next)
			if ((pass == 0) == !j->res) {
				job_info_locked(j, &info[n]);
				ip[n] = &info[n];
				n++;
			}
	l.n_jobs = n;
	l.jobs = ip;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_LIST;
	f.job_list = &l;
	copy = frame_copy(&f);
	pthread_mutex_unlock(&svc->lock);
	return send_copy(c, copy);
}

struct svc_job *find_job_locked(struct svc *svc, const char *id)
{
	struct svc_job *j;

	for (j = svc->jobs; j; j = j->next)
		if (!strcmp(j->id, id))
			return j;
	return NULL;
}

/* Queues one JobEvent: a phase, a disk's counters, the final result, or
 * none of them (a heartbeat). */
static int send_event(struct fy_conn *c, char *job_id,
		      Ferry__Control__JobState state,
		      const struct phase_event *phase,
		      Ferry__Control__DiskProgress *progress,
		      Ferry__Control__JobResult *result)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__JobEvent e = FERRY__CONTROL__JOB_EVENT__INIT;

	e.job_id = job_id;
	e.state = state;
	if (phase) {
		e.phase = (char *)phase->phase;
		e.detail = (char *)phase->detail;
	}
	e.progress = progress;
	e.final = result != NULL;
	e.result = result;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT;
	f.job_event = &e;
	return fy_control_send(c, &f);
}

/*
 * Streams a job's events to one controller until its final event. The job
 * thread is never held up: it only updates the job under the lock; this
 * thread samples it and sends with the lock released. A send that fails
 * (the controller went away) ends this watch, not the job.
 */
int svc_watch_job(struct svc *svc, struct fy_conn *c, struct svc_job *j,
		  uint64_t first_phase)
{
	uint64_t seen_phase = first_phase, seen_progress = 0;
	double last_progress = 0, last_sent = fy_now();
	bool told_done[FY_JOB_DISKS_MAX] = { false };
	int rc = 0;

	pthread_mutex_lock(&svc->lock);
	for (;;) {
		struct phase_event ph[PHASES_KEPT];
		Ferry__Control__DiskProgress pm;
		struct fy_disk_stats st;
		/* Disks that ended since the last batch: told before the
		 * phases, so "read disk 2" follows disk 1's last counters. */
		struct fy_disk_stats ended[FY_JOB_DISKS_MAX];
		unsigned ended_disk[FY_JOB_DISKS_MAX], n_ended = 0;
		unsigned n_ph = 0, disk = 0, n_disks = 0, i;
		bool progress = false, final, heartbeat;
		Ferry__Control__JobState state;
		uint64_t p;

		if (j->n_phases > seen_phase + PHASES_KEPT)
			seen_phase = j->n_phases - PHASES_KEPT;
		for (p = seen_phase; p < j->n_phases; p++)
			ph[n_ph++] = j->phases[p % PHASES_KEPT];
		seen_phase = j->n_phases;
		final = j->res != NULL;
		for (i = 0; i < j->n_disks; i++)
			if (j->disk_done[i] && !told_done[i]) {
				told_done[i] = true;
				ended[n_ended] = j->disk[i];
				ended_disk[n_ended++] = i;
			}
		n_disks = j->n_disks;
		if (j->progress_seq != seen_progress &&
		    !j->disk_done[j->last_disk] &&
		    (final || fy_now() - last_progress >= PROGRESS_EVERY)) {
			progress = true;
			seen_progress = j->progress_seq;
			disk = j->last_disk;
			st = j->disk[disk];
		}
		state = j->state;
		heartbeat = fy_now() - last_sent >= HEARTBEAT_SECONDS;
		if (!n_ph && !n_ended && !progress && !final && !heartbeat) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 250 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&svc->cond, &svc->lock, &ts);
			continue;
		}
		pthread_mutex_unlock(&svc->lock);

		for (i = 0; rc == 0 && i < n_ended; i++) {
			fy_control_progress_msg(&pm, ended_disk[i], n_disks,
						&ended[i], true);
			rc = send_event(c, j->id, state, NULL, &pm, NULL);
		}
		for (i = 0; rc == 0 && i < n_ph; i++)
			rc = send_event(c, j->id, state, &ph[i], NULL, NULL);
		if (rc == 0 && progress) {
			fy_control_progress_msg(&pm, disk, n_disks, &st, false);
			rc = send_event(c, j->id, state, NULL, &pm, NULL);
			last_progress = fy_now();
		} else if (rc == 0 && heartbeat && !n_ph && !n_ended && !final) {
			rc = send_event(c, j->id, state, NULL, NULL, NULL);
		}
		if (rc == 0 && final) {
			/* The result never changes once set; the watcher's
			 * reference keeps it alive. */
			struct fy_control_result_msg *m = malloc(sizeof(*m));

			if (!m) {
				rc = fy_err_set(-ENOMEM, "out of memory");
			} else {
				fy_control_result_msg(m, j->res);
				rc = send_event(c, j->id, state, NULL, NULL,
						&m->r);
				free(m);
			}
		}
		if (rc == 0)
			rc = fy_conn_flush(c);
		last_sent = fy_now();
		pthread_mutex_lock(&svc->lock);
		if (rc < 0 || final)
			break;
	}
	pthread_mutex_unlock(&svc->lock);
	if (rc < 0)
		fy_info("job %s: stopped sending its events to %s: %s", j->id,
			fy_conn_peer(c), fy_err_msg());
	return rc;
}

static int run_backup(struct svc_job *j, const struct fy_job_events *ev,
		      struct fy_job_result *res)
{
	int rc = fy_job_run(j->cfg->cfg, &j->spec, &j->cancel, ev, res);

	snprintf(res->kind, sizeof(res->kind), "%s", FY_JOB_KIND_BACKUP);
	return rc;
}

static int run_restore_vm(struct svc_job *j, const struct fy_job_events *ev,
			  struct fy_job_result *res)
{
	return fy_restore_vm_run(j->cfg->cfg, &j->restore->spec, &j->cancel,
				 ev, res);
}

/* The self-cleanup (fy_job_cleanup through run_cleanup, which keeps its
 * result for Status). Its events are its phases; its result's notes say
 * what it did. */
static int run_cleanup_job(struct svc_job *j, const struct fy_job_events *ev,
			   struct fy_job_result *res)
{
	struct cleanup_state *cs = j->cleanup;
	double start = fy_now();

	snprintf(res->kind, sizeof(res->kind), "%s", FY_JOB_KIND_CLEANUP);
	if (j->after_failure)
		fy_warn("self-cleanup after the failed job");
	ev->phase(ev->opaque, "cleanup", NULL);
	run_cleanup(j->svc, j->cfg, j->own_jobs, cs);
	res->seconds = fy_now() - start;
	snprintf(res->notes, sizeof(res->notes), "numCleanedUp=%u "
		 "numRemaining=%u", cs->rep.cleaned, cs->rep.remaining);
	if (cs->rc < 0)
		fy_err_set(cs->rc, "%s", cs->error);
	else
		ev->phase(ev->opaque, "done", res->notes);
	return cs->rc;
}

/* The kinds of job the service runs: one table, one registry, one job
 * thread for all of them. */
const struct job_kind svc_kinds[] = {
	[KIND_BACKUP] = { FY_JOB_KIND_BACKUP, run_backup, false },
	[KIND_RESTORE_VM] = { FY_JOB_KIND_RESTORE_VM, run_restore_vm, false },
	[KIND_CLEANUP] = { FY_JOB_KIND_CLEANUP, run_cleanup_job, true },
};

/* Starts a job whose request was checked and copied: at most
 * ferry.jobs.max at once and one per key, then JobStarted and, with
 * watch, its events. Takes the caller's reference on j. */
int svc_launch(struct svc *svc, struct fy_conn *c, struct svc_job *j,
	       bool watch)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__JobStarted js = FERRY__CONTROL__JOB_STARTED__INIT;
	int rc;

	pthread_mutex_lock(&svc->lock);
	rc = svc_start_locked(svc, j);
	if (rc < 0) {
		pthread_mutex_unlock(&svc->lock);
		fy_warn("refused a %s asked by %s: %s", j->what, j->client,
			fy_err_msg());
		fy_control_send_error(c, rc, fy_err_msg());
		pthread_mutex_lock(&svc->lock);
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		return 0;
	}
	pthread_mutex_unlock(&svc->lock);

	js.job_id = j->id;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_STARTED;
	f.job_started = &js;
	rc = send_frame(c, &f);
	if (rc == 0 && watch)
		rc = svc_watch_job(svc, c, j, 0);
	pthread_mutex_lock(&svc->lock);
	job_unref_locked(j);
	pthread_mutex_unlock(&svc->lock);
	return rc;
}

/* Registers j and starts its thread (svc->lock held): at most
 * ferry.jobs.max at once (cleanups aside) and one per key. On success j
 * has two more references (the list, the thread) and a cleanup that
 * found none running holds svc->cleanup_running from now on. */
int svc_start_locked(struct svc *svc, struct svc_job *j)
{
	struct svc_job *other;
	pthread_attr_t attr;
	pthread_t t;
	char stamp[32];
	struct tm tm;
	time_t now;
	int rc = 0;

	if (svc->stopping) {
		rc = fy_err_set(-ESHUTDOWN, "the agent is stopping; no new "
				"jobs");
	} else if (!j->kind->cleanup && svc->active >= svc->max_jobs) {
		rc = fy_err_set(-EBUSY, "%u job(s) already running, the most "
				"ferry.jobs.max allows; try again when one "
				"ends", svc->active);
	} else {
		for (other = svc->jobs; other; other = other->next)
			if (!other->res && !strcmp(other->key, j->key))
				break;
		if (other)
			rc = fy_err_set(-EBUSY, "VM %s already has job %s "
					"running", j->vm, other->id);
	}
	if (rc < 0)
		return rc;
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	snprintf(j->id, sizeof(j->id), "%s-%u", stamp, ++svc->job_counter);
	j->started = now;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (rc)
		return fy_err_set(-rc, "cannot start a job thread");
	j->refs += 2; /* the list, the job thread */
	j->next = svc->jobs;
	svc->jobs = j;
	if (!j->kind->cleanup) {
		svc->active++;
	} else if (!svc->cleanup_running) {
		/* Taken now, not in the thread: a stop or a job that comes
		 * first must find the cleanup already running. */
		svc->cleanup_running = true;
		j->reserved = true;
		j->own_jobs = svc->active > 0;
	}
	j->state = svc->cleanup_running && !j->reserved ? JOB_QUEUED
							: JOB_RUNNING;
	return 0;
}

/* A cleanup job not yet started (svc->lock held), with one reference. */
struct svc_job *svc_cleanup_job_new(struct svc *svc, struct svc_cfg *cfg,
				    const char *client)
{
	struct svc_job *j = calloc(1, sizeof(*j));

	if (!j || !(j->result = calloc(1, sizeof(*j->result))) ||
	    !(j->cleanup = calloc(1, sizeof(*j->cleanup)))) {
		if (j)
			free(j->result);
		free(j);
		fy_err_set(-ENOMEM, "out of memory");
		return NULL;
	}
	j->svc = svc;
	j->refs = 1;
	j->kind = &svc_kinds[KIND_CLEANUP];
	atomic_init(&j->cancel, false);
	snprintf(j->client, sizeof(j->client), "%s", client);
	snprintf(j->what, sizeof(j->what), "self-cleanup");
	/* Unique: cleanups queue behind each other rather than refuse. */
	snprintf(j->key, sizeof(j->key), "cleanup:%p", (void *)j);
	j->cfg = cfg;
	cfg->refs++;
	return j;
}
