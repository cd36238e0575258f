/*
 * agent/transport.h: the transport table. Every way Ferry reads a VM disk
 * (san, hotadd, nbdssl, nbd, https) is one entry with the same three
 * questions: possible(env, vm, disk, why) says whether that mode can read
 * that disk here, before anything is touched; open(...) reads a snapshot's
 * frozen disk; open_file(...) reads one datastore file (backup --source
 * 'vsphere-ds:...'). `backup --source`, `backup --vm` (agent/job.c),
 * `ferry-agent transports`, the service's Status and `inventory` all ask
 * the table, so they give the same answer for the same proxy.
 * docs/TRANSPORTS.md, "The transport table".
 */
#ifndef FERRY_AGENT_TRANSPORT_H
#define FERRY_AGENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"
#include "hotadd/hotadd.h"
#include "vsphere/vsphere.h"

/* The modes, in VDDK's order of preference (VixDiskLib_ListTransportModes),
 * with the datastore's /folder access last. */
enum fy_transport_mode {
	FY_TRANSPORT_SAN = 0,
	FY_TRANSPORT_HOTADD,
	FY_TRANSPORT_NBDSSL,
	FY_TRANSPORT_NBD,
	FY_TRANSPORT_HTTPS,
	FY_TRANSPORT_N_MODES, /* the number of modes */
};

/* The one default list: VDDK's. https is tried only when a list names it. */
#define FY_TRANSPORT_DEFAULT "san:hotadd:nbdssl:nbd"
/* Longer than any list of distinct modes can be. */
#define FY_TRANSPORT_LIST_MAX 64

/*
 * What the table's functions look at. The caller fills cfg (and vc when it
 * has a session); the rest is found when a mode first needs it and kept:
 * the vCenter session, this proxy VM (hotadd's lookup: ferry.proxy.*, else
 * the BIOS UUID, checked by MAC), the inventory. Only the caller's thread
 * uses an env, except that a job's attach thread calls hotadd's open.
 */
struct fy_transport_env {
	const struct fy_config *cfg;
	struct fy_vs_client *vc;          /* NULL: opened when needed */
	/* hotadd's attaches and journal (the job's); NULL: open() fails */
	struct fy_hotadd *hotadd;
	/* how hot-added disks are read */
	struct fy_file_source_opts file_opts;

	/* Found on demand; private to transport.c. */
	bool own_vc, vc_tried, proxy_tried, inv_tried;
	char vc_down[FY_ERR_MAX];
	struct fy_vs_vm *proxy;           /* this proxy VM, or NULL */
	char proxy_down[FY_ERR_MAX];      /* why not */
	struct fy_vs_inventory *inv;
	char inv_down[FY_ERR_MAX];
};

void fy_transport_env_init(struct fy_transport_env *env,
			   const struct fy_config *cfg,
			   struct fy_vs_client *vc);
/* Frees what the env found (and the session it opened itself). */
void fy_transport_env_release(struct fy_transport_env *env);
/* This proxy VM as hotadd finds it, or NULL with why (connects to vCenter
 * when the env has no session). */
const struct fy_vs_vm *fy_transport_env_proxy(struct fy_transport_env *env,
					      char *why, size_t len);
/* The proxy again, with its current devices (after attaches). */
void fy_transport_env_forget_proxy(struct fy_transport_env *env);

struct fy_transport {
	enum fy_transport_mode mode;
	const char *name;
	/* Attaching costs a reconfigure: the job attaches ahead (hotadd). */
	bool attaches;
	/*
	 * Whether this mode can read disk of vm on this proxy; vm and disk
	 * NULL: whether it can read VM disks here at all. Changes nothing
	 * anywhere; may read vSphere (the proxy, the inventory). false with
	 * one sentence in why (without the mode's name).
	 */
	bool (*possible)(struct fy_transport_env *env,
			 const struct fy_vs_vm *vm, const struct fy_vs_disk *disk,
			 char *why, size_t len);
	/*
	 * Opens d, a disk of the snapshot's devices (its file is the frozen
	 * one; checked against the snapshot). snapshot NULL or empty: only a
	 * powered-off VM. 0 with *out, whose ops->name is the mode's name and
	 * whose name is the file; or -errno with "MODE: why" in fy_err_msg().
	 */
	int (*open)(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out);
	/* One datastore file ("[ds1] vm/vm.vmdk"), no VM job around it; NULL
	 * for modes that read whole VMs only (file_why says so). */
	int (*open_file)(struct fy_transport_env *env, const char *file,
			 struct fy_source **out);
	const char *file_why;
};

/* The table, indexed by enum fy_transport_mode. */
extern const struct fy_transport fy_transports[FY_TRANSPORT_N_MODES];

/* The entry named name[0..len-1], or NULL. */
const struct fy_transport *fy_transport_find(const char *name, size_t len);

/*
 * The one parser: "san:hotadd:nbdssl:nbd:https" -> modes[0..*n-1] in the
 * order given. NULL or "" gives FY_TRANSPORT_DEFAULT. -EINVAL for an
 * unknown mode (named), an empty one ("a::b", a leading or trailing ':'),
 * a mode named twice, or a list longer than FY_TRANSPORT_LIST_MAX; -E2BIG
 * when max is too small. *n is 0 on failure.
 */
int fy_transport_list_parse(const char *list,
			    const struct fy_transport *modes[], unsigned max,
			    unsigned *n);

/* Opens the frozen disk d of vm over the mode named mode (a session of the
 * caller's, the configuration cfg): fy_transports[...].open with an env of
 * its own. hotadd needs a job's env (-EINVAL here). */
int fy_vm_disk_open(struct fy_vs_client *vc, const struct fy_config *cfg,
		    const char *mode, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out);

/* Whether VDDK's path (nbdssl/nbd: libDir, VDDK in it, nbdkit and its
 * plugin) can run with configuration cfg; why not in why when it cannot.
 * Reading and restore-vm's writing ask the same question. */
bool fy_vddk_ready(const struct fy_config *cfg, char *why, size_t len);

/* For `ferry-agent transports` and the service's Status: every mode, in
 * table order, with whether it can read VM disks here and why not. */
struct fy_transport_status {
	const struct fy_transport *t;
	bool available;
	char why[FY_ERR_MAX];
};
void fy_transport_status_all(struct fy_transport_env *env,
			     struct fy_transport_status out[FY_TRANSPORT_N_MODES]);

#endif
