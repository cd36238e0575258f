/*
 * The transport table (agent/transport.h): one entry per way of reading a
 * VM disk, each with possible(), open() and open_file(); the one parser of
 * transport lists. https reads the datastore's /folder access
 * (vsphere/ds_source.c); nbdssl and nbd are NFC through VDDK, which
 * nbdkit's vddk plugin speaks (nbd/vddk.c); hotadd attaches the frozen
 * disk to this proxy (hotadd/); san reads the datastore's LUNs (san/,
 * docs/SAN.md). docs/TRANSPORTS.md.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/transport.h"
#include "nbd/nbd.h"
#include "san/san.h"

/* ---- the env ---------------------------------------------------------------- */

void fy_transport_env_init(struct fy_transport_env *env,
			   const struct fy_config *cfg, struct fy_vs_client *vc)
{
	memset(env, 0, sizeof(*env));
	env->cfg = cfg;
	env->vc = vc;
}

void fy_transport_env_release(struct fy_transport_env *env)
{
	if (!env)
		return;
	fy_vs_vm_free(env->proxy);
	fy_vs_inventory_free(env->inv);
	if (env->own_vc)
		fy_vs_client_free(env->vc);
	env->proxy = NULL;
	env->inv = NULL;
	env->vc = NULL;
	env->own_vc = false;
}

/* The vCenter session, opened the first time a mode needs one. */
static struct fy_vs_client *env_vc(struct fy_transport_env *env, char *why,
				   size_t len)
{
	if (env->vc)
		return env->vc;
	if (!env->vc_tried) {
		env->vc_tried = true;
		if (!fy_config_get(env->cfg, "ferry.vcenter.server"))
			snprintf(env->vc_down, sizeof(env->vc_down),
				 "ferry.vcenter.server is not configured");
		else if (fy_vs_client_open(env->cfg, &env->vc) < 0)
			snprintf(env->vc_down, sizeof(env->vc_down),
				 "cannot reach vCenter: %s", fy_err_msg());
		else
			env->own_vc = true;
	}
	if (!env->vc)
		snprintf(why, len, "%s", env->vc_down);
	return env->vc;
}

const struct fy_vs_vm *fy_transport_env_proxy(struct fy_transport_env *env,
					      char *why, size_t len)
{
	struct fy_vs_client *vc;

	if (!env->proxy_tried) {
		env->proxy_tried = true;
		vc = env_vc(env, env->proxy_down, sizeof(env->proxy_down));
		if (vc && fy_hotadd_find_proxy(vc, env->cfg, &env->proxy) < 0)
			snprintf(env->proxy_down, sizeof(env->proxy_down), "%s",
				 fy_err_msg());
	}
	if (!env->proxy)
		snprintf(why, len, "%s", env->proxy_down);
	return env->proxy;
}

void fy_transport_env_forget_proxy(struct fy_transport_env *env)
{
	fy_vs_vm_free(env->proxy);
	env->proxy = NULL;
	env->proxy_tried = false;
}

static const struct fy_vs_inventory *env_inventory(struct fy_transport_env *env,
						   char *why, size_t len)
{
	struct fy_vs_client *vc;

	if (!env->inv_tried) {
		env->inv_tried = true;
		vc = env_vc(env, env->inv_down, sizeof(env->inv_down));
		if (vc && fy_vs_inventory_get(vc, false, &env->inv) < 0)
			snprintf(env->inv_down, sizeof(env->inv_down),
				 "cannot read the inventory: %s", fy_err_msg());
	}
	if (!env->inv)
		snprintf(why, len, "%s", env->inv_down);
	return env->inv;
}

/* ---- the one parser ------------------------------------------------------- */

const struct fy_transport *fy_transport_find(const char *name, size_t len)
{
	unsigned i;

	for (i = 0; i < FY_TRANSPORT_N_MODES; i++)
		if (strlen(fy_transports[i].name) == len &&
		    !strncmp(name, fy_transports[i].name, len))
			return &fy_transports[i];
	return NULL;
}

static char names[FY_TRANSPORT_N_MODES * 10];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void make_names(void)
{
	size_t used = 0;
	unsigned i;

	for (i = 0; i < FY_TRANSPORT_N_MODES; i++)
		used += (size_t)snprintf(names + used, sizeof(names) - used,
					 "%s%s", i ? ", " : "",
					 fy_transports[i].name);
}

/* "san, hotadd, nbdssl, nbd, https", from the table. */
static const char *mode_names(void)
{
	pthread_once(&names_once, make_names);
	return names;
}

int fy_transport_list_parse(const char *list,
			    const struct fy_transport *modes[], unsigned max,
			    unsigned *n)
{
	const char *p;
	unsigned k, count = 0;

	*n = 0;
	if (!list || !*list)
		list = FY_TRANSPORT_DEFAULT;
	if (strlen(list) > FY_TRANSPORT_LIST_MAX)
		return fy_err_set(-EINVAL, "transport list '%.32s...' is longer "
				  "than %d bytes: name each of %s at most once",
				  list, FY_TRANSPORT_LIST_MAX, mode_names());
	for (p = list;; p++) {
		size_t w = strcspn(p, ":");
		const struct fy_transport *t;

		if (w == 0)
			return fy_err_set(-EINVAL, "transport list '%s' has an "
					  "empty mode (a leading, trailing or "
					  "doubled ':')", list);
		t = fy_transport_find(p, w);
		if (!t)
			return fy_err_set(-EINVAL, "transport list '%s': '%.*s' "
					  "is not a transport mode (%s)", list,
					  (int)w, p, mode_names());
		for (k = 0; k < count; k++)
			if (modes[k] == t)
				return fy_err_set(-EINVAL, "transport list '%s' "
						  "names %s twice", list,
						  t->name);
		if (count == max)
			return fy_err_set(-E2BIG, "transport list '%s' has more "
					  "than %u modes", list, max);
		modes[count++] = t;
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

/* ---- possible(): the rules, before anything is touched -------------------- */

/* What no mode can read: no snapshot freezes it. */
static bool snapshot_freezes(const struct fy_vs_vm *vm,
			     const struct fy_vs_disk *d, char *why, size_t len)
{
	if (d->independent) {
		snprintf(why, len, "disk %d (%s) of %s is independent (%s): "
			 "snapshots do not freeze it", (int)d->key,
			 d->file_name, vm->name, d->disk_mode);
		return false;
	}
	if (d->rdm && !strcmp(rdm_mode(d), "physicalMode")) {
		snprintf(why, len, "disk %d (%s) of %s is a physical-mode raw "
			 "device mapping: snapshots do not freeze it",
			 (int)d->key, d->file_name, vm->name);
		return false;
	}
	return true;
}

/* The san mode's verdict on disk d of vm: the datastore's LUNs as found
 * on this proxy and the flat file's path inside the volume. Reads the
 * inventory, sysfs and the volume (the disk's descriptor); writes nothing.
 * false with why. */
struct san_where {
	char luns[FY_VMFS_MAX_LUNS][FY_ERR_MAX / 4];
	size_t n;
	char flat[FY_VMFS_MAX_PATH];
};

static bool san_locate(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		       const struct fy_vs_disk *d, struct san_where *w,
		       char *why, size_t len)
{
	const char *sysfs = fy_config_get(env->cfg, "ferry.san.sysfsRoot");
	const char *devr = fy_config_get(env->cfg, "ferry.san.devRoot");
	const struct fy_vs_inventory *inv;
	const struct fy_vs_datastore *ds;
	const char *lunp[FY_VMFS_MAX_LUNS];
	struct fy_vmdk_descriptor *desc = NULL;
	struct fy_source *src = NULL;
	char dsname[256], path[FY_VMFS_MAX_PATH], *text = NULL, *slash;
	size_t i;
	bool ok = false;

	if (!snapshot_freezes(vm, d, why, len))
		return false;
	if (d->rdm) {
		snprintf(why, len, "disk %d (%s) of %s is a raw device mapping: "
			 "its data is on its own LUN, not in the datastore",
			 (int)d->key, d->file_name, vm->name);
		return false;
	}
	if (d->chain_len > 1) {
		snprintf(why, len, "disk %d (%s) of %s is a delta disk on %s: "
			 "the VM has older snapshots, and san reads flat base "
			 "disks only", (int)d->key, d->file_name, vm->name,
			 d->chain[d->chain_len - 1].file_name);
		return false;
	}
	if (!(inv = env_inventory(env, why, len)))
		return false;
	ds = fy_vs_inventory_datastore(inv, &d->datastore);
	if (!ds) {
		snprintf(why, len, "the datastore of %s is not in the inventory",
			 d->file_name);
		return false;
	}
	if (strcmp(ds->type, "VMFS")) {
		snprintf(why, len, "datastore %s is %s, not VMFS: san reads "
			 "VMFS datastores only", ds->name,
			 ds->type[0] ? ds->type : "of an unknown type");
		return false;
	}
	if (!ds->n_vmfs_extents) {
		snprintf(why, len, "VMFS datastore %s lists no extents "
			 "(info.vmfs.extent)", ds->name);
		return false;
	}
	w->n = ds->n_vmfs_extents;
	for (i = 0; i < w->n; i++) {
		if (fy_san_find_lun(sysfs, devr, ds->vmfs_extents[i].disk_name,
				    0, w->luns[i], sizeof(w->luns[i])) < 0) {
			snprintf(why, len, "datastore %s, extent %zu: %s",
				 ds->name, i, fy_err_msg() + (strncmp(fy_err_msg(),
					"san: ", 5) ? 0 : 5));
			return false;
		}
		lunp[i] = w->luns[i];
	}
	if (fy_vs_ds_path_split(d->file_name, dsname, sizeof(dsname), path,
				sizeof(path)) < 0) {
		snprintf(why, len, "%s", fy_err_msg());
		return false;
	}
	/* The descriptor on the volume names the flat extent, and says
	 * whether the disk is encrypted. */
	desc = malloc(sizeof(*desc));
	/* O_DIRECT underneath: an aligned buffer. */
	text = fy_aligned_alloc(FY_VMDK_MAX_DESCRIPTOR + 4096);
	if (!desc || !text) {
		snprintf(why, len, "out of memory");
		goto out;
	}
	if (fy_san_source_open(lunp, w->n, path, &env->file_opts, &src) < 0) {
		snprintf(why, len, "%s", fy_err_msg());
		goto out;
	}
	if (src->size > FY_VMDK_MAX_DESCRIPTOR) {
		snprintf(why, len, "%s on datastore %s is %llu bytes: not a "
			 "descriptor", path, ds->name,
			 (unsigned long long)src->size);
		goto out;
	}
	memset(text, 0, FY_VMDK_MAX_DESCRIPTOR + 4096);
	if (fy_source_read(src, text, (src->size + 4095) & ~(uint64_t)4095,
			   0) < 0 ||
	    fy_vmdk_parse(text, (size_t)src->size, d->file_name, desc) < 0 ||
	    fy_vmdk_check_flat(desc, d->file_name) < 0) {
		const char *m = fy_err_msg();

		snprintf(why, len, "%s", !strncmp(m, "https: ", 7) ? m + 7 : m);
		goto out;
	}
	if (strstr(text, "encryption.keySafe") || strstr(text, "encryption =")) {
		snprintf(why, len, "disk %d (%s) of %s is encrypted: only the "
			 "host holds its key", (int)d->key, d->file_name,
			 vm->name);
		goto out;
	}
	if (desc->n_extents != 1 || desc->extents[0].offset) {
		snprintf(why, len, "%s has %zu extents: san reads disks of one "
			 "flat extent", d->file_name, desc->n_extents);
		goto out;
	}
	slash = strrchr(path, '/');
	snprintf(w->flat, sizeof(w->flat), "%.*s%s",
		 slash ? (int)(slash - path + 1) : 0, path,
		 desc->extents[0].file);
	ok = true;
out:
	fy_source_close(src);
	free(text);
	free(desc);
	return ok;
}

static bool san_possible(struct fy_transport_env *env,
			 const struct fy_vs_vm *vm, const struct fy_vs_disk *d,
			 char *why, size_t len)
{
	struct san_where *w;
	bool ok;

	if (!vm || !d) {
		/* Whether any VMFS LUN is visible here: a proxy without LUN
		 * access cannot read any disk with san. */
		return fy_san_any_vmfs_lun(
			fy_config_get(env->cfg, "ferry.san.sysfsRoot"),
			fy_config_get(env->cfg, "ferry.san.devRoot"), why, len);
	}
	w = malloc(sizeof(*w));
	if (!w) {
		snprintf(why, len, "out of memory");
		return false;
	}
	ok = san_locate(env, vm, d, w, why, len);
	free(w);
	return ok;
}

static bool hotadd_possible(struct fy_transport_env *env,
			    const struct fy_vs_vm *vm,
			    const struct fy_vs_disk *d, char *why, size_t len)
{
	const struct fy_vs_vm *proxy = fy_transport_env_proxy(env, why, len);
	const struct fy_vs_inventory *inv;
	char rule_why[FY_ERR_MAX];
	enum fy_vs_hotadd_rule r;

	if (!proxy) {
		/* hotadd's own messages start with the mode's name. */
		if (!strncmp(why, "hotadd: ", 8))
			memmove(why, why + 8, strlen(why + 8) + 1);
		return false;
	}
	if (!vm || !d)
		return true;
	if (!(inv = env_inventory(env, why, len)))
		return false;
	r = fy_vs_hotadd_check(inv, proxy, vm, d, rule_why, sizeof(rule_why));
	if (r == FY_VS_HOTADD_OK)
		return true;
	snprintf(why, len, "rule \"%s\" failed: %s", fy_vs_hotadd_rule_name(r),
		 rule_why);
	return false;
}

bool fy_vddk_ready(const struct fy_config *cfg, char *why, size_t len)
{
	struct fy_nbd_vddk_opts vo;
	char reason[FY_ERR_MAX];

	fy_nbd_vddk_opts_default(&vo);
	if (fy_nbd_vddk_opts_from_config(&vo, cfg) < 0) {
		snprintf(why, len, "%s", fy_err_msg());
		return false;
	}
	if (!vo.libdir || !*vo.libdir) {
		snprintf(why, len, "needs VMware's VDDK, which is not "
			 "configured: set libDir to the directory VDDK was "
			 "unpacked in (vmware-vix-disklib-distrib); Ferry "
			 "reaches NFC only through nbdkit's vddk plugin and "
			 "VDDK");
		return false;
	}
	if (!fy_nbd_vddk_available(&vo, reason, sizeof(reason))) {
		snprintf(why, len, "the VDDK path cannot run: %s", reason);
		return false;
	}
	return true;
}

static bool vddk_possible(struct fy_transport_env *env,
			  const struct fy_vs_vm *vm, const struct fy_vs_disk *d,
			  char *why, size_t len)
{
	if (!fy_vddk_ready(env->cfg, why, len))
		return false;
	if (!fy_config_get(env->cfg, "ferry.vcenter.server")) {
		snprintf(why, len, "ferry.vcenter.server is not configured");
		return false;
	}
	return !vm || !d || snapshot_freezes(vm, d, why, len);
}

static bool https_possible(struct fy_transport_env *env,
			   const struct fy_vs_vm *vm, const struct fy_vs_disk *d,
			   char *why, size_t len)
{
	if (!fy_config_get(env->cfg, "ferry.vcenter.server")) {
		snprintf(why, len, "ferry.vcenter.server is not configured");
		return false;
	}
	if (!vm || !d)
		return true;
	if (!snapshot_freezes(vm, d, why, len))
		return false;
	/* The frozen file of a VM with older snapshots is a delta, which the
	 * descriptor parser refuses: known before the snapshot is taken. */
	if (d->chain_len > 1) {
		snprintf(why, len, "disk %d (%s) of %s is a delta disk on %s: "
			 "the VM has older snapshots, and delta chains are not "
			 "supported by the https transport yet; use hotadd or "
			 "nbd", (int)d->key, d->file_name, vm->name,
			 d->chain[d->chain_len - 1].file_name);
		return false;
	}
	return true;
}

/* ---- open() ----------------------------------------------------------------- */

static int san_open(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out)
{
	char why[FY_ERR_MAX];
	const char *lunp[FY_VMFS_MAX_LUNS];
	struct san_where *w = malloc(sizeof(*w));
	size_t i;
	int rc;

	(void)snapshot;
	*out = NULL;
	if (!w)
		return mode_err(-ENOMEM, "san", "out of memory");
	/* d is the snapshot's frozen disk: its flat file does not change
	 * while the snapshot exists. */
	if (!san_locate(env, vm, d, w, why, sizeof(why))) {
		free(w);
		return mode_err(-ENOTSUP, "san", "%s", why);
	}
	for (i = 0; i < w->n; i++)
		lunp[i] = w->luns[i];
	rc = fy_san_source_open(lunp, w->n, w->flat, &env->file_opts, out);
	if (rc < 0)
		rc = mode_err(rc, "san", "%s", fy_err_msg());
	else
		fy_info("san: %s read from %zu LUN(s), %s first", d->file_name,
			w->n, w->luns[0]);
	free(w);
	return rc;
}

static int hotadd_open(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		       const struct fy_vs_moref *snapshot,
		       const struct fy_vs_disk *d, struct fy_source **out)
{
	int rc;

	(void)vm;
	(void)snapshot;
	*out = NULL;
	if (!env->hotadd)
		return mode_err(-EINVAL, "hotadd", "attaches disks for a VM "
				"job (agent/job.c), which opens the proxy "
				"with fy_hotadd_open first");
	rc = fy_hotadd_open_disk(env->hotadd, d->file_name, d->capacity,
				 &env->file_opts, out);
	return rc < 0 ? mode_wrap(rc, "hotadd") : 0;
}

static int vddk_open(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		     const struct fy_vs_moref *snapshot,
		     const struct fy_vs_disk *d, struct fy_source **out,
		     const char *mode)
{
	char why[FY_ERR_MAX];
	struct fy_vs_client *vc;

	*out = NULL;
	if (!(vc = env_vc(env, why, sizeof(why))))
		return mode_err(-ENOTSUP, mode, "%s", why);
	return open_vddk(vc, env->cfg, mode, vm, snapshot, d, out);
}

static int nbdssl_open(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		       const struct fy_vs_moref *snapshot,
		       const struct fy_vs_disk *d, struct fy_source **out)
{
	return vddk_open(env, vm, snapshot, d, out, "nbdssl");
}

static int nbd_open(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out)
{
	return vddk_open(env, vm, snapshot, d, out, "nbd");
}

static int https_open(struct fy_transport_env *env, const struct fy_vs_vm *vm,
		      const struct fy_vs_moref *snapshot,
		      const struct fy_vs_disk *d, struct fy_source **out)
{
	char why[FY_ERR_MAX];
	struct fy_vs_client *vc;
	int rc;

	*out = NULL;
	if (!(vc = env_vc(env, why, sizeof(why))))
		return mode_err(-ENOTSUP, "https", "%s", why);
	rc = check_frozen(vc, "https", vm, snapshot, d);
	if (rc < 0)
		return rc;
	return open_https(vc, env->cfg, vm, d, out);
}

/* ---- open_file(): one datastore file (backup --source vsphere-ds:) -------- */

/* The VDDK path for one file: the VM whose disk chain names it. */
static int vddk_open_file(struct fy_transport_env *env, const char *file,
			  struct fy_source **out, const char *mode)
{
	struct fy_nbd_vddk_opts vo;
	struct fy_nbd_opts no;
	struct fy_vs_moref vm;
	struct fy_vs_client *vc;
	char thumb[64] = "", why[FY_ERR_MAX];
	int rc;

	*out = NULL;
	if (!(vc = env_vc(env, why, sizeof(why))))
		return mode_err(-ENOTSUP, mode, "%s", why);
	fy_nbd_vddk_opts_default(&vo);
	fy_nbd_opts_default(&no);
	if ((rc = fy_nbd_vddk_opts_from_config(&vo, env->cfg)) < 0 ||
	    (rc = fy_nbd_opts_from_config(&no, env->cfg)) < 0 ||
	    (rc = fy_vs_find_disk_vm(vc, file, &vm)) < 0)
		return mode_wrap(rc, mode);
	/* VDDK checks the certificate Ferry's own policy accepted. */
	if (fy_vs_client_sha1_thumbprint(vc, thumb, sizeof(thumb)) < 0)
		fy_warn("%s: %s; VDDK gets no thumbprint", mode, fy_err_msg());
	vo.vm_moref = vm.value;
	vo.file = file;
	vo.thumbprint = thumb[0] ? thumb : NULL;
	vo.transports = mode;
	vo.nbd = &no;
	rc = fy_nbd_vddk_open(&vo, out);
	return rc < 0 ? mode_wrap(rc, mode) : 0;
}

static int nbdssl_open_file(struct fy_transport_env *env, const char *file,
			    struct fy_source **out)
{
	return vddk_open_file(env, file, out, "nbdssl");
}

static int nbd_open_file(struct fy_transport_env *env, const char *file,
			 struct fy_source **out)
{
	return vddk_open_file(env, file, out, "nbd");
}

static int https_open_file(struct fy_transport_env *env, const char *file,
			   struct fy_source **out)
{
	struct fy_vs_ds_opts o;
	struct fy_vs_client *vc;
	char why[FY_ERR_MAX];
	int rc;

	*out = NULL;
	if (!(vc = env_vc(env, why, sizeof(why))))
		return mode_err(-ENOTSUP, "https", "%s", why);
	fy_vs_ds_opts_default(&o);
	if ((rc = fy_vs_ds_opts_from_config(&o, env->cfg)) < 0 ||
	    (rc = fy_vs_datastore_source_open(vc, NULL, file, &o, out)) < 0)
		return mode_wrap(rc, "https");
	return 0;
}

/* ---- the table ---------------------------------------------------------------- */

const struct fy_transport fy_transports[FY_TRANSPORT_N_MODES] = {
	[FY_TRANSPORT_SAN] = {
		.mode = FY_TRANSPORT_SAN, .name = "san",
		.possible = san_possible, .open = san_open,
		.file_why = "reads the disks of a VM job (backup --vm), or a "
			    "flat file given as vmfs:LUN[,LUN2]:PATH, not a "
			    "vsphere-ds: file",
	},
	[FY_TRANSPORT_HOTADD] = {
		.mode = FY_TRANSPORT_HOTADD, .name = "hotadd", .attaches = true,
		.possible = hotadd_possible, .open = hotadd_open,
		.file_why = "reads whole VMs (ferry-agent backup --vm), not a "
			    "single disk file",
	},
	[FY_TRANSPORT_NBDSSL] = {
		.mode = FY_TRANSPORT_NBDSSL, .name = "nbdssl",
		.possible = vddk_possible, .open = nbdssl_open,
		.open_file = nbdssl_open_file,
	},
	[FY_TRANSPORT_NBD] = {
		.mode = FY_TRANSPORT_NBD, .name = "nbd",
		.possible = vddk_possible, .open = nbd_open,
		.open_file = nbd_open_file,
	},
	[FY_TRANSPORT_HTTPS] = {
		.mode = FY_TRANSPORT_HTTPS, .name = "https",
		.possible = https_possible, .open = https_open,
		.open_file = https_open_file,
	},
};

int fy_vm_disk_open(struct fy_vs_client *vc, const struct fy_config *cfg,
		    const char *mode, const struct fy_vs_vm *vm,
		    const struct fy_vs_moref *snapshot,
		    const struct fy_vs_disk *d, struct fy_source **out)
{
	const struct fy_transport *t;
	struct fy_transport_env env;
	int rc;

	*out = NULL;
	if (!mode)
		return fy_err_set(-EINVAL, "no transport mode given");
	t = fy_transport_find(mode, strlen(mode));
	if (!t)
		return fy_err_set(-EINVAL, "%.32s: not a transport mode (%s)",
				  mode, mode_names());
	if (!vc)
		return mode_err(-EINVAL, t->name, "no vCenter connection");
	fy_transport_env_init(&env, cfg, vc);
	/* The cheap local checks first, as a job makes them; hotadd's are a
	 * job's (it needs the proxy's handle). */
	if (t->mode != FY_TRANSPORT_HOTADD) {
		char why[FY_ERR_MAX];

		if (!t->possible(&env, NULL, NULL, why, sizeof(why))) {
			fy_transport_env_release(&env);
			return mode_err(-ENOTSUP, t->name, "%s", why);
		}
	}
	rc = t->open(&env, vm, snapshot, d, out);
	fy_transport_env_release(&env);
	return rc;
}

void fy_transport_status_all(struct fy_transport_env *env,
			     struct fy_transport_status out[FY_TRANSPORT_N_MODES])
{
	unsigned i;

	for (i = 0; i < FY_TRANSPORT_N_MODES; i++) {
		out[i].t = &fy_transports[i];
		out[i].why[0] = '\0';
		out[i].available = fy_transports[i].possible(
		    env, NULL, NULL, out[i].why, sizeof(out[i].why));
		if (out[i].available)
			out[i].why[0] = '\0';
	}
}
