/*
 * agent/vm_transport.h: a VM's frozen disk read over the network transport
 * modes (san, nbdssl, nbd, https), one mode at a time, so that a VM backup
 * job can try the modes of its list in order, as VDDK does, and report
 * every mode's reason when none can read a disk. hotadd is the job's own
 * (hotadd/hotadd.h). docs/TRANSPORTS.md, "VM disks: which mode reads what".
 */
#ifndef FERRY_AGENT_VM_TRANSPORT_H
#define FERRY_AGENT_VM_TRANSPORT_H

#include "common/common.h"
#include "vsphere/vsphere.h"

/* VDDK's order, as VixDiskLib_ListTransportModes gives it; https (the
 * datastore's /folder access) is only tried when a list names it. */
#define FY_TRANSPORT_DEFAULT "san:hotadd:nbdssl:nbd"
/* Every mode there is: san, hotadd, nbdssl, nbd, https. */
#define FY_TRANSPORT_MODES_MAX 5
/* Longer than any list of distinct modes can be. */
#define FY_TRANSPORT_LIST_MAX 64

/*
 * "san:hotadd:nbdssl:nbd:https" -> modes[0..*n-1], in the order given; each
 * entry is one of the static strings "san", "hotadd", "nbdssl", "nbd",
 * "https" (compare with strcmp). NULL or "" gives FY_TRANSPORT_DEFAULT.
 * -EINVAL for an unknown mode (named in the message), an empty one ("a::b",
 * a leading or trailing ':'), a mode named twice, or a list longer than
 * FY_TRANSPORT_LIST_MAX; -E2BIG when max is too small for the list. *n
 * is 0 on failure.
 */
int fy_transport_list_parse(const char *list, const char *modes[],
			    unsigned max, unsigned *n);

/*
 * Opens the frozen disk d of vm over mode, one of "san", "nbdssl", "nbd",
 * "https". d is a disk of the snapshot's devices (fy_vs_snapshot_devices):
 * its file is the snapshot's read-only frozen file; this is checked
 * against the snapshot (one property read), so a live disk passed by
 * mistake is refused instead of read while the guest writes it. snapshot
 * NULL (or an empty moref) is allowed only for a powered-off VM, whose
 * disk nobody writes. Independent disks and physical-mode RDMs are
 * refused: no snapshot freezes them.
 *
 *   https   the disk file's flat extents through the datastore's /folder
 *           access (vsphere's fy_vs_ds source); the datacenter is
 *           ferry.vcenter.datacenter, else the VM's; ferry.https.* apply.
 *           The descriptor parser refuses delta (the frozen file of a
 *           VM that has older snapshots), sparse and RDM files, saying so.
 *   nbdssl, nbd
 *           VMware's NFC through VDDK: nbdkit's vddk plugin (nbd/vddk.c)
 *           with libdir=libDir, the vCenter of ferry.vcenter.*, its SHA-1
 *           thumbprint, vm=moref=VM, snapshot=SNAPSHOT, file=the frozen
 *           file, transports=MODE. Without libDir it fails at once, as it
 *           does when nbdkit or its plugin or VDDK is missing.
 *   san     not built yet: fails at once with what is missing.
 *
 * nbdkit is started with --exit-with-parent, which Linux ties to the
 * calling thread: open from a thread that outlives the source.
 *
 * On success *out is a source whose ops->name is mode and whose name is
 * the frozen file; the client must outlive it. On failure *out is NULL, a
 * negative errno is returned and fy_err_msg() is one sentence that starts
 * with "MODE: " and says why this mode cannot read this disk (-ENOTSUP:
 * the mode cannot work here at all; -EINVAL: a mode or disk that is not
 * valid; else what the attempt met).
 */
int fy_vm_disk_open(struct fy_vs_client *vc, const struct fy_config *cfg,
		    const char *mode, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out);

#endif
