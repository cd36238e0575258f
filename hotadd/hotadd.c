/*
 * The hotadd transport: who the proxy is, attaching a frozen disk to it,
 * finding that disk in the guest, reading it with the O_DIRECT + libaio
 * reader, and detaching it again. docs/HOTADD.md.
 */
#include "hotadd/hotadd.h"
#include "hotadd/hotadd_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

const char *const fy_hotadd_config_keys[] = {
	"ferry.stateDirectory",
	"ferry.proxy.moref",
	"ferry.proxy.instanceUuid",
	"ferry.hotadd.sysfsRoot",
	"ferry.hotadd.devRoot",
	"ferry.hotadd.discoverTimeoutSeconds",
	"ferry.hotadd.runDirectory",
	"ferry.hotadd.maxAttached",
	"ferry.hotadd.maxAttachedWaitSeconds",
	"ferry.hotadd.checkProxyMac",
	"ferry.hotadd.parallelDisks",
	NULL,
};

/* ---- small file helpers ------------------------------------------------- */

/* Reads a small sysfs-like file into buf, trailing whitespace removed. */
int ha_read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	buf[n] = '\0';
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	return 0;
}

static int write_small(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* "6000C29d-3c54-..." -> "naa.6000c29d3c54...": what Linux shows in
 * /sys/block/sdX/device/wwid for a disk of a VM with disk.EnableUUID. */
void ha_wwid_of_uuid(const char *uuid, char *out, size_t outlen)
{
	size_t o = 0;

	o += (size_t)snprintf(out, outlen, "naa.");
	for (; *uuid && o + 1 < outlen; uuid++)
		if (isxdigit((unsigned char)*uuid))
			out[o++] = (char)tolower((unsigned char)*uuid);
	out[o] = '\0';
}

/* ---- the handle --------------------------------------------------------- */

void fy_hotadd_free(struct fy_hotadd *h)
{
	if (!h)
		return;
	fy_journal_close(h->journal);
	pthread_mutex_destroy(&h->vc_lock);
	free(h);
}

const struct fy_vs_moref *fy_hotadd_proxy(const struct fy_hotadd *h)
{
	return &h->proxy;
}

struct fy_journal_file *fy_hotadd_journal(struct fy_hotadd *h)
{
	return h->journal;
}

int fy_hotadd_bios_uuid_forms(const char *uuid, char a[37], char b[37])
{
	/* Byte order of the first three fields (4, 2, 2 bytes) differs. */
	static const int swap[16] = { 3, 2, 1, 0, 5, 4, 7, 6,
				      8, 9, 10, 11, 12, 13, 14, 15 };
	uint8_t bytes[16], sw[16];
	char hex[33];
	size_t n = 0;
	int i;

	for (; *uuid && n < 32; uuid++) {
		if (*uuid == '-')
			continue;
		if (!isxdigit((unsigned char)*uuid))
			return -EINVAL;
		hex[n++] = (char)tolower((unsigned char)*uuid);
	}
	if (n != 32 || *uuid)
		return -EINVAL;
	hex[32] = '\0';
	if (fy_unhex(hex, bytes, 16) < 0)
		return -EINVAL;
	for (i = 0; i < 16; i++)
		sw[i] = bytes[swap[i]];
#define UUID_FMT "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x"
#define UUID_ARGS(x) x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], \
	x[9], x[10], x[11], x[12], x[13], x[14], x[15]
	snprintf(a, 37, UUID_FMT, UUID_ARGS(bytes));
	snprintf(b, 37, UUID_FMT, UUID_ARGS(sw));
	return 0;
}

/* The proxy from its BIOS UUID: both byte orders are tried and exactly one
 * VM must match across them. */
static int proxy_from_bios(struct fy_hotadd *h)
{
	char path[PATH_MAX], uuid[128], forms[2][37];
	struct fy_vs_moref found[2];
	int rc, n = 0, i;

	snprintf(path, sizeof(path), "%s/sys/class/dmi/id/product_uuid",
		 h->sysfs_root);
	rc = ha_read_small(path, uuid, sizeof(uuid));
	if (rc < 0)
		return fy_err_set(rc, "hotadd: cannot tell which VM this proxy "
				  "is: %s: %s; set ferry.proxy.moref or "
				  "ferry.proxy.instanceUuid", path,
				  strerror(-rc));
	if (fy_hotadd_bios_uuid_forms(uuid, forms[0], forms[1]) < 0)
		return fy_err_set(-EINVAL, "hotadd: %s holds \"%s\", not a "
				  "UUID", path, uuid);
	for (i = 0; i < 2; i++) {
		if (i == 1 && !strcmp(forms[0], forms[1]))
			break;
		rc = fy_vs_find_vm(h->vc, FY_VS_BY_BIOS_UUID, forms[i],
				   &found[n]);
		if (rc == -ENOENT)
			continue;
		if (rc == -EEXIST)
			return fy_err_wrap(rc, "hotadd: BIOS UUID %s matches "
					   "several VMs (clones); set "
					   "ferry.proxy.instanceUuid",
					   forms[i]);
		if (rc < 0)
			return fy_err_wrap(rc, "hotadd: looking up the proxy");
		n++;
	}
	if (n == 0)
		return fy_err_set(-ENOENT, "hotadd: no VM has the BIOS UUID "
				  "%s (or %s) of this machine: is it a VM of "
				  "this vCenter? Set ferry.proxy.moref",
				  forms[0], forms[1]);
	if (n == 2 && strcmp(found[0].value, found[1].value))
		return fy_err_set(-EEXIST, "hotadd: BIOS UUID %s matches %s in "
				  "one byte order and %s in the other; set "
				  "ferry.proxy.instanceUuid", forms[0],
				  found[0].value, found[1].value);
	h->proxy = found[0];
	return 0;
}

/* Bounds on what the MAC check reads from the guest. */
#define HA_MAX_GUEST_NICS 64

/* The VM found must be the one this process runs in: one of its NICs' MACs
 * must be an address of the guest (SYSFS/sys/class/net/<ifname>/address).
 * A wrong ferry.proxy.moref or a clone's BIOS UUID would otherwise have
 * Ferry attach disks to another machine. */
static int check_proxy_mac(struct fy_hotadd *h, const struct fy_vs_vm *pv)
{
	char dir[PATH_MAX], path[PATH_MAX + 300], addr[64];
	char guest[512] = "", vm[256] = "";
	size_t gl = 0, vl = 0, i;
	unsigned seen = 0;
	struct dirent *de;
	bool match = false;
	DIR *d;

	for (i = 0; i < pv->n_macs && vl < sizeof(vm); i++)
		vl += (size_t)snprintf(vm + vl, sizeof(vm) - vl, "%s%s",
				       i ? ", " : "", pv->macs[i]);
	snprintf(dir, sizeof(dir), "%s/sys/class/net", h->sysfs_root);
	d = opendir(dir);
	if (!d)
		return fy_err_set(-errno, "hotadd: cannot check that proxy VM "
				  "%s (%s) is this machine: %s: %s; set "
				  "ferry.hotadd.checkProxyMac=false to skip "
				  "the check", pv->name, h->proxy.value, dir,
				  strerror(errno));
	while ((de = readdir(d)) && seen < HA_MAX_GUEST_NICS) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/address", dir, de->d_name);
		if (ha_read_small(path, addr, sizeof(addr)) < 0 ||
		    !strcmp(addr, "00:00:00:00:00:00"))
			continue;
		seen++;
		for (i = 0; addr[i]; i++)
			addr[i] = (char)tolower((unsigned char)addr[i]);
		if (gl < sizeof(guest))
			gl += (size_t)snprintf(guest + gl, sizeof(guest) - gl,
					       "%s%s %s", seen > 1 ? ", " : "",
					       de->d_name, addr);
		for (i = 0; i < pv->n_macs; i++)
			if (!strcmp(pv->macs[i], addr))
				match = true;
	}
	closedir(d);
	if (match)
		return 0;
	return fy_err_set(-ENXIO, "hotadd: proxy VM %s (%s) is not this "
			  "machine: its NICs have %s, this guest's %s/sys/"
			  "class/net has %s; check ferry.proxy.moref/"
			  "instanceUuid (ferry.hotadd.checkProxyMac=false "
			  "skips the check)", pv->name, h->proxy.value,
			  vm[0] ? vm : "no MAC address", h->sysfs_root,
			  guest[0] ? guest : "no address");
}

/* Whether a disk on the proxy looks like one Ferry attached: non-persistent
 * and not in the proxy's own folder. */
bool ha_looks_attached(const struct fy_vs_vm *proxy,
		       const struct fy_vs_disk *d)
{
	const char *slash = strrchr(proxy->vmx_path, '/');
	size_t dirlen = slash ? (size_t)(slash - proxy->vmx_path + 1) : 0;

	if (strcmp(d->disk_mode, "independent_nonpersistent"))
		return false;
	return !dirlen || strncmp(d->file_name, proxy->vmx_path, dirlen);
}

/* Records the proxy's own disks the first time it is seen: the journal's
 * OWN entries protect them from detach whatever else it says. */
static int record_own_disks(struct fy_hotadd *h, const struct fy_vs_vm *pv)
{
	struct fy_journal j;
	size_t i;
	bool known = false;
	int rc = fy_journal_read(h->journal, &j);

	if (rc < 0)
		return rc;
	for (i = 0; i < j.n; i++)
		if (j.entries[i].kind == FY_JOURNAL_OWN &&
		    !strcmp(j.entries[i].vm, h->proxy.value))
			known = true;
	fy_journal_release(&j);
	if (known)
		return 0;
	for (i = 0; i < pv->devices.n_disks; i++) {
		const struct fy_vs_disk *d = &pv->devices.disks[i];
		struct fy_journal_entry e = { .kind = FY_JOURNAL_OWN,
					      .pid = (int32_t)getpid(),
					      .device_key = d->key };

		if (ha_looks_attached(pv, d))
			continue;
		snprintf(e.vm, sizeof(e.vm), "%s", h->proxy.value);
		snprintf(e.file, sizeof(e.file), "%s", d->file_name);
		rc = fy_journal_add(h->journal, &e);
		if (rc < 0)
			return rc;
		fy_info("hotadd: recorded the proxy's own disk %s (key %d)",
			d->file_name, d->key);
	}
	return 0;
}

/* The handle's settings from cfg, no I/O. */
static int settings(struct fy_hotadd *h, struct fy_vs_client *c,
		    const struct fy_config *cfg)
{
	const char *v;
	int64_t t;
	int rc;

	h->vc = c;
	v = fy_config_get(cfg, "ferry.stateDirectory");
	snprintf(h->state_dir, sizeof(h->state_dir), "%s",
		 v ? v : FY_HOTADD_STATE_DIR);
	v = fy_config_get(cfg, "ferry.hotadd.sysfsRoot");
	snprintf(h->sysfs_root, sizeof(h->sysfs_root), "%s",
		 v && strcmp(v, "/") ? v : "");
	v = fy_config_get(cfg, "ferry.hotadd.devRoot");
	snprintf(h->dev_root, sizeof(h->dev_root), "%s",
		 v && strcmp(v, "/") ? v : "");
	v = fy_config_get(cfg, "ferry.hotadd.runDirectory");
	snprintf(h->run_dir, sizeof(h->run_dir), "%s",
		 v ? v : "/run/ferry/hotadd");
	rc = fy_config_get_int(cfg, "ferry.hotadd.discoverTimeoutSeconds", 60,
			       1, 3600, &t);
	if (rc < 0)
		return rc;
	h->discover_timeout = (int)t;
	rc = fy_config_get_int(cfg, "ferry.hotadd.maxAttached", 8, 1, 60, &t);
	if (rc < 0)
		return rc;
	h->max_attached = (int)t;
	rc = fy_config_get_int(cfg, "ferry.hotadd.maxAttachedWaitSeconds",
			       3600, 0, 86400, &t);
	if (rc < 0)
		return rc;
	h->max_attached_wait = (int)t;
	return 0;
}

/* Which VM this process runs in, checked by MAC: h->proxy and *pv. */
static int locate(struct fy_hotadd *h, const struct fy_config *cfg,
		  struct fy_vs_vm **pv)
{
	const char *v;
	bool check_mac;
	int rc;

	*pv = NULL;
	if ((v = fy_config_get(cfg, "ferry.proxy.moref"))) {
		snprintf(h->proxy.type, sizeof(h->proxy.type),
			 "VirtualMachine");
		snprintf(h->proxy.value, sizeof(h->proxy.value), "%s", v);
	} else if ((v = fy_config_get(cfg, "ferry.proxy.instanceUuid"))) {
		rc = fy_vs_find_vm(h->vc, FY_VS_BY_INSTANCE_UUID, v,
				   &h->proxy);
		if (rc < 0)
			return fy_err_wrap(rc, "hotadd: "
					   "ferry.proxy.instanceUuid %s", v);
	} else if ((rc = proxy_from_bios(h)) < 0) {
		return rc;
	}
	rc = fy_vs_vm_get(h->vc, &h->proxy, pv);
	if (rc < 0)
		return fy_err_wrap(rc, "hotadd: proxy VM %s", h->proxy.value);
	rc = fy_config_get_bool(cfg, "ferry.hotadd.checkProxyMac", true,
				&check_mac);
	if (rc == 0 && check_mac)
		rc = check_proxy_mac(h, *pv);
	if (rc < 0) {
		fy_vs_vm_free(*pv);
		*pv = NULL;
	}
	return rc;
}

int fy_hotadd_find_proxy(struct fy_vs_client *c, const struct fy_config *cfg,
			 struct fy_vs_vm **out)
{
	struct fy_hotadd *h = calloc(1, sizeof(*h));
	int rc;

	*out = NULL;
	if (!h)
		return fy_err_set(-ENOMEM, "out of memory");
	pthread_mutex_init(&h->vc_lock, NULL);
	rc = settings(h, c, cfg);
	if (rc == 0)
		rc = locate(h, cfg, out);
	fy_hotadd_free(h);
	return rc;
}

int fy_hotadd_journal_open(const struct fy_config *cfg,
			   struct fy_journal_file **out)
{
	const char *v = fy_config_get(cfg, "ferry.stateDirectory");

	return fy_journal_open(v ? v : FY_HOTADD_STATE_DIR, out);
}

int fy_hotadd_open(struct fy_vs_client *c, const struct fy_config *cfg,
		   struct fy_hotadd **out)
{
	struct fy_hotadd *h;
	struct fy_vs_vm *pv = NULL;
	int rc;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return fy_err_set(-ENOMEM, "out of memory");
	pthread_mutex_init(&h->vc_lock, NULL);
	if ((rc = settings(h, c, cfg)) < 0 || (rc = locate(h, cfg, &pv)) < 0)
		goto fail;
	fy_info("hotadd: this proxy is %s (%s)", pv->name, h->proxy.value);
	rc = fy_journal_open(h->state_dir, &h->journal);
	if (rc < 0)
		goto fail;
	rc = record_own_disks(h, pv);
	if (rc < 0)
		goto fail;
	fy_vs_vm_free(pv);
	*out = h;
	return 0;
fail:
	fy_vs_vm_free(pv);
	fy_hotadd_free(h);
	return rc;
}

enum fy_vs_hotadd_rule fy_hotadd_check(struct fy_hotadd *h,
				       const struct fy_vs_inventory *inv,
				       const struct fy_vs_vm *vm,
				       const struct fy_vs_disk *disk,
				       char *why, size_t whylen)
{
	struct fy_vs_vm *pv = NULL;
	enum fy_vs_hotadd_rule r;

	if (!h || fy_vs_vm_get(h->vc, &h->proxy, &pv) < 0) {
		snprintf(why, whylen, "unknown proxy: %s",
			 h ? fy_err_msg() : "none found");
		return FY_VS_HOTADD_UNKNOWN_PROXY;
	}
	r = fy_vs_hotadd_check(inv, pv, vm, disk, why, whylen);
	fy_vs_vm_free(pv);
	return r;
}

/* ---- finding the disk in the guest -------------------------------------- */

static void rescan_scsi_hosts(struct fy_hotadd *h)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/sys/class/scsi_host", h->sysfs_root);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "host", 4))
			continue;
		snprintf(path, sizeof(path), "%s/%s/scan", dir, de->d_name);
		if (write_small(path, "- - -") < 0)
			fy_debug("hotadd: rescan %s failed", path);
	}
	closedir(d);
}

/* The unit serial number (SCSI VPD page 0x80) the guest's kernel read from
 * the device (DIR/device/vpd_pg80: a 4-byte header, then the serial, maybe
 * padded with spaces); "" when the kernel shows none. */
static void read_vpd_serial(const char *dir, char *out, size_t outlen)
{
	char path[PATH_MAX + 320];
	unsigned char buf[260];
	size_t len, i, o = 0;
	ssize_t n;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/device/vpd_pg80", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 4 || buf[1] != 0x80)
		return;
	len = ((size_t)buf[2] << 8) | buf[3];
	if (len > (size_t)n - 4)
		len = (size_t)n - 4;
	for (i = 0; i < len && o + 1 < outlen; i++)
		if (buf[4 + i] > 0x20 && buf[4 + i] < 0x7f)
			out[o++] = (char)buf[4 + i];
	out[o] = '\0';
}

/* Whether the disk under DIR (a /sys/block/sdX) is the vmdk whose wwid is
 * "naa.<uuid hex>": its device/wwid says so (ESXi with disk.EnableUUID:
 * the 128-bit NAA id), or its unit serial number (VPD 0x80) is the uuid's
 * hex (ESXi shows it too; QEMU's scsi-hd carries the whole uuid only
 * there, its wwn being 64-bit). has_wwid: the disk shows a wwid at all. */
bool ha_block_is(const char *dir, const char *wwid, bool *has_wwid)
{
	char path[PATH_MAX + 320], buf[256];

	snprintf(path, sizeof(path), "%s/device/wwid", dir);
	if (ha_read_small(path, buf, sizeof(buf)) < 0)
		return false;
	if (has_wwid)
		*has_wwid = true;
	if (!strcasecmp(buf, wwid))
		return true;
	read_vpd_serial(dir, buf, sizeof(buf));
	return strlen(wwid) > 4 && buf[0] && !strcasecmp(buf, wwid + 4);
}

/* Looks through /sys/block for wwid (or its serial, see ha_block_is).
 * found: the block name. saw_wwid tells whether any disk had a wwid at
 * all (disk.EnableUUID). */
int ha_find_block(struct fy_hotadd *h, const char *wwid, char *name,
		  size_t namelen, bool *saw_wwid)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct dirent *de;
	DIR *d;
	int rc = -ENOENT;

	snprintf(dir, sizeof(dir), "%s/sys/block", h->sysfs_root);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (ha_block_is(path, wwid, saw_wwid)) {
			snprintf(name, namelen, "%s", de->d_name);
			rc = 0;
			break;
		}
	}
	closedir(d);
	return rc;
}

/* Checks the found block device: size, major:minor, and that the node under
 * devRoot is that device. Writes the node's path. */
static int check_block(struct fy_hotadd *h, const char *name,
		       uint64_t capacity, char *node, size_t nodelen)
{
	char path[PATH_MAX + 300], buf[64];
	unsigned maj, min;
	uint64_t sectors;
	struct stat stb;
	int rc;

	snprintf(path, sizeof(path), "%s/sys/block/%s/size", h->sysfs_root,
		 name);
	if ((rc = ha_read_small(path, buf, sizeof(buf))) < 0 ||
	    sscanf(buf, "%" SCNu64, &sectors) != 1)
		return fy_err_set(rc < 0 ? rc : -EIO, "hotadd: %s unreadable",
				  path);
	if (capacity && sectors * 512 != capacity)
		return fy_err_set(-EIO, "hotadd: %s is %" PRIu64 " bytes, the "
				  "attached disk %" PRIu64 ": not the same disk",
				  name, sectors * 512, capacity);
	snprintf(path, sizeof(path), "%s/sys/block/%s/dev", h->sysfs_root,
		 name);
	if ((rc = ha_read_small(path, buf, sizeof(buf))) < 0 ||
	    sscanf(buf, "%u:%u", &maj, &min) != 2)
		return fy_err_set(rc < 0 ? rc : -EIO, "hotadd: %s unreadable",
				  path);
	snprintf(node, nodelen, "%s/dev/%s", h->dev_root, name);
	if (stat(node, &stb) < 0)
		return fy_err_set(-errno, "hotadd: %s: %s", node,
				  strerror(errno));
	if (!S_ISBLK(stb.st_mode) || major(stb.st_rdev) != maj ||
	    minor(stb.st_rdev) != min)
		return fy_err_set(-EIO, "hotadd: %s is not block device %u:%u",
				  node, maj, min);
	return 0;
}

/* Where the attached disk sits when the guest shows no wwids: its
 * controller's PCI address and its unit (the SCSI target id). */
struct ha_slot {
	int32_t pci_slot;       /* slotInfo.pciSlotNumber, -1 unknown */
	int32_t unit;
	char address[64];       /* "0000:03:00", "" unknown */
	bool looked_up;
};

/* The attached disk's controller's PCI slot from vSphere, then its address
 * in the guest: SYSFS/sys/bus/pci/slots/<pciSlotNumber>/address (ACPI
 * names the slots after vSphere's pciSlotNumber). */
static void slot_look_up(struct fy_hotadd *h, const struct fy_vs_attached *att,
			 struct ha_slot *slot)
{
	char path[PATH_MAX + 100];
	struct fy_vs_vm *pv = NULL;
	size_t i;
	int rc;

	slot->looked_up = true;
	slot->pci_slot = -1;
	slot->unit = att->unit;
	pthread_mutex_lock(&h->vc_lock);
	rc = fy_vs_vm_get(h->vc, &h->proxy, &pv);
	pthread_mutex_unlock(&h->vc_lock);
	if (rc < 0) {
		fy_warn("hotadd: reading the proxy's controllers: %s",
			fy_err_msg());
		return;
	}
	for (i = 0; i < pv->devices.n_controllers; i++)
		if (pv->devices.controllers[i].key == att->controller_key)
			slot->pci_slot = pv->devices.controllers[i].pci_slot;
	fy_vs_vm_free(pv);
	if (slot->pci_slot < 0)
		return;
	snprintf(path, sizeof(path), "%s/sys/bus/pci/slots/%d/address",
		 h->sysfs_root, (int)slot->pci_slot);
	if (ha_read_small(path, slot->address, sizeof(slot->address)) < 0)
		slot->address[0] = '\0';
}

/* Looks through /sys/block for the device whose SCSI address is the
 * slot's: its device link resolves to
 * .../<pci address>.<fn>/hostH/targetH:0:U/H:0:U:0. */
static int find_block_by_slot(struct fy_hotadd *h, const struct ha_slot *slot,
			      char *name, size_t namelen)
{
	char dir[PATH_MAX], path[PATH_MAX + 300], real[PATH_MAX], pci[80];
	struct dirent *de;
	int rc = -ENOENT;
	DIR *d;

	if (!slot->address[0] || slot->unit < 0)
		return -ENOENT;
	snprintf(pci, sizeof(pci), "/%s.", slot->address);
	snprintf(dir, sizeof(dir), "%s/sys/block", h->sysfs_root);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		unsigned host, channel, target, lun;
		const char *last;
		char end;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/device", dir, de->d_name);
		if (!realpath(path, real))
			continue;
		last = strrchr(real, '/');
		if (!last || !strstr(real, pci) ||
		    sscanf(last + 1, "%u:%u:%u:%u%c", &host, &channel, &target,
			   &lun, &end) != 4)
			continue;
		if (channel == 0 && lun == 0 && target == (unsigned)slot->unit) {
			snprintf(name, namelen, "%s", de->d_name);
			rc = 0;
			break;
		}
	}
	closedir(d);
	return rc;
}

int ha_find_block_at(struct fy_hotadd *h, int32_t pci_slot, int32_t unit,
		     char *name, size_t namelen)
{
	struct ha_slot slot = { .pci_slot = pci_slot, .unit = unit,
				.looked_up = true };
	char path[PATH_MAX + 100];

	if (pci_slot < 0)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/sys/bus/pci/slots/%d/address",
		 h->sysfs_root, (int)pci_slot);
	if (ha_read_small(path, slot.address, sizeof(slot.address)) < 0)
		return -ENOENT;
	return find_block_by_slot(h, &slot, name, namelen);
}

static int discover(struct fy_hotadd *h, const struct fy_vs_attached *att,
		    uint64_t capacity, char *name, size_t namelen, char *node,
		    size_t nodelen)
{
	char wwid[80];
	double deadline = fy_now() + h->discover_timeout, last_scan = 0;
	struct ha_slot slot = { .pci_slot = -1, .unit = -1 };
	bool saw_wwid = false;
	int rc;

	ha_wwid_of_uuid(att->uuid, wwid, sizeof(wwid));
	for (;;) {
		if (fy_now() - last_scan >= 2.0) {
			/* LSI Logic controllers need a rescan; paravirtual
			 * ones report the new device by themselves. */
			rescan_scsi_hosts(h);
			last_scan = fy_now();
		}
		bool by_slot = false;

		rc = ha_find_block(h, wwid, name, namelen, &saw_wwid);
		/* Without disk.EnableUUID no disk has a wwid: the controller's
		 * PCI slot and the unit number tell the disk instead. */
		if (rc == -ENOENT && !saw_wwid) {
			if (!slot.looked_up)
				slot_look_up(h, att, &slot);
			rc = find_block_by_slot(h, &slot, name, namelen);
			by_slot = rc == 0;
		}
		if (rc == 0) {
			rc = check_block(h, name, capacity, node, nodelen);
			if (rc == 0) {
				if (by_slot)
					fy_info("hotadd: no wwids in the "
						"guest; %s found by PCI slot "
						"%d (%s) unit %d", name,
						(int)slot.pci_slot,
						slot.address, (int)slot.unit);
				return 0;
			}
			/* udev may not have made the node yet: once it
			 * has, the disk is named (once). */
		}
		if (fy_now() > deadline)
			break;
		sleep_ms(100);
	}
	if (!saw_wwid)
		return fy_err_set(-ENODEV, "hotadd: no disk in %s/sys/block "
				  "has a device/wwid, and none sits at the "
				  "attached disk's PCI slot %d (%s) unit %d: "
				  "the proxy VM needs disk.EnableUUID=TRUE to "
				  "tell attached disks apart", h->sysfs_root,
				  (int)slot.pci_slot,
				  slot.address[0] ? slot.address : "not in "
				  "sys/bus/pci/slots", (int)slot.unit);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	return fy_err_set(-ETIMEDOUT, "hotadd: the attached disk (wwid %s) "
			  "did not appear in the guest within %d s", wwid,
			  h->discover_timeout);
}

/* Sets the kernel's read-only flag: nothing in the guest may write to a
 * disk that is a backup source. */
static void set_read_only(const char *node)
{
	int fd = open(node, O_RDONLY | O_CLOEXEC), one = 1;

	if (fd < 0)
		return;
	if (ioctl(fd, BLKROSET, &one) < 0)
		fy_warn("hotadd: cannot mark %s read-only: %s", node,
			strerror(errno));
	close(fd);
}

/* Removes the block device from the guest and waits until it is gone. */
/* The device behind a block name: its dev (major:minor) and wwid, "" for
 * what the guest does not show (or no longer shows while it removes the
 * disk: the kernel drops the SCSI attributes before the block device).
 * The kernel reuses sdX names at once, so a name alone does not say that
 * a removed disk is still there. */
struct guest_id {
	char dev[64];
	char wwid[160];
};

static void guest_identity(const char *dir, struct guest_id *id)
{
	char path[PATH_MAX + 320];

	id->dev[0] = id->wwid[0] = '\0';
	snprintf(path, sizeof(path), "%s/dev", dir);
	if (ha_read_small(path, id->dev, sizeof(id->dev)) < 0)
		id->dev[0] = '\0';
	snprintf(path, sizeof(path), "%s/device/wwid", dir);
	if (ha_read_small(path, id->wwid, sizeof(id->wwid)) < 0)
		id->wwid[0] = '\0';
}

/* Whether the name now belongs to another device: a field readable both
 * before and now differs. A field that vanished means "still going". */
static bool guest_replaced(const struct guest_id *was,
			   const struct guest_id *now)
{
	return (was->dev[0] && now->dev[0] && strcmp(was->dev, now->dev)) ||
	       (was->wwid[0] && now->wwid[0] && strcmp(was->wwid, now->wwid));
}

int ha_guest_remove(struct fy_hotadd *h, const char *name,
		    const char *uuid)
{
	char path[PATH_MAX + 300], dir[PATH_MAX + 300];
	struct guest_id was, now;
	double deadline = fy_now() + h->discover_timeout;
	struct stat st;
	int rc;

	snprintf(dir, sizeof(dir), "%s/sys/block/%s", h->sysfs_root, name);
	snprintf(path, sizeof(path), "%s/device/delete", dir);
	guest_identity(dir, &was);
	if (uuid && uuid[0] && was.wwid[0]) {
		char want[80];

		/* The name may have passed to another disk (ours vanished
		 * and the kernel reused it): never delete someone else's. */
		ha_wwid_of_uuid(uuid, want, sizeof(want));
		if (!ha_block_is(dir, want, NULL))
			return fy_err_set(-ESTALE, "hotadd: %s is %s now, not "
					  "the disk %s", name, was.wwid, want);
	}
	rc = write_small(path, "1");
	if (rc < 0 && rc != -ENOENT)
		return fy_err_set(rc, "hotadd: %s: %s", path, strerror(-rc));
	while (stat(dir, &st) == 0) {
		/* Gone, and the name already given to a disk found since. */
		guest_identity(dir, &now);
		if (guest_replaced(&was, &now))
			break;
		if (fy_now() > deadline)
			return fy_err_set(-ETIMEDOUT, "hotadd: %s still there "
					  "%d s after the delete", dir,
					  h->discover_timeout);
		sleep_ms(50);
	}
	return 0;
}

/* ---- attach and detach -------------------------------------------------- */

bool ha_pid_is_agent(int32_t pid)
{
	char path[64], comm[64];

	if (pid == getpid())
		return true;
	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	if (ha_read_small(path, comm, sizeof(comm)) < 0)
		return false;
	return !strcmp(comm, "ferry-agent");
}

/* Disks attached to the proxy by running agents, by the journal. */
static int attached_now(struct fy_hotadd *h, int *count)
{
	struct fy_journal j;
	size_t i;
	int rc = fy_journal_read(h->journal, &j);

	if (rc < 0)
		return rc;
	*count = 0;
	for (i = 0; i < j.n; i++)
		if (j.entries[i].kind == FY_JOURNAL_ATTACH &&
		    !strcmp(j.entries[i].vm, h->proxy.value) &&
		    ha_pid_is_agent(j.entries[i].pid))
			(*count)++;
	fy_journal_release(&j);
	return 0;
}

void ha_marker_set(struct fy_hotadd *h, const char *uuid, bool present)
{
	char wwid[80], path[PATH_MAX + 100];
	int fd;

	if (!h->run_dir[0] || !uuid[0])
		return;
	ha_wwid_of_uuid(uuid, wwid, sizeof(wwid));
	snprintf(path, sizeof(path), "%s/%s", h->run_dir, wwid);
	if (!present) {
		unlink(path);
		return;
	}
	if (fy_mkdirs(h->run_dir, 0755) < 0 ||
	    (fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		fy_warn("hotadd: cannot write the udev guard marker %s", path);
		return;
	}
	close(fd);
}

/* Two reconfigures of one proxy that pick the same slot fail in vSphere:
 * attaches (and detaches) to a proxy are serialized across processes. */
static int proxy_lock(struct fy_hotadd *h)
{
	char path[PATH_MAX + 200];
	int fd;

	snprintf(path, sizeof(path), "%s/reconfigure-%s.lock", h->state_dir,
		 h->proxy.value);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return fy_err_set(-errno, "hotadd: %s: %s", path,
				  strerror(errno));
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			close(fd);
			return fy_err_set(-errno, "hotadd: lock %s", path);
		}
	return fd;
}

static void proxy_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* Whether key or file is one of the proxy's own disks by the journal. */
bool ha_is_own(const struct fy_journal *j, const char *proxy, int32_t key,
	       const char *file)
{
	size_t i;

	for (i = 0; i < j->n; i++) {
		const struct fy_journal_entry *e = &j->entries[i];

		if (e->kind == FY_JOURNAL_OWN && !strcmp(e->vm, proxy) &&
		    (e->device_key == key || !strcmp(e->file, file)))
			return true;
	}
	return false;
}

int ha_detach(struct fy_hotadd *h, int32_t key, const char *file)
{
	struct fy_journal j;
	int rc, fd;

	rc = fy_journal_read(h->journal, &j);
	if (rc < 0)
		return rc;
	if (ha_is_own(&j, h->proxy.value, key, file)) {
		fy_journal_release(&j);
		return fy_err_set(-EPERM, "hotadd: refusing to detach %s (key "
				  "%d): it is one of the proxy's own disks",
				  file, key);
	}
	fy_journal_release(&j);
	fd = proxy_lock(h);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&h->vc_lock);
	rc = fy_vs_vm_remove_disk(h->vc, &h->proxy, key);
	pthread_mutex_unlock(&h->vc_lock);
	proxy_unlock(fd);
	if (rc < 0)
		return fy_err_wrap(rc, "hotadd: detach of %s (key %d) from "
				   "proxy %s", file, key, h->proxy.value);
	return 0;
}

/* One attachment as a job holds it: where it is in vSphere, in the guest
 * and in the journal. */
struct attachment {
	char block[64];
	char node[PATH_MAX + 80];
	char file[FY_JOURNAL_MAX_FIELD];
	char uuid[64];
	int32_t key;
	uint64_t journal_id;
};

static int detach_release(struct fy_hotadd *h, const struct attachment *t);

struct hotadd_source {
	struct fy_source_wrap w; /* first: reads go to the local disk */
	struct fy_hotadd *h;
	struct attachment t;
};

static int hs_extents(struct fy_source *src, uint64_t offset, uint64_t length,
		      fy_extent_cb cb, void *opaque)
{
	struct hotadd_source *s = (struct hotadd_source *)src;

	return fy_source_extents(s->w.inner, offset, length, cb, opaque);
}

static void hs_close(struct fy_source *src)
{
	struct hotadd_source *s = (struct hotadd_source *)src;

	fy_source_close(s->w.inner);
	detach_release(s->h, &s->t);
	free(s);
}

static const struct fy_source_ops hotadd_ops = {
	.name = "hotadd",
	.read = fy_source_wrap_read,
	.read_batch = fy_source_wrap_read_batch,
	.start = fy_source_wrap_start,
	.wait = fy_source_wrap_wait,
	.extents = hs_extents,
	.close = hs_close,
};

/* Attaches file_name to the proxy in disk_mode (journaled first, within
 * ferry.hotadd.maxAttached) and finds it in the guest. Undone on failure. */
static int attach_find(struct fy_hotadd *h, const char *file_name,
		       const char *disk_mode, uint64_t capacity,
		       struct attachment *out)
{
	struct fy_journal_entry e = { .kind = FY_JOURNAL_ATTACH,
				      .device_key = -1 };
	struct fy_vs_disk_attach a = { .file_name = file_name,
				       .disk_mode = disk_mode,
				       .controller_key = -1, .unit = -1 };
	struct fy_vs_attached att;
	const char *hold;
	int rc, fd;

	memset(out, 0, sizeof(*out));
	e.pid = (int32_t)getpid();
	snprintf(e.vm, sizeof(e.vm), "%s", h->proxy.value);
	snprintf(e.file, sizeof(e.file), "%s", file_name);
	/* ferry.hotadd.maxAttached across every agent on this proxy: the
	 * count and the journal entry are made under the same lock. */
	for (double waited_since = fy_now();;) {
		int n = 0;

		fd = proxy_lock(h);
		if (fd < 0)
			return fd;
		rc = attached_now(h, &n);
		if (rc < 0) {
			proxy_unlock(fd);
			return rc;
		}
		if (n < h->max_attached)
			break;
		proxy_unlock(fd);
		if (fy_now() - waited_since > h->max_attached_wait)
			return fy_err_set(-EBUSY, "hotadd: %d disks are attached "
					  "to proxy %s already "
					  "(ferry.hotadd.maxAttached) and none "
					  "was detached within %d s", n,
					  h->proxy.value, h->max_attached_wait);
		fy_debug("hotadd: %d disks attached to the proxy, waiting", n);
		sleep_ms(250);
	}
	/* Journal first: a crash during the reconfigure still leaves a
	 * record for cleanup to check the proxy against. */
	rc = fy_journal_add(h->journal, &e);
	if (rc < 0) {
		proxy_unlock(fd);
		return rc;
	}
	pthread_mutex_lock(&h->vc_lock);
	rc = fy_vs_vm_add_disk(h->vc, &h->proxy, &a, &att);
	pthread_mutex_unlock(&h->vc_lock);
	proxy_unlock(fd);
	if (rc < 0) {
		rc = fy_err_wrap(rc, "hotadd: attach of %s to proxy %s",
				 file_name, h->proxy.value);
		if (fy_journal_remove(h->journal, e.id) < 0)
			fy_warn("hotadd: %s", fy_err_msg());
		return rc;
	}
	/* Before the rescan: the udev rule keeps LVM, MD and udisks off the
	 * device when this marker exists as the kernel announces it. */
	ha_marker_set(h, att.uuid, true);
	e.device_key = att.key;
	snprintf(e.object, sizeof(e.object), "%s", att.uuid);
	if (fy_journal_update(h->journal, &e) < 0)
		fy_warn("hotadd: %s", fy_err_msg());
	fy_info("hotadd: attached %s to proxy %s as key %d (controller %d "
		"unit %d, uuid %s, %s)", file_name, h->proxy.value, att.key,
		att.controller_key, att.unit, att.uuid,
		disk_mode ? disk_mode : "independent_nonpersistent");

	/* Test hook (docs/HOTADD.md): hold here while this file exists, so a
	 * test can kill the agent with the disk attached. */
	hold = getenv("FERRY_HOTADD_TEST_HOLD");
	if (hold && hold[0]) {
		double until = fy_now() + 60;

		while (access(hold, F_OK) == 0 && fy_now() < until)
			sleep_ms(50);
	}

	if (!att.uuid[0]) {
		rc = fy_err_set(-ENODEV, "hotadd: vSphere reports no disk UUID "
				"for the attached disk; cannot find it in the "
				"guest");
		goto undo;
	}
	rc = discover(h, &att, capacity ? capacity : att.capacity, out->block,
		      sizeof(out->block), out->node, sizeof(out->node));
	if (rc < 0)
		goto undo;
	snprintf(out->file, sizeof(out->file), "%s", file_name);
	snprintf(out->uuid, sizeof(out->uuid), "%s", att.uuid);
	out->key = att.key;
	out->journal_id = e.id;
	return 0;
undo:
	{
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		if (ha_detach(h, att.key, file_name) == 0) {
			ha_marker_set(h, att.uuid, false);
			fy_journal_remove(h->journal, e.id);
		}
		else
			fy_error("hotadd: %s", fy_err_msg());
		fy_err_set(rc, "%s", msg);
	}
	return rc;
}

/* Guest first, then vSphere: a disk pulled from under a live SCSI device
 * leaves the guest with I/O errors and a stale sdX. The journal keeps
 * what could not be undone. */
static int detach_release(struct fy_hotadd *h, const struct attachment *t)
{
	int rc = ha_guest_remove(h, t->block, t->uuid);

	if (rc == 0)
		rc = ha_detach(h, t->key, t->file);
	if (rc == 0) {
		ha_marker_set(h, t->uuid, false);
		rc = fy_journal_remove(h->journal, t->journal_id);
	}
	if (rc < 0)
		fy_error("hotadd: %s; the journal keeps it for ferry-agent "
			 "cleanup", fy_err_msg());
	else
		fy_info("hotadd: detached %s (%s) from the proxy", t->file,
			t->block);
	return rc;
}

int fy_hotadd_open_disk(struct fy_hotadd *h, const char *file_name,
			uint64_t capacity,
			const struct fy_file_source_opts *opts,
			struct fy_source **out)
{
	struct hotadd_source *s;
	int rc;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = attach_find(h, file_name, NULL, capacity, &s->t);
	if (rc < 0) {
		free(s);
		return rc;
	}
	set_read_only(s->t.node);
	rc = fy_file_source_open(s->t.node, opts, &s->w.inner);
	if (rc < 0) {
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		detach_release(h, &s->t);
		free(s);
		return fy_err_set(rc, "%s", msg);
	}
	s->w.base.ops = &hotadd_ops;
	s->w.base.size = s->w.inner->size;
	s->w.base.align = s->w.inner->align;
	snprintf(s->w.base.name, sizeof(s->w.base.name), "%s", file_name);
	s->h = h;
	fy_info("hotadd: %s is %s in the guest", file_name, s->t.node);
	*out = &s->w.base;
	return 0;
}

/* ---- write mode: restores ----------------------------------------------- */

struct fy_hotadd_rw {
	struct fy_hotadd *h;
	struct attachment t;
};

int fy_hotadd_attach_rw(struct fy_hotadd *h, const char *file_name,
			uint64_t capacity, struct fy_hotadd_rw **out,
			const char **node)
{
	struct fy_hotadd_rw *d = calloc(1, sizeof(*d));
	int rc;

	*out = NULL;
	if (!d)
		return fy_err_set(-ENOMEM, "out of memory");
	d->h = h;
	rc = attach_find(h, file_name, "persistent", capacity, &d->t);
	if (rc < 0) {
		free(d);
		return rc;
	}
	fy_info("hotadd: %s is %s in the guest, for writing", file_name,
		d->t.node);
	*node = d->t.node;
	*out = d;
	return 0;
}

int fy_hotadd_detach_rw(struct fy_hotadd_rw *d)
{
	int rc;

	if (!d)
		return 0;
	rc = detach_release(d->h, &d->t);
	free(d);
	return rc;
}
