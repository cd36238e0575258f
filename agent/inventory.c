/*
 * ferry-agent inventory --config FILE [--vm X] [--proxy X] [--json]
 *
 * Reads the vCenter's inventory once and prints, for each VM (or the one
 * named by --vm), its disks with controllers and backing files, its
 * datastores, CBT state and snapshots, and whether the configured proxy
 * VM could hot-add each disk (and if not, which rule fails).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/inventory.h"
#include "agent/transport.h"
#include "common/common.h"
#include "vsphere/vsphere.h"

enum {
	OPT_CONFIG = 1000, OPT_VM, OPT_PROXY, OPT_JSON, OPT_SET, OPT_LOG_LEVEL,
};

static const struct option inventory_opts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "vm", required_argument, NULL, OPT_VM },
	{ "proxy", required_argument, NULL, OPT_PROXY },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "set", required_argument, NULL, OPT_SET },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	fprintf(stderr,
		"usage: ferry-agent inventory --config FILE [--vm VM] "
		"[--proxy VM] [--json]\n"
		"         [--set KEY=VALUE] [--log-level N]\n"
		"  VM: vm-42, /DC/vm/folder/name, a name, an instance or BIOS "
		"UUID,\n"
		"      or moref:/name:/path:/uuid:/bios: followed by one\n"
		"  The proxy is --proxy, else this machine as a backup job "
		"finds it\n  (ferry.proxy.moref, ferry.proxy.instanceUuid, "
		"else its BIOS UUID).\n");
}

static const struct fy_vs_vm *find_vm(const struct fy_vs_inventory *inv,
				      const struct fy_vs_moref *m)
{
	size_t i;

	for (i = 0; i < inv->n_vms; i++)
		if (!strcmp(inv->vms[i]->moref.value, m->value))
			return inv->vms[i];
	return NULL;
}

static const char *ds_name(const struct fy_vs_inventory *inv,
			   const struct fy_vs_moref *m)
{
	const struct fy_vs_datastore *ds = fy_vs_inventory_datastore(inv, m);

	return ds ? ds->name : m->value;
}

static const char *host_name(const struct fy_vs_inventory *inv,
			     const struct fy_vs_moref *m)
{
	const struct fy_vs_host *h = fy_vs_inventory_host(inv, m);

	return h ? h->name : m->value;
}

/* "scsi0:1", "ide1:0" */
static void disk_slot(const struct fy_vs_vm *vm, const struct fy_vs_disk *d,
		      char *out, size_t len)
{
	const struct fy_vs_controller *ct =
	    d->controller >= 0 ? &vm->devices.controllers[d->controller] : NULL;

	if (ct)
		snprintf(out, len, "%s%d:%d", fy_vs_controller_kind_name(ct->kind),
			 (int)ct->bus, (int)d->unit);
	else
		snprintf(out, len, "?:%d", (int)d->unit);
}

/* The modes of the transport table that can read d here, for this
 * machine (what a job would decide): "hotadd, https" into out. */
static void disk_transports(struct fy_transport_env *env,
			    const struct fy_vs_vm *vm,
			    const struct fy_vs_disk *d, bool ok[],
			    char why[][FY_ERR_MAX])
{
	unsigned m;

	for (m = 0; m < FY_TRANSPORT_N_MODES; m++)
		ok[m] = fy_transports[m].possible(env, vm, d, why[m],
						  FY_ERR_MAX);
}

static void print_text_vm(const struct fy_vs_inventory *inv,
			  struct fy_transport_env *env,
			  const struct fy_vs_vm *proxy,
			  const struct fy_vs_vm *vm)
{
	bool ok[FY_TRANSPORT_N_MODES];
	char (*mwhy)[FY_ERR_MAX] = calloc(FY_TRANSPORT_N_MODES, FY_ERR_MAX);
	unsigned m, k;
	char size[32], slot[32], why[512];
	size_t i, j;

	printf("\nVM %s (%s) %s\n", vm->name, vm->moref.value, vm->path);
	printf("  instance UUID %s, BIOS UUID %s\n",
	       vm->instance_uuid[0] ? vm->instance_uuid : "-",
	       vm->bios_uuid[0] ? vm->bios_uuid : "-");
	printf("  datacenter %s, host %s, %s%s, CBT %s%s\n",
	       vm->datacenter_name[0] ? vm->datacenter_name : "-",
	       vm->host_name[0] ? vm->host_name : "-",
	       vm->power_state[0] ? vm->power_state : "power state unknown",
	       vm->is_template ? ", template" : "",
	       vm->cbt_enabled ? "on" : "off",
	       vm->consolidation_needed ? ", CONSOLIDATION NEEDED" : "");
	printf("  datastores:");
	for (i = 0; i < vm->n_datastores; i++)
		printf("%s %s", i ? "," : "", ds_name(inv, &vm->datastores[i]));
	printf("%s\n", vm->n_datastores ? "" : " -");
	printf("  controllers:\n");
	for (i = 0; i < vm->devices.n_controllers; i++) {
		const struct fy_vs_controller *ct = &vm->devices.controllers[i];

		printf("    %d %s: %s bus %d", (int)ct->key, ct->type,
		       fy_vs_controller_kind_name(ct->kind), (int)ct->bus);
		if (ct->pci_slot >= 0)
			printf(", PCI slot %d", (int)ct->pci_slot);
		if (ct->sharing[0] && strcmp(ct->sharing, "noSharing"))
			printf(", bus sharing %s", ct->sharing);
		printf(", %zu device(s)\n", ct->n_devices);
	}
	printf("  disks:\n");
	for (i = 0; i < vm->devices.n_disks; i++) {
		const struct fy_vs_disk *d = &vm->devices.disks[i];
		enum fy_vs_hotadd_rule rule;

		fy_format_bytes(d->capacity, size, sizeof(size));
		disk_slot(vm, d, slot, sizeof(slot));
		printf("    %d %s: %s %s %s, %s%s\n", (int)d->key, d->label, slot,
		       size, d->file_name, d->disk_mode[0] ? d->disk_mode : "?",
		       d->rdm ? ", RDM" : "");
		if (d->uuid[0] || d->change_id[0])
			printf("      uuid %s, change ID %s\n",
			       d->uuid[0] ? d->uuid : "-",
			       d->change_id[0] ? d->change_id : "-");
		for (j = 1; j < d->chain_len; j++)
			printf("      parent %s\n", d->chain[j].file_name);
		rule = fy_vs_hotadd_check(inv, proxy, vm, d, why, sizeof(why));
		printf("      hot-add: %s%s%s\n",
		       rule == FY_VS_HOTADD_OK ? "yes" : "no",
		       rule == FY_VS_HOTADD_OK ? "" : ": ",
		       rule == FY_VS_HOTADD_OK ? "" : why);
		if (!mwhy)
			continue;
		disk_transports(env, vm, d, ok, mwhy);
		printf("      transports here:");
		for (m = 0, k = 0; m < FY_TRANSPORT_N_MODES; m++)
			if (ok[m])
				printf("%s %s", k++ ? "," : "",
				       fy_transports[m].name);
		printf("%s\n", k ? "" : " none");
	}
	free(mwhy);
	if (!vm->devices.n_disks)
		printf("    none\n");
	printf("  snapshots:%s\n", vm->n_snapshots ? "" : " none");
	for (i = 0; i < vm->n_snapshots; i++) {
		const struct fy_vs_snapshot *s = &vm->snapshots[i];

		printf("    %s \"%s\" %s%s%s%s\n", s->moref.value, s->name,
		       s->create_time, s->quiesced ? ", quiesced" : "",
		       fy_vs_snapshot_is_ferrys(s) ? ", Ferry's" : "",
		       s->current ? ", current" : "");
	}
}

static void print_json_vm(const struct fy_vs_inventory *inv,
			  struct fy_transport_env *env,
			  const struct fy_vs_vm *proxy,
			  const struct fy_vs_vm *vm, bool first)
{
	bool ok[FY_TRANSPORT_N_MODES];
	char (*mwhy)[FY_ERR_MAX] = calloc(FY_TRANSPORT_N_MODES, FY_ERR_MAX);
	char why[512];
	size_t i, j, m;

	printf("%s{\"moref\":", first ? "" : ",");
	fy_json_string(stdout, vm->moref.value);
	printf(",\"name\":");
	fy_json_string(stdout, vm->name);
	printf(",\"path\":");
	fy_json_string(stdout, vm->path);
	printf(",\"instance_uuid\":");
	fy_json_string(stdout, vm->instance_uuid);
	printf(",\"bios_uuid\":");
	fy_json_string(stdout, vm->bios_uuid);
	printf(",\"datacenter\":");
	fy_json_string(stdout, vm->datacenter_name);
	printf(",\"host\":");
	fy_json_string(stdout, vm->host_name);
	printf(",\"power_state\":");
	fy_json_string(stdout, vm->power_state);
	printf(",\"template\":%s,\"cbt\":%s,\"consolidation_needed\":%s",
	       vm->is_template ? "true" : "false",
	       vm->cbt_enabled ? "true" : "false",
	       vm->consolidation_needed ? "true" : "false");
	printf(",\"datastores\":[");
	for (i = 0; i < vm->n_datastores; i++) {
		printf("%s", i ? "," : "");
		fy_json_string(stdout, ds_name(inv, &vm->datastores[i]));
	}
	printf("],\"controllers\":[");
	for (i = 0; i < vm->devices.n_controllers; i++) {
		const struct fy_vs_controller *ct = &vm->devices.controllers[i];

		printf("%s{\"key\":%d,\"type\":", i ? "," : "", (int)ct->key);
		fy_json_string(stdout, ct->type);
		printf(",\"kind\":");
		fy_json_string(stdout, fy_vs_controller_kind_name(ct->kind));
		printf(",\"bus\":%d,\"pci_slot\":%d,\"devices\":%zu}",
		       (int)ct->bus, (int)ct->pci_slot, ct->n_devices);
	}
	printf("],\"disks\":[");
	for (i = 0; i < vm->devices.n_disks; i++) {
		const struct fy_vs_disk *d = &vm->devices.disks[i];
		enum fy_vs_hotadd_rule rule =
		    fy_vs_hotadd_check(inv, proxy, vm, d, why, sizeof(why));

		printf("%s{\"key\":%d,\"label\":", i ? "," : "", (int)d->key);
		fy_json_string(stdout, d->label);
		printf(",\"controller_key\":%d,\"unit\":%d,\"capacity\":%" PRIu64
		       ",\"file\":", (int)d->controller_key, (int)d->unit,
		       d->capacity);
		fy_json_string(stdout, d->file_name);
		printf(",\"datastore\":");
		fy_json_string(stdout, d->datastore.value[0]
				     ? ds_name(inv, &d->datastore) : "");
		printf(",\"disk_mode\":");
		fy_json_string(stdout, d->disk_mode);
		printf(",\"uuid\":");
		fy_json_string(stdout, d->uuid);
		printf(",\"change_id\":");
		fy_json_string(stdout, d->change_id);
		printf(",\"rdm\":%s,\"chain\":[", d->rdm ? "true" : "false");
		for (j = 0; j < d->chain_len; j++) {
			printf("%s", j ? "," : "");
			fy_json_string(stdout, d->chain[j].file_name);
		}
		printf("],\"hotadd\":{\"ok\":%s,\"rule\":",
		       rule == FY_VS_HOTADD_OK ? "true" : "false");
		fy_json_string(stdout, fy_vs_hotadd_rule_name(rule));
		printf(",\"why\":");
		fy_json_string(stdout, why);
		printf("},\"transports\":[");
		if (mwhy)
			disk_transports(env, vm, d, ok, mwhy);
		for (m = 0; mwhy && m < FY_TRANSPORT_N_MODES; m++) {
			printf("%s{\"name\":\"%s\",\"possible\":%s,"
			       "\"why\":", m ? "," : "", fy_transports[m].name,
			       ok[m] ? "true" : "false");
			fy_json_string(stdout, ok[m] ? "" : mwhy[m]);
			printf("}");
		}
		printf("]}");
	}
	free(mwhy);
	printf("],\"snapshots\":[");
	for (i = 0; i < vm->n_snapshots; i++) {
		const struct fy_vs_snapshot *s = &vm->snapshots[i];

		printf("%s{\"moref\":", i ? "," : "");
		fy_json_string(stdout, s->moref.value);
		printf(",\"name\":");
		fy_json_string(stdout, s->name);
		printf(",\"description\":");
		fy_json_string(stdout, s->description);
		printf(",\"created\":");
		fy_json_string(stdout, s->create_time);
		printf(",\"quiesced\":%s,\"ferry\":%s,\"current\":%s,"
		       "\"parent\":%d}",
		       s->quiesced ? "true" : "false",
		       fy_vs_snapshot_is_ferrys(s) ? "true" : "false",
		       s->current ? "true" : "false", s->parent);
	}
	printf("]}");
}

static void print_datastores(const struct fy_vs_inventory *inv, bool json)
{
	char cap[32], fr[32];
	size_t i, j;

	if (!json)
		printf("\ndatastores:\n");
	for (i = 0; i < inv->n_datastores; i++) {
		const struct fy_vs_datastore *d = &inv->datastores[i];

		if (json) {
			printf("%s{\"moref\":", i ? "," : "");
			fy_json_string(stdout, d->moref.value);
			printf(",\"name\":");
			fy_json_string(stdout, d->name);
			printf(",\"type\":");
			fy_json_string(stdout, d->type);
			printf(",\"capacity\":%" PRIu64 ",\"free\":%" PRIu64
			       ",\"accessible\":%s,\"hosts\":[",
			       d->capacity, d->free_space,
			       d->accessible ? "true" : "false");
			for (j = 0; j < d->n_hosts; j++) {
				printf("%s", j ? "," : "");
				fy_json_string(stdout, host_name(inv, &d->hosts[j]));
			}
			printf("]}");
			continue;
		}
		fy_format_bytes(d->capacity, cap, sizeof(cap));
		fy_format_bytes(d->free_space, fr, sizeof(fr));
		printf("  %s (%s) %s, %s, %s free%s, hosts:", d->name,
		       d->moref.value, d->type[0] ? d->type : "?", cap, fr,
		       d->accessible ? "" : ", NOT ACCESSIBLE");
		for (j = 0; j < d->n_hosts; j++)
			printf("%s %s", j ? "," : "", host_name(inv, &d->hosts[j]));
		printf("%s\n", d->n_hosts ? "" : " none");
	}
}

/* The proxy from --proxy, else this machine as a job finds it
 * (ferry.proxy.moref, ferry.proxy.instanceUuid, else the BIOS UUID checked
 * by MAC: the transport table's rule); NULL (unknown) with a reason. */
static const struct fy_vs_vm *locate_proxy(struct fy_vs_client *c,
					   struct fy_transport_env *env,
					   const char *flag,
					   const struct fy_vs_inventory *inv,
					   char *why, size_t whylen)
{
	const struct fy_vs_vm *vm, *found;
	struct fy_vs_moref m;
	char reason[FY_ERR_MAX];

	if (flag) {
		if (fy_vs_find_vm_spec(c, flag, &m) < 0) {
			snprintf(why, whylen, "unknown proxy: %s", fy_err_msg());
			return NULL;
		}
	} else {
		found = fy_transport_env_proxy(env, reason, sizeof(reason));
		if (!found) {
			snprintf(why, whylen, "unknown proxy: %s (or pass "
				 "--proxy)", reason);
			return NULL;
		}
		m = found->moref;
	}
	vm = find_vm(inv, &m);
	if (!vm)
		snprintf(why, whylen, "unknown proxy: %s is not in the inventory",
			 m.value);
	return vm;
}

int agent_cmd_inventory(int argc, char **argv)
{
	struct fy_config *cfg = fy_config_new();
	struct fy_vs_client *c = NULL;
	struct fy_vs_inventory *inv = NULL;
	const struct fy_vs_vm *proxy, *only = NULL;
	const char *config = NULL, *vm_spec = NULL, *proxy_spec = NULL;
	const char *sets[64];
	char proxy_why[1200] = "";
	struct fy_vs_about about;
	struct fy_transport_env env;
	unsigned n_sets = 0, i;
	bool json = false;
	int ch, rc = 0, level = -1;

	fy_transport_env_init(&env, cfg, NULL);
	if (!cfg) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		return 1;
	}
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", inventory_opts, NULL)) != -1) {
		switch (ch) {
		case OPT_CONFIG: config = optarg; break;
		case OPT_VM: vm_spec = optarg; break;
		case OPT_PROXY: proxy_spec = optarg; break;
		case OPT_JSON: json = true; break;
		case OPT_LOG_LEVEL: level = atoi(optarg); break;
		case OPT_SET:
			if (n_sets == sizeof(sets) / sizeof(sets[0])) {
				fprintf(stderr, "ferry-agent: too many --set\n");
				rc = -E2BIG;
				goto out;
			}
			sets[n_sets++] = optarg;
			break;
		default:
			usage();
			rc = -EINVAL;
			goto out;
		}
	}
	if (optind < argc || !config) {
		usage();
		rc = -EINVAL;
		goto out;
	}
	if ((rc = fy_config_load(cfg, config)) < 0)
		goto fail;
	for (i = 0; i < n_sets; i++)
		if ((rc = fy_config_set_pair(cfg, sets[i])) < 0)
			goto fail;

	if ((rc = fy_agent_setup_logging(cfg, level)) < 0)
		goto fail;
	if ((rc = fy_vs_client_open(cfg, &c)) < 0)
		goto fail;
	if (vm_spec) {
		struct fy_vs_moref m;

		if ((rc = fy_vs_find_vm_spec(c, vm_spec, &m)) < 0)
			goto fail;
		if ((rc = fy_vs_inventory_get(c, true, &inv)) < 0)
			goto fail;
		only = find_vm(inv, &m);
		if (!only) {
			rc = fy_err_set(-ENOENT, "%s (%s) is not in the inventory",
					vm_spec, m.value);
			goto fail;
		}
	} else if ((rc = fy_vs_inventory_get(c, true, &inv)) < 0) {
		goto fail;
	}
	fy_transport_env_init(&env, cfg, c);
	proxy = locate_proxy(c, &env, proxy_spec, inv, proxy_why,
			     sizeof(proxy_why));
	fy_vs_client_about(c, &about);

	if (json) {
		printf("{\"server\":{\"url\":");
		fy_json_string(stdout, about.url);
		printf(",\"product\":");
		fy_json_string(stdout, about.full_name);
		printf(",\"api_type\":");
		fy_json_string(stdout, about.api_type);
		printf(",\"api_version\":");
		fy_json_string(stdout, about.api_version);
		printf(",\"used_version\":");
		fy_json_string(stdout, about.used_version);
		printf("},\"proxy\":");
		if (proxy) {
			printf("{\"moref\":");
			fy_json_string(stdout, proxy->moref.value);
			printf(",\"name\":");
			fy_json_string(stdout, proxy->name);
			printf(",\"host\":");
			fy_json_string(stdout, proxy->host_name);
			printf(",\"free_scsi_slots\":%u}",
			       fy_vs_hotadd_free_slots(proxy));
		} else {
			printf("{\"unknown\":");
			fy_json_string(stdout, proxy_why);
			printf("}");
		}
		printf(",\"datastores\":[");
		print_datastores(inv, true);
		printf("],\"vms\":[");
		if (only) {
			print_json_vm(inv, &env, proxy, only, true);
		} else {
			for (i = 0; i < inv->n_vms; i++)
				print_json_vm(inv, &env, proxy, inv->vms[i],
					      i == 0);
		}
		printf("]}\n");
	} else {
		printf("server %s: %s (%s, API %s, speaking %s)\n", about.url,
		       about.full_name, about.api_type, about.api_version,
		       about.used_version);
		if (proxy)
			printf("proxy %s (%s) on host %s, datacenter %s, %u free "
			       "SCSI slot(s)\n", proxy->name, proxy->moref.value,
			       proxy->host_name, proxy->datacenter_name,
			       fy_vs_hotadd_free_slots(proxy));
		else
			printf("proxy: %s\n", proxy_why);
		print_datastores(inv, false);
		if (only) {
			print_text_vm(inv, &env, proxy, only);
		} else {
			for (i = 0; i < inv->n_vms; i++)
				print_text_vm(inv, &env, proxy, inv->vms[i]);
		}
	}
	goto out;
fail:
	fprintf(stderr, "ferry-agent: inventory: %s\n", fy_err_msg());
out:
	fy_transport_env_release(&env);
	fy_vs_inventory_free(inv);
	fy_vs_client_free(c);
	fy_config_free(cfg);
	return rc == -EINVAL && !c ? 2 : (rc < 0 ? 1 : 0);
}
