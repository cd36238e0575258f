/*
 * ferry-agent run: the agent as a service. docs/CONTROL.md.
 *
 *   ferry-agent run --config FILE [--set KEY=VALUE] [--log-level N]
 *                   [--ready-file F]
 *
 * At start: the configuration, the log, then the self-cleanup (what a dead
 * agent left on this proxy), whose result Status reports; a vCenter that
 * cannot be reached is logged and the service serves anyway. Then the
 * control API (proto/control.proto) on ferry.control.listen over mutual
 * TLS 1.3: the agent presents ferry.tls.cert, a controller must present a
 * certificate that chains to ferry.tls.ca.
 *
 * Threads: the main thread accepts and handles signals (signalfd); one
 * thread per controller connection (at most ferry.control.maxClients); one
 * per backup job (at most ferry.jobs.max). A job never waits for a
 * controller: it records its phases and counters here under the lock and
 * the connection threads that watch it send them on; a controller that
 * goes away only ends its own thread.
 *
 * SIGTERM/SIGINT: stop accepting, cancel every job, wait until each has
 * undone what it did (detach, snapshot removal, EndAccess) and for a
 * cleanup that runs (bounded), exit 0.
 * SIGHUP: reload the configuration file; jobs started from then on use it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/control.h"
#include "vsphere/vsphere.h"

#define JOBS_KEPT 32          /* finished jobs remembered for ListJobs */
#define PHASES_KEPT 32        /* phase events a late watcher can replay */
#define PROGRESS_EVERY 0.25   /* seconds between progress events per watcher */
#define REQUEST_MS 30000      /* a frame once started must arrive in this */
#define IDLE_SECONDS 600      /* a controller silent this long is dropped */
/* A watched job that reports nothing this long (a quiesced snapshot, a
 * slow reconfigure) still gets an event, so that the controller's read
 * timeout (ferry.timeoutSeconds) never mistakes it for a dead agent. */
#define HEARTBEAT_SECONDS 20
#define STATUS_MODES_SECONDS 30

enum { RO_CONFIG = 3000, RO_SET, RO_LOG_LEVEL, RO_READY_FILE };

/* control.proto's job states, by shorter names. */
#define JOB_RUNNING FERRY__CONTROL__JOB_STATE__JOB_STATE_RUNNING
#define JOB_SUCCEEDED FERRY__CONTROL__JOB_STATE__JOB_STATE_SUCCEEDED
#define JOB_FAILED FERRY__CONTROL__JOB_STATE__JOB_STATE_FAILED
#define JOB_CANCELLED FERRY__CONTROL__JOB_STATE__JOB_STATE_CANCELLED
#define JOB_QUEUED FERRY__CONTROL__JOB_STATE__JOB_STATE_QUEUED

/* A StartBackup's disks fit a job's. */
_Static_assert(FY_CONTROL_DISKS_MAX <= FY_JOB_DISKS_MAX,
	       "control.proto carries more disks than a job takes");
/* A job's notes fit JobResult.notes. */
_Static_assert(FY_JOB_NOTES_MAX <= FY_CONTROL_NAME_MAX + 1,
	       "a job's notes are longer than control.proto takes");

/* A configuration in use: replaced on SIGHUP, freed when the last job
 * that started with it ends. refs is counted under svc->lock. */
struct svc_cfg {
	struct fy_config *cfg;
	unsigned refs;
};

struct phase_event {
	char phase[32];
	char detail[512];
};

/* One job. Its fields are read and written under svc->lock, except
 * cancel (atomic) and what only the job thread touches before it ends. */
struct svc_job;

/* What the service runs: one entry per kind of job. A job's events,
 * counters, result, cancel and listing are the same whatever its kind. */
struct job_kind {
	const char *name;             /* FY_JOB_KIND_*, JobInfo.kind */
	int (*run)(struct svc_job *j, const struct fy_job_events *ev,
		   struct fy_job_result *res);
};

/* A restore-vm job's request, copied out of its frame. */
struct restore_req {
	char backup_id[FY_CONTROL_NAME_MAX + 1];
	char datastore[FY_CONTROL_NAME_MAX + 1];
	char host[FY_CONTROL_NAME_MAX + 1];
	char pool[FY_CONTROL_NAME_MAX + 1];
	char folder[FY_CONTROL_NAME_MAX + 1];
	char provisioning[16];
	char networks[FY_CONTROL_NETWORKS_MAX][FY_CONTROL_NAME_MAX + 1];
	struct fy_restore_vm_spec spec;
};

struct svc_job {
	struct svc_job *next;
	struct svc *svc;
	unsigned refs;                /* the list, the job thread, watchers */
	const struct job_kind *kind;
	/* What the logs and the one-job-per-VM rule call it: "backup of VM
	 * web01", "restore of backup B as VM web01-restored"; key: the VM's
	 * moref for a backup, "restore:" and the new name for a restore. */
	char what[2 * FY_CONTROL_NAME_MAX + 64];
	char key[FY_CONTROL_NAME_MAX + 16];
	struct restore_req *restore;  /* restore-vm only */
	char id[64];
	char client[320];
	char vm[FY_CONTROL_NAME_MAX + 1];   /* as the controller named it */
	char vm_moref[FY_VS_MOREF_VALUE_MAX];
	/* What the job looks the VM up by: the moref resolved here, so that a
	 * rename between the two lookups cannot hand the job another VM than
	 * the one the one-job-per-VM check saw. "moref:" because an ESXi
	 * host's morefs are plain numbers, not "vm-N". */
	char vm_spec[sizeof("moref:") + FY_VS_MOREF_VALUE_MAX];
	char transports[FY_CONTROL_NAME_MAX + 1];
	char name[FY_CONTROL_NAME_MAX + 1];
	char repository[FY_CONTROL_NAME_MAX + 1];
	char snapshot[FY_CONTROL_NAME_MAX + 1];
	struct fy_job_spec spec;
	struct svc_cfg *cfg;
	atomic_bool cancel;
	Ferry__Control__JobState state;
	time_t started, finished;
	/* Phases as they came, the last PHASES_KEPT kept. */
	struct phase_event phases[PHASES_KEPT];
	uint64_t n_phases;
	/* The latest counters of each disk; last is the one that changed. */
	struct fy_disk_stats disk[FY_JOB_DISKS_MAX];
	bool disk_done[FY_JOB_DISKS_MAX];
	unsigned n_disks, last_disk;
	uint64_t progress_seq;
	double last_broadcast;
	struct fy_job_result *res;    /* set once, when the job ended */
	struct fy_job_result *result; /* what the job fills */
};

struct cleanup_state {
	bool ran;
	int rc;
	char error[FY_ERR_MAX];
	time_t when;
	struct fy_hotadd_cleanup_report rep;
};

struct svc {
	pthread_mutex_t lock;
	pthread_cond_t cond;          /* any job event, job end, client end */
	const char *config_path;
	const char *const *sets;
	unsigned n_sets;
	int log_level;
	struct svc_cfg *cfg;          /* the current configuration */
	struct fy_tls *tls;
	struct svc_job *jobs;         /* newest first */
	unsigned active;              /* queued or running jobs */
	unsigned max_jobs;
	unsigned clients, max_clients;
	unsigned job_counter;
	bool cleanup_running;
	bool stopping;
	time_t started;
	char listen[300];
	struct cleanup_state cleanup;
	/* The transport modes as Status last reported them: answering them
	 * logs in to vCenter (hotadd's proxy lookup), so a controller polling
	 * Status reuses them for STATUS_MODES_SECONDS, and a reload
	 * (cfg_generation) makes them stale at once. */
	struct fy_transport_status modes[FY_TRANSPORT_N_MODES];
	double modes_at;
	unsigned modes_generation, cfg_generation;
};

/* ---- configuration ------------------------------------------------------- */

static void cfg_unref(struct svc_cfg *c)
{
	if (c && --c->refs == 0) {
		fy_config_free(c->cfg);
		free(c);
	}
}

static int load_config(const char *path, const char *const *sets,
		       unsigned n_sets, struct svc_cfg **out)
{
	struct svc_cfg *c = calloc(1, sizeof(*c));
	unsigned i;
	int rc;

	if (!c || !(c->cfg = fy_config_new())) {
		free(c);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	c->refs = 1;
	rc = fy_config_load(c->cfg, path);
	for (i = 0; rc == 0 && i < n_sets; i++)
		rc = fy_config_set_pair(c->cfg, sets[i]);
	if (rc < 0) {
		cfg_unref(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* The service's own keys with their ranges. */
static int service_limits(const struct fy_config *cfg, unsigned *max_jobs,
			  unsigned *max_clients)
{
	int64_t v;
	int rc;

	if ((rc = fy_config_get_int(cfg, "ferry.jobs.max", 2, 1, 16, &v)) < 0)
		return rc;
	*max_jobs = (unsigned)v;
	if ((rc = fy_config_get_int(cfg, "ferry.control.maxClients", 32, 1,
				    256, &v)) < 0)
		return rc;
	*max_clients = (unsigned)v;
	return 0;
}

static bool same_value(const struct fy_config *a, const struct fy_config *b,
		       const char *key)
{
	const char *x = fy_config_get(a, key), *y = fy_config_get(b, key);

	return (!x && !y) || (x && y && !strcmp(x, y));
}

/* SIGHUP: the file again; a broken file keeps the running configuration. */
static void reload(struct svc *svc)
{
	static const char *const restart_keys[] = {
		"ferry.control.listen", "ferry.control.maxClients",
		"ferry.control.handshakeTimeout", "ferry.control.maxHandshakes",
		"ferry.control.maxHandshakesPerAddress", "ferry.tls.cert",
		"ferry.tls.key", "ferry.tls.ca", "ferry.tls.crl",
	};
	struct svc_cfg *c = NULL;
	unsigned max_jobs, max_clients, i;

	if (load_config(svc->config_path, svc->sets, svc->n_sets, &c) < 0 ||
	    service_limits(c->cfg, &max_jobs, &max_clients) < 0 ||
	    fy_agent_setup_logging(c->cfg, svc->log_level) < 0) {
		fy_error("SIGHUP: %s; keeping the running configuration",
			 fy_err_msg());
		if (c)
			cfg_unref(c);
		return;
	}
	for (i = 0; i < sizeof(restart_keys) / sizeof(restart_keys[0]); i++)
		if (!same_value(svc->cfg->cfg, c->cfg, restart_keys[i]))
			fy_warn("SIGHUP: %s changed; it takes effect when "
				"ferry-agent run restarts", restart_keys[i]);
	pthread_mutex_lock(&svc->lock);
	cfg_unref(svc->cfg);
	svc->cfg = c;
	svc->cfg_generation++;
	if (max_jobs != svc->max_jobs)
		fy_warn("SIGHUP: ferry.jobs.max is now %u (was %u)", max_jobs,
			svc->max_jobs);
	svc->max_jobs = max_jobs;
	pthread_mutex_unlock(&svc->lock);
	fy_warn("SIGHUP: reloaded %s; new jobs use it", svc->config_path);
}

/* Waits on svc->cond (svc->lock held) at most ms. */
static void timed_wait(struct svc *svc, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&svc->cond, &svc->lock, &ts);
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_unref_locked(struct svc_job *j)
{
	if (--j->refs)
		return;
	if (j->cfg)
		cfg_unref(j->cfg);
	free(j->restore);
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

/* Finished jobs beyond the JOBS_KEPT newest are forgotten. */
static void prune_locked(struct svc *svc)
{
	struct svc_job **pp = &svc->jobs;
	unsigned finished = 0;

	while (*pp) {
		struct svc_job *j = *pp;

		if (j->res && ++finished > JOBS_KEPT) {
			*pp = j->next;
			job_unref_locked(j);
			continue;
		}
		pp = &j->next;
	}
}

static void run_cleanup(struct svc *svc, struct svc_cfg *cfg, bool own_jobs,
			struct cleanup_state *out);

static void *job_main(void *arg)
{
	struct svc_job *j = arg;
	struct svc *svc = j->svc;
	struct fy_job_events ev = {
		.phase = on_phase, .progress = on_progress, .opaque = j,
	};
	struct fy_job_result *res = j->result;
	struct svc_cfg *cleanup_cfg = NULL;
	bool ran = false;
	int rc;

	/* A cleanup without running jobs treats this process's journal
	 * entries as a dead process's: no job starts under it. */
	pthread_mutex_lock(&svc->lock);
	while (svc->cleanup_running && !atomic_load(&j->cancel))
		pthread_cond_wait(&svc->cond, &svc->lock);
	j->state = JOB_RUNNING;
	pthread_mutex_unlock(&svc->lock);

	if (atomic_load(&j->cancel)) {
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
	svc->active--;
	/* What a failed job could not undo (a detach, a snapshot removal)
	 * stays in the journal under this process's pid, which `ferry
	 * cleanup` leaves alone while any job runs. With no other job
	 * running, clean up once now; jobs asked for meanwhile queue. */
	if (ran && rc < 0 && !svc->active && !svc->cleanup_running &&
	    !svc->stopping) {
		svc->cleanup_running = true;
		cleanup_cfg = j->cfg;
		cleanup_cfg->refs++;
	}
	prune_locked(svc);
	job_unref_locked(j);
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);

	if (cleanup_cfg) {
		struct cleanup_state *cs = malloc(sizeof(*cs));

		if (cs) {
			fy_warn("self-cleanup after the failed job");
			run_cleanup(svc, cleanup_cfg, false, cs);
			free(cs);
		}
		pthread_mutex_lock(&svc->lock);
		svc->cleanup_running = false;
		cfg_unref(cleanup_cfg);
		pthread_cond_broadcast(&svc->cond);
		pthread_mutex_unlock(&svc->lock);
	}
	return NULL;
}

/* ---- messages ------------------------------------------------------------ */

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
static void job_info_locked(const struct svc_job *j,
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

static void cleanup_msg(const struct cleanup_state *c,
			Ferry__Control__CleanupResult *m)
{
	ferry__control__cleanup_result__init(m);
	m->ran = c->ran;
	m->code = c->rc;
	m->error = (char *)(c->rc < 0 ? c->error : "");
	m->num_cleaned_up = c->rep.cleaned;
	m->num_remaining = c->rep.remaining;
	m->log = (char *)c->rep.log;
	m->time_unix = c->when;
}

/*
 * A frame whose strings point into the jobs is packed under the lock and
 * sent from this copy once the lock is released: a slow controller must
 * never hold up the jobs, whose events take the same lock.
 */
static fy_control_frame *frame_copy(const fy_control_frame *f)
{
	size_t n = protobuf_c_message_get_packed_size(&f->base);
	uint8_t *buf = malloc(n ? n : 1);
	fy_control_frame *copy = NULL;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(&f->base, buf);
	copy = ferry__control__control_frame__unpack(NULL, n, buf);
	free(buf);
	return copy;
}

static int send_copy(struct fy_conn *c, fy_control_frame *copy)
{
	int rc;

	if (!copy)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = fy_control_send(c, copy);
	fy_control_free(copy);
	return rc < 0 ? rc : fy_conn_flush(c);
}

static int send_frame(struct fy_conn *c, fy_control_frame *f)
{
	int rc = fy_control_send(c, f);

	return rc < 0 ? rc : fy_conn_flush(c);
}

static int send_status(struct svc *svc, struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Status s = FERRY__CONTROL__STATUS__INIT;
	Ferry__Control__CleanupResult cr;
	Ferry__Control__Transport t[FY_TRANSPORT_N_MODES];
	Ferry__Control__Transport *tp[FY_TRANSPORT_N_MODES];
	Ferry__Control__JobInfo info[FY_CONTROL_JOBS_MAX];
	Ferry__Control__JobInfo *ip[FY_CONTROL_JOBS_MAX];
	struct fy_transport_status *modes = calloc(FY_TRANSPORT_N_MODES,
						   sizeof(*modes));
	struct fy_transport_env env;
	struct cleanup_state *cs = malloc(sizeof(*cs));
	unsigned generation;
	bool fresh;
	fy_control_frame *copy;
	char list[128] = "", software[64];
	struct svc_job *j;
	struct svc_cfg *cfg;
	unsigned i, n = 0;
	int rc;

	if (!modes || !cs) {
		free(modes);
		free(cs);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&svc->lock);
	cfg = svc->cfg;
	cfg->refs++;
	generation = svc->cfg_generation;
	fresh = svc->modes_at > 0 && generation == svc->modes_generation &&
		fy_now() - svc->modes_at < STATUS_MODES_SECONDS;
	if (fresh)
		memcpy(modes, svc->modes, sizeof(svc->modes));
	pthread_mutex_unlock(&svc->lock);
	if (!fresh) {
		/* The same rules as a job's, hotadd's proxy lookup included. */
		fy_transport_env_init(&env, cfg->cfg, NULL);
		fy_transport_status_all(&env, modes);
		fy_transport_env_release(&env);
		pthread_mutex_lock(&svc->lock);
		memcpy(svc->modes, modes, sizeof(svc->modes));
		svc->modes_at = fy_now();
		svc->modes_generation = generation;
		pthread_mutex_unlock(&svc->lock);
	}
	for (i = 0; i < FY_TRANSPORT_N_MODES; i++) {
		ferry__control__transport__init(&t[i]);
		t[i].name = (char *)modes[i].t->name;
		t[i].available = modes[i].available;
		t[i].reason = modes[i].available ? "" : modes[i].why;
		tp[i] = &t[i];
		if (modes[i].available)
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
				 "%s%s", list[0] ? ":" : "", modes[i].t->name);
	}
	snprintf(software, sizeof(software), "ferry-agent %s", FERRY_VERSION);
	s.software = software;
	s.protocol_version = FY_CONTROL_PROTOCOL_VERSION;
	s.transports = list;
	s.n_transport_modes = FY_TRANSPORT_N_MODES;
	s.transport_modes = tp;
	s.config_file = (char *)svc->config_path;

	pthread_mutex_lock(&svc->lock);
	for (j = svc->jobs; j && n < FY_CONTROL_JOBS_MAX; j = j->next)
		if (!j->res) {
			job_info_locked(j, &info[n]);
			ip[n] = &info[n];
			n++;
		}
	s.n_jobs = n;
	s.jobs = ip;
	s.max_jobs = svc->max_jobs;
	s.started_unix = svc->started;
	*cs = svc->cleanup;
	cleanup_msg(cs, &cr);
	s.last_cleanup = &cr;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS;
	f.status = &s;
	copy = frame_copy(&f);
	cfg_unref(cfg);
	pthread_mutex_unlock(&svc->lock);
	rc = send_copy(c, copy);
	free(modes);
	free(cs);
	return rc;
}

static int send_job_list(struct svc *svc, struct fy_conn *c)
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

static struct svc_job *find_job_locked(struct svc *svc, const char *id)
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
static int watch_job(struct svc *svc, struct fy_conn *c, struct svc_job *j,
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

/* Finds the VM as vCenter names it, so that two jobs cannot work on one
 * VM whatever name each was given. */
static int resolve_vm(const struct fy_config *cfg, const char *spec,
		      char *moref, size_t len)
{
	struct fy_vs_client *vc = NULL;
	struct fy_vs_moref vm;
	int rc = fy_vs_client_open(cfg, &vc);

	if (rc == 0)
		rc = fy_vs_find_vm_spec(vc, spec, &vm);
	if (rc == 0)
		snprintf(moref, len, "%s", vm.value);
	if (vc) {
		fy_vs_client_logout(vc);
		fy_vs_client_free(vc);
	}
	return rc;
}

static void copy_field(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static int repository_allowed(struct svc *svc, const char *repo);

static int launch(struct svc *svc, struct fy_conn *c, struct svc_job *j,
		  bool watch);

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

static const struct job_kind kind_backup = { FY_JOB_KIND_BACKUP, run_backup };
static const struct job_kind kind_restore_vm = { FY_JOB_KIND_RESTORE_VM,
						 run_restore_vm };

static int start_backup(struct svc *svc, struct fy_conn *c,
			const Ferry__Control__StartBackup *sb)
{
	struct svc_job *j;
	struct svc_cfg *cfg;
	unsigned i;
	int rc;

	if (!sb->vm || !sb->vm[0]) {
		fy_control_send_error(c, -EINVAL, "StartBackup: no VM given");
		return 0;
	}
	if (repository_allowed(svc, sb->repository) < 0) {
		fy_warn("control: %s: %s", fy_conn_peer(c), fy_err_msg());
		fy_control_send_error(c, -EACCES, fy_err_msg());
		return 0;
	}
	for (i = 0; i < sb->n_disks; i++) {
		char msg[64];
		unsigned k;

		if (sb->disks[i] >= 4096) {
			fy_control_send_error(c, -EINVAL, "StartBackup: disk "
					      "index out of range");
			return 0;
		}
		for (k = 0; k < i; k++)
			if (sb->disks[k] == sb->disks[i]) {
				snprintf(msg, sizeof(msg), "StartBackup: disk "
					 "%u is given twice", sb->disks[i]);
				fy_control_send_error(c, -EINVAL, msg);
				return 0;
			}
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->result = calloc(1, sizeof(*j->result)))) {
		free(j);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	j->svc = svc;
	j->refs = 1;
	j->kind = &kind_backup;
	atomic_init(&j->cancel, false);
	snprintf(j->client, sizeof(j->client), "%s", fy_conn_peer(c));
	copy_field(j->vm, sizeof(j->vm), sb->vm);
	copy_field(j->transports, sizeof(j->transports), sb->transports);
	copy_field(j->name, sizeof(j->name), sb->name);
	copy_field(j->repository, sizeof(j->repository), sb->repository);
	copy_field(j->snapshot, sizeof(j->snapshot), sb->snapshot);
	j->spec.n_disks = (unsigned)sb->n_disks;
	for (i = 0; i < sb->n_disks; i++)
		j->spec.disks[i] = sb->disks[i];
	j->spec.transports = j->transports[0] ? j->transports : NULL;
	j->spec.snapshot = j->snapshot[0] ? j->snapshot : NULL;
	j->spec.mode = sb->mode == FERRY__CONTROL__MODE__MODE_FULL
			       ? FY_JOB_FULL
		       : sb->mode == FERRY__CONTROL__MODE__MODE_INCREMENTAL
			       ? FY_JOB_INCREMENTAL
			       : FY_JOB_AUTO;
	j->spec.enable_cbt = sb->enable_cbt;
	j->spec.quiesce = sb->quiesce;
	j->spec.name = j->name[0] ? j->name : NULL;
	j->spec.repository = j->repository[0] ? j->repository : NULL;

	pthread_mutex_lock(&svc->lock);
	cfg = svc->cfg;
	cfg->refs++;
	pthread_mutex_unlock(&svc->lock);
	j->cfg = cfg;
	rc = resolve_vm(cfg->cfg, j->vm, j->vm_moref, sizeof(j->vm_moref));
	if (rc < 0) {
		char msg[FY_ERR_MAX + 64];

		snprintf(msg, sizeof(msg), "cannot back up VM %s: %s", j->vm,
			 fy_err_msg());
		fy_warn("%s (asked by %s)", msg, j->client);
		fy_control_send_error(c, rc, msg);
		pthread_mutex_lock(&svc->lock);
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		return 0;
	}
	snprintf(j->vm_spec, sizeof(j->vm_spec), "moref:%s", j->vm_moref);
	j->spec.vm = j->vm_spec;
	snprintf(j->what, sizeof(j->what), "backup of VM %s", j->vm);
	snprintf(j->key, sizeof(j->key), "%s", j->vm_moref);
	return launch(svc, c, j, sb->watch);
}

static int start_restore_vm(struct svc *svc, struct fy_conn *c,
			    const Ferry__Control__StartRestoreVm *m)
{
	struct svc_job *j = calloc(1, sizeof(*j));
	struct restore_req *r = calloc(1, sizeof(*r));
	struct fy_restore_vm_spec *sp;
	size_t i;

	if (!j || !r || !(j->result = calloc(1, sizeof(*j->result)))) {
		free(j);
		free(r);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	j->svc = svc;
	j->refs = 1;
	j->kind = &kind_restore_vm;
	j->restore = r;
	atomic_init(&j->cancel, false);
	snprintf(j->client, sizeof(j->client), "%s", fy_conn_peer(c));
	copy_field(j->vm, sizeof(j->vm), m->name);
	copy_field(j->transports, sizeof(j->transports), m->transports);
	copy_field(r->backup_id, sizeof(r->backup_id), m->backup_id);
	copy_field(r->datastore, sizeof(r->datastore), m->datastore);
	copy_field(r->host, sizeof(r->host), m->host);
	copy_field(r->pool, sizeof(r->pool), m->resource_pool);
	copy_field(r->folder, sizeof(r->folder), m->folder);
	copy_field(r->provisioning, sizeof(r->provisioning),
		   m->disk_provisioning);
	sp = &r->spec;
	sp->backup_id = r->backup_id;
	sp->name = j->vm;
	sp->datastore = r->datastore[0] ? r->datastore : NULL;
	sp->host = r->host[0] ? r->host : NULL;
	sp->pool = r->pool[0] ? r->pool : NULL;
	sp->folder = r->folder[0] ? r->folder : NULL;
	sp->provisioning = r->provisioning[0] ? r->provisioning : NULL;
	sp->transports = j->transports[0] ? j->transports : NULL;
	sp->keep_mac = m->keep_mac;
	sp->power_on = m->power_on;
	for (i = 0; i < m->n_networks && i < FY_CONTROL_NETWORKS_MAX; i++) {
		copy_field(r->networks[i], sizeof(r->networks[i]),
			   m->networks[i]);
		sp->networks[i] = r->networks[i];
	}
	sp->n_networks = (unsigned)i;
	snprintf(j->what, sizeof(j->what), "restore of backup %s as VM %s",
		 r->backup_id, j->vm);
	snprintf(j->key, sizeof(j->key), "restore:%s", j->vm);
	if (fy_restore_vm_check(sp) < 0) {
		fy_warn("refused a %s asked by %s: %s", j->what, j->client,
			fy_err_msg());
		fy_control_send_error(c, -EINVAL, fy_err_msg());
		pthread_mutex_lock(&svc->lock);
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		return 0;
	}
	pthread_mutex_lock(&svc->lock);
	j->cfg = svc->cfg;
	j->cfg->refs++;
	pthread_mutex_unlock(&svc->lock);
	return launch(svc, c, j, m->watch);
}

/* Starts a job whose request was checked and copied: at most
 * ferry.jobs.max at once and one per key, then JobStarted and, with
 * watch, its events. Takes the caller's reference on j. */
static int launch(struct svc *svc, struct fy_conn *c, struct svc_job *j,
		  bool watch)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__JobStarted js = FERRY__CONTROL__JOB_STARTED__INIT;
	struct svc_job *other;
	pthread_attr_t attr;
	pthread_t t;
	char stamp[32];
	struct tm tm;
	time_t now;
	int rc;

	pthread_mutex_lock(&svc->lock);
	rc = 0;
	if (svc->stopping) {
		rc = fy_err_set(-ESHUTDOWN, "the agent is stopping; no new "
				"jobs");
	} else if (svc->active >= svc->max_jobs) {
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
	now = time(NULL);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	snprintf(j->id, sizeof(j->id), "%s-%u", stamp, ++svc->job_counter);
	j->started = now;
	j->state = svc->cleanup_running ? JOB_QUEUED : JOB_RUNNING;
	j->refs = 3; /* the list, the job thread, this connection */
	j->next = svc->jobs;
	svc->jobs = j;
	svc->active++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (rc) {
		svc->jobs = j->next;
		svc->active--;
		j->refs = 1;
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		fy_control_send_error(c, -rc, "cannot start a job thread");
		return 0;
	}
	pthread_mutex_unlock(&svc->lock);

	js.job_id = j->id;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_STARTED;
	f.job_started = &js;
	rc = send_frame(c, &f);
	if (rc == 0 && watch)
		rc = watch_job(svc, c, j, 0);
	pthread_mutex_lock(&svc->lock);
	job_unref_locked(j);
	pthread_mutex_unlock(&svc->lock);
	return rc;
}


/* A Watch or Cancel of a job this agent does not have. */
static int no_such_job(struct fy_conn *c, const char *id)
{
	char msg[FY_CONTROL_NAME_MAX + 64];

	snprintf(msg, sizeof(msg), "no job %s on this agent", id);
	fy_control_send_error(c, -ENOENT, msg);
	return 0;
}
static int watch(struct svc *svc, struct fy_conn *c, const char *id)
{
	struct svc_job *j;
	uint64_t first;
	int rc;

	pthread_mutex_lock(&svc->lock);
	j = find_job_locked(svc, id);
	if (j) {
		j->refs++;
		first = j->n_phases > PHASES_KEPT ? j->n_phases - PHASES_KEPT : 0;
	}
	pthread_mutex_unlock(&svc->lock);
	if (!j)
		return no_such_job(c, id);
	rc = watch_job(svc, c, j, first);
	pthread_mutex_lock(&svc->lock);
	job_unref_locked(j);
	pthread_mutex_unlock(&svc->lock);
	return rc;
}

static int cancel(struct svc *svc, struct fy_conn *c, const char *id)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__CancelReply r = FERRY__CONTROL__CANCEL_REPLY__INIT;
	char job_id[sizeof(((struct svc_job *)0)->id)];
	struct svc_job *j;

	pthread_mutex_lock(&svc->lock);
	j = find_job_locked(svc, id);
	if (j) {
		if (!j->res)
			atomic_store(&j->cancel, true);
		r.state = j->state;
		snprintf(job_id, sizeof(job_id), "%s", j->id);
		/* A queued job waits on the condition: wake it to see it. */
		pthread_cond_broadcast(&svc->cond);
	}
	pthread_mutex_unlock(&svc->lock);
	if (!j)
		return no_such_job(c, id);
	fy_warn("job %s: cancel asked by %s", job_id, fy_conn_peer(c));
	r.job_id = job_id;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL_REPLY;
	f.cancel_reply = &r;
	return send_frame(c, &f);
}

/* Runs the self-cleanup and records its result for Status. */
static void run_cleanup(struct svc *svc, struct svc_cfg *cfg, bool own_jobs,
			struct cleanup_state *out)
{
	memset(out, 0, sizeof(*out));
	out->ran = true;
	out->when = time(NULL);
	out->rc = fy_job_cleanup(cfg->cfg, own_jobs, &out->rep);
	if (out->rc < 0) {
		snprintf(out->error, sizeof(out->error), "%s", fy_err_msg());
		fy_error("self-cleanup failed: %s", out->error);
	} else {
		fy_warn("self-cleanup: numCleanedUp=%u numRemaining=%u",
			out->rep.cleaned, out->rep.remaining);
	}
	pthread_mutex_lock(&svc->lock);
	svc->cleanup = *out;
	pthread_mutex_unlock(&svc->lock);
}

struct keepalive {
	struct svc *svc;
	struct fy_conn *c;
	bool stop;                    /* under svc->lock */
};

/*
 * A cleanup that detaches disks and removes snapshots takes minutes; the
 * controller waiting for its CleanupReply must hear from us meanwhile, as
 * it does while a job runs, or its read timeout (ferry.timeoutSeconds)
 * gives up. CleanupReply is the one frame it expects, so the heartbeat is
 * a TLS KeyUpdate, which its TLS layer consumes. The connection thread
 * runs the cleanup and does not touch the connection until this ends.
 */
static void *keepalive_main(void *arg)
{
	struct keepalive *k = arg;
	double last = fy_now();

	pthread_mutex_lock(&k->svc->lock);
	while (!k->stop) {
		timed_wait(k->svc, 1000);
		if (k->stop || fy_now() - last < HEARTBEAT_SECONDS)
			continue;
		pthread_mutex_unlock(&k->svc->lock);
		/* A controller that went away does not stop the cleanup;
		 * the error is sticky, the reply will fail too. */
		fy_conn_keepalive(k->c);
		last = fy_now();
		pthread_mutex_lock(&k->svc->lock);
	}
	pthread_mutex_unlock(&k->svc->lock);
	return NULL;
}

static int cleanup(struct svc *svc, struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__CleanupReply r = FERRY__CONTROL__CLEANUP_REPLY__INIT;
	Ferry__Control__CleanupResult cr;
	struct cleanup_state *cs = malloc(sizeof(*cs));
	struct keepalive k = { .svc = svc, .c = c };
	struct svc_cfg *cfg;
	pthread_t keeper;
	bool own_jobs, keeping;
	int rc;

	if (!cs)
		return fy_err_set(-ENOMEM, "out of memory");
	pthread_mutex_lock(&svc->lock);
	while (svc->cleanup_running && !svc->stopping)
		pthread_cond_wait(&svc->cond, &svc->lock);
	/* shut_down waits for a cleanup that runs; none may start after. */
	if (svc->stopping) {
		pthread_mutex_unlock(&svc->lock);
		free(cs);
		fy_control_send_error(c, -ESHUTDOWN, "the agent is stopping; "
				      "its next start runs the self-cleanup");
		return 0;
	}
	svc->cleanup_running = true;
	/* Jobs already running own this process's journal entries; jobs
	 * starting now wait in job_main until the cleanup is over. */
	own_jobs = svc->active > 0;
	cfg = svc->cfg;
	cfg->refs++;
	pthread_mutex_unlock(&svc->lock);
	fy_warn("self-cleanup asked by %s", fy_conn_peer(c));
	keeping = pthread_create(&keeper, NULL, keepalive_main, &k) == 0;
	run_cleanup(svc, cfg, own_jobs, cs);
	if (keeping) {
		pthread_mutex_lock(&svc->lock);
		k.stop = true;
		pthread_cond_broadcast(&svc->cond);
		pthread_mutex_unlock(&svc->lock);
		pthread_join(keeper, NULL);
	}
	pthread_mutex_lock(&svc->lock);
	svc->cleanup_running = false;
	cfg_unref(cfg);
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
	cleanup_msg(cs, &cr);
	r.result = &cr;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP_REPLY;
	f.cleanup_reply = &r;
	rc = send_frame(c, &f);
	free(cs);
	return rc;
}

/* ---- connections --------------------------------------------------------- */

struct client_arg {
	struct svc *svc;
	struct fy_conn *conn; /* authenticated by the gate */
};

static int greet(struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__HelloReply r = FERRY__CONTROL__HELLO_REPLY__INIT;
	fy_control_frame *in = NULL;
	char software[64];
	int rc = fy_control_recv(c, &in);

	if (rc < 0)
		return rc;
	if (in->body_case != FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO)
		rc = fy_err_set(-EPROTO, "the first frame must be Hello, not %s",
				fy_control_name(in));
	else if (in->hello->protocol_version != FY_CONTROL_PROTOCOL_VERSION)
		rc = fy_err_set(-EPROTONOSUPPORT, "%s speaks control protocol "
				"%u; this agent speaks %u", in->hello->software,
				in->hello->protocol_version,
				FY_CONTROL_PROTOCOL_VERSION);
	fy_control_free(in);
	if (rc < 0)
		return rc;
	snprintf(software, sizeof(software), "ferry-agent %s", FERRY_VERSION);
	r.protocol_version = FY_CONTROL_PROTOCOL_VERSION;
	r.software = software;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &r;
	return send_frame(c, &f);
}

/* Who may control this agent (docs/SECURITY.md): certificates of role
 * controller or admin, and when ferry.control.allowedClients is set only
 * those of its names (comma separated). An agent's or a repository's
 * certificate never may, even if listed. Returns 0 or -EACCES with the
 * reason, which the controller is told. */
static int client_allowed(struct svc *svc, const struct fy_conn *c)
{
	char list[4096], *tok, *save = NULL;
	struct fy_identity id;
	enum fy_role role;
	const char *v;
	bool listed = false;
	int rc = fy_conn_identity(c, &id);

	if (rc < 0)
		return rc;
	role = fy_identity_role(&id);
	if (role != FY_ROLE_CONTROLLER && role != FY_ROLE_ADMIN)
		return fy_err_set(-EACCES, "certificate %s has role %s: only "
				  "controller and admin certificates may "
				  "control an agent", id.name,
				  fy_role_name(role));
	pthread_mutex_lock(&svc->lock);
	v = fy_config_get(svc->cfg->cfg, "ferry.control.allowedClients");
	snprintf(list, sizeof(list), "%s", v ? v : "");
	pthread_mutex_unlock(&svc->lock);
	if (!list[0])
		return 0;
	for (tok = strtok_r(list, ", ", &save); tok && !listed;
	     tok = strtok_r(NULL, ", ", &save))
		listed = !strcmp(tok, id.name);
	if (!listed)
		return fy_err_set(-EACCES, "%s may not control this agent: its "
				  "certificate's name is not in "
				  "ferry.control.allowedClients",
				  fy_conn_peer(c));
	return 0;
}

/* ferry.repository.allowed: the repositories a controller may send this
 * agent's backups to (HOST:PORT, comma separated). Unset: only
 * ferry.repository, so a stolen controller certificate cannot redirect
 * backups to a machine of the attacker's. */
static int repository_allowed(struct svc *svc, const char *repo)
{
	char list[4096], *tok, *save = NULL;
	const char *v, *own;
	bool ok = false;

	if (!repo || !repo[0])
		return 0;
	pthread_mutex_lock(&svc->lock);
	v = fy_config_get(svc->cfg->cfg, "ferry.repository.allowed");
	own = fy_config_get(svc->cfg->cfg, "ferry.repository");
	snprintf(list, sizeof(list), "%s%s%s", own ? own : "",
		 v && v[0] ? "," : "", v ? v : "");
	pthread_mutex_unlock(&svc->lock);
	for (tok = strtok_r(list, ", ", &save); tok && !ok;
	     tok = strtok_r(NULL, ", ", &save))
		ok = !strcmp(tok, repo);
	if (!ok)
		return fy_err_set(-EACCES, "StartBackup: repository %.256s is "
				  "neither ferry.repository nor in "
				  "ferry.repository.allowed", repo);
	return 0;
}

static void *client_main(void *arg)
{
	struct client_arg *ca = arg;
	struct svc *svc = ca->svc;
	struct fy_conn *c = ca->conn;
	double idle_since;
	int rc;

	free(ca);
	fy_info("control: %s connected", fy_conn_peer(c));
	rc = client_allowed(svc, c);
	if (rc == 0)
		rc = greet(c);
	idle_since = fy_now();
	while (rc == 0) {
		fy_control_frame *in = NULL;
		bool stopping;

		pthread_mutex_lock(&svc->lock);
		stopping = svc->stopping;
		pthread_mutex_unlock(&svc->lock);
		if (stopping) {
			rc = fy_err_set(-ESHUTDOWN, "the agent is stopping");
			break;
		}
		rc = fy_conn_wait_readable(c, 500);
		if (rc == 0) {
			if (fy_now() - idle_since > IDLE_SECONDS) {
				rc = fy_err_set(-ETIMEDOUT, "idle for %d s",
						IDLE_SECONDS);
				break;
			}
			continue;
		}
		if (rc < 0)
			break;
		rc = fy_control_recv(c, &in);
		if (rc < 0)
			break;
		/* SIGHUP may have narrowed ferry.control.allowedClients since
		 * this controller connected: it applies at once. */
		rc = client_allowed(svc, c);
		if (rc < 0) {
			fy_control_free(in);
			break;
		}
		switch (in->body_case) {
		case FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS_REQUEST:
			rc = send_status(svc, c);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP:
			rc = start_backup(svc, c, in->start_backup);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM:
			rc = start_restore_vm(svc, c, in->start_restore_vm);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH:
			rc = watch(svc, c, in->watch->job_id);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_LIST_JOBS:
			rc = send_job_list(svc, c);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL:
			rc = cancel(svc, c, in->cancel->job_id);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP:
			rc = cleanup(svc, c);
			break;
		default: {
			char msg[128];

			/* A well-formed frame that is no request: refused,
			 * the conversation goes on. */
			snprintf(msg, sizeof(msg), "%s is not a request the "
				 "agent serves", fy_control_name(in));
			fy_control_send_error(c, -EPROTO, msg);
		}
		}
		fy_control_free(in);
		idle_since = fy_now();
	}
	if (rc != -ECONNRESET) {
		fy_warn("control: %s: %s", fy_conn_peer(c), fy_err_msg());
		fy_control_send_error(c, rc, fy_err_msg());
	} else {
		fy_info("control: %s disconnected", fy_conn_peer(c));
	}
	fy_conn_close(c);
	pthread_mutex_lock(&svc->lock);
	svc->clients--;
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
	return NULL;
}

/* The gate's callback: an authenticated controller takes a client slot
 * and a thread, or is told the agent is full. */
static void on_controller(void *opaque, struct fy_conn *c)
{
	struct svc *svc = opaque;
	struct client_arg *ca;
	pthread_attr_t attr;
	pthread_t t;

	pthread_mutex_lock(&svc->lock);
	if (svc->clients >= svc->max_clients) {
		pthread_mutex_unlock(&svc->lock);
		fy_warn("control: refusing %s: %u controllers connected "
			"(ferry.control.maxClients)", fy_conn_peer(c),
			svc->max_clients);
		fy_control_send_error(c, -EBUSY, "the agent serves "
				      "ferry.control.maxClients controllers "
				      "already; try again later");
		fy_conn_close(c);
		return;
	}
	svc->clients++;
	pthread_mutex_unlock(&svc->lock);
	ca = malloc(sizeof(*ca));
	if (ca) {
		ca->svc = svc;
		ca->conn = c;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, client_main, ca) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(ca);
	}
	fy_conn_close(c);
	pthread_mutex_lock(&svc->lock);
	svc->clients--;
	pthread_mutex_unlock(&svc->lock);
}

static void write_ready_file(const char *path, const char *bound)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		fy_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", bound);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		fy_warn("cannot write %s: %s", path, strerror(errno));
}

/* SIGTERM: every job is cancelled and undoes what it did; we wait for all
 * of them (a supervisor's stop timeout bounds this), then for a cleanup
 * that runs (bounded), then a little for the controllers to get their
 * final events. */
static void shut_down(struct svc *svc)
{
	struct svc_job *j;
	double start = fy_now(), said = start;
	int64_t limit;
	bool busy;

	pthread_mutex_lock(&svc->lock);
	svc->stopping = true;
	if (svc->active)
		fy_warn("stopping: cancelling %u job(s) and waiting for them "
			"to undo what they did", svc->active);
	for (j = svc->jobs; j; j = j->next)
		if (!j->res)
			atomic_store(&j->cancel, true);
	pthread_cond_broadcast(&svc->cond);
	while (svc->active) {
		timed_wait(svc, 1000);
		if (svc->active && fy_now() - said >= 10) {
			said = fy_now();
			fy_warn("stopping: still waiting for %u job(s)",
				svc->active);
		}
	}
	/* A cleanup detaches disks, removes snapshots and rewrites the
	 * journal: let it end, as long as a controller would wait for it.
	 * No cleanup starts once stopping is set. */
	if (fy_config_get_int(svc->cfg->cfg, "ferry.timeoutSeconds", 300, 1,
			      86400, &limit) < 0)
		limit = 300;
	if (svc->cleanup_running)
		fy_warn("stopping: waiting (at most %" PRId64 " s) for the "
			"self-cleanup to end", limit);
	start = fy_now();
	while (svc->cleanup_running && fy_now() - start < (double)limit)
		timed_wait(svc, 1000);
	start = fy_now();
	while (svc->clients && fy_now() - start < 5)
		timed_wait(svc, 200);
	busy = svc->clients || svc->cleanup_running;
	if (busy)
		fy_warn("stopping: %u controller connection(s)%s still busy; "
			"exiting without them", svc->clients,
			svc->cleanup_running ? " and the self-cleanup" : "");
	pthread_mutex_unlock(&svc->lock);
	/* Returning runs the atexit handlers (OpenSSL's teardown among them)
	 * under the threads still at work: leave without them. The journal
	 * is rewritten durably, so a cleanup cut short leaves its entries
	 * for the next start. */
	if (busy) {
		fy_warn("ferry-agent run: stopped");
		fflush(NULL);
		_exit(0);
	}
}

/* Before authentication (proto/wire.h, the handshake gate): the keys
 * ferry.control.handshakeTimeout, maxHandshakes, maxHandshakesPerAddress. */
static int gate_options(const struct fy_config *cfg, struct fy_gate_opts *go)
{
	int64_t timeout, pending, per_address;
	int rc;

	if ((rc = fy_config_get_int(cfg, "ferry.control.handshakeTimeout", 10,
				    1, 300, &timeout)) < 0 ||
	    (rc = fy_config_get_int(cfg, "ferry.control.maxHandshakes", 16, 1,
				    256, &pending)) < 0 ||
	    (rc = fy_config_get_int(cfg, "ferry.control.maxHandshakesPerAddress",
				    pending < 4 ? pending : 4, 1, pending,
				    &per_address)) < 0)
		return rc;
	*go = (struct fy_gate_opts){
		.what = "control",
		.handshake_timeout_ms = (int)timeout * 1000,
		.max_pending = (unsigned)pending,
		.max_per_address = (unsigned)per_address,
		.io_timeout_ms = REQUEST_MS,
	};
	return 0;
}

static int serve(struct svc *svc, const char *ready_file)
{
	const char *listen = fy_config_get(svc->cfg->cfg, "ferry.control.listen");
	struct fy_settings s;
	struct fy_gate_opts go;
	struct fy_gate *gate = NULL;
	struct pollfd pfd[1];
	char bound[300] = "";
	sigset_t mask;
	int lfd = -1, sfd = -1, rc;

	if (!listen)
		return fy_err_set(-EINVAL, "ferry.control.listen is not set: "
				  "the address the control API listens on, "
				  "HOST:PORT");
	if ((rc = fy_settings_load(svc->cfg->cfg, &s)) < 0 ||
	    (rc = fy_tls_new_server(&s.tls, &svc->tls)) < 0)
		return rc;
	rc = fy_listen(listen, &lfd, bound, sizeof(bound));
	if (rc < 0)
		return rc;
	snprintf(svc->listen, sizeof(svc->listen), "%s", bound);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		rc = fy_err_set(-errno, "signalfd: %s", strerror(errno));
		close(lfd);
		return rc;
	}
	fy_warn("ferry-agent %s serving the control API on %s (at most %u "
		"jobs at once)", FERRY_VERSION, bound, svc->max_jobs);
	if ((rc = gate_options(svc->cfg->cfg, &go)) < 0 ||
	    (rc = fy_gate_start(svc->tls, lfd, &go, on_controller, svc,
				&gate)) < 0) {
		close(lfd);
		close(sfd);
		return rc;
	}
	if (ready_file)
		write_ready_file(ready_file, bound);
	pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		struct signalfd_siginfo si;

		if (poll(pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = fy_err_set(-errno, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				reload(svc);
				continue;
			}
			fy_warn("%s: stopping", strsignal((int)si.ssi_signo));
			rc = 0;
			break;
		}
	}
	fy_gate_stop(gate);
	close(lfd);
	close(sfd);
	shut_down(svc);
	return rc;
}

int agent_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, RO_CONFIG },
		{ "set", required_argument, NULL, RO_SET },
		{ "log-level", required_argument, NULL, RO_LOG_LEVEL },
		{ "ready-file", required_argument, NULL, RO_READY_FILE },
		{ NULL, 0, NULL, 0 },
	};
	static struct svc svc; /* its threads may outlive a stack frame */
	struct cleanup_state *cs = NULL;
	const char *sets[64], *ready_file = NULL;
	unsigned n_sets = 0;
	sigset_t mask;
	int c, rc = 0;

	pthread_mutex_init(&svc.lock, NULL);
	pthread_cond_init(&svc.cond, NULL);
	svc.log_level = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case RO_CONFIG: svc.config_path = optarg; break;
		case RO_READY_FILE: ready_file = optarg; break;
		case RO_LOG_LEVEL: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || !*optarg || v < 0 || v > 6) {
				fprintf(stderr, "ferry-agent: --log-level takes "
					"0..6\n");
				return 2;
			}
			svc.log_level = (int)v;
			break;
		}
		case RO_SET:
			if (n_sets == 64) {
				fprintf(stderr, "ferry-agent: at most 64 --set\n");
				return 2;
			}
			sets[n_sets++] = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind < argc || !svc.config_path)
		goto usage;
	/* Status carries the path, and a controller refuses a longer
	 * string: better not to start than to serve a Status nobody reads. */
	if (strlen(svc.config_path) > FY_CONTROL_NAME_MAX) {
		rc = fy_err_set(-ENAMETOOLONG, "--config: the path is %zu bytes, "
				"more than the %d a controller accepts in "
				"Status; give a shorter one",
				strlen(svc.config_path), FY_CONTROL_NAME_MAX);
		goto fail;
	}
	svc.sets = sets;
	svc.n_sets = n_sets;
	svc.started = time(NULL);

	/* Before any thread starts, so that every thread inherits the mask
	 * and only the signalfd sees these signals. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	if ((rc = load_config(svc.config_path, sets, n_sets, &svc.cfg)) < 0 ||
	    (rc = fy_agent_setup_logging(svc.cfg->cfg, svc.log_level)) < 0 ||
	    (rc = service_limits(svc.cfg->cfg, &svc.max_jobs,
				 &svc.max_clients)) < 0)
		goto fail;
	if (!fy_config_get(svc.cfg->cfg, "ferry.control.listen")) {
		rc = fy_err_set(-EINVAL, "ferry.control.listen is not set: the "
				"address the control API listens on, HOST:PORT");
		goto fail;
	}
	/* The self-cleanup first: what a dead agent left on this proxy is
	 * undone before any job of ours starts. */
	cs = malloc(sizeof(*cs));
	if (!cs) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	run_cleanup(&svc, svc.cfg, false, cs);
	if (cs->rc < 0)
		fy_warn("serving anyway; `ferry agent status` reports the "
			"failed cleanup and `ferry cleanup` retries it");
	free(cs);
	rc = serve(&svc, ready_file);
	if (rc < 0)
		goto fail;
	fy_warn("ferry-agent run: stopped");
	return 0;
usage:
	fprintf(stderr, "usage: ferry-agent run --config FILE [--set KEY=VALUE] "
		"[--log-level N] [--ready-file F]\n"
		"  The agent service: self-cleanup, then the control API on "
		"ferry.control.listen\n  (mutual TLS; docs/CONTROL.md).\n");
	return 2;
fail:
	fprintf(stderr, "ferry-agent: run: %s\n", fy_err_msg());
	return 1;
}
