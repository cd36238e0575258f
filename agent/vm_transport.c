/*
 * A VM's frozen disk over one network transport mode: https (the
 * datastore's /folder access, vsphere/ds_source.c), nbdssl and nbd (NFC
 * through VDDK, which nbdkit's vddk plugin speaks: nbd/vddk.c), san (not
 * built). The job tries the modes of its list in order and keeps each
 * mode's reason; hotadd is the job's own. docs/TRANSPORTS.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent/vm_transport.h"
#include "nbd/nbd.h"

static const char *const all_modes[FY_TRANSPORT_MODES_MAX] = {
	"san", "hotadd", "nbdssl", "nbd", "https",
};

int fy_transport_list_parse(const char *list, const char *modes[],
			    unsigned max, unsigned *n)
{
	const char *p;
	unsigned i, k, count = 0;

	*n = 0;
	if (!list || !*list)
		list = FY_TRANSPORT_DEFAULT;
	if (strlen(list) > FY_TRANSPORT_LIST_MAX)
		return fy_err_set(-EINVAL, "transport list '%.32s...' is longer "
				  "than %d bytes: name each of san, hotadd, "
				  "nbdssl, nbd, https at most once",
				  list, FY_TRANSPORT_LIST_MAX);
	for (p = list;; p++) {
		size_t w = strcspn(p, ":");

		if (w == 0)
			return fy_err_set(-EINVAL, "transport list '%s' has an "
					  "empty mode (a leading, trailing or "
					  "doubled ':')", list);
		for (i = 0; i < FY_TRANSPORT_MODES_MAX; i++)
			if (strlen(all_modes[i]) == w &&
			    !strncmp(p, all_modes[i], w))
				break;
		if (i == FY_TRANSPORT_MODES_MAX)
			return fy_err_set(-EINVAL, "transport list '%s': '%.*s' "
					  "is not a transport mode (san, hotadd, "
					  "nbdssl, nbd, https)", list, (int)w, p);
		for (k = 0; k < count; k++)
			if (modes[k] == all_modes[i])
				return fy_err_set(-EINVAL, "transport list '%s' "
						  "names %s twice", list,
						  all_modes[i]);
		if (count == max)
			return fy_err_set(-E2BIG, "transport list '%s' has more "
					  "than %u modes", list, max);
		modes[count++] = all_modes[i];
		p += w;
		if (!*p)
			break;
	}
	*n = count;
	return 0;
}

/* ---- checks common to every mode ---------------------------------------- */

/* Sets the message "MODE: ..." and returns code. */
static int mode_err(int code, const char *mode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int mode_err(int code, const char *mode, const char *fmt, ...)
{
	char msg[FY_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fy_err_set(code, "%s: %s", mode, msg);
}

/* A failure from below, as "MODE: what it said" (without saying the mode
 * twice: ds_source's messages start with "https: "). */
static int mode_wrap(int code, const char *mode)
{
	size_t n = strlen(mode);
	const char *m = fy_err_msg();

	if (!strncmp(m, mode, n) && !strncmp(m + n, ": ", 2))
		return code;
	return fy_err_wrap(code, "%s", mode);
}

static const char *rdm_mode(const struct fy_vs_disk *d)
{
	return d->chain_len && d->chain[0].compatibility_mode
		   ? d->chain[0].compatibility_mode
		   : "";
}

/*
 * Whether d is something a snapshot froze: not independent, not a
 * physical RDM, and (with a snapshot) the very file the snapshot holds for
 * that device. Reading a live file while the guest writes it gives a torn
 * image that nothing would notice, so it is refused here once for all
 * modes.
 */
static int check_frozen(struct fy_vs_client *vc, const char *mode,
			const struct fy_vs_vm *vm,
			const struct fy_vs_moref *snapshot,
			const struct fy_vs_disk *d)
{
	struct fy_vs_devices *devs = NULL;
	const struct fy_vs_disk *frozen;
	int rc;

	if (!vc)
		return mode_err(-EINVAL, mode, "no vCenter connection");
	if (!d->file_name || !d->file_name[0])
		return mode_err(-EINVAL, mode, "disk %d of %s has no file",
				(int)d->key, vm->name);
	if (d->independent)
		return mode_err(-ENOTSUP, mode, "disk %d (%s) of %s is "
				"independent (%s): snapshots do not freeze it, "
				"so no transport can read a consistent copy",
				(int)d->key, d->file_name, vm->name,
				d->disk_mode);
	if (d->rdm && !strcmp(rdm_mode(d), "physicalMode"))
		return mode_err(-ENOTSUP, mode, "disk %d (%s) of %s is a "
				"physical-mode raw device mapping: snapshots do "
				"not freeze it", (int)d->key, d->file_name,
				vm->name);
	if (!snapshot || !snapshot->value[0]) {
		if (!strcmp(vm->power_state, "poweredOff"))
			return 0;
		return mode_err(-EINVAL, mode, "%s is %s: its disk %s is "
				"read from a snapshot, and none was given",
				vm->name, vm->power_state, d->file_name);
	}
	rc = fy_vs_snapshot_devices(vc, snapshot, &devs);
	if (rc < 0)
		return mode_wrap(fy_err_wrap(rc, "devices of snapshot %s of %s",
					     snapshot->value, vm->name),
				 mode);
	frozen = fy_vs_devices_disk(devs, d->key);
	if (!frozen)
		rc = mode_err(-ENOENT, mode, "snapshot %s of %s has no disk "
			      "with key %d", snapshot->value, vm->name,
			      (int)d->key);
	else if (strcmp(frozen->file_name, d->file_name))
		rc = mode_err(-EINVAL, mode, "disk %d of %s: %s is not the "
			      "file snapshot %s froze (%s); a live file is "
			      "never read", (int)d->key, vm->name,
			      d->file_name, snapshot->value,
			      frozen->file_name);
	fy_vs_devices_free(devs);
	return rc;
}

/* ---- https --------------------------------------------------------------- */

/*
 * The datacenter's inventory path below the root folder, for dcPath: the
 * part of the VM's path ("/Folder/DC0/vm/sub/web01") up to its datacenter,
 * which is the segment named datacenter_name followed by "vm". false when
 * the path does not show it (ds_source then finds it by the datastore).
 */
static bool datacenter_path(const struct fy_vs_vm *vm, char *out,
			    size_t outlen)
{
	const char *dc = vm->datacenter_name, *path = vm->path, *p;
	size_t n = strlen(dc);

	if (!n || !path || path[0] != '/')
		return false;
	for (p = path; (p = strchr(p, '/')); p++)
		if (!strncmp(p + 1, dc, n) && !strncmp(p + 1 + n, "/vm/", 4)) {
			/* Without the leading '/', as dcPath wants it. */
			size_t len = (size_t)(p + n - path);

			if (len >= outlen)
				return false;
			memcpy(out, path + 1, len);
			out[len] = '\0';
			return true;
		}
	return false;
}

static int open_https(struct fy_vs_client *vc, const struct fy_config *cfg,
		      const struct fy_vs_vm *vm, const struct fy_vs_disk *d,
		      struct fy_source **out)
{
	struct fy_vs_ds_opts o;
	char dc[1024];
	const char *dcp = NULL;
	int rc;

	fy_vs_ds_opts_default(&o);
	rc = fy_vs_ds_opts_from_config(&o, cfg);
	if (rc < 0)
		return mode_wrap(rc, "https");
	/* The configured datacenter wins, as for vsphere-ds: files. */
	if (!fy_config_get(cfg, "ferry.vcenter.datacenter") &&
	    datacenter_path(vm, dc, sizeof(dc)))
		dcp = dc;
	rc = fy_vs_datastore_source_open(vc, dcp, d->file_name, &o, out);
	if (rc < 0)
		return mode_wrap(rc, "https");
	return 0;
}

/* ---- nbdssl, nbd: VDDK through nbdkit ----------------------------------- */

static int open_vddk(struct fy_vs_client *vc, const struct fy_config *cfg,
		     const char *mode, const struct fy_vs_vm *vm,
		     const struct fy_vs_moref *snapshot,
		     const struct fy_vs_disk *d, struct fy_source **out)
{
	struct fy_nbd_vddk_opts vo;
	struct fy_nbd_opts no;
	char why[FY_ERR_MAX], thumb[64] = "";
	int rc;

	fy_nbd_vddk_opts_default(&vo);
	fy_nbd_opts_default(&no);
	if ((rc = fy_nbd_vddk_opts_from_config(&vo, cfg)) < 0 ||
	    (rc = fy_nbd_opts_from_config(&no, cfg)) < 0)
		return mode_wrap(rc, mode);
	if (!vo.libdir || !*vo.libdir)
		return mode_err(-ENOTSUP, mode, "needs VMware's VDDK, which is "
				"not configured: set libDir to the directory "
				"VDDK was unpacked in (vmware-vix-disklib-distrib"
				"); Ferry reaches NFC only through nbdkit's vddk "
				"plugin and VDDK");
	if (!fy_nbd_vddk_available(&vo, why, sizeof(why)))
		return mode_err(-ENOTSUP, mode, "the VDDK path cannot run: %s",
				why);
	/* Only after the cheap local checks: a network round trip. */
	rc = check_frozen(vc, mode, vm, snapshot, d);
	if (rc < 0)
		return rc;
	/* VDDK checks the certificate Ferry's own policy accepted. */
	if (fy_vs_client_sha1_thumbprint(vc, thumb, sizeof(thumb)) < 0)
		fy_warn("%s: %s; VDDK gets no thumbprint", mode, fy_err_msg());
	vo.vm_moref = vm->moref.value;
	vo.snapshot_moref = snapshot && snapshot->value[0] ? snapshot->value
							   : NULL;
	vo.file = d->file_name;
	vo.thumbprint = thumb[0] ? thumb : NULL;
	vo.transports = mode;
	vo.nbd = &no;
	rc = fy_nbd_vddk_open(&vo, out);
	if (rc < 0)
		return mode_wrap(rc, mode);
	return 0;
}

/* ---- the entry point ------------------------------------------------------ */

int fy_vm_disk_open(struct fy_vs_client *vc, const struct fy_config *cfg,
		    const char *mode, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out)
{
	int rc;

	*out = NULL;
	if (!mode)
		return fy_err_set(-EINVAL, "no transport mode given");
	if (!strcmp(mode, "san"))
		return mode_err(-ENOTSUP, mode, "not built yet for VM disks: "
				"it needs the datastore's LUN visible to this "
				"proxy (found by the VMFS extents' NAA IDs, which "
				"Ferry does not look up yet) and a VMFS reader to "
				"find the disk's blocks on it, which Ferry does "
				"not have; use hotadd, nbdssl, nbd or https");
	if (!strcmp(mode, "hotadd"))
		return mode_err(-EINVAL, mode, "attaches the disk to this proxy "
				"(hotadd/hotadd.h, fy_hotadd_open_disk), not "
				"through fy_vm_disk_open");
	if (!strcmp(mode, "nbdssl") || !strcmp(mode, "nbd"))
		return open_vddk(vc, cfg, mode, vm, snapshot, d, out);
	if (strcmp(mode, "https"))
		return fy_err_set(-EINVAL, "%.32s: not a transport mode (san, "
				  "hotadd, nbdssl, nbd, https)", mode);
	rc = check_frozen(vc, mode, vm, snapshot, d);
	if (rc < 0)
		return rc;
	return open_https(vc, cfg, vm, d, out);
}
