/*
 * vsphere: Ferry's client of the vSphere Web Services API (SOAP over HTTPS),
 * for vCenter and ESXi 6.5 to 8.x. Depends on common only (and libcurl,
 * libxml2, OpenSSL, pthreads).
 *
 * One client holds one session. Every call is safe from several threads at
 * once on the same client: requests share the session cookie and use a small
 * pool of connections; an expired session is logged in again once,
 * transparently.
 *
 * Every function returns 0 or a negative errno and records one readable
 * sentence (fy_err_msg). When the server answered with a SOAP fault, the
 * calling thread's fy_vs_last_fault() also tells which fault, which object
 * and, for NoPermission, which privilege was missing.
 *
 * Results are plain structs allocated by the library; each kind has its own
 * free function, and free(NULL) does nothing. Strings in results are never
 * NULL ("" when the server did not say).
 *
 * Configuration keys and the certificate policy: docs/VSPHERE.md.
 */
#ifndef FERRY_VSPHERE_H
#define FERRY_VSPHERE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- basic types ------------------------------------------------------- */

#define FY_VS_MOREF_TYPE_MAX 64
#define FY_VS_MOREF_VALUE_MAX 128

/* A managed object reference: type "VirtualMachine", value "vm-42". An
 * empty value means "none". */
struct fy_vs_moref {
	char type[FY_VS_MOREF_TYPE_MAX];
	char value[FY_VS_MOREF_VALUE_MAX];
};

/* What the server said when a call failed with a SOAP fault (or a task
 * ended in error). type is "" when the last call had no fault. */
struct fy_vs_fault {
	char method[64];      /* "CreateSnapshot_Task" */
	char type[96];        /* "NoPermission", "FileLocked", ... */
	char message[512];    /* the server's own words */
	char privilege[128];  /* NoPermission: the missing privilege */
	struct fy_vs_moref object; /* the object the fault names, if any */
	char detail[256];     /* file, task, source ID... when the fault has one */
};

/* The calling thread's last fault (cleared at the start of each call). */
const struct fy_vs_fault *fy_vs_last_fault(void);

/* Bounds on what the server may send. */
struct fy_vs_limits {
	size_t max_response;   /* bytes of one response body (64 MiB) */
	unsigned max_depth;    /* element nesting (200) */
	size_t max_elements;   /* elements in one response (1 million) */
	size_t max_text;       /* bytes of one element's text (4 MiB) */
};

void fy_vs_limits_default(struct fy_vs_limits *lim);

/* Every configuration key this library reads (NULL-terminated), so that
 * callers can include them in fy_config_warn_unknown's list. */
extern const char *const fy_vs_config_keys[];

/* ---- the client -------------------------------------------------------- */

struct fy_vs_client;

/* Reads ferry.vcenter.* from cfg and the password (passwordFile or the
 * FERRY_VCENTER_PASSWORD environment variable). No network I/O. */
int fy_vs_client_create(const struct fy_config *cfg,
			struct fy_vs_client **out);
/* Negotiates the API version, reads the service content and logs in. */
int fy_vs_client_connect(struct fy_vs_client *c);
/* create + connect; *out is NULL on failure. */
int fy_vs_client_open(const struct fy_config *cfg, struct fy_vs_client **out);
/* Logs out (best effort). */
int fy_vs_client_logout(struct fy_vs_client *c);
/* Ends every PrepareForAccess still open (with a warning), logs out and
 * frees. NULL does nothing. */
void fy_vs_client_free(struct fy_vs_client *c);

/* What the server is. Valid after connect. */
struct fy_vs_about {
	char api_type[32];     /* "VirtualCenter" or "HostAgent" */
	char api_version[32];  /* the server's about.apiVersion */
	char used_version[32]; /* the version this client speaks to it */
	char full_name[160];
	char instance_uuid[64];
	char url[256];
};
void fy_vs_client_about(const struct fy_vs_client *c, struct fy_vs_about *out);
bool fy_vs_client_is_vcenter(const struct fy_vs_client *c);
/* How many times this client logged in (1 after connect; more after the
 * server expired the session). */
unsigned fy_vs_client_logins(const struct fy_vs_client *c);

/* The SHA-1 thumbprint ("AA:BB:...", 20 bytes) of the server certificate
 * the client last accepted under its own policy (pin or CA), for VDDK,
 * which takes that form. -ENOENT before a handshake or when certificate
 * checking is off. */
int fy_vs_client_sha1_thumbprint(struct fy_vs_client *c, char *out,
				 size_t outlen);

/* Called while a task runs: percent is -1 when the server gives none. */
typedef void (*fy_vs_progress_cb)(void *opaque, const char *what, int percent);
void fy_vs_client_set_progress(struct fy_vs_client *c, fy_vs_progress_cb cb,
			       void *opaque);

/* ---- virtual machines and their devices -------------------------------- */

enum fy_vs_controller_kind {
	FY_VS_CTRL_SCSI = 0,
	FY_VS_CTRL_IDE,
	FY_VS_CTRL_SATA,
	FY_VS_CTRL_NVME,
	FY_VS_CTRL_OTHER,
};

const char *fy_vs_controller_kind_name(enum fy_vs_controller_kind k);

struct fy_vs_controller {
	int32_t key;
	char *type;                 /* "ParaVirtualSCSIController" */
	enum fy_vs_controller_kind kind;
	int32_t bus;                /* busNumber */
	int32_t pci_slot;           /* -1 when unknown */
	int32_t own_unit;           /* SCSI: the controller's unit (7); -1 */
	char *sharing;              /* SCSI bus sharing: "noSharing" */
	char *label;
	size_t n_devices;           /* devices on this controller */
	int32_t *device_keys;
	uint32_t used_units;        /* bit u: a device (of any kind) sits on
				     * unit u */
};

/* One link of a disk's backing chain. */
struct fy_vs_backing {
	char *type;          /* "VirtualDiskFlatVer2BackingInfo" */
	char *file_name;     /* "[ds1] vm/vm-000001.vmdk" */
	struct fy_vs_moref datastore;
	char *disk_mode;     /* "persistent", "independent_nonpersistent" */
	char *uuid;          /* 6000C29... */
	char *change_id;     /* CBT change ID, "" when not tracked */
	char *content_id;
	char *compatibility_mode; /* RDM: "physicalMode" / "virtualMode" */
	bool thin;
	bool eagerly_scrub;  /* thick, zeroed when created */
};

struct fy_vs_disk {
	int32_t key;
	int32_t controller_key;
	int32_t unit;              /* -1 when unknown */
	int controller;            /* index in controllers[], -1 if none */
	char *label;
	uint64_t capacity;         /* bytes */
	/* The disk's own backing, repeated from chain[0] for convenience. */
	char *file_name;
	struct fy_vs_moref datastore;
	char *disk_mode;
	char *uuid;
	char *change_id;
	bool independent;          /* independent_* modes: not in snapshots */
	bool rdm;
	/* chain[0] is the disk's backing, then its parents (older deltas down
	 * to the base disk). */
	struct fy_vs_backing *chain;
	size_t chain_len;
};

/* A network adapter (any VirtualEthernetCard). */
struct fy_vs_nic {
	int32_t key;
	char *type;                /* "VirtualVmxnet3" */
	/* A standard port group's name, a distributed port group's key or
	 * an opaque network's id; "" when the backing names none. */
	char *network;
	char *address_type;        /* "manual", "generated", "assigned" */
	char *mac;                 /* as the server wrote it, or "" */
};

struct fy_vs_cdrom {
	int32_t key;
	int32_t controller_key;
	int32_t unit;              /* -1 when unknown */
};

struct fy_vs_devices {
	struct fy_vs_controller *controllers;
	size_t n_controllers;
	struct fy_vs_disk *disks;
	size_t n_disks;
	struct fy_vs_nic *nics;
	size_t n_nics;
	struct fy_vs_cdrom *cdroms;
	size_t n_cdroms;
	size_t n_other;            /* devices of other kinds (NICs, CD...) */
};

struct fy_vs_snapshot {
	struct fy_vs_moref moref;
	char *name;
	char *description;
	char *create_time;
	char *state;        /* power state when taken */
	int32_t id;
	bool quiesced;
	int parent;         /* index in the VM's snapshots[], -1 for a root */
	bool current;
};

struct fy_vs_vm {
	struct fy_vs_moref moref;
	char *name;
	char *path;              /* inventory path "/DC0/vm/folder/name" */
	char *instance_uuid;
	char *bios_uuid;
	struct fy_vs_moref datacenter;
	char *datacenter_name;
	struct fy_vs_moref host;
	char *host_name;
	char *power_state;       /* "poweredOn" ... */
	char *connection_state;
	char *vmx_path;          /* "[ds1] vm/vm.vmx" */
	char *guest_id;
	bool is_template;
	bool cbt_enabled;
	bool consolidation_needed;
	struct fy_vs_devices devices;
	struct fy_vs_snapshot *snapshots;
	size_t n_snapshots;
	struct fy_vs_moref current_snapshot;
	struct fy_vs_moref *datastores;
	size_t n_datastores;
	/* The MAC addresses of its network adapters (VirtualEthernetCard
	 * macAddress, lower case "00:50:56:aa:bb:01"), at most
	 * FY_VS_VM_MAX_NICS; adapters without an address are left out. */
	char **macs;
	size_t n_macs;
	void *priv_;             /* the allocation behind the strings */
};

/* vSphere allows 10 NICs a VM; more in an answer are ignored. */
#define FY_VS_VM_MAX_NICS 16

void fy_vs_vm_free(struct fy_vs_vm *vm);

enum fy_vs_find_by {
	FY_VS_BY_MOREF = 0,     /* "vm-42" */
	FY_VS_BY_NAME,          /* "web01" (must be unique) */
	FY_VS_BY_PATH,          /* "/DC0/vm/folder/web01" */
	FY_VS_BY_INSTANCE_UUID, /* vCenter's instance UUID (unique) */
	FY_VS_BY_BIOS_UUID,     /* config.uuid (clones may share it) */
};

/* Whether an inventory name as vSphere returns it (with '%', '/' and '\'
 * escaped as %25, %2f and %5c, in either case) is the name an admin gave.
 * FY_VS_BY_NAME and the self-cleanup compare names this way. */
bool fy_vs_name_equal(const char *api_name, const char *name);

/* Finds a VM; -ENOENT when there is none, -EEXIST when a name or BIOS UUID
 * matches several (the message lists them). */
int fy_vs_find_vm(struct fy_vs_client *c, enum fy_vs_find_by by,
		  const char *key, struct fy_vs_moref *out);
/* Guesses from the text: "moref:", "name:", "path:", "uuid:", "bios:"
 * prefixes; else "vm-N" is a moref, a leading '/' a path, a UUID the
 * instance UUID then the BIOS UUID, and anything else a name. */
int fy_vs_find_vm_spec(struct fy_vs_client *c, const char *spec,
		       struct fy_vs_moref *out);

/* Reads one VM: identity, devices, snapshots, datastores, CBT state. */
int fy_vs_vm_get(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		 struct fy_vs_vm **out);

/* The devices a snapshot froze (config.hardware.device of the snapshot):
 * the disks' file names there are the ones to read. */
int fy_vs_snapshot_devices(struct fy_vs_client *c,
			   const struct fy_vs_moref *snapshot,
			   struct fy_vs_devices **out);
void fy_vs_devices_free(struct fy_vs_devices *d);

/* A VM's configuration as a snapshot froze it (the snapshot's config):
 * what a backup records so that the VM can be built again. */
struct fy_vs_option {
	char *key;
	char *value;
};

struct fy_vs_vm_config {
	char *name;
	char *guest_id;            /* config.guestId */
	char *version;             /* config.version: "vmx-19" */
	char *firmware;            /* "bios", "efi" */
	bool secure_boot;          /* bootOptions.efiSecureBootEnabled */
	int32_t num_cpu;
	int32_t cores_per_socket;  /* 0 when the server did not say */
	int64_t memory_mb;
	struct fy_vs_devices devices;
	struct fy_vs_option *extra; /* config.extraConfig, all of it */
	size_t n_extra;
};

/* The configuration a snapshot froze. Free with fy_vs_vm_config_free. */
int fy_vs_snapshot_config(struct fy_vs_client *c,
			  const struct fy_vs_moref *snapshot,
			  struct fy_vs_vm_config **out);
void fy_vs_vm_config_free(struct fy_vs_vm_config *cfg);

/* Looks a device up by key; NULL when absent. */
const struct fy_vs_disk *fy_vs_devices_disk(const struct fy_vs_devices *d,
					    int32_t key);

/* ---- datacenters, hosts, datastores: the inventory --------------------- */

struct fy_vs_datacenter {
	struct fy_vs_moref moref;
	char *name;
	char *path;             /* "/Folder/DC0" */
};

struct fy_vs_host {
	struct fy_vs_moref moref;
	char *name;
	struct fy_vs_moref datacenter;
	char *connection_state;  /* "connected" */
	bool maintenance;
	struct fy_vs_moref *datastores;  /* as the host lists them */
	size_t n_datastores;
};

/* A VMFS datastore's extent: a partition of a SCSI LUN
 * (VmfsDatastoreInfo.vmfs.extent[], HostScsiDiskPartition). */
#define FY_VS_VMFS_MAX_EXTENTS 32
struct fy_vs_vmfs_extent {
	char *disk_name;         /* the LUN's canonical name: "naa.6000c29..." */
	int32_t partition;
};

struct fy_vs_datastore {
	struct fy_vs_moref moref;
	char *name;
	char *type;              /* "VMFS", "NFS", "vsan" */
	/* VMFS only: the LUNs the volume spans, in extent order; at most
	 * FY_VS_VMFS_MAX_EXTENTS (more are refused as a malformed reply). */
	struct fy_vs_vmfs_extent *vmfs_extents;
	size_t n_vmfs_extents;
	char *url;
	uint64_t capacity;
	uint64_t free_space;
	bool accessible;
	struct fy_vs_moref datacenter;
	/* Hosts that mount it: the datastore's host list joined with every
	 * host that lists the datastore (either side can be incomplete). */
	struct fy_vs_moref *hosts;
	size_t n_hosts;
};

struct fy_vs_inventory {
	struct fy_vs_datacenter *datacenters;
	size_t n_datacenters;
	struct fy_vs_host *hosts;
	size_t n_hosts;
	struct fy_vs_datastore *datastores;
	size_t n_datastores;
	struct fy_vs_vm **vms;   /* each with devices and snapshots */
	size_t n_vms;
	void *priv_;
};

/* Reads datacenters, hosts, datastores and (with_vms) every VM, in pages. */
int fy_vs_inventory_get(struct fy_vs_client *c, bool with_vms,
			struct fy_vs_inventory **out);
void fy_vs_inventory_free(struct fy_vs_inventory *inv);

const struct fy_vs_datastore *
fy_vs_inventory_datastore(const struct fy_vs_inventory *inv,
			  const struct fy_vs_moref *ds);
const struct fy_vs_host *fy_vs_inventory_host(const struct fy_vs_inventory *inv,
					      const struct fy_vs_moref *host);
/* Whether host mounts ds, by either side's account. */
bool fy_vs_datastore_mounted_on(const struct fy_vs_datastore *ds,
				const struct fy_vs_moref *host);

/* ---- building a VM again (create.c): the whole-VM restore -------------- */

/* Where a new VM goes. */
struct fy_vs_placement {
	struct fy_vs_moref folder;     /* a VM folder */
	struct fy_vs_moref pool;       /* a resource pool (or vApp) */
	struct fy_vs_moref host;       /* empty: the pool's cluster picks */
	char host_name[256];
	char datastore[256];
	char datacenter_path[1024];    /* "/DC0" */
};

/* Resolves a placement: host by name (it must mount the datastore),
 * resource pool and folder by inventory path ("/DC0/host/C0/Resources",
 * "/DC0/vm/restored"). Unset host and pool: the first connected host
 * outside maintenance mode that mounts the datastore, and its cluster's
 * or its own root pool; unset folder: the datastore's datacenter's VM
 * folder. */
int fy_vs_placement_resolve(struct fy_vs_client *c, const char *host,
			    const char *pool, const char *folder,
			    const char *datastore,
			    struct fy_vs_placement *out);

/* A new VM's hardware, in the words of a VM configuration record
 * (docs/FORMAT.md): controller types "pvscsi", "lsilogic",
 * "lsilogic-sas", "buslogic", "sata", "nvme", "ide"; disk provisioning
 * "thin", "thick-lazy", "thick-eager"; adapters "vmxnet3", "e1000e", ...
 * Keys are the record's; disks and CD-ROMs name their controller by them. */
struct fy_vs_new_controller {
	int32_t key;
	const char *type;
	uint32_t bus;
	const char *sharing;         /* SCSI: "noSharing"...; else NULL */
};

struct fy_vs_new_disk {
	int32_t key, controller_key;
	uint32_t unit;
	uint64_t capacity;           /* bytes, a whole number of KiB */
	const char *provisioning;
	const char *mode;            /* "persistent", ... */
};

struct fy_vs_new_nic {
	int32_t key;
	const char *adapter;
	const char *network;         /* a standard port group's name */
	const char *mac;             /* NULL or "": vSphere generates one */
};

struct fy_vs_new_cdrom {
	int32_t key, controller_key;
	uint32_t unit;
};

struct fy_vs_new_vm {
	const char *name, *guest_id, *version, *firmware;
	bool secure_boot;
	uint32_t cpus, cores_per_socket;
	uint64_t memory_mb;
	const char *datastore;       /* every disk goes here */
	const struct fy_vs_new_controller *controllers;
	size_t n_controllers;
	const struct fy_vs_new_disk *disks;
	size_t n_disks;
	const struct fy_vs_new_nic *nics;
	size_t n_nics;
	const struct fy_vs_new_cdrom *cdroms;   /* created empty */
	size_t n_cdroms;
	const struct fy_vs_option *extra;        /* extraConfig */
	size_t n_extra;
};

/* CreateVM_Task: the VM with new, empty disks of the given sizes
 * (fileOperation create), powered off. A name in use fails with the
 * server's DuplicateName fault. */
int fy_vs_vm_create(struct fy_vs_client *c, const struct fy_vs_new_vm *spec,
		    const struct fy_vs_placement *p, struct fy_vs_moref *vm);
int fy_vs_vm_power_on(struct fy_vs_client *c, const struct fy_vs_moref *vm);
/* Destroy_Task: unregisters the VM and deletes its files. */
int fy_vs_vm_destroy(struct fy_vs_client *c, const struct fy_vs_moref *vm);

/* ---- tasks ------------------------------------------------------------- */

/* Waits for a task (progress through the client's callback) at most
 * timeout_s seconds (0: ferry.vcenter.taskTimeoutSeconds). A failed task
 * is an error naming the task's fault. *result (may be NULL) gets a
 * ManagedObjectReference result, when there is one. */
int fy_vs_task_wait(struct fy_vs_client *c, const struct fy_vs_moref *task,
		    const char *what, int timeout_s, struct fy_vs_moref *result);

/* ---- snapshots --------------------------------------------------------- */

/* Ferry's snapshots carry this at the start of their description. */
#define FY_VS_SNAPSHOT_TAG "[ferry]"

struct fy_vs_snapshot_opts {
	const char *name;         /* NULL: "ferry-<UTC time>" */
	const char *description;  /* appended after FY_VS_SNAPSHOT_TAG */
	bool memory;
	bool quiesce;
};

int fy_vs_snapshot_create(struct fy_vs_client *c, const struct fy_vs_moref *vm,
			  const struct fy_vs_snapshot_opts *opts,
			  struct fy_vs_moref *snapshot);
/* Removes one snapshot (not its children), consolidating its disks. */
int fy_vs_snapshot_remove(struct fy_vs_client *c,
			  const struct fy_vs_moref *snapshot);
bool fy_vs_snapshot_is_ferrys(const struct fy_vs_snapshot *s);
/* ConsolidateVMDisks_Task. */
int fy_vs_vm_consolidate(struct fy_vs_client *c, const struct fy_vs_moref *vm);

/* ---- changed block tracking -------------------------------------------- */

/* ReconfigVM_Task(changeTrackingEnabled), then reads the VM back to check. */
int fy_vs_cbt_set(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		  bool enabled);

struct fy_vs_area {
	uint64_t start;
	uint64_t length;
};

struct fy_vs_areas {
	struct fy_vs_area *areas;
	size_t n;
	uint64_t bytes;     /* sum of the lengths */
};

typedef int (*fy_vs_area_cb)(void *opaque, uint64_t start, uint64_t length);

/* QueryChangedDiskAreas from 0 until capacity is covered, in order, each
 * area checked to be inside the range the server said it covered. change_id
 * "*" gives the allocated areas (a full backup). snapshot NULL: the live
 * disk, which vSphere answers for a powered-off VM only. */
int fy_vs_changed_areas(struct fy_vs_client *c, const struct fy_vs_moref *vm,
			const struct fy_vs_moref *snapshot, int32_t device_key,
			uint64_t capacity, const char *change_id,
			fy_vs_area_cb cb, void *opaque);
/* The same, collected (adjacent areas merged). */
int fy_vs_changed_areas_get(struct fy_vs_client *c,
			    const struct fy_vs_moref *vm,
			    const struct fy_vs_moref *snapshot,
			    int32_t device_key, uint64_t capacity,
			    const char *change_id, struct fy_vs_areas **out);
void fy_vs_areas_free(struct fy_vs_areas *a);

/* ---- adding and removing disks (hotadd) -------------------------------- */

struct fy_vs_disk_attach {
	const char *file_name;   /* "[ds1] vm/vm-000001.vmdk" */
	const char *disk_mode;   /* NULL: "independent_nonpersistent" */
	int32_t controller_key;  /* -1: pick a SCSI controller with room */
	int32_t unit;            /* -1: pick a free unit */
};

struct fy_vs_attached {
	int32_t key;
	int32_t controller_key;
	int32_t unit;
	uint64_t capacity;
	char uuid[64];
};

/* ReconfigVM_Task(add VirtualDisk, no fileOperation), then reads the device
 * list back and finds the disk: a task that says success is not enough. */
int fy_vs_vm_add_disk(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		      const struct fy_vs_disk_attach *a,
		      struct fy_vs_attached *out);
/* ReconfigVM_Task(remove, no fileOperation: the VMDK stays), then checks
 * that the device is gone. */
int fy_vs_vm_remove_disk(struct fy_vs_client *c, const struct fy_vs_moref *vm,
			 int32_t device_key);

/* ---- PrepareForAccess / EndAccess -------------------------------------- */

#define FY_VS_IDENTITY_MAX 50

/* VDDK's PrepareForAccess: disables RelocateVM_Task on vm with the source
 * ID "ferry:<identity>", retrying while a Storage vMotion runs
 * (ferry.vcenter.prepareRetries times, ferry.vcenter.prepareRetrySeconds
 * apart). Connected straight to ESXi, it warns and returns 0: a host
 * cannot disable methods. Every successful call must be matched by
 * fy_vs_end_access; the client ends any left open when freed. */
int fy_vs_prepare_for_access(struct fy_vs_client *c,
			     const struct fy_vs_moref *vm,
			     const char *identity);
/* EnableMethods with the same source ID. Also valid without a Prepare in
 * this process (cleaning up after a crash). */
int fy_vs_end_access(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		     const char *identity);
/* Relocates vm to the datastore (used by tests to check that Storage
 * vMotion is refused while access is prepared). */
int fy_vs_vm_relocate(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		      const struct fy_vs_moref *datastore);

/* ---- can this proxy hot-add that disk? --------------------------------- */

enum fy_vs_hotadd_rule {
	FY_VS_HOTADD_OK = 0,
	FY_VS_HOTADD_UNKNOWN_PROXY,     /* no proxy VM configured or found */
	FY_VS_HOTADD_PROXY_IS_TARGET,   /* a VM cannot attach its own disks */
	FY_VS_HOTADD_OTHER_DATACENTER,  /* proxy and VM in different DCs */
	FY_VS_HOTADD_NOT_MOUNTED,       /* proxy's host lacks the datastore */
	FY_VS_HOTADD_IDE,               /* IDE disks cannot be hot-added */
	FY_VS_HOTADD_INDEPENDENT,       /* not in snapshots */
	FY_VS_HOTADD_PHYSICAL_RDM,      /* physical RDMs have no snapshot */
	FY_VS_HOTADD_NO_FREE_SLOT,      /* no free unit on <= 4 SCSI ctrls */
};

const char *fy_vs_hotadd_rule_name(enum fy_vs_hotadd_rule r);

/* Pure logic over fetched data: returns the first rule that fails and
 * writes a sentence saying why into why (may be NULL). proxy NULL means
 * unknown proxy. */
enum fy_vs_hotadd_rule fy_vs_hotadd_check(const struct fy_vs_inventory *inv,
					  const struct fy_vs_vm *proxy,
					  const struct fy_vs_vm *vm,
					  const struct fy_vs_disk *disk,
					  char *why, size_t whylen);
/* Free SCSI units on the proxy's controllers (0-15 except the
 * controller's own, at most 4 controllers). */
unsigned fy_vs_hotadd_free_slots(const struct fy_vs_vm *proxy);

/* ---- the OVF environment (ovf-env.xml) ----------------------------------- */

/* What vSphere gives a deployed OVF appliance: its ProductSection
 * properties, from VMware Tools' guestinfo.ovfEnv or the "iso" transport's
 * CD. Every size is bounded before anything is allocated. */
#define FY_OVF_ENV_MAX_BYTES (1024 * 1024)
#define FY_OVF_ENV_MAX_ELEMENTS 4096
#define FY_OVF_ENV_MAX_PROPERTIES 256
#define FY_OVF_ENV_MAX_KEY 128
#define FY_OVF_ENV_MAX_VALUE (64 * 1024)

struct fy_ovf_property {
	char *key;
	char *value;
};

struct fy_ovf_env {
	size_t n, cap;
	struct fy_ovf_property *props;
};

/* Parses ovf-env.xml: -EFBIG over a bound, -EBADMSG for anything else
 * wrong (not XML, a DOCTYPE, not an Environment, a Property without key or
 * value, a key given twice), each with one message naming the property or
 * line. Elements other than PropertySection/Property are ignored. */
int fy_ovf_env_parse(const char *buf, size_t len, struct fy_ovf_env **out);
/* The value of key, or NULL when the environment does not have it. */
const char *fy_ovf_env_get(const struct fy_ovf_env *env, const char *key);
void fy_ovf_env_free(struct fy_ovf_env *env);

/* ---- VMDK descriptors -------------------------------------------------- */

/* Bounds on a text descriptor: anything larger is not one. */
#define FY_VMDK_MAX_DESCRIPTOR (64u * 1024)
#define FY_VMDK_MAX_EXTENTS 64
#define FY_VMDK_MAX_LINE 1024
#define FY_VMDK_NAME_MAX 256
#define FY_VMDK_SECTOR 512

enum fy_vmdk_access { FY_VMDK_RW = 0, FY_VMDK_RDONLY, FY_VMDK_NOACCESS };

enum fy_vmdk_extent_kind {
	FY_VMDK_FLAT = 0,    /* FLAT: hosted flat file */
	FY_VMDK_VMFS,        /* VMFS: ESXi's flat extent (-flat.vmdk) */
	FY_VMDK_ZERO,        /* reads as zeros, no file */
	FY_VMDK_SPARSE,      /* hosted sparse: monolithicSparse, deltas */
	FY_VMDK_VMFSSPARSE,  /* ESXi redo log (vmfsSparse delta) */
	FY_VMDK_SESPARSE,    /* ESXi SEsparse delta (VMFS6, > 2 TB) */
	FY_VMDK_VSANSPARSE,  /* vSAN delta */
	FY_VMDK_VMFSRDM,     /* raw device mapping, virtual mode */
	FY_VMDK_VMFSRAW,     /* raw device mapping, physical mode */
};

const char *fy_vmdk_extent_kind_name(enum fy_vmdk_extent_kind k);

struct fy_vmdk_extent {
	enum fy_vmdk_access access;
	enum fy_vmdk_extent_kind kind;
	uint64_t sectors;      /* length, in 512-byte sectors */
	uint64_t offset;       /* sectors into the file (FLAT), else 0 */
	char file[FY_VMDK_NAME_MAX]; /* as written; "" for ZERO */
};

struct fy_vmdk_descriptor {
	char create_type[64];  /* "vmfs", "monolithicFlat", "seSparse" ... */
	uint32_t cid;
	uint32_t parent_cid;   /* 0xffffffff: no parent */
	char parent_hint[FY_VMDK_NAME_MAX]; /* parentFileNameHint or "" */
	uint64_t capacity;     /* bytes: the extents' sectors * 512 */
	size_t n_extents;
	struct fy_vmdk_extent extents[FY_VMDK_MAX_EXTENTS];
};

/* Parses a text descriptor (name is used in messages). -EFBIG over
 * FY_VMDK_MAX_DESCRIPTOR, -ENOTSUP for a binary sparse VMDK (its
 * descriptor is embedded), -EBADMSG for anything malformed, with the line
 * and the reason. Unknown keys (ddb.*) are ignored. */
int fy_vmdk_parse(const char *text, size_t len, const char *name,
		  struct fy_vmdk_descriptor *out);
/* Whether the https transport can read the disk: a disk without parent
 * made of FLAT/VMFS (and ZERO) extents whose files sit next to the
 * descriptor; several extents (twoGbMaxExtentFlat) are fine. Else
 * -ENOTSUP with the reason ("delta disk (SEsparse) chains are not
 * supported by the https transport yet; use hotadd or nbd"). */
int fy_vmdk_check_flat(const struct fy_vmdk_descriptor *d, const char *name);

/* ---- datastore files over HTTPS (the "https" transport) ---------------- */

/* Reads a disk's flat extents through vSphere's datastore file access,
 *   https://HOST/folder/<path>?dcPath=<datacenter>&dsName=<datastore>
 * with the client's session cookie and Range requests, several at once.
 * For powered-off VMs and templates (or a snapshot's frozen files) when
 * neither VDDK nor shared storage is there. docs/TRANSPORTS.md. */
struct fy_vs_ds_opts {
	unsigned max_in_flight;  /* Range requests at once (8; 1..64) */
	uint64_t request_size;   /* largest Range request (4 MiB; 64K..64M) */
	/* Log in again before a request once the session is this old, as
	 * virt-v2v renews its cookie every 25 minutes (1500; 0: never). */
	unsigned renew_seconds;
};

void fy_vs_ds_opts_default(struct fy_vs_ds_opts *o);
/* ferry.https.maxInFlight, ferry.https.requestSize,
 * ferry.https.sessionRenewSeconds, on top of what o holds. */
int fy_vs_ds_opts_from_config(struct fy_vs_ds_opts *o,
			      const struct fy_config *cfg);

/* Opens ds_file ("[ds1] vm/vm.vmdk": a descriptor) on the client's
 * server. datacenter_path is the datacenter's inventory path below the
 * root folder ("DC0", or "Folder/DC0" when it is nested in folders);
 * NULL takes ferry.vcenter.datacenter, else the datacenter of the one
 * datastore of that name in the inventory. The descriptor is fetched and
 * checked (fy_vmdk_check_flat), every extent file's size is checked with
 * HEAD; a missing file is -ENOENT naming it. The client must outlive the
 * source; the source's transport name is "https". */
int fy_vs_datastore_source_open(struct fy_vs_client *c,
				const char *datacenter_path,
				const char *ds_file,
				const struct fy_vs_ds_opts *opts,
				struct fy_source **out);

/* Splits "[ds1] vm/vm.vmdk" into "ds1" and "vm/vm.vmdk"; -EINVAL with a
 * sentence when it is not a datastore path (".." is refused). */
int fy_vs_ds_path_split(const char *ds_file, char *ds, size_t dslen,
			char *path, size_t pathlen);

/* Writes a whole disk through the datastore's /folder access: one PUT of
 * the flat extent file of descriptor ds_file ("[ds1] vm/vm.vmdk"), which
 * must be one file of exactly size bytes. The caller writes the disk's
 * bytes in order, all of them (holes as zeros: HTTP has no holes), into
 * *fd, then calls finish, which closes *fd and waits for the server's
 * answer; ok false aborts the upload and returns -ECANCELED, unless the
 * upload had already failed by itself: then its error (the cause of the
 * writer's EPIPE) is returned, with its message. */
struct fy_vs_ds_put;
int fy_vs_datastore_put_open(struct fy_vs_client *c,
			     const char *datacenter_path, const char *ds_file,
			     uint64_t size, int *fd, struct fy_vs_ds_put **out);
int fy_vs_datastore_put_finish(struct fy_vs_ds_put *p, bool ok);

/* The VM whose disk backing chain names ds_file (its live file or a
 * parent: a snapshot's frozen file). -ENOENT when none, -EEXIST when
 * several. For VDDK, which opens a disk through its VM. */
int fy_vs_find_disk_vm(struct fy_vs_client *c, const char *ds_file,
		       struct fy_vs_moref *vm);

#endif
