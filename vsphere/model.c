/*
 * From parsed trees to Ferry's structs: devices, backing chains,
 * snapshot trees, VMs, changed areas, task info. Network-free, so unit
 * tests and the fuzzer run them on saved responses. A type this code does
 * not know is counted, never an error: servers newer than this code add
 * device and backing types.
 */
#include "vsphere/vs_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *fy_vs_controller_kind_name(enum fy_vs_controller_kind k)
{
	switch (k) {
	case FY_VS_CTRL_SCSI: return "scsi";
	case FY_VS_CTRL_IDE: return "ide";
	case FY_VS_CTRL_SATA: return "sata";
	case FY_VS_CTRL_NVME: return "nvme";
	default: return "other";
	}
}

static int oom(void)
{
	return fy_err_set(-ENOMEM, "out of memory reading the server's answer");
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* Which kind of disk controller a device type is; false if none. */
static bool controller_kind(const struct vs_node *dev,
			    enum fy_vs_controller_kind *kind)
{
	const char *t = vs_node_type(dev);

	if (vs_child(dev, "scsiCtlrUnitNumber") || ends_with(t, "SCSIController") ||
	    !strcmp(t, "VirtualLsiLogicController") ||
	    !strcmp(t, "VirtualLsiLogicSASController") ||
	    !strcmp(t, "VirtualBusLogicController"))
		*kind = FY_VS_CTRL_SCSI;
	else if (!strcmp(t, "VirtualIDEController"))
		*kind = FY_VS_CTRL_IDE;
	else if (!strcmp(t, "VirtualAHCIController") ||
		 !strcmp(t, "VirtualSATAController"))
		*kind = FY_VS_CTRL_SATA;
	else if (!strcmp(t, "VirtualNVMEController"))
		*kind = FY_VS_CTRL_NVME;
	else
		return false;
	return true;
}

static const char *child_str(const struct vs_node *n, const char *name)
{
	const char *t = vs_child_text(n, name);

	return t ? t : "";
}

static int parse_backing(const struct vs_node *bn, struct vs_arena *a,
			 struct fy_vs_backing *b)
{
	const struct vs_node *ds = vs_child(bn, "datastore");

	b->type = vs_arena_strdup(a, vs_node_type(bn));
	b->file_name = vs_arena_strdup(a, child_str(bn, "fileName"));
	b->disk_mode = vs_arena_strdup(a, child_str(bn, "diskMode"));
	b->uuid = vs_arena_strdup(a, child_str(bn, "uuid"));
	b->change_id = vs_arena_strdup(a, child_str(bn, "changeId"));
	b->content_id = vs_arena_strdup(a, child_str(bn, "contentId"));
	b->compatibility_mode =
	    vs_arena_strdup(a, child_str(bn, "compatibilityMode"));
	b->thin = vs_child_bool(bn, "thinProvisioned", false);
	b->eagerly_scrub = vs_child_bool(bn, "eagerlyScrub", false);
	if (ds)
		vs_node_moref(ds, &b->datastore);
	if (!b->type || !b->file_name || !b->disk_mode || !b->uuid ||
	    !b->change_id || !b->content_id || !b->compatibility_mode)
		return oom();
	return 0;
}

static int parse_disk(const struct vs_node *dev, struct vs_arena *a,
		      struct fy_vs_disk *d)
{
	const struct vs_node *bn = vs_child(dev, "backing"), *p;
	size_t n = 0;
	int64_t bytes;
	int rc;

	d->key = (int32_t)vs_child_i64(dev, "key", 0);
	d->controller_key = (int32_t)vs_child_i64(dev, "controllerKey", -1);
	d->unit = (int32_t)vs_child_i64(dev, "unitNumber", -1);
	d->controller = -1;
	d->label = vs_arena_strdup(a, child_str(vs_child(dev, "deviceInfo"),
						"label"));
	bytes = vs_child_i64(dev, "capacityInBytes", -1);
	if (bytes < 0) {
		int64_t kb = vs_child_i64(dev, "capacityInKB", 0);

		bytes = kb > 0 && kb < INT64_MAX / 1024 ? kb * 1024 : 0;
	}
	d->capacity = (uint64_t)bytes;
	for (p = bn; p; p = vs_child(p, "parent"))
		n++;
	if (n) {
		size_t i = 0;

		d->chain = vs_arena_array(a, n, sizeof(*d->chain));
		if (!d->chain)
			return oom();
		for (p = bn; p; p = vs_child(p, "parent"), i++)
			if ((rc = parse_backing(p, a, &d->chain[i])) < 0)
				return rc;
		d->chain_len = n;
		d->file_name = d->chain[0].file_name;
		d->datastore = d->chain[0].datastore;
		d->disk_mode = d->chain[0].disk_mode;
		d->uuid = d->chain[0].uuid;
		d->change_id = d->chain[0].change_id;
		d->rdm = strstr(d->chain[0].type, "RawDiskMapping") != NULL;
	} else {
		d->file_name = d->disk_mode = d->uuid = d->change_id =
		    vs_arena_strdup(a, "");
	}
	if (!d->label || !d->file_name)
		return oom();
	d->independent = !strncmp(d->disk_mode, "independent", 11);
	return 0;
}

static int parse_controller(const struct vs_node *dev,
			    enum fy_vs_controller_kind kind, struct vs_arena *a,
			    struct fy_vs_controller *ct)
{
	const struct vs_node *k;
	size_t n = 0, i = 0;

	ct->key = (int32_t)vs_child_i64(dev, "key", 0);
	ct->kind = kind;
	ct->type = vs_arena_strdup(a, vs_node_type(dev));
	ct->bus = (int32_t)vs_child_i64(dev, "busNumber", -1);
	ct->own_unit = (int32_t)vs_child_i64(dev, "scsiCtlrUnitNumber",
					     kind == FY_VS_CTRL_SCSI ? 7 : -1);
	ct->pci_slot = (int32_t)vs_child_i64(vs_child(dev, "slotInfo"),
					     "pciSlotNumber", -1);
	ct->sharing = vs_arena_strdup(a, child_str(dev, "sharedBus"));
	ct->label = vs_arena_strdup(a, child_str(vs_child(dev, "deviceInfo"),
						 "label"));
	if (!ct->type || !ct->sharing || !ct->label)
		return oom();
	for (k = vs_child(dev, "device"); k; k = vs_next_same(k))
		n++;
	if (n) {
		ct->device_keys = vs_arena_array(a, n, sizeof(int32_t));
		if (!ct->device_keys)
			return oom();
		for (k = vs_child(dev, "device"); k; k = vs_next_same(k)) {
			int64_t v;

			if (vs_parse_i64(k->text, &v) == 0)
				ct->device_keys[i++] = (int32_t)v;
		}
	}
	ct->n_devices = i;
	return 0;
}

/* Every VirtualEthernetCard subtype has addressType; its types are
 * listed too for servers that leave it out. */
static bool is_nic(const struct vs_node *dev)
{
	static const char *const types[] = {
		"VirtualE1000", "VirtualE1000e", "VirtualPCNet32",
		"VirtualVmxnet", "VirtualVmxnet2", "VirtualVmxnet3",
		"VirtualVmxnet3Vrdma", "VirtualSriovEthernetCard", NULL,
	};
	const char *t = vs_node_type(dev);
	size_t i;

	if (vs_child(dev, "addressType") || vs_child(dev, "macAddress"))
		return true;
	for (i = 0; types[i]; i++)
		if (!strcmp(t, types[i]))
			return true;
	return false;
}

/* Which network a NIC's backing names: a standard port group by name, a
 * distributed one by key, an opaque network by id. */
static const char *nic_network(const struct vs_node *dev)
{
	const struct vs_node *b = vs_child(dev, "backing");
	const char *t;

	if (!b)
		return "";
	if ((t = vs_child_text(vs_child(b, "port"), "portgroupKey")))
		return t;
	if ((t = vs_child_text(b, "opaqueNetworkId")))
		return t;
	return child_str(b, "deviceName");
}

static int parse_nic(const struct vs_node *dev, struct vs_arena *a,
		     struct fy_vs_nic *n)
{
	n->key = (int32_t)vs_child_i64(dev, "key", 0);
	n->type = vs_arena_strdup(a, vs_node_type(dev));
	n->network = vs_arena_strdup(a, nic_network(dev));
	n->address_type = vs_arena_strdup(a, child_str(dev, "addressType"));
	n->mac = vs_arena_strdup(a, child_str(dev, "macAddress"));
	if (!n->type || !n->network || !n->address_type || !n->mac)
		return oom();
	return 0;
}

int vs_parse_devices(const struct vs_node *array, struct vs_arena *a,
		     struct fy_vs_devices *d)
{
	const struct vs_node *dev;
	enum fy_vs_controller_kind kind;
	size_t n_ctrl = 0, n_disk = 0, n_nic = 0, n_cd = 0, i, j;
	int rc;

	memset(d, 0, sizeof(*d));
	if (!array)
		return 0;
	for (dev = array->first; dev; dev = dev->next) {
		if (!strcmp(vs_node_type(dev), "VirtualDisk"))
			n_disk++;
		else if (controller_kind(dev, &kind))
			n_ctrl++;
		else if (!strcmp(vs_node_type(dev), "VirtualCdrom"))
			n_cd++;
		else if (is_nic(dev))
			n_nic++;
	}
	d->controllers = vs_arena_array(a, n_ctrl ? n_ctrl : 1,
					sizeof(*d->controllers));
	d->disks = vs_arena_array(a, n_disk ? n_disk : 1, sizeof(*d->disks));
	d->nics = vs_arena_array(a, n_nic ? n_nic : 1, sizeof(*d->nics));
	d->cdroms = vs_arena_array(a, n_cd ? n_cd : 1, sizeof(*d->cdroms));
	if (!d->controllers || !d->disks || !d->nics || !d->cdroms)
		return oom();
	for (dev = array->first; dev; dev = dev->next) {
		if (!strcmp(vs_node_type(dev), "VirtualDisk")) {
			rc = parse_disk(dev, a, &d->disks[d->n_disks++]);
		} else if (controller_kind(dev, &kind)) {
			rc = parse_controller(dev, kind, a,
					      &d->controllers[d->n_controllers++]);
		} else if (!strcmp(vs_node_type(dev), "VirtualCdrom")) {
			struct fy_vs_cdrom *cd = &d->cdroms[d->n_cdroms++];

			cd->key = (int32_t)vs_child_i64(dev, "key", 0);
			cd->controller_key =
			    (int32_t)vs_child_i64(dev, "controllerKey", -1);
			cd->unit = (int32_t)vs_child_i64(dev, "unitNumber", -1);
			d->n_other++;
			rc = 0;
		} else if (is_nic(dev)) {
			rc = parse_nic(dev, a, &d->nics[d->n_nics++]);
			d->n_other++;
		} else {
			d->n_other++;
			rc = 0;
		}
		if (rc < 0)
			return rc;
	}
	for (i = 0; i < d->n_disks; i++)
		for (j = 0; j < d->n_controllers; j++)
			if (d->disks[i].controller_key == d->controllers[j].key)
				d->disks[i].controller = (int)j;
	/* Units taken by any device, disks or not (a SCSI CD-ROM takes a
	 * unit a hot-added disk cannot have). */
	for (dev = array->first; dev; dev = dev->next) {
		int64_t ck = vs_child_i64(dev, "controllerKey", -1);
		int64_t unit = vs_child_i64(dev, "unitNumber", -1);

		if (unit < 0 || unit > 31)
			continue;
		for (j = 0; j < d->n_controllers; j++)
			if (d->controllers[j].key == ck)
				d->controllers[j].used_units |= 1u << unit;
	}
	return 0;
}

const struct fy_vs_disk *fy_vs_devices_disk(const struct fy_vs_devices *d,
					    int32_t key)
{
	size_t i;

	for (i = 0; d && i < d->n_disks; i++)
		if (d->disks[i].key == key)
			return &d->disks[i];
	return NULL;
}

/* ---- snapshots --------------------------------------------------------- */

static size_t count_tree(const struct vs_node *list)
{
	size_t n = 0;

	for (; list; list = vs_next_same(list))
		n += 1 + count_tree(vs_child(list, "childSnapshotList"));
	return n;
}

static int fill_tree(const struct vs_node *list, int parent,
		     struct vs_arena *a, struct fy_vs_vm *vm)
{
	int rc;

	for (; list; list = vs_next_same(list)) {
		struct fy_vs_snapshot *s = &vm->snapshots[vm->n_snapshots];
		int self = (int)vm->n_snapshots++;

		vs_node_moref(vs_child(list, "snapshot"), &s->moref);
		s->name = vs_arena_strdup(a, child_str(list, "name"));
		s->description = vs_arena_strdup(a, child_str(list, "description"));
		s->create_time = vs_arena_strdup(a, child_str(list, "createTime"));
		s->state = vs_arena_strdup(a, child_str(list, "state"));
		if (!s->name || !s->description || !s->create_time || !s->state)
			return oom();
		s->id = (int32_t)vs_child_i64(list, "id", 0);
		s->quiesced = vs_child_bool(list, "quiesced", false);
		s->parent = parent;
		s->current = vm->current_snapshot.value[0] &&
			     !strcmp(s->moref.value, vm->current_snapshot.value);
		rc = fill_tree(vs_child(list, "childSnapshotList"), self, a, vm);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int vs_parse_snapshots(const struct vs_node *info, struct vs_arena *a,
		       struct fy_vs_vm *vm)
{
	const struct vs_node *roots;
	size_t n;

	vm->n_snapshots = 0;
	if (!info)
		return 0;
	vs_node_moref(vs_child(info, "currentSnapshot"), &vm->current_snapshot);
	roots = vs_child(info, "rootSnapshotList");
	/* Recursion depth is bounded by the parser's element depth. */
	n = count_tree(roots);
	if (!n)
		return 0;
	vm->snapshots = vs_arena_array(a, n, sizeof(*vm->snapshots));
	if (!vm->snapshots)
		return oom();
	return fill_tree(roots, -1, a, vm);
}

bool fy_vs_snapshot_is_ferrys(const struct fy_vs_snapshot *s)
{
	return !strncmp(s->description, FY_VS_SNAPSHOT_TAG,
			strlen(FY_VS_SNAPSHOT_TAG));
}

/* ---- VMs --------------------------------------------------------------- */

/* The network adapters' MACs: every VirtualEthernetCard subtype (vmxnet3,
 * e1000, SR-IOV...) carries macAddress, no other device does. Only
 * well-formed "xx:xx:xx:xx:xx:xx" values are kept, lower-cased. */
static int parse_macs(const struct vs_node *array, struct vs_arena *a,
		      struct fy_vs_vm *vm)
{
	const struct vs_node *dev;
	size_t n = 0;

	for (dev = array ? array->first : NULL; dev; dev = dev->next)
		if (vs_child_text(dev, "macAddress"))
			n++;
	if (!n)
		return 0;
	if (n > FY_VS_VM_MAX_NICS)
		n = FY_VS_VM_MAX_NICS;
	vm->macs = vs_arena_array(a, n, sizeof(*vm->macs));
	if (!vm->macs)
		return oom();
	for (dev = array->first; dev && vm->n_macs < n; dev = dev->next) {
		const char *t = vs_child_text(dev, "macAddress");
		char mac[18];
		size_t i;

		if (!t || strlen(t) != 17)
			continue;
		for (i = 0; i < 17; i++) {
			if (i % 3 == 2 ? t[i] != ':' :
			    !isxdigit((unsigned char)t[i]))
				break;
			mac[i] = (char)tolower((unsigned char)t[i]);
		}
		if (i < 17)
			continue;
		mac[17] = '\0';
		vm->macs[vm->n_macs] = vs_arena_strdup(a, mac);
		if (!vm->macs[vm->n_macs])
			return oom();
		vm->n_macs++;
	}
	return 0;
}

static const char *prop_text(const struct vs_node *o, const char *name)
{
	const struct vs_node *v = vs_prop(o, name);

	return v ? v->text : "";
}

static bool prop_bool(const struct vs_node *o, const char *name)
{
	const struct vs_node *v = vs_prop(o, name);

	return v && (!strcmp(v->text, "true") || !strcmp(v->text, "1"));
}

int vs_parse_vm(const struct vs_node *o, struct vs_arena *a, struct fy_vs_vm *vm)
{
	const struct vs_node *v, *m;
	size_t n = 0;
	int rc;

	rc = vs_node_moref(vs_child(o, "obj"), &vm->moref);
	if (rc < 0)
		return rc;
	vm->name = vs_arena_strdup(a, prop_text(o, "name"));
	vm->bios_uuid = vs_arena_strdup(a, prop_text(o, "config.uuid"));
	vm->instance_uuid = vs_arena_strdup(a, prop_text(o, "config.instanceUuid"));
	vm->guest_id = vs_arena_strdup(a, prop_text(o, "config.guestId"));
	vm->vmx_path = vs_arena_strdup(a, prop_text(o, "config.files.vmPathName"));
	vm->power_state = vs_arena_strdup(a, prop_text(o, "runtime.powerState"));
	vm->connection_state =
	    vs_arena_strdup(a, prop_text(o, "runtime.connectionState"));
	if (!vm->name || !vm->bios_uuid || !vm->instance_uuid || !vm->guest_id ||
	    !vm->vmx_path || !vm->power_state || !vm->connection_state)
		return oom();
	vm->is_template = prop_bool(o, "config.template");
	vm->cbt_enabled = prop_bool(o, "config.changeTrackingEnabled");
	vm->consolidation_needed = prop_bool(o, "runtime.consolidationNeeded");
	if ((v = vs_prop(o, "runtime.host")))
		vs_node_moref(v, &vm->host);
	rc = vs_parse_devices(vs_prop(o, "config.hardware.device"), a,
			      &vm->devices);
	if (rc < 0)
		return rc;
	rc = parse_macs(vs_prop(o, "config.hardware.device"), a, vm);
	if (rc < 0)
		return rc;
	rc = vs_parse_snapshots(vs_prop(o, "snapshot"), a, vm);
	if (rc < 0)
		return rc;
	v = vs_prop(o, "datastore");
	for (m = vs_first(v); m; m = m->next)
		n++;
	if (n) {
		vm->datastores = vs_arena_array(a, n, sizeof(*vm->datastores));
		if (!vm->datastores)
			return oom();
		for (m = vs_first(v); m; m = m->next)
			if (vs_node_moref(m, &vm->datastores[vm->n_datastores]) ==
			    0)
				vm->n_datastores++;
	}
	return 0;
}

/* config.extraConfig: OptionValue {key, value}; values of other types
 * than strings are kept as their text. */
static int parse_options(const struct vs_node *array, struct vs_arena *a,
			 struct fy_vs_vm_config *cfg)
{
	const struct vs_node *o;
	size_t n = 0;

	for (o = vs_first(array); o; o = o->next)
		n++;
	if (!n)
		return 0;
	cfg->extra = vs_arena_array(a, n, sizeof(*cfg->extra));
	if (!cfg->extra)
		return oom();
	for (o = vs_first(array); o; o = o->next) {
		struct fy_vs_option *e = &cfg->extra[cfg->n_extra];
		const char *key = vs_child_text(o, "key");

		if (!key)
			continue;
		e->key = vs_arena_strdup(a, key);
		e->value = vs_arena_strdup(a, child_str(o, "value"));
		if (!e->key || !e->value)
			return oom();
		cfg->n_extra++;
	}
	return 0;
}

int vs_parse_vm_config(const struct vs_node *o, struct vs_arena *a,
		       struct fy_vs_vm_config *cfg)
{
	const struct vs_node *v;
	int64_t n;
	int rc;

	cfg->name = vs_arena_strdup(a, prop_text(o, "config.name"));
	cfg->guest_id = vs_arena_strdup(a, prop_text(o, "config.guestId"));
	cfg->version = vs_arena_strdup(a, prop_text(o, "config.version"));
	cfg->firmware = vs_arena_strdup(a, prop_text(o, "config.firmware"));
	if (!cfg->name || !cfg->guest_id || !cfg->version || !cfg->firmware)
		return oom();
	cfg->secure_boot = vs_child_bool(vs_prop(o, "config.bootOptions"),
					 "efiSecureBootEnabled", false);
	if (vs_parse_i64(prop_text(o, "config.hardware.numCPU"), &n) == 0 &&
	    n > 0 && n <= INT32_MAX)
		cfg->num_cpu = (int32_t)n;
	if (vs_parse_i64(prop_text(o, "config.hardware.numCoresPerSocket"),
			 &n) == 0 && n > 0 && n <= INT32_MAX)
		cfg->cores_per_socket = (int32_t)n;
	if (vs_parse_i64(prop_text(o, "config.hardware.memoryMB"), &n) == 0 &&
	    n > 0)
		cfg->memory_mb = n;
	rc = vs_parse_devices(vs_prop(o, "config.hardware.device"), a,
			      &cfg->devices);
	if (rc < 0)
		return rc;
	v = vs_prop(o, "config.extraConfig");
	return v ? parse_options(v, a, cfg) : 0;
}

/* ---- changed areas and tasks ------------------------------------------- */

static int parse_u64(const struct vs_node *n, const char *name, uint64_t *out)
{
	int64_t v;

	if (vs_parse_i64(vs_child_text(n, name), &v) < 0 || v < 0)
		return fy_err_set(-EBADMSG, "DiskChangeInfo: %s missing or "
				  "not a non-negative number", name);
	*out = (uint64_t)v;
	return 0;
}

int vs_parse_change_info(const struct vs_node *rv, struct vs_change_info *out)
{
	const struct vs_node *a;
	uint64_t end, prev_end;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!rv)
		return fy_err_set(-EBADMSG, "QueryChangedDiskAreas returned "
				  "nothing");
	if ((rc = parse_u64(rv, "startOffset", &out->start)) < 0 ||
	    (rc = parse_u64(rv, "length", &out->length)) < 0)
		return rc;
	if (out->length > UINT64_MAX - out->start)
		return fy_err_set(-EBADMSG, "DiskChangeInfo range overflows");
	end = out->start + out->length;
	prev_end = out->start;
	out->first_area = vs_child(rv, "changedArea");
	/* Every area inside the covered range, in order, not overlapping:
	 * anything else and we cannot trust what we would skip. */
	for (a = out->first_area; a; a = vs_next_same(a)) {
		uint64_t s = 0, l = 0;

		if ((rc = parse_u64(a, "start", &s)) < 0 ||
		    (rc = parse_u64(a, "length", &l)) < 0)
			return rc;
		if (l > UINT64_MAX - s || s < prev_end || s + l > end)
			return fy_err_set(-EBADMSG, "changed area %llu+%llu "
					  "is outside %llu..%llu or out of "
					  "order",
					  (unsigned long long)s,
					  (unsigned long long)l,
					  (unsigned long long)prev_end,
					  (unsigned long long)end);
		prev_end = s + l;
		out->n++;
	}
	return 0;
}

int vs_parse_task_info(const struct vs_node *info, struct vs_task_info *out)
{
	const struct vs_node *n;
	const char *state;
	int64_t p;

	memset(out, 0, sizeof(*out));
	out->progress = -1;
	if (!info)
		return fy_err_set(-EBADMSG, "task has no info");
	state = vs_child_text(info, "state");
	if (!state || strlen(state) >= sizeof(out->state))
		return fy_err_set(-EBADMSG, "task info without a state");
	strcpy(out->state, state);
	if (vs_parse_i64(vs_child_text(info, "progress"), &p) == 0 && p >= 0 &&
	    p <= 100)
		out->progress = (int)p;
	n = vs_child(info, "result");
	if (n && !n->first && n->type_attr)
		vs_node_moref(n, &out->result);
	n = vs_child(info, "error");
	if (n) {
		out->has_error = true;
		vs_fault_from_node(vs_child(n, "fault"),
				   vs_child_text(n, "localizedMessage"),
				   &out->fault);
	}
	return 0;
}
