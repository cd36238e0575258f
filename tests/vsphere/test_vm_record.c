/*
 * From a snapshot's configuration (a saved RetrievePropertiesEx answer
 * with every kind of controller, disk backing, NIC backing and CD-ROM) to
 * the VM configuration record a backup stores: the parser's view of it,
 * then vSphere's names turned into the record's words, the extraConfig
 * allow-list, and the disks linked to backup disks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/job.h"
#include "tests/unit/check.h"
#include "vsphere/vs_int.h"

static const char *dir;

static char *load(const char *name, size_t *len)
{
	char path[4096];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static const struct fy_vmconfig_disk *disk(const struct fy_vmconfig *c,
					   int32_t key)
{
	size_t i;

	for (i = 0; i < c->n_disks; i++)
		if (c->disks[i].key == key)
			return &c->disks[i];
	return NULL;
}

static const char *extra(const struct fy_vmconfig *c, const char *key)
{
	size_t i;

	for (i = 0; i < c->n_extra; i++)
		if (!strcmp(c->extra[i].key, key))
			return c->extra[i].value;
	return NULL;
}

static void test_parse_and_build(void)
{
	struct fy_vs_vm_config vc;
	struct fy_vmconfig *c = NULL;
	const struct fy_vmconfig_disk *d;
	struct vs_arena a;
	struct vs_reply r;
	struct fy_vs_fault f;
	int32_t keys[2] = { 2000, 3000 };
	uint8_t *rec = NULL;
	size_t len, rec_len = 0;
	char *xml = load("snapshot_config.xml", &len);

	CHECK_RC(vs_soap_parse(xml, len, NULL, "RetrievePropertiesEx", &r, &f));
	vs_arena_init(&a, 0);
	memset(&vc, 0, sizeof(vc));
	CHECK_RC(vs_parse_vm_config(vs_child(r.returnval, "objects"), &a, &vc));
	CHECK(!strcmp(vc.name, "db01 & co") && !strcmp(vc.firmware, "efi"));
	CHECK(vc.secure_boot && vc.num_cpu == 8 && vc.cores_per_socket == 4 &&
	      vc.memory_mb == 16384 && !strcmp(vc.version, "vmx-19"));
	CHECK(vc.devices.n_controllers == 5 && vc.devices.n_disks == 5);
	CHECK(vc.devices.n_nics == 2 && vc.devices.n_cdroms == 2);
	CHECK(vc.n_extra == 6);
	if (vc.devices.n_nics == 2) {
		CHECK(!strcmp(vc.devices.nics[0].network, "VM Network"));
		CHECK(!strcmp(vc.devices.nics[1].network, "dvportgroup-21"));
		CHECK(!strcmp(vc.devices.nics[1].address_type, "Generated"));
	}

	CHECK_RC(fy_vm_record_build(&vc, "fallback", keys, 2, &rec, &rec_len));
	CHECK(rec && rec_len > 0 && rec_len <= FY_VMCONFIG_MAX);
	if (!rec)
		goto out;
	CHECK_RC(fy_vmconfig_decode(rec, rec_len, &c));
	if (!c)
		goto out;
	CHECK(!strcmp(c->name, "db01 & co") && !strcmp(c->guest_id, "rhel8_64Guest"));
	CHECK(!strcmp(c->hardware_version, "vmx-19"));
	CHECK(!strcmp(c->firmware, "efi") && c->secure_boot);
	CHECK(c->cpus == 8 && c->cores_per_socket == 4 && c->memory_mb == 16384);
	CHECK(c->n_controllers == 5);
	if (c->n_controllers == 5) {
		CHECK(!strcmp(c->controllers[0].type, "ide") &&
		      !c->controllers[0].sharing[0]);
		CHECK(!strcmp(c->controllers[1].type, "pvscsi") &&
		      !strcmp(c->controllers[1].sharing, "noSharing"));
		CHECK(!strcmp(c->controllers[2].type, "lsilogic-sas") &&
		      c->controllers[2].bus == 1 &&
		      !strcmp(c->controllers[2].sharing, "physicalSharing"));
		CHECK(!strcmp(c->controllers[3].type, "sata"));
		CHECK(!strcmp(c->controllers[4].type, "nvme"));
	}
	CHECK(c->n_disks == 5);
	d = disk(c, 2000);
	CHECK(d && d->controller_key == 1000 && d->unit == 0 &&
	      d->capacity == 17179869184ull && !strcmp(d->provisioning, "thin") &&
	      !strcmp(d->mode, "persistent") && d->in_backup &&
	      d->backup_disk == 0);
	d = disk(c, 2001);
	CHECK(d && !strcmp(d->provisioning, "thick-eager") &&
	      !strcmp(d->mode, "independent_persistent") && !d->in_backup);
	d = disk(c, 2016);
	CHECK(d && !strcmp(d->provisioning, "rdm-physical") && !d->in_backup);
	d = disk(c, 3000);
	CHECK(d && d->controller_key == 200 && !strcmp(d->provisioning, "thin") &&
	      d->in_backup && d->backup_disk == 1);
	/* A backing this build does not know. */
	d = disk(c, 16000);
	CHECK(d && !strcmp(d->provisioning, "other") && d->capacity == 1048576);
	CHECK(c->n_nics == 2);
	if (c->n_nics == 2) {
		CHECK(!strcmp(c->nics[0].adapter, "vmxnet3") &&
		      !strcmp(c->nics[0].network, "VM Network") &&
		      !strcmp(c->nics[0].mac_type, "assigned") &&
		      !strcmp(c->nics[0].mac, "00:50:56:aa:bb:cc"));
		CHECK(!strcmp(c->nics[1].adapter, "e1000e") &&
		      !strcmp(c->nics[1].network, "dvportgroup-21") &&
		      !strcmp(c->nics[1].mac_type, "generated") &&
		      !strcmp(c->nics[1].mac, "00:50:56:9a:0b:0c"));
	}
	CHECK(c->n_cdroms == 2);
	if (c->n_cdroms == 2) {
		CHECK(c->cdroms[0].key == 16001 &&
		      c->cdroms[0].controller_key == 1001 &&
		      c->cdroms[0].unit == 2);
		CHECK(c->cdroms[1].controller_key == 15000 &&
		      c->cdroms[1].unit == 1);
	}
	/* The allow-list: no guestinfo (secrets), no change tracking, no
	 * host-specific NUMA placement. The sample spells the key
	 * disk.enableUUID, as Kubernetes' guides set it: VMX keys are
	 * case-insensitive, and the record keeps the list's spelling. */
	CHECK(c->n_extra == 3);
	CHECK(extra(c, "disk.EnableUUID") &&
	      !strcmp(extra(c, "disk.EnableUUID"), "TRUE"));
	CHECK(extra(c, "svga.present") && extra(c, "devices.hotplug"));
	CHECK(!extra(c, "guestinfo.userdata") && !extra(c, "ctkEnabled") &&
	      !extra(c, "numa.nodeAffinity"));
out:
	fy_vmconfig_free(c);
	free(rec);
	vs_arena_release(&a);
	vs_reply_release(&r);
	free(xml);
}

/* What the record cannot hold fails the build with a reason (the job
 * then notes it and backs the disks up without a record). */
static void test_refusals(void)
{
	struct fy_vs_vm_config vc;
	struct fy_vs_nic nics[FY_VMCONFIG_NICS_MAX + 1];
	uint8_t *rec = NULL;
	size_t len = 0;

	memset(&vc, 0, sizeof(vc));
	memset(nics, 0, sizeof(nics));
	vc.name = vc.guest_id = vc.version = vc.firmware = "";
	vc.num_cpu = 1;
	vc.memory_mb = 64;
	/* No name from the snapshot: the VM's. */
	CHECK_RC(fy_vm_record_build(&vc, "vm-from-job", NULL, 0, &rec, &len));
	if (rec) {
		struct fy_vmconfig *c = NULL;

		CHECK_RC(fy_vmconfig_decode(rec, len, &c));
		CHECK(c && !strcmp(c->name, "vm-from-job") &&
		      !strcmp(c->firmware, "bios"));
		fy_vmconfig_free(c);
	}
	free(rec);
	rec = NULL;

	for (size_t i = 0; i < FY_VMCONFIG_NICS_MAX + 1; i++) {
		nics[i].key = 4000 + (int32_t)i;
		nics[i].type = "VirtualVmxnet3";
		nics[i].network = nics[i].address_type = nics[i].mac = "";
	}
	vc.devices.nics = nics;
	vc.devices.n_nics = FY_VMCONFIG_NICS_MAX + 1;
	CHECK(fy_vm_record_build(&vc, "x", NULL, 0, &rec, &len) == -E2BIG);
	CHECK(!rec && strstr(fy_err_msg(), "network adapters"));
	vc.devices.n_nics = 1;
	/* No CPU count: refused by the record's own check. */
	vc.num_cpu = 0;
	CHECK(fy_vm_record_build(&vc, "x", NULL, 0, &rec, &len) < 0);
	CHECK(!rec && strstr(fy_err_msg(), "CPUs"));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SAMPLES_DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	test_parse_and_build();
	test_refusals();
	CHECK_DONE();
}
