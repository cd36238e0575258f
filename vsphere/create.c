/*
 * Building a VM again: where it goes (folder, resource pool, host), the
 * CreateVM_Task request from a VM's recorded hardware, power on and
 * destroy. Used by the whole-VM restore (agent/restore_vm.c).
 *
 * The request follows the vSphere schema's element order (real servers
 * reject elements out of sequence): VirtualMachineConfigSpec name,
 * version, guestId, files, numCPUs, numCoresPerSocket, memoryMB,
 * deviceChange, extraConfig, bootOptions, firmware; VirtualDevice key,
 * backing, connectable, controllerKey, unitNumber, then the subtype's own.
 */
#include "vsphere/vs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CREATE_BODY_MAX (4u << 20)

/* ---- placement ---------------------------------------------------------- */

struct one_moref {
	const char *prop;
	struct fy_vs_moref value;
};

static int one_moref_object(void *opaque, const struct vs_node *o)
{
	struct one_moref *m = opaque;
	const struct vs_node *v = vs_prop(o, m->prop);

	if (v)
		vs_node_moref(v, &m->value);
	return 0;
}

/* A managed object reference property of obj; -ENOENT when it is unset. */
static int moref_prop(struct fy_vs_client *c, const struct fy_vs_moref *obj,
		      const char *prop, struct fy_vs_moref *out)
{
	const char *paths[] = { prop, NULL };
	struct vs_prop_spec spec = { obj->type, paths };
	struct one_moref m = { .prop = prop };
	int rc;

	rc = vs_retrieve(c, obj, false, &spec, 1, one_moref_object, &m);
	if (rc < 0)
		return rc;
	if (!m.value.value[0])
		return fy_err_set(-ENOENT, "%s %s has no %s", obj->type,
				  obj->value, prop);
	*out = m.value;
	return 0;
}

static int find_typed(struct fy_vs_client *c, const char *path,
		      const char *type, const char *what,
		      struct fy_vs_moref *out)
{
	int rc = vs_find_by_inventory_path(c, path, what, out);

	if (rc == 0 && strcmp(out->type, type) &&
	    !(strcmp(type, "ResourcePool") == 0 &&
	      strcmp(out->type, "VirtualApp") == 0))
		rc = fy_err_set(-ENOENT, "%s is a %s, not a %s", path,
				out->type, what);
	return rc;
}

int fy_vs_placement_resolve(struct fy_vs_client *c, const char *host,
			    const char *pool, const char *folder,
			    const char *datastore,
			    struct fy_vs_placement *out)
{
	struct fy_vs_inventory *inv = NULL;
	const struct fy_vs_datastore *ds = NULL;
	const struct fy_vs_host *h = NULL;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = fy_vs_inventory_get(c, false, &inv);
	if (rc < 0)
		return fy_err_wrap(rc, "reading the inventory");
	for (i = 0; i < inv->n_datastores; i++)
		if (!strcmp(inv->datastores[i].name, datastore)) {
			if (ds) {
				rc = fy_err_set(-EEXIST, "datastores named %s "
						"exist in several datacenters",
						datastore);
				goto out;
			}
			ds = &inv->datastores[i];
		}
	if (!ds) {
		rc = fy_err_set(-ENOENT, "no datastore named %s", datastore);
		goto out;
	}
	if (!ds->accessible) {
		rc = fy_err_set(-EIO, "datastore %s is not accessible",
				datastore);
		goto out;
	}
	if (host) {
		for (i = 0; i < inv->n_hosts; i++)
			if (!strcmp(inv->hosts[i].name, host))
				h = &inv->hosts[i];
		if (!h) {
			rc = fy_err_set(-ENOENT, "no host named %s", host);
			goto out;
		}
		if (!fy_vs_datastore_mounted_on(ds, &h->moref)) {
			rc = fy_err_set(-EINVAL, "host %s does not mount "
					"datastore %s", host, datastore);
			goto out;
		}
	} else if (!pool) {
		/* The first usable host that sees the datastore. */
		for (i = 0; i < inv->n_hosts && !h; i++)
			if (!strcmp(inv->hosts[i].connection_state, "connected") &&
			    !inv->hosts[i].maintenance &&
			    fy_vs_datastore_mounted_on(ds, &inv->hosts[i].moref))
				h = &inv->hosts[i];
		if (!h) {
			rc = fy_err_set(-ENOENT, "no connected host outside "
					"maintenance mode mounts datastore %s",
					datastore);
			goto out;
		}
	}
	if (h) {
		out->host = h->moref;
		snprintf(out->host_name, sizeof(out->host_name), "%s", h->name);
	}
	if (pool) {
		rc = find_typed(c, pool, "ResourcePool", "resource pool",
				&out->pool);
	} else {
		struct fy_vs_moref cr;

		rc = moref_prop(c, &h->moref, "parent", &cr);
		if (rc == 0)
			rc = moref_prop(c, &cr, "resourcePool", &out->pool);
	}
	if (rc < 0)
		goto out;
	if (folder) {
		rc = find_typed(c, folder, "Folder", "folder", &out->folder);
	} else {
		rc = moref_prop(c, &ds->datacenter, "vmFolder", &out->folder);
	}
	if (rc < 0)
		goto out;
	snprintf(out->datastore, sizeof(out->datastore), "%s", datastore);
	for (i = 0; i < inv->n_datacenters; i++)
		if (vs_moref_eq(&inv->datacenters[i].moref, &ds->datacenter))
			snprintf(out->datacenter_path,
				 sizeof(out->datacenter_path), "%s",
				 inv->datacenters[i].path);
out:
	fy_vs_inventory_free(inv);
	return rc;
}

/* ---- CreateVM_Task ------------------------------------------------------ */

struct word_xsi {
	const char *word, *xsi;
};

static const struct word_xsi controller_types[] = {
	{ "pvscsi", "ParaVirtualSCSIController" },
	{ "lsilogic", "VirtualLsiLogicController" },
	{ "lsilogic-sas", "VirtualLsiLogicSASController" },
	{ "buslogic", "VirtualBusLogicController" },
	{ "sata", "VirtualAHCIController" },
	{ "nvme", "VirtualNVMEController" },
	{ "ide", "VirtualIDEController" },
};

static const struct word_xsi nic_types[] = {
	{ "vmxnet3", "VirtualVmxnet3" },
	{ "vmxnet3-vrdma", "VirtualVmxnet3Vrdma" },
	{ "vmxnet2", "VirtualVmxnet2" },
	{ "vmxnet", "VirtualVmxnet" },
	{ "e1000", "VirtualE1000" },
	{ "e1000e", "VirtualE1000e" },
	{ "pcnet32", "VirtualPCNet32" },
};

static const char *lookup(const struct word_xsi *t, size_t n, const char *w)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(t[i].word, w))
			return t[i].xsi;
	return NULL;
}

static const char *controller_xsi(const char *w)
{
	return lookup(controller_types,
		      sizeof(controller_types) / sizeof(controller_types[0]), w);
}

static const char *nic_xsi(const char *w)
{
	return lookup(nic_types, sizeof(nic_types) / sizeof(nic_types[0]), w);
}

/* Checks what the request cannot express before anything is sent. */
static int check_spec(const struct fy_vs_new_vm *s)
{
	size_t i, j;

	if (!s->name[0])
		return fy_err_set(-EINVAL, "a new VM needs a name");
	for (i = 0; i < s->n_controllers; i++)
		if (!controller_xsi(s->controllers[i].type))
			return fy_err_set(-ENOTSUP, "controller %d is of type "
					  "%s, which a VM cannot be created "
					  "with here", s->controllers[i].key,
					  s->controllers[i].type);
	for (i = 0; i < s->n_nics; i++)
		if (!nic_xsi(s->nics[i].adapter))
			return fy_err_set(-ENOTSUP, "network adapter %d is of "
					  "type %s, which a VM cannot be "
					  "created with here", s->nics[i].key,
					  s->nics[i].adapter);
	for (i = 0; i < s->n_disks; i++) {
		const struct fy_vs_new_disk *d = &s->disks[i];

		if (strcmp(d->provisioning, "thin") &&
		    strcmp(d->provisioning, "thick-lazy") &&
		    strcmp(d->provisioning, "thick-eager"))
			return fy_err_set(-ENOTSUP, "disk %d is %s: only thin "
					  "and thick flat disks are created",
					  d->key, d->provisioning);
		if (!d->capacity || d->capacity % 1024)
			return fy_err_set(-EINVAL, "disk %d: capacity %" PRIu64
					  " is not a whole number of KiB",
					  d->key, d->capacity);
		for (j = 0; j < s->n_controllers; j++)
			if (s->controllers[j].key == d->controller_key)
				break;
		if (j == s->n_controllers)
			return fy_err_set(-EINVAL, "disk %d is on controller "
					  "%d, which the VM does not have",
					  d->key, d->controller_key);
	}
	return 0;
}

/* A new device's key: negative, as vSphere wants for devices it numbers
 * itself; IDE controllers are the VM's built-in ones (200, 201). */
static int32_t controller_new_key(const struct fy_vs_new_vm *s, int32_t key)
{
	size_t i;

	for (i = 0; i < s->n_controllers; i++)
		if (s->controllers[i].key == key)
			return !strcmp(s->controllers[i].type, "ide")
				       ? 200 + (int32_t)s->controllers[i].bus
				       : -1000 - (int32_t)i;
	return 0;
}

static void add_controllers(struct vs_buf *b, const struct fy_vs_new_vm *s)
{
	size_t i;

	for (i = 0; i < s->n_controllers; i++) {
		const struct fy_vs_new_controller *k = &s->controllers[i];

		if (!strcmp(k->type, "ide"))
			continue; /* every VM has IDE 0 and 1 */
		vs_buf_printf(b, "<deviceChange><operation>add</operation>"
			      "<device xsi:type=\"%s\"><key>%d</key>"
			      "<busNumber>%u</busNumber>",
			      controller_xsi(k->type), (int)(-1000 - (int)i),
			      (unsigned)k->bus);
		if (k->sharing && k->sharing[0])
			vs_buf_elem(b, "sharedBus", k->sharing);
		vs_buf_str(b, "</device></deviceChange>");
	}
}

static void add_disks(struct vs_buf *b, const struct fy_vs_new_vm *s)
{
	size_t i;

	for (i = 0; i < s->n_disks; i++) {
		const struct fy_vs_new_disk *d = &s->disks[i];
		bool thin = !strcmp(d->provisioning, "thin");
		bool eager = !strcmp(d->provisioning, "thick-eager");

		vs_buf_printf(b, "<deviceChange><operation>add</operation>"
			      "<fileOperation>create</fileOperation>"
			      "<device xsi:type=\"VirtualDisk\"><key>%d</key>"
			      "<backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\">",
			      (int)(-2000 - (int)i));
		vs_buf_printf(b, "<fileName>[");
		vs_buf_esc(b, s->datastore);
		vs_buf_str(b, "]</fileName>");
		vs_buf_elem(b, "diskMode", d->mode && d->mode[0] ? d->mode
								 : "persistent");
		vs_buf_printf(b, "<thinProvisioned>%s</thinProvisioned>"
			      "<eagerlyScrub>%s</eagerlyScrub></backing>"
			      "<controllerKey>%d</controllerKey>"
			      "<unitNumber>%u</unitNumber>"
			      "<capacityInKB>%" PRIu64 "</capacityInKB>"
			      "<capacityInBytes>%" PRIu64 "</capacityInBytes>"
			      "</device></deviceChange>",
			      thin ? "true" : "false", eager ? "true" : "false",
			      (int)controller_new_key(s, d->controller_key),
			      (unsigned)d->unit, d->capacity / 1024,
			      d->capacity);
	}
}

static void add_nics(struct vs_buf *b, const struct fy_vs_new_vm *s)
{
	size_t i;

	for (i = 0; i < s->n_nics; i++) {
		const struct fy_vs_new_nic *n = &s->nics[i];

		vs_buf_printf(b, "<deviceChange><operation>add</operation>"
			      "<device xsi:type=\"%s\"><key>%d</key>"
			      "<backing xsi:type=\"VirtualEthernetCardNetworkBackingInfo\">",
			      nic_xsi(n->adapter), (int)(-3000 - (int)i));
		vs_buf_elem(b, "deviceName", n->network);
		vs_buf_str(b, "</backing><connectable>"
			   "<startConnected>true</startConnected>"
			   "<allowGuestControl>true</allowGuestControl>"
			   "<connected>false</connected></connectable>");
		if (n->mac && n->mac[0]) {
			vs_buf_elem(b, "addressType", "manual");
			vs_buf_elem(b, "macAddress", n->mac);
		} else {
			vs_buf_elem(b, "addressType", "generated");
		}
		vs_buf_str(b, "</device></deviceChange>");
	}
}

static void add_cdroms(struct vs_buf *b, const struct fy_vs_new_vm *s)
{
	size_t i;

	for (i = 0; i < s->n_cdroms; i++) {
		const struct fy_vs_new_cdrom *d = &s->cdroms[i];

		vs_buf_printf(b, "<deviceChange><operation>add</operation>"
			      "<device xsi:type=\"VirtualCdrom\"><key>%d</key>"
			      "<backing xsi:type=\"VirtualCdromRemotePassthroughBackingInfo\">"
			      "<deviceName></deviceName><exclusive>false</exclusive>"
			      "</backing><controllerKey>%d</controllerKey>"
			      "<unitNumber>%u</unitNumber></device></deviceChange>",
			      (int)(-4000 - (int)i),
			      (int)controller_new_key(s, d->controller_key),
			      (unsigned)d->unit);
	}
}

int fy_vs_vm_create(struct fy_vs_client *c, const struct fy_vs_new_vm *s,
		    const struct fy_vs_placement *p, struct fy_vs_moref *vm)
{
	struct fy_vs_moref task, result;
	struct vs_reply r;
	struct vs_buf b;
	char desc[600];
	size_t i;
	int rc;

	vs_fault_clear();
	memset(vm, 0, sizeof(*vm));
	rc = check_spec(s);
	if (rc < 0)
		return rc;
	vs_buf_init(&b, CREATE_BODY_MAX);
	vs_buf_str(&b, "<config>");
	vs_buf_elem(&b, "name", s->name);
	if (s->version && s->version[0])
		vs_buf_elem(&b, "version", s->version);
	if (s->guest_id && s->guest_id[0])
		vs_buf_elem(&b, "guestId", s->guest_id);
	vs_buf_str(&b, "<files><vmPathName>[");
	vs_buf_esc(&b, p->datastore);
	vs_buf_str(&b, "]</vmPathName></files>");
	vs_buf_printf(&b, "<numCPUs>%u</numCPUs>", (unsigned)s->cpus);
	if (s->cores_per_socket)
		vs_buf_printf(&b, "<numCoresPerSocket>%u</numCoresPerSocket>",
			      (unsigned)s->cores_per_socket);
	vs_buf_printf(&b, "<memoryMB>%" PRIu64 "</memoryMB>", s->memory_mb);
	add_controllers(&b, s);
	add_disks(&b, s);
	add_nics(&b, s);
	add_cdroms(&b, s);
	for (i = 0; i < s->n_extra; i++) {
		vs_buf_str(&b, "<extraConfig xsi:type=\"OptionValue\">");
		vs_buf_elem(&b, "key", s->extra[i].key);
		vs_buf_str(&b, "<value xsi:type=\"xsd:string\">");
		vs_buf_esc(&b, s->extra[i].value);
		vs_buf_str(&b, "</value></extraConfig>");
	}
	if (s->secure_boot)
		vs_buf_str(&b, "<bootOptions><efiSecureBootEnabled>true"
			   "</efiSecureBootEnabled></bootOptions>");
	if (s->firmware && s->firmware[0])
		vs_buf_elem(&b, "firmware", s->firmware);
	vs_buf_str(&b, "</config>");
	vs_buf_moref(&b, "pool", &p->pool);
	if (p->host.value[0])
		vs_buf_moref(&b, "host", &p->host);
	if (b.err) {
		rc = fy_err_set(b.err, "the CreateVM_Task request for %s is "
				"over %u bytes", s->name, CREATE_BODY_MAX);
		vs_buf_release(&b);
		return rc;
	}
	rc = vs_call(c, "CreateVM_Task", NULL, &p->folder, b.data, s->name, &r);
	vs_buf_release(&b);
	if (rc < 0)
		return fy_err_wrap(rc, "creating VM %s", s->name);
	rc = vs_node_moref(r.returnval, &task);
	vs_reply_release(&r);
	if (rc < 0 || !task.value[0])
		return fy_err_set(-EBADMSG, "CreateVM_Task for %s returned no "
				  "task", s->name);
	snprintf(desc, sizeof(desc), "CreateVM_Task for %s", s->name);
	memset(&result, 0, sizeof(result));
	rc = fy_vs_task_wait(c, &task, desc, 0, &result);
	if (rc < 0)
		return fy_err_wrap(rc, "creating VM %s", s->name);
	if (strcmp(result.type, "VirtualMachine") || !result.value[0])
		return fy_err_set(-EBADMSG, "CreateVM_Task for %s succeeded "
				  "without naming the new VM", s->name);
	*vm = result;
	fy_info("vsphere: created VM %s (%s) on datastore %s", s->name,
		vm->value, p->datastore);
	return 0;
}

static int vm_task(struct fy_vs_client *c, const char *method,
		   const struct fy_vs_moref *vmref, const char *what)
{
	struct fy_vs_moref vm = vs_typed(vmref, "VirtualMachine"), task;
	struct vs_reply r;
	char desc[256];
	int rc;

	vs_fault_clear();
	rc = vs_call(c, method, NULL, &vm, "", vm.value, &r);
	if (rc < 0)
		return fy_err_wrap(rc, "%s %s", what, vm.value);
	rc = vs_node_moref(r.returnval, &task);
	vs_reply_release(&r);
	if (rc < 0 || !task.value[0])
		return fy_err_set(-EBADMSG, "%s on %s returned no task", method,
				  vm.value);
	snprintf(desc, sizeof(desc), "%s on %s", method, vm.value);
	return fy_vs_task_wait(c, &task, desc, 0, NULL);
}

int fy_vs_vm_power_on(struct fy_vs_client *c, const struct fy_vs_moref *vm)
{
	return vm_task(c, "PowerOnVM_Task", vm, "powering on");
}

int fy_vs_vm_destroy(struct fy_vs_client *c, const struct fy_vs_moref *vm)
{
	return vm_task(c, "Destroy_Task", vm, "destroying");
}
