/* hotadd's private header: the handle and the helpers its files share. */
#ifndef FERRY_HOTADD_INT_H
#define FERRY_HOTADD_INT_H

#include <limits.h>
#include <pthread.h>

#include "hotadd/hotadd.h"

struct fy_hotadd {
	struct fy_vs_client *vc;
	struct fy_vs_moref proxy;
	struct fy_journal_file *journal;
	char state_dir[PATH_MAX / 2];
	char sysfs_root[PATH_MAX / 2]; /* "" for the real / */
	char dev_root[PATH_MAX / 2];
	char run_dir[PATH_MAX / 2];    /* udev guard markers, "" when off */
	int discover_timeout;          /* seconds */
	int max_attached;              /* disks attached at once, all agents */
	int max_attached_wait;         /* seconds to wait for room */
	/* One vSphere session, used by the reader (detach on close) and the
	 * attach-ahead thread (attach): their reconfigures take turns. */
	pthread_mutex_t vc_lock;
	/* Cleanup leaves this process's entries alone (fy_hotadd_cleanup_own) */
	bool own_entries_live;
};

/* Whether pid is a running ferry-agent (this process included). */
bool ha_pid_is_agent(int32_t pid);

int ha_read_small(const char *path, char *buf, size_t len);
void ha_wwid_of_uuid(const char *uuid, char *out, size_t outlen);
bool ha_looks_attached(const struct fy_vs_vm *proxy,
		       const struct fy_vs_disk *d);
int ha_find_block(struct fy_hotadd *h, const char *wwid, char *name,
		  size_t namelen, bool *saw_wwid);
/* Whether /sys/block/sdX at dir is the disk of that wwid: by its wwid, or
 * by its unit serial number (VPD 0x80) being the uuid's hex. */
bool ha_block_is(const char *dir, const char *wwid, bool *has_wwid);
/* The block device at a controller's PCI slot (slotInfo.pciSlotNumber)
 * and unit, for guests that show no wwids; -ENOENT when none. */
int ha_find_block_at(struct fy_hotadd *h, int32_t pci_slot, int32_t unit,
		     char *name, size_t namelen);
/* Deletes the guest's device name (which must show uuid's wwid when the
 * guest shows wwids and uuid is given) and waits until it is gone. */
int ha_guest_remove(struct fy_hotadd *h, const char *name,
		    const char *uuid);
bool ha_is_own(const struct fy_journal *j, const char *proxy, int32_t key,
	       const char *file);
/* The udev guard's marker for a disk uuid (packaging/60-ferry-hotadd.rules):
 * present while Ferry has the disk attached. */
void ha_marker_set(struct fy_hotadd *h, const char *uuid, bool present);
/* Refuses the proxy's own disks; serialized with attaches. */
int ha_detach(struct fy_hotadd *h, int32_t key, const char *file);

#endif
