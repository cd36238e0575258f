/*
 * The SOAP response parser on saved samples, without a network: good
 * responses from the simulator (with its XMLSchema-instance: prefix) and in
 * real vCenter's style, every kind of fault, an HTML page, truncated,
 * deeply nested, huge, entity tricks, unknown types.
 *
 * usage: test_vs_parse SAMPLES_DIR
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tests/unit/check.h"
#include "vsphere/vs_int.h"

static const char *dir;

static char *load(const char *name, size_t *len)
{
	char path[1024];
	void *data = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (fy_read_file(path, 1u << 24, &data, len) < 0) {
		fprintf(stderr, "cannot read %s: %s\n", path, fy_err_msg());
		exit(1);
	}
	return data;
}

/* Parses a sample as the reply to method; returns the rc, fills r/f. */
static int parse(const char *name, const char *method, struct vs_reply *r,
		 struct fy_vs_fault *f)
{
	size_t len;
	char *data = load(name, &len);
	int rc = vs_soap_parse(data, len, NULL, method, r, f);

	free(data);
	return rc;
}

static void check_fault(const char *name, int want_rc, const char *type,
			const char *privilege, const char *object,
			const char *in_message)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	int rc = parse(name, "Anything", &r, &f);

	if (rc != want_rc || strcmp(f.type, type)) {
		fprintf(stderr, "%s: rc %d type '%s' (%s), want %d '%s'\n", name,
			rc, f.type, fy_err_msg(), want_rc, type);
		check_failures++;
	}
	if (privilege)
		CHECK(!strcmp(f.privilege, privilege));
	if (object)
		CHECK(!strcmp(f.object.value, object));
	if (in_message && !strstr(fy_err_msg(), in_message)) {
		fprintf(stderr, "%s: message '%s' lacks '%s'\n", name,
			fy_err_msg(), in_message);
		check_failures++;
	}
	CHECK(r.doc == NULL);
}

static void test_faults(void)
{
	check_fault("fault_not_authenticated.xml", -EACCES, "NotAuthenticated",
		    "System.View", "group-d1", "NotAuthenticated");
	/* The simulator leaves the faultstring empty: we still say why. */
	check_fault("sim_fault_not_authenticated.xml", -EACCES,
		    "NotAuthenticated", NULL, NULL, "not authenticated");
	check_fault("fault_invalid_login.xml", -EACCES, "InvalidLogin", NULL,
		    NULL, "incorrect user name or password");
	check_fault("fault_no_permission.xml", -EPERM, "NoPermission",
		    "VirtualMachine.State.CreateSnapshot", "vm-42",
		    "missing privilege VirtualMachine.State.CreateSnapshot on vm-42");
	check_fault("fault_no_permission_70.xml", -EPERM, "NoPermission",
		    "VirtualMachine.Config.AddExistingDisk", "vm-42", NULL);
	check_fault("fault_file_locked.xml", -EBUSY, "FileLocked", NULL, NULL,
		    "file [ds1] vm-two-disks/vm-two-disks.vmdk");
	check_fault("fault_task_in_progress.xml", -EBUSY, "TaskInProgress",
		    NULL, NULL, "task task-1234");
	check_fault("fault_invalid_state.xml", -EBUSY, "InvalidState", NULL,
		    NULL, "current state");
	check_fault("fault_mo_not_found.xml", -ENOENT, "ManagedObjectNotFound",
		    NULL, "vm-999", "vm-999");
	check_fault("sim_fault_mo_not_found.xml", -ENOENT,
		    "ManagedObjectNotFound", NULL, "vm-999", NULL);
	/* Whitespace around a moref value is layout. */
	check_fault("sim_fault_task_not_found.xml", -ENOENT,
		    "ManagedObjectNotFound", NULL, "task-70", NULL);
	check_fault("fault_method_disabled.xml", -EPERM, "MethodDisabled", NULL,
		    NULL, "disabled by ferry:job-7");
	check_fault("fault_method_already_disabled.xml", -EALREADY,
		    "MethodAlreadyDisabledFault", NULL, NULL,
		    "com.vendor.backup");
	check_fault("fault_not_supported.xml", -EOPNOTSUPP, "NotSupported", NULL,
		    NULL, NULL);
	check_fault("sim_fault_method_not_found.xml", -EOPNOTSUPP,
		    "MethodNotFound", NULL, NULL, NULL);
	/* No xsi:type: the element name without "Fault"; faultMessage. */
	check_fault("fault_no_xsi_type.xml", -EBUSY, "InvalidState", NULL, NULL,
		    "VM is busy");
	check_fault("fault_no_detail.xml", -EIO, "ServerFaultCode", NULL, NULL,
		    "Unexpected internal error");
	/* XSI bound to another prefix, and the envelope too. */
	check_fault("fault_odd_prefix.xml", -EPERM, "NoPermission",
		    "Datastore.Browse", "datastore-11", NULL);
}

static void check_bad(const char *name, const char *in_message)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	int rc = parse(name, "Logout", &r, &f);

	if (rc != -EBADMSG || !strstr(fy_err_msg(), in_message)) {
		fprintf(stderr, "%s: rc %d '%s', want -EBADMSG with '%s'\n", name,
			rc, fy_err_msg(), in_message);
		check_failures++;
	}
	CHECK(r.doc == NULL);
	CHECK(f.type[0] == '\0');
}

static void test_bad_documents(void)
{
	check_bad("html_503.html", "503 Service Unavailable");
	check_bad("html_503.html", "HTML page");
	check_bad("not_soap.xml", "not a SOAP envelope");
	check_bad("laughs.xml", "DTD");
	check_bad("xxe.xml", "DTD");
	check_bad("undefined_entity.xml", "malformed");
	check_bad("deep.xml", "nested deeper than 200");
}

/* Every prefix of a good response is refused cleanly. */
static void test_truncated(void)
{
	static const char *const names[] = { "vm_rich.xml",
					     "sim_retrieve_vm.xml",
					     "fault_no_permission.xml" };
	size_t i, cut, len;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *data = load(names[i], &len);
		struct vs_reply r;
		struct fy_vs_fault f;
		int bad = 0;

		/* Cut before the last closing tag at every byte, stepping to
		 * keep the test quick on the big sample. */
		for (cut = 0; cut + 20 < len; cut += cut < 2000 ? 1 : 97) {
			int rc = vs_soap_parse(data, cut, NULL,
					       "RetrievePropertiesEx", &r, &f);

			if (rc != -EBADMSG) {
				fprintf(stderr, "%s cut at %zu: rc %d (%s)\n",
					names[i], cut, rc, fy_err_msg());
				bad++;
			}
			vs_reply_release(&r);
		}
		CHECK(bad == 0);
		free(data);
	}
}

static void test_limits(void)
{
	struct fy_vs_limits lim;
	struct vs_reply r;
	struct fy_vs_fault f;
	struct rusage ru;
	size_t len, i, n;
	char *data = load("vm_rich.xml", &len), *big;
	int rc;

	fy_vs_limits_default(&lim);
	lim.max_elements = 50;
	rc = vs_soap_parse(data, len, &lim, "RetrievePropertiesEx", &r, &f);
	CHECK(rc == -EBADMSG && strstr(fy_err_msg(), "more than 50 elements"));
	fy_vs_limits_default(&lim);
	lim.max_text = 8;
	rc = vs_soap_parse(data, len, &lim, "RetrievePropertiesEx", &r, &f);
	CHECK(rc == -EBADMSG && strstr(fy_err_msg(), "longer than 8 bytes"));
	fy_vs_limits_default(&lim);
	lim.max_response = len - 1;
	rc = vs_soap_parse(data, len, &lim, "RetrievePropertiesEx", &r, &f);
	CHECK(rc == -EFBIG);
	free(data);

	/* A huge response (65 MiB of elements) over the default 64 MiB. */
	n = (65u << 20);
	big = malloc(n);
	CHECK(big != NULL);
	if (!big)
		return;
	for (i = 0; i + 7 <= n; i += 7)
		memcpy(big + i, "<a></a>", 7);
	rc = vs_soap_parse(big, n, NULL, "Logout", &r, &f);
	CHECK(rc == -EFBIG);
	/* Within the byte bound but over the element bound: stopped early. */
	memcpy(big, "<soapenv:Envelope xmlns:soapenv=\"" VS_NS_SOAPENV "\">",
	       strlen("<soapenv:Envelope xmlns:soapenv=\"" VS_NS_SOAPENV "\">"));
	fy_vs_limits_default(&lim);
	rc = vs_soap_parse(big, 60u << 20, &lim, "Logout", &r, &f);
	CHECK(rc == -EBADMSG && strstr(fy_err_msg(), "elements"));
	free(big);
	/* Parsing tens of MiB must not have needed more than a few times
	 * that: the tree is bounded. */
	getrusage(RUSAGE_SELF, &ru);
	CHECK(ru.ru_maxrss < 1024 * 1024); /* KiB: under 1 GiB */
}

static void test_service_content_and_versions(void)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	char v[32];
	size_t len;
	char *data;

	CHECK_RC(parse("sim_service_content.xml", "RetrieveServiceContent", &r,
		       &f));
	CHECK(r.returnval != NULL);
	CHECK(!strcmp(vs_child_text(vs_child(r.returnval, "about"), "apiType"),
		      "VirtualCenter"));
	vs_reply_release(&r);
	/* The wrong response element for the method is refused. */
	CHECK(parse("sim_service_content.xml", "Login", &r, &f) == -EBADMSG);

	data = load("sim_versions.xml", &len);
	CHECK_RC(vs_pick_version(data, len, NULL, v, sizeof(v)));
	CHECK(!strcmp(v, "6.5"));
	free(data);
	data = load("versions_80.xml", &len);
	CHECK_RC(vs_pick_version(data, len, NULL, v, sizeof(v)));
	CHECK(!strcmp(v, "8.0.2.0"));
	free(data);
	/* Newer than we know: our newest that the server still accepts. */
	data = load("versions_90.xml", &len);
	CHECK_RC(vs_pick_version(data, len, NULL, v, sizeof(v)));
	CHECK(!strcmp(v, "8.0.3.0"));
	free(data);
	data = load("versions_60.xml", &len);
	CHECK(vs_pick_version(data, len, NULL, v, sizeof(v)) == -ENOTSUP);
	CHECK(strstr(fy_err_msg(), "6.5"));
	free(data);
	CHECK(vs_version_cmp("6.7.3", "6.7") > 0);
	CHECK(vs_version_cmp("7.0", "7.0.0.0") == 0);
	CHECK(vs_version_cmp("10.0", "9.9") > 0);
	CHECK_RC(vs_version_supported("7.0.1.1", v, sizeof(v)));
	CHECK(!strcmp(v, "7.0.1.0"));
}

static void test_rich_vm(void)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	struct vs_arena a;
	struct fy_vs_vm vm;
	const struct fy_vs_disk *d;
	const struct fy_vs_controller *ct;

	CHECK_RC(parse("vm_rich.xml", "RetrievePropertiesEx", &r, &f));
	vs_arena_init(&a, 0);
	memset(&vm, 0, sizeof(vm));
	CHECK_RC(vs_parse_vm(vs_child(r.returnval, "objects"), &a, &vm));
	CHECK(!strcmp(vm.moref.value, "vm-42"));
	CHECK(!strcmp(vm.moref.type, "VirtualMachine"));
	CHECK(!strcmp(vm.name, "db01 & co"));
	CHECK(!strcmp(vm.instance_uuid, "5012c2f1-7e3d-4c2b-8a6f-0123456789ab"));
	CHECK(!strcmp(vm.bios_uuid, "4212b1e0-6d2c-4b1a-9f5e-0123456789ab"));
	CHECK(vm.cbt_enabled && vm.consolidation_needed && !vm.is_template);
	CHECK(!strcmp(vm.host.value, "host-10"));
	CHECK(vm.n_datastores == 2);
	/* Controllers: IDE, PVSCSI, LSI SAS, AHCI, NVMe (PCI is not one). */
	CHECK(vm.devices.n_controllers == 5);
	CHECK(vm.devices.n_disks == 5);
	/* PCI controller, CD-ROM, NIC and an unknown future device. */
	CHECK(vm.devices.n_other == 4);
	CHECK(vm.devices.n_nics == 1 && vm.devices.n_cdroms == 1);
	CHECK(vm.n_macs == 1 && !strcmp(vm.macs[0], "00:50:56:aa:bb:cc"));
	ct = &vm.devices.controllers[1];
	CHECK(ct->key == 1000 && ct->kind == FY_VS_CTRL_SCSI && ct->bus == 0 &&
	      ct->pci_slot == 160 && ct->own_unit == 7 && ct->n_devices == 2);
	CHECK(ct->used_units == 0x3);
	ct = &vm.devices.controllers[2];
	CHECK(ct->kind == FY_VS_CTRL_SCSI && ct->bus == 1 &&
	      !strcmp(ct->sharing, "physicalSharing"));
	/* The CD-ROM on unit 2 takes a slot too. */
	CHECK(ct->used_units == 0x5);
	CHECK(vm.devices.controllers[0].kind == FY_VS_CTRL_IDE);
	CHECK(vm.devices.controllers[3].kind == FY_VS_CTRL_SATA);
	CHECK(vm.devices.controllers[4].kind == FY_VS_CTRL_NVME);

	d = fy_vs_devices_disk(&vm.devices, 2000);
	CHECK(d && d->capacity == 17179869184ull && d->chain_len == 3);
	if (d && d->chain_len == 3) {
		CHECK(!strcmp(d->file_name, "[ds1] db01/db01-000002.vmdk"));
		CHECK(!strcmp(d->chain[2].file_name, "[ds1] db01/db01.vmdk"));
		CHECK(!strcmp(d->change_id, "52 3c 1d 7f 9a 2e 44 10-8b 5c 61 0e "
					    "3a 77 d2 5c/12"));
		CHECK(!strcmp(d->chain[1].change_id, "52 3c 1d 7f 9a 2e 44 10-8b "
						     "5c 61 0e 3a 77 d2 5c/11"));
		CHECK(!strcmp(d->uuid, "6000C29a-1b2c-3d4e-5f60-718293a4b5c6"));
		CHECK(!strcmp(d->datastore.value, "datastore-11"));
		CHECK(d->chain[0].thin && !d->independent && !d->rdm);
		CHECK(d->controller == 1 && d->unit == 0);
	}
	d = fy_vs_devices_disk(&vm.devices, 2001);
	/* capacityInKB when capacityInBytes is absent. */
	CHECK(d && d->capacity == 1073741824ull && d->independent);
	d = fy_vs_devices_disk(&vm.devices, 2016);
	CHECK(d && d->rdm &&
	      !strcmp(d->chain[0].compatibility_mode, "physicalMode"));
	d = fy_vs_devices_disk(&vm.devices, 16000);
	/* A backing type from the future is kept by name. */
	CHECK(d && !strcmp(d->chain[0].type, "VirtualDiskQuantumBackingInfo"));

	CHECK(vm.n_snapshots == 4);
	if (vm.n_snapshots == 4) {
		CHECK(!strcmp(vm.snapshots[0].name, "before upgrade"));
		CHECK(vm.snapshots[0].parent == -1);
		CHECK(vm.snapshots[1].parent == 0 && vm.snapshots[1].quiesced);
		CHECK(fy_vs_snapshot_is_ferrys(&vm.snapshots[1]));
		CHECK(!fy_vs_snapshot_is_ferrys(&vm.snapshots[0]));
		CHECK(vm.snapshots[2].parent == 1 && vm.snapshots[2].current);
		CHECK(vm.snapshots[3].parent == 0 && !vm.snapshots[3].current);
	}
	vs_arena_release(&a);
	vs_reply_release(&r);
}

static void test_sim_vm(void)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	struct vs_arena a;
	struct fy_vs_vm vm;

	/* The simulator's XMLSchema-instance: prefix, and a missingSet for
	 * a property that does not exist. */
	CHECK_RC(parse("sim_retrieve_vm.xml", "RetrievePropertiesEx", &r, &f));
	vs_arena_init(&a, 0);
	memset(&vm, 0, sizeof(vm));
	CHECK_RC(vs_parse_vm(vs_child(r.returnval, "objects"), &a, &vm));
	CHECK(!strcmp(vm.name, "DC0_H0_VM0"));
	CHECK(vm.devices.n_disks == 1);
	CHECK(vm.devices.n_controllers == 3);
	CHECK(vm.devices.n_disks == 1 && vm.devices.disks[0].controller == 2);
	CHECK(vm.devices.n_disks == 1 &&
	      !strcmp(vm.devices.disks[0].chain[0].type,
		      "VirtualDiskFlatVer2BackingInfo"));
	vs_arena_release(&a);
	vs_reply_release(&r);

	CHECK_RC(parse("sim_retrieve_snapshot.xml", "RetrievePropertiesEx", &r,
		       &f));
	vs_arena_init(&a, 0);
	memset(&vm, 0, sizeof(vm));
	CHECK_RC(vs_parse_snapshots(vs_prop(vs_child(r.returnval, "objects"),
					    "snapshot"), &a, &vm));
	CHECK(vm.n_snapshots == 1 && vm.snapshots[0].quiesced &&
	      vm.snapshots[0].current &&
	      fy_vs_snapshot_is_ferrys(&vm.snapshots[0]));
	vs_arena_release(&a);
	vs_reply_release(&r);
}

static void test_fake_prefix(void)
{
	struct vs_reply r;
	struct fy_vs_fault f;

	/* Only the attribute whose namespace is XSI is the type. */
	CHECK_RC(parse("fake_xsi_prefix.xml", "FindByUuid", &r, &f));
	CHECK(r.returnval && r.returnval->xsi_type &&
	      !strcmp(r.returnval->xsi_type, "ManagedObjectReference"));
	CHECK(r.returnval && !strcmp(r.returnval->type_attr, "VirtualMachine"));
	vs_reply_release(&r);
}

static void test_tasks_and_areas(void)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	struct vs_task_info ti;
	struct vs_change_info ci;

	CHECK_RC(parse("sim_task_success.xml", "RetrievePropertiesEx", &r, &f));
	CHECK_RC(vs_parse_task_info(vs_prop(vs_child(r.returnval, "objects"),
					    "info"), &ti));
	CHECK(!strcmp(ti.state, "success") && !ti.has_error);
	CHECK(!strcmp(ti.result.value, "snapshot-69") &&
	      !strcmp(ti.result.type, "VirtualMachineSnapshot"));
	vs_reply_release(&r);

	CHECK_RC(parse("sim_task_error.xml", "RetrievePropertiesEx", &r, &f));
	CHECK_RC(vs_parse_task_info(vs_prop(vs_child(r.returnval, "objects"),
					    "info"), &ti));
	CHECK(!strcmp(ti.state, "error") && ti.has_error);
	CHECK(!strcmp(ti.fault.type, "FileNotFound"));
	CHECK(strstr(ti.fault.detail, "nope-flat.vmdk") != NULL);
	vs_reply_release(&r);

	CHECK_RC(parse("task_error_file_locked.xml", "RetrievePropertiesEx", &r,
		       &f));
	CHECK_RC(vs_parse_task_info(vs_prop(vs_child(r.returnval, "objects"),
					    "info"), &ti));
	CHECK(ti.has_error && !strcmp(ti.fault.type, "FileLocked") &&
	      ti.progress == 37 && strstr(ti.fault.message, "locked"));
	vs_reply_release(&r);

	CHECK_RC(parse("change_info.xml", "QueryChangedDiskAreas", &r, &f));
	CHECK_RC(vs_parse_change_info(r.returnval, &ci));
	CHECK(ci.start == 0 && ci.length == 16777216 && ci.n == 2);
	vs_reply_release(&r);
	CHECK_RC(parse("change_info_unordered.xml", "QueryChangedDiskAreas", &r,
		       &f));
	CHECK(vs_parse_change_info(r.returnval, &ci) == -EBADMSG);
	vs_reply_release(&r);
	CHECK_RC(parse("change_info_outside.xml", "QueryChangedDiskAreas", &r,
		       &f));
	CHECK(vs_parse_change_info(r.returnval, &ci) == -EBADMSG);
	vs_reply_release(&r);
}

static void test_hotadd_rules(void)
{
	struct vs_reply r;
	struct fy_vs_fault f;
	struct vs_arena a;
	struct fy_vs_vm vm, proxy;
	struct fy_vs_inventory inv;
	struct fy_vs_datastore ds[2];
	struct fy_vs_moref hosts1[1], hosts2[1];
	char why[512];

	CHECK_RC(parse("vm_rich.xml", "RetrievePropertiesEx", &r, &f));
	vs_arena_init(&a, 0);
	memset(&vm, 0, sizeof(vm));
	memset(&proxy, 0, sizeof(proxy));
	CHECK_RC(vs_parse_vm(vs_child(r.returnval, "objects"), &a, &vm));
	CHECK_RC(vs_parse_vm(vs_child(r.returnval, "objects"), &a, &proxy));
	vs_moref_set(&proxy.moref, "VirtualMachine", "vm-1");
	proxy.name = "proxy";
	vs_moref_set(&proxy.host, "HostSystem", "host-20");
	proxy.host_name = "esx2";
	vs_moref_set(&vm.datacenter, "Datacenter", "datacenter-2");
	vs_moref_set(&proxy.datacenter, "Datacenter", "datacenter-2");
	vm.datacenter_name = proxy.datacenter_name = "DC0";
	memset(&inv, 0, sizeof(inv));
	memset(ds, 0, sizeof(ds));
	vs_moref_set(&ds[0].moref, "Datastore", "datastore-11");
	ds[0].name = "ds1";
	vs_moref_set(&hosts1[0], "HostSystem", "host-20");
	ds[0].hosts = hosts1;
	ds[0].n_hosts = 1;
	vs_moref_set(&ds[1].moref, "Datastore", "datastore-12");
	ds[1].name = "ds2";
	vs_moref_set(&hosts2[0], "HostSystem", "host-10");
	ds[1].hosts = hosts2;
	ds[1].n_hosts = 1;
	inv.datastores = ds;
	inv.n_datastores = 2;

#define RULE(key) fy_vs_hotadd_check(&inv, &proxy, &vm,                 \
				     fy_vs_devices_disk(&vm.devices, key), \
				     why, sizeof(why))
	CHECK(RULE(2000) == FY_VS_HOTADD_OK);
	CHECK(RULE(2001) == FY_VS_HOTADD_INDEPENDENT);
	CHECK(RULE(2016) == FY_VS_HOTADD_INDEPENDENT);
	CHECK(RULE(3000) == FY_VS_HOTADD_IDE);
	CHECK(strstr(why, "IDE") != NULL);
	CHECK(fy_vs_hotadd_check(&inv, NULL, &vm, &vm.devices.disks[0], why,
				 sizeof(why)) == FY_VS_HOTADD_UNKNOWN_PROXY);
	CHECK(fy_vs_hotadd_check(&inv, &vm, &vm, &vm.devices.disks[0], why,
				 sizeof(why)) == FY_VS_HOTADD_PROXY_IS_TARGET);
	/* The proxy's host does not mount the disk's datastore. */
	vs_moref_set(&hosts1[0], "HostSystem", "host-10");
	CHECK(RULE(2000) == FY_VS_HOTADD_NOT_MOUNTED);
	CHECK(strstr(why, "ds1") && strstr(why, "esx2"));
	vs_moref_set(&hosts1[0], "HostSystem", "host-20");
	vs_moref_set(&proxy.datacenter, "Datacenter", "datacenter-9");
	CHECK(RULE(2000) == FY_VS_HOTADD_OTHER_DATACENTER);
	vs_moref_set(&proxy.datacenter, "Datacenter", "datacenter-2");
	/* Fill the proxy's SCSI controllers: no slot left. */
	CHECK(fy_vs_hotadd_free_slots(&proxy) == 13 + 13);
	proxy.devices.controllers[1].used_units = 0xffff;
	proxy.devices.controllers[2].used_units = 0xffff;
	CHECK(fy_vs_hotadd_free_slots(&proxy) == 0);
	CHECK(RULE(2000) == FY_VS_HOTADD_NO_FREE_SLOT);
	CHECK(strstr(why, "2 controller") != NULL);
#undef RULE
	vs_arena_release(&a);
	vs_reply_release(&r);
}

static void test_buf(void)
{
	struct vs_buf b;

	vs_buf_init(&b, 64);
	vs_buf_elem(&b, "password", "a<b>&\"c'");
	CHECK(!b.err && !strcmp(b.data, "<password>a&lt;b&gt;&amp;&quot;c&apos;"
					 "</password>"));
	vs_buf_str(&b, "0123456789012345678901234567890123456789");
	CHECK(b.err == -E2BIG);
	vs_buf_release(&b);
}

/* Inventory names come back with '%', '/' and '\' escaped. */
static void test_name_equal(void)
{
	CHECK(fy_vs_name_equal("web01", "web01"));
	CHECK(!fy_vs_name_equal("web01", "web0"));
	CHECK(!fy_vs_name_equal("web0", "web01"));
	CHECK(fy_vs_name_equal("web%2f01 100%25", "web/01 100%"));
	CHECK(fy_vs_name_equal("web%2F01%5cx%5C", "web/01\\x\\"));
	CHECK(!fy_vs_name_equal("web%2f01", "web%2f01"));
	/* Other escapes are not vSphere's: literal text. */
	CHECK(fy_vs_name_equal("a%41b", "a%41b"));
	CHECK(!fy_vs_name_equal("a%41b", "aAb"));
	CHECK(fy_vs_name_equal("50%", "50%"));
	CHECK(fy_vs_name_equal("50%2", "50%2"));
	CHECK(fy_vs_name_equal("", ""));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SAMPLES_DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	test_faults();
	test_bad_documents();
	test_truncated();
	test_limits();
	test_service_content_and_versions();
	test_rich_vm();
	test_sim_vm();
	test_fake_prefix();
	test_tasks_and_areas();
	test_hotadd_rules();
	test_buf();
	test_name_equal();
	CHECK_DONE();
}
