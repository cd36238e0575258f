/*
 * The VM configuration record of a backup, built from the configuration
 * the job's snapshot froze: vSphere's type names become the record's
 * words (docs/FORMAT.md), extraConfig is cut down to the allow-list
 * (docs/RESTORE.md), and each disk is linked to the backup disk that
 * holds it. Network-free: the job reads the snapshot, this file only
 * translates, and fy_vmconfig_encode checks the result once more.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "agent/job.h"

struct name_map {
	const char *vsphere, *word;
};

static const struct name_map controller_types[] = {
	{ "VirtualLsiLogicController", "lsilogic" },
	{ "VirtualLsiLogicSASController", "lsilogic-sas" },
	{ "ParaVirtualSCSIController", "pvscsi" },
	{ "VirtualBusLogicController", "buslogic" },
	{ "VirtualIDEController", "ide" },
	{ "VirtualAHCIController", "sata" },
	{ "VirtualSATAController", "sata" },
	{ "VirtualNVMEController", "nvme" },
	{ NULL, NULL },
};

static const struct name_map nic_types[] = {
	{ "VirtualVmxnet3", "vmxnet3" },
	{ "VirtualVmxnet3Vrdma", "vmxnet3-vrdma" },
	{ "VirtualVmxnet2", "vmxnet2" },
	{ "VirtualVmxnet", "vmxnet" },
	{ "VirtualE1000", "e1000" },
	{ "VirtualE1000e", "e1000e" },
	{ "VirtualPCNet32", "pcnet32" },
	{ "VirtualSriovEthernetCard", "sriov" },
	{ NULL, NULL },
};

/* A type this build does not know is recorded as "other": the record
 * says a device was there even when it cannot say which kind. */
static const char *map_name(const struct name_map *m, const char *vsphere)
{
	for (; m->vsphere; m++)
		if (!strcmp(m->vsphere, vsphere))
			return m->word;
	return "other";
}

static bool word_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n >= FY_VMCONFIG_WORD_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' &&
		    s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/* A word as the server spelled it, or "other" when it is not one. */
static void copy_word(char *dst, const char *src)
{
	snprintf(dst, FY_VMCONFIG_WORD_MAX, "%s",
		 *src && word_ok(src) ? src : "other");
}

static int check_key(const char *what, int32_t key)
{
	if (key < 0)
		return fy_err_set(-EBADMSG, "%s has key %d", what, key);
	return 0;
}

static int check_unit(const char *what, int32_t key, int32_t unit)
{
	if (unit < 0 || unit > FY_VMCONFIG_UNIT_MAX)
		return fy_err_set(-EBADMSG, "%s %d is on unit %d", what, key,
				  unit);
	return 0;
}

/* Only flat backings say thin or thick; sparse ones (SEsparse, the
 * hosted formats) grow as written, which is thin. */
static const char *provisioning(const struct fy_vs_disk *d)
{
	const struct fy_vs_backing *b = d->chain_len ? &d->chain[0] : NULL;

	if (!b)
		return "other";
	if (d->rdm)
		return !strcmp(b->compatibility_mode, "physicalMode")
			   ? "rdm-physical"
			   : "rdm-virtual";
	if (strstr(b->type, "Sparse"))
		return "thin";
	if (!strstr(b->type, "Flat"))
		return "other";
	if (b->thin)
		return "thin";
	return b->eagerly_scrub ? "thick-eager" : "thick-lazy";
}

static int add_controllers(const struct fy_vs_devices *dv,
			   struct fy_vmconfig *c)
{
	size_t i;
	int rc;

	if (dv->n_controllers > FY_VMCONFIG_CONTROLLERS_MAX)
		return fy_err_set(-E2BIG, "%zu disk controllers, a record "
				  "holds %u", dv->n_controllers,
				  FY_VMCONFIG_CONTROLLERS_MAX);
	for (i = 0; i < dv->n_controllers; i++) {
		const struct fy_vs_controller *k = &dv->controllers[i];
		struct fy_vmconfig_controller *o = &c->controllers[i];

		if ((rc = check_key("a controller", k->key)) < 0)
			return rc;
		if (k->bus < 0 || k->bus > FY_VMCONFIG_BUS_MAX)
			return fy_err_set(-EBADMSG, "controller %d is on bus "
					  "%d", k->key, k->bus);
		o->key = k->key;
		o->bus = (uint32_t)k->bus;
		snprintf(o->type, sizeof(o->type), "%s",
			 map_name(controller_types, k->type));
		/* Only SCSI buses are shared; vSphere says nothing of the
		 * others. */
		if (k->kind == FY_VS_CTRL_SCSI)
			copy_word(o->sharing, k->sharing);
	}
	c->n_controllers = dv->n_controllers;
	return 0;
}

static int add_disks(const struct fy_vs_devices *dv, const int32_t *backup_keys,
		     unsigned n_backup, struct fy_vmconfig *c)
{
	size_t i;
	unsigned b;
	int rc;

	if (dv->n_disks > FY_VMCONFIG_DISKS_MAX)
		return fy_err_set(-E2BIG, "%zu disks, a record holds %u",
				  dv->n_disks, FY_VMCONFIG_DISKS_MAX);
	for (i = 0; i < dv->n_disks; i++) {
		const struct fy_vs_disk *d = &dv->disks[i];
		struct fy_vmconfig_disk *o = &c->disks[i];

		if ((rc = check_key("a disk", d->key)) < 0 ||
		    (rc = check_unit("disk", d->key, d->unit)) < 0)
			return rc;
		o->key = d->key;
		o->controller_key = d->controller_key;
		o->unit = (uint32_t)d->unit;
		o->capacity = d->capacity;
		snprintf(o->provisioning, sizeof(o->provisioning), "%s",
			 provisioning(d));
		copy_word(o->mode, d->disk_mode);
		for (b = 0; b < n_backup; b++)
			if (backup_keys[b] == d->key)
				break;
		if (b < n_backup) {
			o->in_backup = true;
			o->backup_disk = b;
		}
	}
	c->n_disks = dv->n_disks;
	return 0;
}

/* MACs as "00:50:56:aa:bb:01"; anything else is left out. */
static void copy_mac(char dst[18], const char *src)
{
	size_t i;

	dst[0] = '\0';
	if (strlen(src) != 17)
		return;
	for (i = 0; i < 17; i++) {
		if (i % 3 == 2 ? src[i] != ':'
			       : !isxdigit((unsigned char)src[i])) {
			dst[0] = '\0';
			return;
		}
		dst[i] = (char)tolower((unsigned char)src[i]);
	}
	dst[17] = '\0';
}

static int add_nics(const struct fy_vs_devices *dv, struct fy_vmconfig *c)
{
	size_t i, j;
	int rc;

	if (dv->n_nics > FY_VMCONFIG_NICS_MAX)
		return fy_err_set(-E2BIG, "%zu network adapters, a record "
				  "holds %u", dv->n_nics, FY_VMCONFIG_NICS_MAX);
	for (i = 0; i < dv->n_nics; i++) {
		const struct fy_vs_nic *n = &dv->nics[i];
		struct fy_vmconfig_nic *o = &c->nics[i];

		if ((rc = check_key("a network adapter", n->key)) < 0)
			return rc;
		if (strlen(n->network) >= sizeof(o->network))
			return fy_err_set(-EBADMSG, "network adapter %d: "
					  "network name of %zu bytes",
					  n->key, strlen(n->network));
		o->key = n->key;
		snprintf(o->adapter, sizeof(o->adapter), "%s",
			 map_name(nic_types, n->type));
		snprintf(o->network, sizeof(o->network), "%s", n->network);
		/* vSphere writes Manual, Generated, Assigned. */
		copy_word(o->mac_type, n->address_type);
		for (j = 0; o->mac_type[j]; j++)
			o->mac_type[j] = (char)tolower(
				(unsigned char)o->mac_type[j]);
		copy_mac(o->mac, n->mac);
	}
	c->n_nics = dv->n_nics;
	return 0;
}

static int add_cdroms(const struct fy_vs_devices *dv, struct fy_vmconfig *c)
{
	size_t i;
	int rc;

	if (dv->n_cdroms > FY_VMCONFIG_CDROMS_MAX)
		return fy_err_set(-E2BIG, "%zu CD-ROMs, a record holds %u",
				  dv->n_cdroms, FY_VMCONFIG_CDROMS_MAX);
	for (i = 0; i < dv->n_cdroms; i++) {
		const struct fy_vs_cdrom *d = &dv->cdroms[i];

		if ((rc = check_key("a CD-ROM", d->key)) < 0 ||
		    (rc = check_unit("CD-ROM", d->key, d->unit)) < 0)
			return rc;
		c->cdroms[i].key = d->key;
		c->cdroms[i].controller_key = d->controller_key;
		c->cdroms[i].unit = (uint32_t)d->unit;
	}
	c->n_cdroms = dv->n_cdroms;
	return 0;
}

/* Only the allow-listed keys; a value the record cannot hold is left out
 * with a warning rather than failing the backup. */
static void add_extra(const struct fy_vs_vm_config *vc, struct fy_vmconfig *c)
{
	size_t i;

	for (i = 0; i < vc->n_extra; i++) {
		const struct fy_vs_option *e = &vc->extra[i];
		const char *key = fy_vmconfig_extra_canonical(e->key);
		size_t j;

		if (!key)
			continue;
		for (j = 0; j < c->n_extra; j++)
			if (!strcmp(c->extra[j].key, key))
				break;
		if (j < c->n_extra) {
			fy_warn("extraConfig %s is not recorded: %s was "
				"recorded already", e->key, key);
			continue;
		}
		if (!fy_vmconfig_text_ok(e->value) ||
		    strlen(e->value) >= FY_VMCONFIG_VALUE_MAX ||
		    c->n_extra == FY_VMCONFIG_EXTRA_MAX) {
			fy_warn("extraConfig %s is not recorded: its value "
				"is over %d bytes or not UTF-8 without control "
				"characters", e->key, FY_VMCONFIG_VALUE_MAX - 1);
			continue;
		}
		snprintf(c->extra[c->n_extra].key, FY_VMCONFIG_KEY_MAX, "%s",
			 key);
		snprintf(c->extra[c->n_extra].value, FY_VMCONFIG_VALUE_MAX,
			 "%s", e->value);
		c->n_extra++;
	}
}

int fy_vm_record_build(const struct fy_vs_vm_config *vc, const char *vm_name,
		       const int32_t *backup_keys, unsigned n_backup,
		       uint8_t **out, size_t *len)
{
	struct fy_vmconfig *c = fy_vmconfig_new();
	const char *name = vc->name[0] ? vc->name : vm_name;
	int rc;

	*out = NULL;
	*len = 0;
	if (!c)
		return -ENOMEM;
	if (strlen(name) >= sizeof(c->name)) {
		rc = fy_err_set(-EBADMSG, "VM name of %zu bytes",
				strlen(name));
		goto out;
	}
	snprintf(c->name, sizeof(c->name), "%s", name);
	if (*vc->guest_id)
		copy_word(c->guest_id, vc->guest_id);
	if (*vc->version)
		copy_word(c->hardware_version, vc->version);
	/* vSphere's default when a VM does not say is BIOS. */
	snprintf(c->firmware, sizeof(c->firmware), "%s",
		 !strcmp(vc->firmware, "efi") ? "efi" : "bios");
	c->secure_boot = vc->secure_boot && !strcmp(c->firmware, "efi");
	c->cpus = vc->num_cpu > 0 ? (uint32_t)vc->num_cpu : 0;
	c->cores_per_socket =
	    vc->cores_per_socket > 0 ? (uint32_t)vc->cores_per_socket : 0;
	c->memory_mb = vc->memory_mb > 0 ? (uint64_t)vc->memory_mb : 0;
	if ((rc = add_controllers(&vc->devices, c)) < 0 ||
	    (rc = add_disks(&vc->devices, backup_keys, n_backup, c)) < 0 ||
	    (rc = add_nics(&vc->devices, c)) < 0 ||
	    (rc = add_cdroms(&vc->devices, c)) < 0)
		goto out;
	add_extra(vc, c);
	rc = fy_vmconfig_encode(c, out, len);
out:
	fy_vmconfig_free(c);
	return rc;
}
