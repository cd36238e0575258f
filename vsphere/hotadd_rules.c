/*
 * Whether a proxy VM could hot-add a disk: pure logic over data already
 * read, shared by `ferry-agent inventory` and the hotadd transport.
 */
#include "vsphere/vs_int.h"

#include <stdio.h>
#include <string.h>

/* At most 4 SCSI controllers per VM, 16 units each, unit 7 reserved. */
#define SCSI_CONTROLLERS_MAX 4

const char *fy_vs_hotadd_rule_name(enum fy_vs_hotadd_rule r)
{
	switch (r) {
	case FY_VS_HOTADD_OK: return "ok";
	case FY_VS_HOTADD_UNKNOWN_PROXY: return "unknown proxy";
	case FY_VS_HOTADD_PROXY_IS_TARGET: return "proxy is the target";
	case FY_VS_HOTADD_OTHER_DATACENTER: return "other datacenter";
	case FY_VS_HOTADD_NOT_MOUNTED: return "datastore not mounted on proxy's host";
	case FY_VS_HOTADD_IDE: return "IDE disk";
	case FY_VS_HOTADD_INDEPENDENT: return "independent disk";
	case FY_VS_HOTADD_PHYSICAL_RDM: return "physical RDM";
	case FY_VS_HOTADD_NO_FREE_SLOT: return "no free SCSI slot";
	}
	return "?";
}

unsigned fy_vs_hotadd_free_slots(const struct fy_vs_vm *proxy)
{
	unsigned free_units = 0, seen = 0;
	size_t i;
	int u;

	for (i = 0; i < proxy->devices.n_controllers; i++) {
		const struct fy_vs_controller *ct = &proxy->devices.controllers[i];

		if (ct->kind != FY_VS_CTRL_SCSI || seen == SCSI_CONTROLLERS_MAX)
			continue;
		seen++;
		for (u = 0; u < 16; u++)
			if (u != 7 && u != ct->own_unit &&
			    !(ct->used_units & (1u << u)))
				free_units++;
	}
	return free_units;
}

#define WHY(...)                                                         \
	do {                                                             \
		if (why && whylen)                                       \
			snprintf(why, whylen, __VA_ARGS__);              \
	} while (0)

enum fy_vs_hotadd_rule fy_vs_hotadd_check(const struct fy_vs_inventory *inv,
					  const struct fy_vs_vm *proxy,
					  const struct fy_vs_vm *vm,
					  const struct fy_vs_disk *disk,
					  char *why, size_t whylen)
{
	const struct fy_vs_controller *ct = NULL;
	size_t i;

	WHY("%s", "hot-add possible");
	if (!proxy) {
		WHY("no proxy VM is known: set ferry.proxy.moref or "
		    "ferry.proxy.instanceUuid");
		return FY_VS_HOTADD_UNKNOWN_PROXY;
	}
	if (vs_moref_eq(&proxy->moref, &vm->moref)) {
		WHY("%s is the proxy itself: a VM cannot hot-add its own disks",
		    vm->name);
		return FY_VS_HOTADD_PROXY_IS_TARGET;
	}
	if (!vm->datacenter.value[0] || !proxy->datacenter.value[0] ||
	    !vs_moref_eq(&proxy->datacenter, &vm->datacenter)) {
		WHY("proxy %s is in datacenter %s, %s in %s", proxy->name,
		    proxy->datacenter_name[0] ? proxy->datacenter_name : "?",
		    vm->name, vm->datacenter_name[0] ? vm->datacenter_name : "?");
		return FY_VS_HOTADD_OTHER_DATACENTER;
	}
	if (disk->controller >= 0 &&
	    (size_t)disk->controller < vm->devices.n_controllers)
		ct = &vm->devices.controllers[disk->controller];
	if (ct && ct->kind == FY_VS_CTRL_IDE) {
		WHY("%s is on an IDE controller, which cannot be hot-added",
		    disk->label);
		return FY_VS_HOTADD_IDE;
	}
	if (disk->independent) {
		WHY("%s is %s: snapshots do not include it", disk->label,
		    disk->disk_mode);
		return FY_VS_HOTADD_INDEPENDENT;
	}
	if (disk->rdm && disk->chain_len &&
	    !strcmp(disk->chain[0].compatibility_mode, "physicalMode")) {
		WHY("%s is a physical-mode RDM: snapshots do not include it",
		    disk->label);
		return FY_VS_HOTADD_PHYSICAL_RDM;
	}
	/* Every file of the chain must be reachable from the proxy's host. */
	for (i = 0; i < disk->chain_len || i == 0; i++) {
		const struct fy_vs_moref *dsref =
		    disk->chain_len ? &disk->chain[i].datastore : &disk->datastore;
		const struct fy_vs_datastore *ds;

		if (!dsref->value[0])
			continue;
		ds = fy_vs_inventory_datastore(inv, dsref);
		if (!fy_vs_datastore_mounted_on(ds, &proxy->host)) {
			WHY("datastore %s of %s is not mounted on %s, the proxy's "
			    "host", ds ? ds->name : dsref->value, disk->label,
			    proxy->host_name[0] ? proxy->host_name
						: proxy->host.value);
			return FY_VS_HOTADD_NOT_MOUNTED;
		}
		if (!disk->chain_len)
			break;
	}
	if (fy_vs_hotadd_free_slots(proxy) == 0) {
		size_t n = 0;

		for (i = 0; i < proxy->devices.n_controllers; i++)
			n += proxy->devices.controllers[i].kind == FY_VS_CTRL_SCSI;
		WHY("proxy %s has no free SCSI slot on %zu controller(s) (units "
		    "0-15 except 7, at most %d controllers)", proxy->name, n,
		    SCSI_CONTROLLERS_MAX);
		return FY_VS_HOTADD_NO_FREE_SLOT;
	}
	return FY_VS_HOTADD_OK;
}
