/*
 * The VM configuration record: what a VM backup keeps of the VM's
 * hardware so that it can be built again (docs/FORMAT.md, "VM
 * configuration record"). It travels and is stored as the bytes of a
 * VmConfig message (proto/manifest.proto); this file is the only code that
 * turns those bytes into a struct, and it checks every count and string
 * against the bounds in image/image.h before anything is used.
 *
 * The agent fills the struct from vSphere and encodes it; the repository
 * decodes what it receives before it commits (and on every manifest open);
 * `ferry list` and `ferry show` decode what the repository sends.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image/image_private.h"
#include "proto/manifest.pb-c.h"

/*
 * The extraConfig keys a record keeps: settings a rebuilt VM needs to
 * behave as the original did. Everything else stays out: guestinfo.* (it
 * may hold secrets and cloud-init data meant for one boot), change
 * tracking (the backup's own business), host-specific scheduling and
 * NUMA settings, file locations. docs/RESTORE.md says why each is here.
 */
const char *const fy_vmconfig_extra_keys[] = {
	"disk.EnableUUID",
	"devices.hotplug",
	"hypervisor.cpuid.v0",
	"smbios.reflectHost",
	"svga.present",
	"pciPassthru.use64bitMMIO",
	"pciPassthru.64bitMMIOSizeGB",
	"isolation.tools.copy.disable",
	"isolation.tools.paste.disable",
	"isolation.tools.diskShrink.disable",
	"isolation.tools.diskWiper.disable",
	"isolation.device.connectable.disable",
	"tools.setInfo.sizeLimit",
	"RemoteDisplay.maxConnections",
	NULL,
};

/* VMX keys are case-insensitive ("disk.enableUUID" is common): the list's
 * spelling, or NULL for a key not on it. */
const char *fy_vmconfig_extra_canonical(const char *key)
{
	size_t i;

	for (i = 0; fy_vmconfig_extra_keys[i]; i++)
		if (!strcasecmp(key, fy_vmconfig_extra_keys[i]))
			return fy_vmconfig_extra_keys[i];
	return NULL;
}

bool fy_vmconfig_extra_allowed(const char *key)
{
	return fy_vmconfig_extra_canonical(key) != NULL;
}

/* The documented values of a field (docs/FORMAT.md). */
static bool one_of(const char *v, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(v, *list))
			return true;
	return false;
}

static const char *const controller_types[] = {
	"lsilogic", "lsilogic-sas", "pvscsi", "buslogic", "ide", "sata",
	"nvme", "other", NULL,
};
static const char *const scsi_types[] = {
	"lsilogic", "lsilogic-sas", "pvscsi", "buslogic", NULL,
};
static const char *const sharings[] = {
	"noSharing", "virtualSharing", "physicalSharing", "other", NULL,
};
static const char *const provisionings[] = {
	"thin", "thick-lazy", "thick-eager", "rdm-virtual", "rdm-physical",
	"other", NULL,
};
static const char *const nic_adapters[] = {
	"vmxnet3", "vmxnet3-vrdma", "vmxnet2", "vmxnet", "e1000", "e1000e",
	"pcnet32", "sriov", "other", NULL,
};
static const char *const mac_types[] = {
	"assigned", "generated", "manual", "other", NULL,
};

void fy_vmconfig_free(struct fy_vmconfig *c)
{
	free(c);
}

struct fy_vmconfig *fy_vmconfig_new(void)
{
	struct fy_vmconfig *c = calloc(1, sizeof(*c));

	if (!c) {
		fy_err_set(-ENOMEM, "VM configuration: out of memory");
		return NULL;
	}
	c->version = FY_VMCONFIG_VERSION;
	return c;
}

/* ---- checks ------------------------------------------------------------ */

static bool word_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

/* Names of types, modes and the like: short, no spaces, nothing to escape. */
static bool is_word(const char *s, bool may_be_empty)
{
	if (!*s)
		return may_be_empty;
	for (; *s; s++)
		if (!word_char(*s))
			return false;
	return true;
}

/* Free text (VM and network names, extraConfig values): UTF-8 without
 * control characters (C0, DEL and C1, which a terminal would act on), so
 * that it prints and goes into JSON as it is. */
static bool is_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		uint32_t cp;
		int n, k;

		if (*p < 0x80) {
			if (*p < 0x20 || *p == 0x7f)
				return false;
			p++;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf) {
			n = 1;
			cp = *p & 0x1f;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			n = 2;
			cp = *p & 0x0f;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			n = 3;
			cp = *p & 0x07;
		} else {
			return false;
		}
		for (k = 1; k <= n; k++) {
			if ((p[k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[k] & 0x3f);
		}
		/* Overlong forms, surrogates, past U+10FFFF, C1 controls. */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
		    (cp >= 0x80 && cp <= 0x9f))
			return false;
		p += n + 1;
	}
	return true;
}

bool fy_vmconfig_text_ok(const char *s)
{
	return is_text(s);
}

/* extraConfig keys add ':' ("scsi0:0.ctkEnabled"). */
static bool is_extra_key(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!word_char(*s) && *s != ':')
			return false;
	return true;
}

static bool is_mac(const char *s)
{
	size_t i;

	if (!*s)
		return true;
	if (strlen(s) != 17)
		return false;
	for (i = 0; i < 17; i++) {
		char ch = s[i];

		if (i % 3 == 2 ? ch != ':'
			       : !((ch >= '0' && ch <= '9') ||
				   (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return true;
}

static bool fits(const char *s, size_t size)
{
	return strnlen(s, size) < size;
}

#define BAD(...) fy_err_set(-EBADMSG, "VM configuration: " __VA_ARGS__)

/* Every device key once, over controllers, disks, NICs and CD-ROMs. */
static int check_keys(const struct fy_vmconfig *c)
{
	int32_t keys[FY_VMCONFIG_CONTROLLERS_MAX + FY_VMCONFIG_DISKS_MAX +
		     FY_VMCONFIG_NICS_MAX + FY_VMCONFIG_CDROMS_MAX];
	size_t n = 0, i, j;

	for (i = 0; i < c->n_controllers; i++)
		keys[n++] = c->controllers[i].key;
	for (i = 0; i < c->n_disks; i++)
		keys[n++] = c->disks[i].key;
	for (i = 0; i < c->n_nics; i++)
		keys[n++] = c->nics[i].key;
	for (i = 0; i < c->n_cdroms; i++)
		keys[n++] = c->cdroms[i].key;
	/* At most 592 keys: quadratic is fine and needs no memory. */
	for (i = 0; i < n; i++) {
		/* vSphere's device keys are never negative. */
		if (keys[i] < 0)
			return BAD("device key %d is negative", keys[i]);
		for (j = i + 1; j < n; j++)
			if (keys[i] == keys[j])
				return BAD("device key %d is used twice",
					   keys[i]);
	}
	return 0;
}

static int find_controller(const struct fy_vmconfig *c, int32_t key)
{
	size_t i;

	for (i = 0; i < c->n_controllers; i++)
		if (c->controllers[i].key == key)
			return (int)i;
	return -1;
}

/* A slot (controller, unit) holds one disk or CD-ROM. */
static int check_slots(const struct fy_vmconfig *c)
{
	size_t n = c->n_disks + c->n_cdroms, i, j;

	for (i = 0; i < n; i++) {
		int32_t ki = i < c->n_disks ? c->disks[i].controller_key
			: c->cdroms[i - c->n_disks].controller_key;
		uint32_t ui = i < c->n_disks ? c->disks[i].unit
			: c->cdroms[i - c->n_disks].unit;

		for (j = i + 1; j < n; j++) {
			int32_t kj = j < c->n_disks ? c->disks[j].controller_key
				: c->cdroms[j - c->n_disks].controller_key;
			uint32_t uj = j < c->n_disks ? c->disks[j].unit
				: c->cdroms[j - c->n_disks].unit;

			if (ki == kj && ui == uj)
				return BAD("two devices on unit %u of "
					   "controller %d", ui, ki);
		}
	}
	return 0;
}

static int check_disks(const struct fy_vmconfig *c)
{
	size_t i, j;

	for (i = 0; i < c->n_disks; i++) {
		const struct fy_vmconfig_disk *d = &c->disks[i];

		if (find_controller(c, d->controller_key) < 0)
			return BAD("disk %d is on controller %d, which is not "
				   "listed", d->key, d->controller_key);
		if (d->unit > FY_VMCONFIG_UNIT_MAX)
			return BAD("disk %d on unit %u, the last is %u",
				   d->key, d->unit, FY_VMCONFIG_UNIT_MAX);
		if (d->capacity > FY_DISK_SIZE_MAX)
			return BAD("disk %d capacity %" PRIu64 " exceeds "
				   "%llu", d->key, d->capacity,
				   FY_DISK_SIZE_MAX);
		if (!fits(d->provisioning, sizeof(d->provisioning)) ||
		    !is_word(d->provisioning, false) ||
		    !fits(d->mode, sizeof(d->mode)) ||
		    !is_word(d->mode, false))
			return BAD("disk %d: provisioning and mode must be "
				   "1 to %d characters of [A-Za-z0-9._-]",
				   d->key, FY_VMCONFIG_WORD_MAX - 1);
		if (!one_of(d->provisioning, provisionings))
			return BAD("disk %d: provisioning %s is not one of "
				   "docs/FORMAT.md's", d->key, d->provisioning);
		if (!d->in_backup) {
			if (d->backup_disk)
				return BAD("disk %d is not in the backup but "
					   "names backup disk %u", d->key,
					   d->backup_disk);
			continue;
		}
		if (d->backup_disk >= FY_DISKS_MAX)
			return BAD("disk %d: backup disk %u, at most %u",
				   d->key, d->backup_disk, FY_DISKS_MAX - 1);
		for (j = 0; j < i; j++)
			if (c->disks[j].in_backup &&
			    c->disks[j].backup_disk == d->backup_disk)
				return BAD("disks %d and %d are both backup "
					   "disk %u", c->disks[j].key, d->key,
					   d->backup_disk);
	}
	return 0;
}

static int check_others(const struct fy_vmconfig *c)
{
	size_t i, j;

	for (i = 0; i < c->n_controllers; i++) {
		const struct fy_vmconfig_controller *k = &c->controllers[i];

		if (!fits(k->type, sizeof(k->type)) || !is_word(k->type, false) ||
		    !fits(k->sharing, sizeof(k->sharing)) ||
		    !is_word(k->sharing, true))
			return BAD("controller %d: type (1 to %d characters) "
				   "and sharing (0 to %d) must be of "
				   "[A-Za-z0-9._-]", k->key,
				   FY_VMCONFIG_WORD_MAX - 1,
				   FY_VMCONFIG_WORD_MAX - 1);
		if (k->bus > FY_VMCONFIG_BUS_MAX)
			return BAD("controller %d on bus %u, the last is %u",
				   k->key, k->bus, FY_VMCONFIG_BUS_MAX);
		if (!one_of(k->type, controller_types))
			return BAD("controller %d: type %s is not one of "
				   "docs/FORMAT.md's", k->key, k->type);
		/* Only SCSI buses are shared; an unknown type may be SCSI. */
		if (k->sharing[0] ? !one_of(k->sharing, sharings) ||
					    (!one_of(k->type, scsi_types) &&
					     strcmp(k->type, "other"))
				  : one_of(k->type, scsi_types))
			return BAD("controller %d: sharing '%s' does not go "
				   "with type %s", k->key, k->sharing,
				   k->type);
	}
	for (i = 0; i < c->n_nics; i++) {
		const struct fy_vmconfig_nic *n = &c->nics[i];

		if (!fits(n->adapter, sizeof(n->adapter)) ||
		    !is_word(n->adapter, false) ||
		    !fits(n->mac_type, sizeof(n->mac_type)) ||
		    !is_word(n->mac_type, false))
			return BAD("network adapter %d: adapter and MAC type "
				   "must be 1 to %d characters of "
				   "[A-Za-z0-9._-]", n->key,
				   FY_VMCONFIG_WORD_MAX - 1);
		if (!one_of(n->adapter, nic_adapters) ||
		    !one_of(n->mac_type, mac_types))
			return BAD("network adapter %d: adapter %s or MAC type "
				   "%s is not one of docs/FORMAT.md's", n->key,
				   n->adapter, n->mac_type);
		if (!fits(n->network, sizeof(n->network)) ||
		    !is_text(n->network))
			return BAD("network adapter %d: network name longer "
				   "than %d bytes or with control characters",
				   n->key, FY_VMCONFIG_NAME_MAX - 1);
		if (!fits(n->mac, sizeof(n->mac)) || !is_mac(n->mac))
			return BAD("network adapter %d: MAC address is not "
				   "xx:xx:xx:xx:xx:xx in lower-case hex",
				   n->key);
	}
	for (i = 0; i < c->n_cdroms; i++) {
		const struct fy_vmconfig_cdrom *d = &c->cdroms[i];

		if (find_controller(c, d->controller_key) < 0)
			return BAD("CD-ROM %d is on controller %d, which is "
				   "not listed", d->key, d->controller_key);
		if (d->unit > FY_VMCONFIG_UNIT_MAX)
			return BAD("CD-ROM %d on unit %u, the last is %u",
				   d->key, d->unit, FY_VMCONFIG_UNIT_MAX);
	}
	for (i = 0; i < c->n_extra; i++) {
		const struct fy_vmconfig_option *o = &c->extra[i];

		if (!fits(o->key, sizeof(o->key)) || !is_extra_key(o->key))
			return BAD("extraConfig key %zu is not 1 to %d "
				   "characters of [A-Za-z0-9._:-]", i,
				   FY_VMCONFIG_KEY_MAX - 1);
		/* Only the allow-list is kept (guestinfo.* may hold secrets),
		 * in its spelling: what a restore applies is known. */
		if (!one_of(o->key, fy_vmconfig_extra_keys))
			return BAD("extraConfig %s is not on the allow-list "
				   "(docs/RESTORE.md)", o->key);
		if (!fits(o->value, sizeof(o->value)) || !is_text(o->value))
			return BAD("extraConfig %s: value longer than %d "
				   "bytes or not UTF-8 without control "
				   "characters", o->key,
				   FY_VMCONFIG_VALUE_MAX - 1);
		for (j = 0; j < i; j++)
			if (!strcmp(c->extra[j].key, o->key))
				return BAD("extraConfig %s is listed twice",
					   o->key);
	}
	return 0;
}

int fy_vmconfig_check(const struct fy_vmconfig *c)
{
	int rc;

	if (c->version != FY_VMCONFIG_VERSION)
		return BAD("version %u, this build writes %u", c->version,
			   FY_VMCONFIG_VERSION);
	if (c->n_controllers > FY_VMCONFIG_CONTROLLERS_MAX ||
	    c->n_disks > FY_VMCONFIG_DISKS_MAX ||
	    c->n_nics > FY_VMCONFIG_NICS_MAX ||
	    c->n_cdroms > FY_VMCONFIG_CDROMS_MAX ||
	    c->n_extra > FY_VMCONFIG_EXTRA_MAX)
		return BAD("%zu controllers, %zu disks, %zu NICs, %zu CD-ROMs, "
			   "%zu extraConfig keys: at most %u, %u, %u, %u, %u",
			   c->n_controllers, c->n_disks, c->n_nics,
			   c->n_cdroms, c->n_extra,
			   FY_VMCONFIG_CONTROLLERS_MAX, FY_VMCONFIG_DISKS_MAX,
			   FY_VMCONFIG_NICS_MAX, FY_VMCONFIG_CDROMS_MAX,
			   FY_VMCONFIG_EXTRA_MAX);
	if (!fits(c->name, sizeof(c->name)) || !c->name[0] ||
	    !is_text(c->name))
		return BAD("the VM's name must be 1 to %d bytes without "
			   "control characters", FY_VMCONFIG_NAME_MAX - 1);
	if (!fits(c->guest_id, sizeof(c->guest_id)) ||
	    !is_word(c->guest_id, true) ||
	    !fits(c->hardware_version, sizeof(c->hardware_version)) ||
	    !is_word(c->hardware_version, true))
		return BAD("guest OS id and hardware version must be 0 to %d "
			   "characters of [A-Za-z0-9._-]",
			   FY_VMCONFIG_WORD_MAX - 1);
	if (!fits(c->firmware, sizeof(c->firmware)) ||
	    (strcmp(c->firmware, "bios") && strcmp(c->firmware, "efi")))
		return BAD("firmware is neither bios nor efi");
	if (c->secure_boot && strcmp(c->firmware, "efi"))
		return BAD("secure boot needs efi firmware");
	if (c->cpus < 1 || c->cpus > FY_VMCONFIG_CPUS_MAX)
		return BAD("%u CPUs is outside 1..%u", c->cpus,
			   FY_VMCONFIG_CPUS_MAX);
	if (c->cores_per_socket &&
	    (c->cores_per_socket > c->cpus || c->cpus % c->cores_per_socket))
		return BAD("%u cores per socket do not divide %u CPUs",
			   c->cores_per_socket, c->cpus);
	if (c->memory_mb < 1 || c->memory_mb > FY_VMCONFIG_MEMORY_MB_MAX)
		return BAD("memory of %" PRIu64 " MB is outside 1..%llu",
			   c->memory_mb, FY_VMCONFIG_MEMORY_MB_MAX);
	if ((rc = check_keys(c)) < 0 || (rc = check_disks(c)) < 0 ||
	    (rc = check_slots(c)) < 0 || (rc = check_others(c)) < 0)
		return rc;
	return 0;
}

int fy_vmconfig_check_backup(const struct fy_vmconfig *c, uint32_t disk_count)
{
	size_t i;

	if (c->newer)
		return 0;
	for (i = 0; i < c->n_disks; i++)
		if (c->disks[i].in_backup &&
		    c->disks[i].backup_disk >= disk_count)
			return BAD("disk %d is backup disk %u, but the backup "
				   "has %u disks", c->disks[i].key,
				   c->disks[i].backup_disk, disk_count);
	return 0;
}

/* ---- decoding ---------------------------------------------------------- */

/*
 * Counts the repeated fields on the wire before protobuf-c unpacks them:
 * the unpacker allocates every entry first, whatever the bounds say.
 * Also refuses what is not protobuf framing at all.
 */
static int count_fields(const uint8_t *p, size_t len)
{
	static const struct {
		unsigned field;
		size_t max;
		const char *what;
	} bounds[] = {
		{ 10, FY_VMCONFIG_CONTROLLERS_MAX, "controllers" },
		{ 11, FY_VMCONFIG_DISKS_MAX, "disks" },
		{ 12, FY_VMCONFIG_NICS_MAX, "network adapters" },
		{ 13, FY_VMCONFIG_CDROMS_MAX, "CD-ROMs" },
		{ 14, FY_VMCONFIG_EXTRA_MAX, "extraConfig keys" },
	};
	size_t counts[sizeof(bounds) / sizeof(bounds[0])] = { 0 };
	size_t i = 0, b;

	while (i < len) {
		size_t at = i;
		uint64_t key;

		if (fy_pb_next_field(p, len, &i, &key))
			goto bad;
		for (b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++)
			if ((key >> 3) == bounds[b].field &&
			    ++counts[b] > bounds[b].max)
				return BAD("more than %zu %s", bounds[b].max,
					   bounds[b].what);
		continue;
bad:
		return BAD("not a VmConfig message (malformed field at byte "
			   "%zu)", at);
	}
	return 0;
}

static int copy(const char *what, char *dst, size_t size, const char *src)
{
	size_t n;

	if (!src)
		src = "";
	n = strlen(src);
	if (n >= size)
		return BAD("%s of %zu bytes is longer than %zu", what, n,
			   size - 1);
	memcpy(dst, src, n + 1);
	return 0;
}

static int int32_key(const char *what, int32_t v)
{
	/* vSphere's device keys are non-negative. */
	if (v < 0)
		return BAD("%s key %d is negative", what, v);
	return 0;
}

static int fill(const Ferry__VmConfig *m, struct fy_vmconfig *c)
{
	size_t i;
	int rc;

	/* count_fields() bounded these already; the arrays are fixed. */
	if (m->n_controllers > FY_VMCONFIG_CONTROLLERS_MAX ||
	    m->n_disks > FY_VMCONFIG_DISKS_MAX ||
	    m->n_nics > FY_VMCONFIG_NICS_MAX ||
	    m->n_cdroms > FY_VMCONFIG_CDROMS_MAX ||
	    m->n_extra_config > FY_VMCONFIG_EXTRA_MAX)
		return BAD("too many devices");
	if ((rc = copy("name", c->name, sizeof(c->name), m->name)) < 0 ||
	    (rc = copy("guest OS id", c->guest_id, sizeof(c->guest_id),
		       m->guest_id)) < 0 ||
	    (rc = copy("hardware version", c->hardware_version,
		       sizeof(c->hardware_version), m->hardware_version)) < 0 ||
	    (rc = copy("firmware", c->firmware, sizeof(c->firmware),
		       m->firmware)) < 0)
		return rc;
	c->secure_boot = m->secure_boot;
	c->cpus = m->cpus;
	c->cores_per_socket = m->cores_per_socket;
	c->memory_mb = m->memory_mb;
	c->n_controllers = m->n_controllers;
	for (i = 0; i < m->n_controllers; i++) {
		const Ferry__VmController *k = m->controllers[i];
		struct fy_vmconfig_controller *o = &c->controllers[i];

		o->key = k->key;
		o->bus = k->bus;
		if ((rc = int32_key("controller", k->key)) < 0 ||
		    (rc = copy("controller type", o->type, sizeof(o->type),
			       k->type)) < 0 ||
		    (rc = copy("controller sharing", o->sharing,
			       sizeof(o->sharing), k->sharing)) < 0)
			return rc;
	}
	c->n_disks = m->n_disks;
	for (i = 0; i < m->n_disks; i++) {
		const Ferry__VmDisk *d = m->disks[i];
		struct fy_vmconfig_disk *o = &c->disks[i];

		o->key = d->key;
		o->controller_key = d->controller_key;
		o->unit = d->unit;
		o->capacity = d->capacity;
		o->in_backup = d->in_backup;
		o->backup_disk = d->backup_disk;
		if ((rc = int32_key("disk", d->key)) < 0 ||
		    (rc = copy("disk provisioning", o->provisioning,
			       sizeof(o->provisioning), d->provisioning)) < 0 ||
		    (rc = copy("disk mode", o->mode, sizeof(o->mode),
			       d->mode)) < 0)
			return rc;
	}
	c->n_nics = m->n_nics;
	for (i = 0; i < m->n_nics; i++) {
		const Ferry__VmNic *n = m->nics[i];
		struct fy_vmconfig_nic *o = &c->nics[i];

		o->key = n->key;
		if ((rc = int32_key("network adapter", n->key)) < 0 ||
		    (rc = copy("adapter type", o->adapter, sizeof(o->adapter),
			       n->adapter)) < 0 ||
		    (rc = copy("network", o->network, sizeof(o->network),
			       n->network)) < 0 ||
		    (rc = copy("MAC type", o->mac_type, sizeof(o->mac_type),
			       n->mac_type)) < 0 ||
		    (rc = copy("MAC address", o->mac, sizeof(o->mac),
			       n->mac)) < 0)
			return rc;
	}
	c->n_cdroms = m->n_cdroms;
	for (i = 0; i < m->n_cdroms; i++) {
		const Ferry__VmCdrom *d = m->cdroms[i];
		struct fy_vmconfig_cdrom *o = &c->cdroms[i];

		o->key = d->key;
		o->controller_key = d->controller_key;
		o->unit = d->unit;
		if ((rc = int32_key("CD-ROM", d->key)) < 0)
			return rc;
	}
	c->n_extra = m->n_extra_config;
	for (i = 0; i < m->n_extra_config; i++) {
		const Ferry__VmOption *e = m->extra_config[i];
		struct fy_vmconfig_option *o = &c->extra[i];

		if ((rc = copy("extraConfig key", o->key, sizeof(o->key),
			       e->key)) < 0 ||
		    (rc = copy("extraConfig value", o->value, sizeof(o->value),
			       e->value)) < 0)
			return rc;
	}
	return 0;
}

int fy_vmconfig_decode(const void *data, size_t len, struct fy_vmconfig **out)
{
	Ferry__VmConfig *m = NULL;
	struct fy_vmconfig *c = NULL;
	int rc;

	*out = NULL;
	if (len < 1 || len > FY_VMCONFIG_MAX)
		return BAD("record of %zu bytes is outside 1..%u", len,
			   FY_VMCONFIG_MAX);
	rc = count_fields(data, len);
	if (rc < 0)
		return rc;
	m = ferry__vm_config__unpack(NULL, len, data);
	if (!m)
		return BAD("not a valid VmConfig message");
	c = fy_vmconfig_new();
	if (!c) {
		rc = -ENOMEM;
		goto out;
	}
	c->version = m->version;
	if (m->version == 0) {
		rc = BAD("the record has no version");
		goto out;
	}
	/* A later version may change what fields mean: kept as bytes by
	 * whoever stores it, shown as "newer", never interpreted here. */
	if (m->version > FY_VMCONFIG_VERSION) {
		c->newer = true;
		*out = c;
		c = NULL;
		rc = 0;
		goto out;
	}
	rc = fill(m, c);
	if (rc == 0)
		rc = fy_vmconfig_check(c);
	if (rc == 0) {
		*out = c;
		c = NULL;
	}
out:
	fy_vmconfig_free(c);
	ferry__vm_config__free_unpacked(m, NULL);
	return rc;
}

/* ---- encoding ---------------------------------------------------------- */

int fy_vmconfig_encode(const struct fy_vmconfig *c, uint8_t **out,
		       size_t *outlen)
{
	Ferry__VmConfig m = FERRY__VM_CONFIG__INIT;
	Ferry__VmController ks[FY_VMCONFIG_CONTROLLERS_MAX],
	    *kp[FY_VMCONFIG_CONTROLLERS_MAX];
	Ferry__VmNic ns[FY_VMCONFIG_NICS_MAX], *np[FY_VMCONFIG_NICS_MAX];
	Ferry__VmCdrom cs[FY_VMCONFIG_CDROMS_MAX], *cp[FY_VMCONFIG_CDROMS_MAX];
	Ferry__VmOption es[FY_VMCONFIG_EXTRA_MAX], *ep[FY_VMCONFIG_EXTRA_MAX];
	Ferry__VmDisk *ds = NULL, **dp = NULL;
	uint8_t *buf = NULL;
	size_t i, len;
	int rc;

	*out = NULL;
	*outlen = 0;
	rc = fy_vmconfig_check(c);
	if (rc < 0)
		return fy_err_wrap(-EINVAL, "encoding");
	ds = calloc(c->n_disks ? c->n_disks : 1, sizeof(*ds));
	dp = calloc(c->n_disks ? c->n_disks : 1, sizeof(*dp));
	if (!ds || !dp) {
		rc = fy_err_set(-ENOMEM, "VM configuration: out of memory");
		goto out;
	}
	/* protobuf-c wants char *; packing only reads the strings. */
	m.version = c->version;
	m.name = (char *)c->name;
	m.guest_id = (char *)c->guest_id;
	m.hardware_version = (char *)c->hardware_version;
	m.firmware = (char *)c->firmware;
	m.secure_boot = c->secure_boot;
	m.cpus = c->cpus;
	m.cores_per_socket = c->cores_per_socket;
	m.memory_mb = c->memory_mb;
	for (i = 0; i < c->n_controllers; i++) {
		ferry__vm_controller__init(&ks[i]);
		ks[i].key = c->controllers[i].key;
		ks[i].type = (char *)c->controllers[i].type;
		ks[i].bus = c->controllers[i].bus;
		ks[i].sharing = (char *)c->controllers[i].sharing;
		kp[i] = &ks[i];
	}
	m.n_controllers = c->n_controllers;
	m.controllers = kp;
	for (i = 0; i < c->n_disks; i++) {
		const struct fy_vmconfig_disk *d = &c->disks[i];

		ferry__vm_disk__init(&ds[i]);
		ds[i].key = d->key;
		ds[i].controller_key = d->controller_key;
		ds[i].unit = d->unit;
		ds[i].capacity = d->capacity;
		ds[i].provisioning = (char *)d->provisioning;
		ds[i].mode = (char *)d->mode;
		ds[i].in_backup = d->in_backup;
		ds[i].backup_disk = d->backup_disk;
		dp[i] = &ds[i];
	}
	m.n_disks = c->n_disks;
	m.disks = dp;
	for (i = 0; i < c->n_nics; i++) {
		ferry__vm_nic__init(&ns[i]);
		ns[i].key = c->nics[i].key;
		ns[i].adapter = (char *)c->nics[i].adapter;
		ns[i].network = (char *)c->nics[i].network;
		ns[i].mac_type = (char *)c->nics[i].mac_type;
		ns[i].mac = (char *)c->nics[i].mac;
		np[i] = &ns[i];
	}
	m.n_nics = c->n_nics;
	m.nics = np;
	for (i = 0; i < c->n_cdroms; i++) {
		ferry__vm_cdrom__init(&cs[i]);
		cs[i].key = c->cdroms[i].key;
		cs[i].controller_key = c->cdroms[i].controller_key;
		cs[i].unit = c->cdroms[i].unit;
		cp[i] = &cs[i];
	}
	m.n_cdroms = c->n_cdroms;
	m.cdroms = cp;
	for (i = 0; i < c->n_extra; i++) {
		ferry__vm_option__init(&es[i]);
		es[i].key = (char *)c->extra[i].key;
		es[i].value = (char *)c->extra[i].value;
		ep[i] = &es[i];
	}
	m.n_extra_config = c->n_extra;
	m.extra_config = ep;

	len = ferry__vm_config__get_packed_size(&m);
	if (len > FY_VMCONFIG_MAX) {
		rc = fy_err_set(-EINVAL, "VM configuration: the record packs "
				"to %zu bytes, more than %u", len,
				FY_VMCONFIG_MAX);
		goto out;
	}
	buf = malloc(len);
	if (!buf) {
		rc = fy_err_set(-ENOMEM, "VM configuration: out of memory");
		goto out;
	}
	ferry__vm_config__pack(&m, buf);
	*out = buf;
	*outlen = len;
	rc = 0;
out:
	free(dp);
	free(ds);
	return rc;
}

/* ---- printing ---------------------------------------------------------- */

static void print_text(const struct fy_vmconfig *c, FILE *f)
{
	size_t i;

	fprintf(f, "VM configuration (record version %u)\n", c->version);
	if (c->newer) {
		fprintf(f, "  recorded by a newer Ferry; this build reads "
			"version %u and shows nothing of it\n",
			FY_VMCONFIG_VERSION);
		return;
	}
	fprintf(f, "  name              %s\n", c->name);
	fprintf(f, "  guest OS          %s\n", c->guest_id[0] ? c->guest_id : "-");
	fprintf(f, "  hardware version  %s\n",
		c->hardware_version[0] ? c->hardware_version : "-");
	fprintf(f, "  firmware          %s%s\n", c->firmware,
		c->secure_boot ? ", secure boot" : "");
	if (c->cores_per_socket)
		fprintf(f, "  CPUs              %u (%u per socket)\n", c->cpus,
			c->cores_per_socket);
	else
		fprintf(f, "  CPUs              %u\n", c->cpus);
	fprintf(f, "  memory            %" PRIu64 " MB\n", c->memory_mb);
	fprintf(f, "  controllers       %zu\n", c->n_controllers);
	for (i = 0; i < c->n_controllers; i++)
		fprintf(f, "    %-5d %-13s bus %u%s%s\n", c->controllers[i].key,
			c->controllers[i].type, c->controllers[i].bus,
			c->controllers[i].sharing[0] ? "  " : "",
			c->controllers[i].sharing);
	fprintf(f, "  disks             %zu\n", c->n_disks);
	for (i = 0; i < c->n_disks; i++) {
		const struct fy_vmconfig_disk *d = &c->disks[i];
		char size[32], where[32];

		fy_format_bytes(d->capacity, size, sizeof(size));
		if (d->in_backup)
			snprintf(where, sizeof(where), "backup disk %u",
				 d->backup_disk);
		else
			snprintf(where, sizeof(where), "not in this backup");
		fprintf(f, "    %-5d on %d:%-2u %10s  %-11s %-24s %s\n", d->key,
			d->controller_key, d->unit, size, d->provisioning,
			d->mode, where);
	}
	fprintf(f, "  network adapters  %zu\n", c->n_nics);
	for (i = 0; i < c->n_nics; i++)
		fprintf(f, "    %-5d %-9s %-20s MAC %s%s%s\n", c->nics[i].key,
			c->nics[i].adapter,
			c->nics[i].network[0] ? c->nics[i].network : "-",
			c->nics[i].mac_type, c->nics[i].mac[0] ? " " : "",
			c->nics[i].mac);
	fprintf(f, "  CD-ROMs           %zu (recorded empty)\n", c->n_cdroms);
	for (i = 0; i < c->n_cdroms; i++)
		fprintf(f, "    %-5d on %d:%u\n", c->cdroms[i].key,
			c->cdroms[i].controller_key, c->cdroms[i].unit);
	fprintf(f, "  extraConfig       %zu\n", c->n_extra);
	for (i = 0; i < c->n_extra; i++)
		fprintf(f, "    %s = %s\n", c->extra[i].key, c->extra[i].value);
}

static void print_json(const struct fy_vmconfig *c, FILE *f)
{
	size_t i;

	fprintf(f, "{\"version\":%u,\"newer\":%s", c->version,
		c->newer ? "true" : "false");
	if (c->newer) {
		fputc('}', f);
		return;
	}
	fprintf(f, ",\"name\":");
	fy_json_string(f, c->name);
	fprintf(f, ",\"guest_id\":");
	fy_json_string(f, c->guest_id);
	fprintf(f, ",\"hardware_version\":");
	fy_json_string(f, c->hardware_version);
	fprintf(f, ",\"firmware\":");
	fy_json_string(f, c->firmware);
	fprintf(f, ",\"secure_boot\":%s,\"cpus\":%u,\"cores_per_socket\":%u,"
		"\"memory_mb\":%" PRIu64 ",\"controllers\":[",
		c->secure_boot ? "true" : "false", c->cpus,
		c->cores_per_socket, c->memory_mb);
	for (i = 0; i < c->n_controllers; i++) {
		fprintf(f, "%s{\"key\":%d,\"type\":", i ? "," : "",
			c->controllers[i].key);
		fy_json_string(f, c->controllers[i].type);
		fprintf(f, ",\"bus\":%u,\"sharing\":", c->controllers[i].bus);
		fy_json_string(f, c->controllers[i].sharing);
		fputc('}', f);
	}
	fprintf(f, "],\"disks\":[");
	for (i = 0; i < c->n_disks; i++) {
		const struct fy_vmconfig_disk *d = &c->disks[i];

		fprintf(f, "%s{\"key\":%d,\"controller_key\":%d,\"unit\":%u,"
			"\"capacity\":%" PRIu64 ",\"provisioning\":",
			i ? "," : "", d->key, d->controller_key, d->unit,
			d->capacity);
		fy_json_string(f, d->provisioning);
		fprintf(f, ",\"mode\":");
		fy_json_string(f, d->mode);
		if (d->in_backup)
			fprintf(f, ",\"backup_disk\":%u}", d->backup_disk);
		else
			fprintf(f, ",\"backup_disk\":null}");
	}
	fprintf(f, "],\"nics\":[");
	for (i = 0; i < c->n_nics; i++) {
		fprintf(f, "%s{\"key\":%d,\"adapter\":", i ? "," : "",
			c->nics[i].key);
		fy_json_string(f, c->nics[i].adapter);
		fprintf(f, ",\"network\":");
		fy_json_string(f, c->nics[i].network);
		fprintf(f, ",\"mac_type\":");
		fy_json_string(f, c->nics[i].mac_type);
		fprintf(f, ",\"mac\":");
		fy_json_string(f, c->nics[i].mac);
		fputc('}', f);
	}
	fprintf(f, "],\"cdroms\":[");
	for (i = 0; i < c->n_cdroms; i++)
		fprintf(f, "%s{\"key\":%d,\"controller_key\":%d,\"unit\":%u}",
			i ? "," : "", c->cdroms[i].key,
			c->cdroms[i].controller_key, c->cdroms[i].unit);
	fprintf(f, "],\"extra_config\":{");
	for (i = 0; i < c->n_extra; i++) {
		fprintf(f, "%s", i ? "," : "");
		fy_json_string(f, c->extra[i].key);
		fputc(':', f);
		fy_json_string(f, c->extra[i].value);
	}
	fprintf(f, "}}");
}

void fy_vmconfig_print(const struct fy_vmconfig *c, FILE *f, bool json)
{
	if (json)
		print_json(c, f);
	else
		print_text(c, f);
}
