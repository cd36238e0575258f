/*
 * hotadd: reading a VM's disks by attaching their frozen snapshot files to
 * the proxy VM Ferry runs in (VDDK's "hotadd" transport), and the journal
 * that lets a restarted agent undo what a crashed one left behind.
 *
 * Depends on common and vsphere (attaching is a vSphere reconfigure of the
 * proxy). docs/HOTADD.md describes the life cycle and the config keys:
 *   ferry.stateDirectory                  (/var/lib/ferry)
 *   ferry.proxy.moref, ferry.proxy.instanceUuid
 *   ferry.hotadd.sysfsRoot, ferry.hotadd.devRoot   (/, / : for tests)
 *   ferry.hotadd.discoverTimeoutSeconds   (60)
 *   ferry.hotadd.maxAttached, maxAttachedWaitSeconds, runDirectory
 *   ferry.hotadd.checkProxyMac            (true)
 *   ferry.hotadd.parallelDisks            (2; read by agent/vm_backup.c)
 *
 * Every function returns 0 or -errno with a sentence in fy_err_msg().
 * Nothing here ever asks vSphere for a fileOperation or destroys a VM.
 */
#ifndef FERRY_HOTADD_H
#define FERRY_HOTADD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "vsphere/vsphere.h"

/* Every key this library reads (NULL-terminated). */
extern const char *const fy_hotadd_config_keys[];

/* ---- the journal ------------------------------------------------------- */

/* Bounds on the journal file: anything larger or longer is refused. */
#define FY_JOURNAL_MAX_FILE (256u * 1024)
#define FY_JOURNAL_MAX_ENTRIES 512
#define FY_JOURNAL_MAX_FIELD 512

enum fy_journal_kind {
	FY_JOURNAL_ATTACH = 0, /* a disk attached to the proxy */
	FY_JOURNAL_SNAPSHOT,   /* a snapshot Ferry took */
	FY_JOURNAL_DISABLE,    /* methods disabled by PrepareForAccess */
	FY_JOURNAL_OWN,        /* one of the proxy's own disks: never touched */
	FY_JOURNAL_RESTORE,    /* a VM a restore created and has not finished:
				* vm its moref, file its name */
};

struct fy_journal_entry {
	uint64_t id;           /* unique within the file */
	enum fy_journal_kind kind;
	int32_t pid;           /* the agent process that wrote it */
	char vm[FY_VS_MOREF_VALUE_MAX];     /* proxy (ATTACH, OWN) or target */
	char object[FY_VS_MOREF_VALUE_MAX]; /* snapshot moref, "" when pending */
	int32_t device_key;    /* ATTACH, OWN: device key on the proxy; -1 */
	char file[FY_JOURNAL_MAX_FIELD]; /* disk file, snapshot name, identity */
};

struct fy_journal {
	struct fy_journal_entry *entries;
	size_t n;
	uint64_t next_id;
};

/* Parses the journal text (bounded, every field validated); name is used in
 * messages. -EBADMSG names the line and what is wrong. */
int fy_journal_parse(const char *text, size_t len, const char *name,
		     struct fy_journal *out);
void fy_journal_release(struct fy_journal *j);

/* The journal file under a state directory, shared by every agent process
 * on the proxy. Each change takes an exclusive lock on the directory's
 * journal.lock, reads the file, changes it and rewrites it durably (temp,
 * fsync, rename, fsync dir) before returning. */
struct fy_journal_file;

int fy_journal_open(const char *state_dir, struct fy_journal_file **out);
void fy_journal_close(struct fy_journal_file *jf);
/* Appends e (its id is assigned and written back). */
int fy_journal_add(struct fy_journal_file *jf, struct fy_journal_entry *e);
/* Replaces the entry with e->id (to fill a snapshot's moref). */
int fy_journal_update(struct fy_journal_file *jf,
		      const struct fy_journal_entry *e);
/* Removes the entry with that id; an absent one is not an error. */
int fy_journal_remove(struct fy_journal_file *jf, uint64_t id);
/* A snapshot of the current entries (release with fy_journal_release). */
int fy_journal_read(struct fy_journal_file *jf, struct fy_journal *out);

/* ferry.stateDirectory's default. */
#define FY_HOTADD_STATE_DIR "/var/lib/ferry"
/* The journal of ferry.stateDirectory: every VM job journals its snapshot
 * and disabled methods there, whatever its transports. */
int fy_hotadd_journal_open(const struct fy_config *cfg,
			   struct fy_journal_file **out);

/* ---- the proxy --------------------------------------------------------- */

struct fy_hotadd;

/* Finds the proxy VM this process runs in: ferry.proxy.moref, else
 * ferry.proxy.instanceUuid, else the BIOS UUID of the guest in both byte
 * orders (exactly one VM must match); checks that one of its NICs' MACs is
 * in the guest's sys/class/net (unless ferry.hotadd.checkProxyMac=false),
 * opens the journal and records the proxy's own disks the first time. The
 * client must outlive the handle. */
int fy_hotadd_open(struct fy_vs_client *c, const struct fy_config *cfg,
		   struct fy_hotadd **out);
void fy_hotadd_free(struct fy_hotadd *h);
/* The same lookup and MAC check as fy_hotadd_open, nothing written: which
 * VM this proxy is, for "could hotadd work here" (*out: fy_vs_vm_free). */
int fy_hotadd_find_proxy(struct fy_vs_client *c, const struct fy_config *cfg,
			 struct fy_vs_vm **out);
const struct fy_vs_moref *fy_hotadd_proxy(const struct fy_hotadd *h);
struct fy_journal_file *fy_hotadd_journal(struct fy_hotadd *h);

/* The two strings a BIOS UUID can be written as: the guest's
 * product_uuid as is, and with its first three fields byte-swapped
 * (SMBIOS >= 2.6). Lower case. -EINVAL when uuid is not a UUID. */
int fy_hotadd_bios_uuid_forms(const char *uuid, char a[37], char b[37]);

/* Whether the proxy may hot-add disk of vm (fy_vs_hotadd_check with the
 * proxy's current devices): FY_VS_HOTADD_OK, or the rule that failed with
 * a sentence in why. */
enum fy_vs_hotadd_rule fy_hotadd_check(struct fy_hotadd *h,
				       const struct fy_vs_inventory *inv,
				       const struct fy_vs_vm *vm,
				       const struct fy_vs_disk *disk,
				       char *why, size_t whylen);

/* Attaches file_name (a snapshot's frozen disk) to the proxy
 * independent_nonpersistent, finds it in the guest and opens it read-only
 * with the O_DIRECT + libaio reader. The source's transport name is
 * "hotadd"; closing it removes the device from the guest, detaches it
 * (no fileOperation) and clears the journal entry. capacity (bytes, 0: do
 * not check) cross-checks the device found. One thread may run this while
 * another closes a source of the same handle (their vSphere calls take
 * turns); other calls on a handle are not made concurrently. */
int fy_hotadd_open_disk(struct fy_hotadd *h, const char *file_name,
			uint64_t capacity,
			const struct fy_file_source_opts *opts,
			struct fy_source **out);

/* Write mode, for restores: attaches file_name (a disk of a powered-off
 * VM, never a snapshot's) to the proxy as a persistent disk, journaled as
 * any attach, and finds it in the guest; *node is its block device there,
 * for the caller to open and write. capacity as for fy_hotadd_open_disk.
 * Detach removes it from the guest, detaches it and clears the journal
 * entry (kept for ferry-agent cleanup when that fails). */
struct fy_hotadd_rw;
int fy_hotadd_attach_rw(struct fy_hotadd *h, const char *file_name,
			uint64_t capacity, struct fy_hotadd_rw **out,
			const char **node);
int fy_hotadd_detach_rw(struct fy_hotadd_rw *d);

/* ---- self-cleanup (VixDiskLib_Cleanup done properly) -------------------- */

struct fy_hotadd_cleanup_report {
	unsigned cleaned;    /* numCleanedUp */
	unsigned remaining;  /* numRemaining */
	/* One line per action or leftover, "\n"-separated, bounded. */
	char log[8192];
};

/* Undoes what the journal says a dead agent left: disks it attached (and
 * nonpersistent disks outside the proxy's own folder), its snapshots
 * (consolidating when the VM says so), its disabled methods, and the VMs
 * its restores created and never finished (destroyed while still powered
 * off and of the name the restore gave; else named as remaining). Entries of a
 * live agent process are left alone and counted as remaining. The proxy's
 * own disks are never touched. */
int fy_hotadd_cleanup(struct fy_hotadd *h,
		      struct fy_hotadd_cleanup_report *rep);
/* The same from the journal alone, for a machine where hotadd cannot work
 * (h NULL, no_proxy says why): snapshots and disabled methods are undone,
 * attach entries of dead agents are counted as remaining with that reason.
 * own_live: entries this process wrote belong to its running jobs. */
int fy_journal_cleanup(struct fy_vs_client *vc, struct fy_journal_file *jf,
		       struct fy_hotadd *h, const char *no_proxy,
		       bool own_live, struct fy_hotadd_cleanup_report *rep);
/* live: entries this process wrote belong to its running jobs (the
 * service) and cleanup leaves them alone; by default they are a dead
 * process's whose pid was reused. */
void fy_hotadd_cleanup_own(struct fy_hotadd *h, bool live);

#endif
