/*
 * agent/job.h: one VM backup job, the unit of work of ferry-agent backup
 * --vm (one-shot) and of ferry-agent run (the service, several at once).
 *
 * A job: find the VM, decide which transport of its list reads each disk
 * (every disk's possible(), before anything is touched: a disk no mode can
 * read fails the job there), PrepareForAccess (advisory unless
 * ferry.vcenter.prepareForAccess=required), snapshot (or use the given
 * one), read each disk over the first of its modes that works, ship it
 * to the repository (an incremental takes unchanged blocks from the parent
 * backup's manifest), commit, remove the snapshot, EndAccess. Every step is
 * journaled before it is taken and undone on every path, cancel included.
 */
#ifndef FERRY_AGENT_JOB_H
#define FERRY_AGENT_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/agent.h"
#include "hotadd/hotadd.h"

#define FY_JOB_DISKS_MAX 64

/* The keys only a VM job reads (NULL-terminated):
 * ferry.vcenter.prepareForAccess. */
extern const char *const fy_job_config_keys[];
#define FY_JOB_TEXT_MAX 512
/* What an admin must see (PrepareForAccess impossible, a fallback to
 * another mode, a consolidation...), "; "-separated; within the control
 * protocol's bound on JobResult.notes. */
#define FY_JOB_NOTES_MAX 1024

enum fy_job_mode {
	FY_JOB_AUTO = 0,        /* incremental when a usable parent exists */
	FY_JOB_FULL = 1,        /* --full */
	FY_JOB_INCREMENTAL = 2, /* --incremental: full only where it must */
};

struct fy_job_spec {
	const char *vm;          /* name, moref, UUID, IP, ... */
	unsigned n_disks;        /* 0: every disk of the VM */
	unsigned disks[FY_JOB_DISKS_MAX]; /* indexes into the VM's disks */
	const char *transports;  /* "san:hotadd:nbdssl:nbd"; NULL: ferry.transports */
	const char *snapshot;    /* an existing snapshot moref to read, or NULL */
	enum fy_job_mode mode;
	bool enable_cbt;         /* turn CBT on if it is off */
	bool quiesce;            /* quiesced snapshot (VMware Tools) */
	const char *name;        /* the backup's source name; NULL: VM name */
	const char *repository;  /* host:port; NULL: ferry.repository */
};

struct fy_job_disk_result {
	unsigned index;                   /* the VM's disk index */
	char file[FY_JOB_TEXT_MAX];       /* "[ds1] vm/vm.vmdk" */
	char transport[16];               /* hotadd, nbdssl, nbd, https */
	bool incremental;                 /* read only CBT's changed areas */
	char full_reason[FY_JOB_TEXT_MAX]; /* why it was read in full, or "" */
	char change_id[128];              /* recorded in the manifest */
	/* restore-vm: a disk the backup did not hold, created empty */
	bool skipped;
	struct fy_disk_stats st;
};

/* What a job's result describes: a backup (fy_job_run) or a whole-VM
 * restore (fy_restore_vm_run). A restore's backup_id is the backup it
 * read, vm_name and vm_moref the VM it created, source the backed-up VM;
 * its disks' index is the backup's disk, st.size the disk's capacity,
 * st.bytes_read the data restored, st.bytes_zero the zeros written over
 * holes, st.bytes_sent what was written. */
#define FY_JOB_KIND_BACKUP "backup"
#define FY_JOB_KIND_RESTORE_VM "restore-vm"
/* The agent service's self-cleanup (`ferry cleanup`, or after a failed job):
 * notes says what it did. */
#define FY_JOB_KIND_CLEANUP "cleanup"

struct fy_job_result {
	int rc;                           /* 0, or the negative errno */
	char error[FY_ERR_MAX];           /* when rc < 0 */
	bool cancelled;
	char kind[16];                    /* FY_JOB_KIND_* ("": backup) */
	char source[256];                 /* restore-vm: the backed-up VM */
	char datastore[256];              /* restore-vm: where it went */
	char host[256];
	bool powered_on;
	bool into;                        /* restore-vm --into an existing VM */
	char backup_id[FY_ID_MAX];
	char parent_id[FY_ID_MAX];        /* "" for a full backup */
	char vm_name[256];
	char vm_moref[64];
	char notes[FY_JOB_NOTES_MAX];     /* warnings an admin must see */
	double seconds;
	unsigned n;
	struct fy_job_disk_result disks[FY_JOB_DISKS_MAX];
};

/* Phases reported to fy_job_events.phase, in order. */
#define FY_JOB_PHASES "connect, snapshot, read, commit, cleanup, done"

struct fy_job_events {
	/* Called from the job's threads; must not block for long. */
	void (*phase)(void *opaque, const char *phase, const char *detail);
	void (*progress)(void *opaque, unsigned disk, unsigned n_disks,
			 const struct fy_disk_stats *st, bool done);
	void *opaque;
};

/*
 * Runs one job to its end. cancel (may be NULL) is polled between steps and
 * by the pipeline between blocks; once set, the job stops reading, undoes
 * what it did and returns -ECANCELED with res->cancelled set. res is always
 * filled (res->rc and res->error on failure). cfg is only read.
 */
int fy_job_run(const struct fy_config *cfg, const struct fy_job_spec *spec,
	       atomic_bool *cancel, const struct fy_job_events *ev,
	       struct fy_job_result *res);

/* The result as one JSON object (backup_id, parent_id, source, vm,
 * seconds, notes, error, disks [{index, file, transport, incremental,
 * full_reason, change_id, counters}]). */
void fy_job_result_json(FILE *f, const struct fy_job_result *res);

/* ---- the whole-VM restore (restore_vm.c) ------------------------------ */

#define FY_RESTORE_NETWORKS_MAX 16

struct fy_restore_vm_spec {
	const char *backup_id;
	const char *name;             /* the new VM's */
	const char *datastore;        /* NULL: the backed-up VM's, if there */
	const char *host;             /* by name; NULL with pool: picked */
	const char *pool;             /* resource pool inventory path */
	const char *folder;           /* VM folder inventory path */
	const char *networks[FY_RESTORE_NETWORKS_MAX]; /* "OLD=NEW" */
	unsigned n_networks;
	const char *provisioning;     /* "thin", "thick", "same" (NULL) */
	const char *transports;       /* NULL: "hotadd:https" */
	bool keep_mac, power_on;
	/* Into an existing, powered-off VM instead of a new one (name, the
	 * placement, networks, provisioning and keep_mac then unset): its
	 * disks are overwritten with the backup's, only the blocks changed
	 * since the backup where CBT can tell. disks: the backup's disks
	 * (positions) to write; none: all. */
	const char *into;
	unsigned disks[FY_JOB_DISKS_MAX];
	unsigned n_disks;
};

/* Phases reported to fy_job_events.phase by a restore, in order. */
#define FY_RESTORE_VM_PHASES "connect, create, write, power-on, done"

/* Checks what needs no server: names, the provisioning word, the
 * networks' OLD=NEW form, the transport list. -EINVAL with a message. */
int fy_restore_vm_check(const struct fy_restore_vm_spec *spec);
/* Restores a whole VM (docs/RESTORE.md) as fy_job_run runs a backup:
 * cancel polled between blocks, events, res always filled. */
int fy_restore_vm_run(const struct fy_config *cfg,
		      const struct fy_restore_vm_spec *spec,
		      atomic_bool *cancel, const struct fy_job_events *ev,
		      struct fy_job_result *res);
/* A restore's result as the one-shot command and ferry print it. */
void fy_restore_vm_result_text(FILE *f, const struct fy_job_result *res);

/* What decides whether a disk can be read incrementally. */
struct fy_incr_check {
	enum fy_job_mode mode;
	const struct fy_backup_info *parent; /* newest backup, or NULL */
	const char *source;      /* its name, for the reason */
	uint32_t block_size;     /* this backup's */
	const char *disk_id;     /* the disk's UUID (manifest disk_id) */
	const char *base_file;   /* its chain's base file (manifest label) */
	const char *change_id;   /* the snapshot disk's, or NULL/"" */
	uint64_t capacity;
	bool cbt_enabled;
};

/* The parent's disk to build on, or NULL with why set to the reason the
 * disk must be read in full: --full, no parent, another block size, a disk
 * the parent lacks, CBT off now or then, resized, moved, or a change ID of
 * another tracking epoch (CBT reset, or another disk's). */
const struct fy_manifest_disk *
fy_job_parent_disk(const struct fy_incr_check *c, char *why, size_t len);

/*
 * The self-cleanup: connects to vCenter, finds the proxy and undoes what a
 * dead agent left (docs/HOTADD.md). own_jobs_running: entries written by
 * this process belong to running jobs and are left alone (the service);
 * otherwise they are a dead process's whose pid was reused.
 */
int fy_job_cleanup(const struct fy_config *cfg, bool own_jobs_running,
		   struct fy_hotadd_cleanup_report *rep);

/* The cleanup report as JSON: {"numCleanedUp":N,"numRemaining":N,"log":..}. */
void fy_job_cleanup_json(FILE *f, const struct fy_hotadd_cleanup_report *rep);

/* The VM configuration record of a backup (agent/vm_record.c): built from
 * the configuration the snapshot froze; disk backup_keys[i] (a device key)
 * is backup disk i. Returns fy_vmconfig_encode's bytes in *out (freed by
 * the caller). */
int fy_vm_record_build(const struct fy_vs_vm_config *vc, const char *vm_name,
		       const int32_t *backup_keys, unsigned n_backup,
		       uint8_t **out, size_t *len);

#endif
