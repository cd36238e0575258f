/*
 * The agent service's insides (private to agent/): its state, shared by
 * service.c (configuration, lifecycle), service_conn.c (controllers'
 * connections, Status, the frames sent), service_jobs.c (the job kinds,
 * the job registry, job threads, ListJobs) and service_cmds.c
 * (StartBackup / StartRestoreVm / Cleanup, Watch, Cancel).
 * Everything under svc->lock unless said otherwise.
 */
#ifndef FERRY_AGENT_SERVICE_INT_H
#define FERRY_AGENT_SERVICE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "agent/control.h"
#include "vsphere/vsphere.h"

#define JOBS_KEPT 32          /* finished jobs remembered for ListJobs */
#define CLEANUPS_KEPT 8       /* finished cleanups, besides */
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
	/* The self-cleanup: outside ferry.jobs.max and svc->active, one at
	 * a time (svc->cleanup_running), the jobs that start meanwhile
	 * queue; never cancelled once it runs (it undoes what others left,
	 * and half of that helps nobody). */
	bool cleanup;
};

/* A restore-vm job's request, copied out of its frame. */
struct restore_req {
	char backup_id[FY_CONTROL_NAME_MAX + 1];
	char datastore[FY_CONTROL_NAME_MAX + 1];
	char host[FY_CONTROL_NAME_MAX + 1];
	char pool[FY_CONTROL_NAME_MAX + 1];
	char folder[FY_CONTROL_NAME_MAX + 1];
	char provisioning[16];
	char into[FY_CONTROL_NAME_MAX + 1];
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
	/* cleanup only: what it did, and whether it already holds
	 * svc->cleanup_running (set when it was started). */
	struct cleanup_state *cleanup;
	bool reserved, own_jobs, after_failure;
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
	unsigned active;              /* queued or running jobs, cleanups aside */
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

/* ---- service.c: configuration and lifecycle ----------------------------- */

void cfg_unref(struct svc_cfg *c);
/* Waits on svc->cond at most ms milliseconds (svc->lock held). */
void timed_wait(struct svc *svc, int ms);
/* The self-cleanup, its result kept for Status (own_jobs: this process's
 * journal entries belong to running jobs). */
void run_cleanup(struct svc *svc, struct svc_cfg *cfg, bool own_jobs,
		 struct cleanup_state *out);

/* ---- service_conn.c: controller connections and the frames sent --------- */

/* The gate's callback: a controller's authenticated connection, served on
 * a thread of its own. */
void svc_on_controller(void *opaque, struct fy_conn *c);
fy_control_frame *frame_copy(const fy_control_frame *f);
int send_copy(struct fy_conn *c, fy_control_frame *copy);
int send_frame(struct fy_conn *c, fy_control_frame *f);
/* A cleanup's result as the protocol's message, pointing into c. */
void cleanup_msg(const struct cleanup_state *c,
		 Ferry__Control__CleanupResult *m);
/* ferry.repository.allowed: whether a StartBackup may name repo. */
int repository_allowed(struct svc *svc, const char *repo);

/* ---- service_jobs.c: the job kinds and the job registry ----------------- */

enum { KIND_BACKUP, KIND_RESTORE_VM, KIND_CLEANUP };
extern const struct job_kind svc_kinds[];
void job_unref_locked(struct svc_job *j);
void job_info_locked(const struct svc_job *j, Ferry__Control__JobInfo *m);
struct svc_job *find_job_locked(struct svc *svc, const char *id);
int svc_send_job_list(struct svc *svc, struct fy_conn *c);
/* Starts a job whose request was checked and copied: at most
 * ferry.jobs.max at once and one per key, then JobStarted and, with
 * watch, its events. Takes the caller's reference on j. */
int svc_launch(struct svc *svc, struct fy_conn *c, struct svc_job *j,
	       bool watch);
/* A job of kind cleanup on cfg, started by client. */
struct svc_job *svc_cleanup_job_new(struct svc *svc, struct svc_cfg *cfg,
				    const char *client);
/* Sends job j's events on c until its final one, its phases from
 * first_phase on. */
int svc_watch_job(struct svc *svc, struct fy_conn *c, struct svc_job *j,
		  uint64_t first_phase);
/* Registers j and starts its thread (svc->lock held): at most
 * ferry.jobs.max at once (cleanups aside) and one per key. */
int svc_start_locked(struct svc *svc, struct svc_job *j);

/* ---- service_cmds.c: the requests about jobs ---------------------------- */

int svc_start_backup(struct svc *svc, struct fy_conn *c,
		     const Ferry__Control__StartBackup *sb);
int svc_start_restore_vm(struct svc *svc, struct fy_conn *c,
			 const Ferry__Control__StartRestoreVm *m);
int svc_watch(struct svc *svc, struct fy_conn *c, const char *id);
int svc_cancel(struct svc *svc, struct fy_conn *c, const char *id);
/* A Cleanup request: runs the self-cleanup as a job of kind cleanup (after
 * a cleanup already running), tells the controller it is alive meanwhile,
 * and sends CleanupReply. */
int svc_cleanup(struct svc *svc, struct fy_conn *c);

#endif
