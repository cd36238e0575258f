/*
 * The vsphere client against the simulated vCenter (tests/vcsim), started
 * by vcsim.sh, which turns the simulator's ready file into CONF: the
 * ferry.vcenter.* keys plus the ready file's fields flattened under
 * "test." (test.vms.vm-two-disks.moref, test.control, ...).
 *
 * usage: test_vs_sim CONF [--esx]
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "vsphere/vsphere.h"

static const char *conf_path;
static char tmpdir[512];

static struct fy_config *config(void)
{
	struct fy_config *cfg = fy_config_new();

	if (!cfg || fy_config_load(cfg, conf_path) < 0) {
		fprintf(stderr, "cannot load %s: %s\n", conf_path, fy_err_msg());
		exit(1);
	}
	return cfg;
}

static const char *get(const struct fy_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *get(const struct fy_config *cfg, const char *fmt, ...)
{
	char key[256];
	const char *v;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	v = fy_config_get(cfg, key);
	if (!v) {
		fprintf(stderr, "%s lacks %s\n", conf_path, key);
		exit(1);
	}
	return v;
}

static struct fy_vs_client *open_client(struct fy_config *cfg)
{
	struct fy_vs_client *c = NULL;
	int rc = fy_vs_client_open(cfg, &c);

	if (rc < 0) {
		fprintf(stderr, "connect: %s\n", fy_err_msg());
		check_failures++;
	}
	return c;
}

static void vm_ref(const struct fy_config *cfg, const char *name,
		   struct fy_vs_moref *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->type, sizeof(m->type), "VirtualMachine");
	snprintf(m->value, sizeof(m->value), "%s",
		 get(cfg, "test.vms.%s.moref", name));
}

static size_t discard(char *p, size_t s, size_t n, void *o)
{
	return s * n;
}

/* POST (or GET) to the simulator's /ferry-test control endpoint. */
static long control(const struct fy_config *cfg, const char *what,
		    const void *body, size_t len, bool post)
{
	char url[1024];
	long status = 0;
	CURL *e = curl_easy_init();

	snprintf(url, sizeof(url), "%s/%s", get(cfg, "test.control"), what);
	curl_easy_setopt(e, CURLOPT_URL, url);
	/* The test's own channel to the simulator, not Ferry's. */
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	if (post) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	if (status != 200)
		fprintf(stderr, "control %s: HTTP %ld\n", what, status);
	return status;
}

static void test_connect(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_about about;

	if (c) {
		fy_vs_client_about(c, &about);
		CHECK(!strcmp(about.api_type, "VirtualCenter"));
		CHECK(about.used_version[0] != '\0');
		CHECK(fy_vs_client_is_vcenter(c));
		CHECK(fy_vs_client_logins(c) == 1);
		CHECK_RC(fy_vs_client_logout(c));
	}
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static void test_wrong_password(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = NULL;
	char pw[600];
	FILE *f;
	int rc;

	snprintf(pw, sizeof(pw), "%s/wrong-pw", tmpdir);
	f = fopen(pw, "w");
	fputs("not-the-password-xyzzy\n", f);
	fclose(f);
	chmod(pw, 0600);
	fy_config_set(cfg, "ferry.vcenter.passwordFile", pw);
	rc = fy_vs_client_open(cfg, &c);
	CHECK(rc == -EACCES && c == NULL);
	CHECK(strstr(fy_err_msg(), "wrong user name or password") != NULL);
	CHECK(strstr(fy_err_msg(), "xyzzy") == NULL);
	CHECK(!strcmp(fy_vs_last_fault()->type, "InvalidLogin"));
	fy_config_free(cfg);
}

static void test_certificates(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = NULL;
	char wrong[128], tp[128];
	int rc;

	/* A copy: setting the key again frees the old value. */
	snprintf(tp, sizeof(tp), "%s", get(cfg, "ferry.vcenter.thumbprint"));
	/* A thumbprint that differs in one byte. */
	snprintf(wrong, sizeof(wrong), "%s", tp);
	wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
	fy_config_set(cfg, "ferry.vcenter.thumbprint", wrong);
	rc = fy_vs_client_open(cfg, &c);
	CHECK(rc == -EPERM && c == NULL);
	CHECK(strstr(fy_err_msg(), "thumbprint") != NULL);
	CHECK(strstr(fy_err_msg(), tp) != NULL);

	/* No pin, no CA: the default verification refuses the simulator's
	 * certificate and says what its thumbprint is. */
	fy_config_set(cfg, "ferry.vcenter.thumbprint", "");
	rc = fy_vs_client_open(cfg, &c);
	CHECK(rc == -EPERM && c == NULL);
	CHECK(strstr(fy_err_msg(), "not trusted") != NULL);
	CHECK(strstr(fy_err_msg(), tp) != NULL);

	/* The simulator's own certificate as the CA bundle. */
	fy_config_set(cfg, "ferry.vcenter.caFile", get(cfg, "test.cert_file"));
	c = open_client(cfg);
	fy_vs_client_free(c);

	/* Told not to verify: works, with a warning. */
	fy_config_set(cfg, "ferry.vcenter.caFile", "");
	fy_config_set(cfg, "vixDiskLib.linuxSSL.verifyCertificates", "0");
	c = open_client(cfg);
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static void test_expired_session(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_moref m;
	struct fy_vs_vm *vm = NULL;

	if (!c)
		goto out;
	CHECK(control(cfg, "expire-sessions", NULL, 0, true) == 200);
	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_INSTANCE_UUID,
			       get(cfg, "test.vms.vm-two-disks.instance_uuid"),
			       &m));
	CHECK(fy_vs_client_logins(c) == 2);
	CHECK(control(cfg, "expire-sessions", NULL, 0, true) == 200);
	CHECK_RC(fy_vs_vm_get(c, &m, &vm));
	CHECK(vm && vm->devices.n_disks == 2);
	CHECK(fy_vs_client_logins(c) == 3);
	fy_vs_vm_free(vm);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static void test_find(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	const char *want = get(cfg, "test.vms.vm-two-disks.moref");
	const char *iu = get(cfg, "test.vms.vm-two-disks.instance_uuid");
	const char *bu = get(cfg, "test.vms.vm-two-disks.bios_uuid");
	char path[256], spec[300];
	struct fy_vs_moref m;

	if (!c)
		goto out;
	snprintf(path, sizeof(path), "/%s/vm/vm-two-disks",
		 get(cfg, "test.datacenter"));
#define FOUND(by, key)                                                   \
	do {                                                             \
		memset(&m, 0, sizeof(m));                                \
		CHECK_RC(fy_vs_find_vm(c, by, key, &m));                 \
		CHECK(!strcmp(m.value, want));                           \
	} while (0)
	FOUND(FY_VS_BY_MOREF, want);
	FOUND(FY_VS_BY_NAME, "vm-two-disks");
	FOUND(FY_VS_BY_PATH, path);
	FOUND(FY_VS_BY_INSTANCE_UUID, iu);
	FOUND(FY_VS_BY_BIOS_UUID, bu);
#undef FOUND
	CHECK_RC(fy_vs_find_vm_spec(c, bu, &m));
	CHECK(!strcmp(m.value, want));
	snprintf(spec, sizeof(spec), "path:%s", path);
	CHECK_RC(fy_vs_find_vm_spec(c, spec, &m));
	CHECK(!strcmp(m.value, want));
	CHECK(fy_vs_find_vm(c, FY_VS_BY_MOREF, "vm-99999", &m) == -ENOENT);
	CHECK(fy_vs_find_vm(c, FY_VS_BY_NAME, "no-such-vm", &m) == -ENOENT);
	CHECK(fy_vs_find_vm(c, FY_VS_BY_PATH, "/nowhere/vm/x", &m) == -ENOENT);
	CHECK(fy_vs_find_vm(c, FY_VS_BY_INSTANCE_UUID,
			    "00000000-0000-0000-0000-000000000000", &m) ==
	      -ENOENT);
	CHECK(strstr(fy_err_msg(), "00000000-0000") != NULL);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static const struct fy_vs_snapshot *find_snapshot(const struct fy_vs_vm *vm,
						  const struct fy_vs_moref *m)
{
	size_t i;

	for (i = 0; i < vm->n_snapshots; i++)
		if (!strcmp(vm->snapshots[i].moref.value, m->value))
			return &vm->snapshots[i];
	return NULL;
}

static void test_snapshots(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_snapshot_opts q = { "ferry-test-q", "quiesced one", false,
					 true };
	struct fy_vs_snapshot_opts nq = { NULL, NULL, false, false };
	struct fy_vs_moref vmref, s1, s2;
	struct fy_vs_devices *devs = NULL;
	const struct fy_vs_snapshot *s;
	struct fy_vs_vm *vm = NULL;

	if (!c)
		goto out;
	vm_ref(cfg, "vm-two-disks", &vmref);
	CHECK_RC(fy_vs_snapshot_create(c, &vmref, &q, &s1));
	CHECK_RC(fy_vs_snapshot_create(c, &vmref, &nq, &s2));
	CHECK_RC(fy_vs_vm_get(c, &vmref, &vm));
	if (vm) {
		s = find_snapshot(vm, &s1);
		CHECK(s && s->quiesced && fy_vs_snapshot_is_ferrys(s) &&
		      !strcmp(s->name, "ferry-test-q") &&
		      strstr(s->description, "quiesced one"));
		s = find_snapshot(vm, &s2);
		CHECK(s && !s->quiesced && s->current &&
		      !strncmp(s->name, "ferry-", 6));
		CHECK(s && s->parent >= 0 &&
		      !strcmp(vm->snapshots[s->parent].moref.value, s1.value));
	}
	fy_vs_vm_free(vm);
	vm = NULL;
	/* The snapshot's own device list: the frozen disks. */
	CHECK_RC(fy_vs_snapshot_devices(c, &s2, &devs));
	CHECK(devs && devs->n_disks == 2);
	fy_vs_devices_free(devs);
	CHECK_RC(fy_vs_snapshot_remove(c, &s2));
	CHECK_RC(fy_vs_snapshot_remove(c, &s1));
	CHECK_RC(fy_vs_vm_get(c, &vmref, &vm));
	CHECK(vm && vm->n_snapshots == 0);
	fy_vs_vm_free(vm);
	/* Gone means gone. */
	CHECK(fy_vs_snapshot_remove(c, &s1) < 0);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static void test_reconfig(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_snapshot_opts o = { NULL, "hotadd test", false, false };
	struct fy_vs_moref target, proxy, snap;
	struct fy_vs_devices *devs = NULL;
	struct fy_vs_vm *vm = NULL;
	struct fy_vs_attached at;
	const struct fy_vs_disk *d;
	char file[1024] = "";
	int32_t before_disks = 0;

	if (!c)
		goto out;
	vm_ref(cfg, "vm-two-disks", &target);
	vm_ref(cfg, "ferry-proxy", &proxy);
	CHECK_RC(fy_vs_snapshot_create(c, &target, &o, &snap));
	CHECK_RC(fy_vs_snapshot_devices(c, &snap, &devs));
	d = devs ? fy_vs_devices_disk(devs, 2000) : NULL;
	CHECK(d != NULL);
	if (d)
		snprintf(file, sizeof(file), "%s", d->file_name);
	fy_vs_devices_free(devs);
	CHECK_RC(fy_vs_vm_get(c, &proxy, &vm));
	if (vm)
		before_disks = (int32_t)vm->devices.n_disks;
	fy_vs_vm_free(vm);
	vm = NULL;

	{
		struct fy_vs_disk_attach a = { file, NULL, -1, -1 };

		CHECK_RC(fy_vs_vm_add_disk(c, &proxy, &a, &at));
	}
	CHECK_RC(fy_vs_vm_get(c, &proxy, &vm));
	d = vm ? fy_vs_devices_disk(&vm->devices, at.key) : NULL;
	CHECK(d && !strcmp(d->file_name, file) &&
	      !strcmp(d->disk_mode, "independent_nonpersistent") &&
	      d->unit == at.unit && d->unit != 7);
	CHECK(vm && (int32_t)vm->devices.n_disks == before_disks + 1);
	fy_vs_vm_free(vm);
	vm = NULL;
	CHECK_RC(fy_vs_vm_remove_disk(c, &proxy, at.key));
	CHECK_RC(fy_vs_vm_get(c, &proxy, &vm));
	CHECK(vm && !fy_vs_devices_disk(&vm->devices, at.key) &&
	      (int32_t)vm->devices.n_disks == before_disks);
	fy_vs_vm_free(vm);
	vm = NULL;
	/* Removing what is not there is a clear error. */
	CHECK(fy_vs_vm_remove_disk(c, &proxy, at.key) == -ENOENT);
	/* The source disk was not destroyed with the detach. */
	CHECK_RC(fy_vs_snapshot_remove(c, &snap));
	CHECK_RC(fy_vs_vm_get(c, &target, &vm));
	CHECK(vm && vm->devices.n_disks == 2);
	fy_vs_vm_free(vm);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static void test_task_fault(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_disk_attach a = { "[ds1] no-such-vm/no-such-disk.vmdk",
				       NULL, -1, -1 };
	struct fy_vs_attached at;
	struct fy_vs_moref proxy;
	int rc;

	if (!c)
		goto out;
	vm_ref(cfg, "ferry-proxy", &proxy);
	rc = fy_vs_vm_add_disk(c, &proxy, &a, &at);
	CHECK(rc < 0);
	fprintf(stderr, "expected failure: %s\n", fy_err_msg());
	CHECK(strstr(fy_err_msg(), "ReconfigVM_Task") != NULL);
	CHECK(strstr(fy_err_msg(), "no-such-disk") != NULL);
	CHECK(fy_vs_last_fault()->type[0] != '\0');
	CHECK(strstr(fy_err_msg(), fy_vs_last_fault()->type) != NULL);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

struct coverage {
	uint64_t start, end; /* a range that must be covered */
	uint64_t covered, total;
	size_t n;
};

static int area_cb(void *opaque, uint64_t start, uint64_t length)
{
	struct coverage *cv = opaque;
	uint64_t s = start > cv->start ? start : cv->start;
	uint64_t e = start + length < cv->end ? start + length : cv->end;

	if (e > s)
		cv->covered += e - s;
	cv->total += length;
	cv->n++;
	return 0;
}

static void test_cbt(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_snapshot_opts o = { NULL, "cbt test", false, false };
	struct fy_vs_moref vmref, s1, s2;
	struct fy_vs_devices *devs = NULL;
	struct fy_vs_vm *vm = NULL;
	struct coverage cv;
	char change_id[256] = "", what[256];
	uint64_t cap = 0, off;
	static char data[4096];

	if (!c)
		goto out;
	vm_ref(cfg, "vm-two-disks", &vmref);
	CHECK_RC(fy_vs_cbt_set(c, &vmref, true));
	CHECK_RC(fy_vs_vm_get(c, &vmref, &vm));
	CHECK(vm && vm->cbt_enabled);
	if (vm && vm->devices.n_disks)
		cap = fy_vs_devices_disk(&vm->devices, 2000)->capacity;
	fy_vs_vm_free(vm);
	CHECK(cap > (32u << 20));
	CHECK_RC(fy_vs_snapshot_create(c, &vmref, &o, &s1));
	CHECK_RC(fy_vs_snapshot_devices(c, &s1, &devs));
	if (devs && fy_vs_devices_disk(devs, 2000))
		snprintf(change_id, sizeof(change_id), "%s",
			 fy_vs_devices_disk(devs, 2000)->change_id);
	fy_vs_devices_free(devs);
	devs = NULL;
	CHECK(change_id[0] != '\0');

	/* Full: every allocated area, from several calls. */
	memset(&cv, 0, sizeof(cv));
	CHECK_RC(fy_vs_changed_areas(c, &vmref, &s1, 2000, cap, "*", area_cb,
				     &cv));
	CHECK(cv.total <= cap);
	fprintf(stderr, "full: %zu areas, %llu bytes\n", cv.n,
		(unsigned long long)cv.total);
	CHECK_RC(fy_vs_snapshot_remove(c, &s1));

	/* Write past the first QueryChangedDiskAreas window, as a guest. */
	off = cap - (8u << 20);
	memset(data, 0xab, sizeof(data));
	snprintf(what, sizeof(what), "write?vm=vm-two-disks&disk=2000&offset=%llu",
		 (unsigned long long)off);
	CHECK(control(cfg, what, data, sizeof(data), true) == 200);
	CHECK_RC(fy_vs_snapshot_create(c, &vmref, &o, &s2));

	/* Incremental: exactly the block written, nothing else. */
	memset(&cv, 0, sizeof(cv));
	cv.start = off;
	cv.end = off + sizeof(data);
	CHECK_RC(fy_vs_changed_areas(c, &vmref, &s2, 2000, cap, change_id,
				     area_cb, &cv));
	fprintf(stderr, "incremental: %zu areas, %llu bytes\n", cv.n,
		(unsigned long long)cv.total);
	CHECK(cv.covered == sizeof(data));
	CHECK(cv.total >= sizeof(data) && cv.total <= (1u << 20));
	/* The full list of the new snapshot covers the write too. */
	memset(&cv, 0, sizeof(cv));
	cv.start = off;
	cv.end = off + sizeof(data);
	CHECK_RC(fy_vs_changed_areas(c, &vmref, &s2, 2000, cap, "*", area_cb,
				     &cv));
	CHECK(cv.covered == sizeof(data));
	/* A change ID from another epoch is refused by the server. */
	CHECK(fy_vs_changed_areas(c, &vmref, &s2, 2000, cap,
				  "52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 "
				  "00/1", area_cb, &cv) < 0);
	CHECK_RC(fy_vs_snapshot_remove(c, &s2));
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static void test_access(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg), *c2 = NULL;
	struct fy_vs_moref vmref, ds;
	int rc;

	if (!c)
		goto out;
	vm_ref(cfg, "vm-independent", &vmref);
	memset(&ds, 0, sizeof(ds));
	snprintf(ds.type, sizeof(ds.type), "Datastore");
	snprintf(ds.value, sizeof(ds.value), "%s",
		 get(cfg, "test.datastore_morefs.ds1"));

	CHECK_RC(fy_vs_prepare_for_access(c, &vmref, "sim-test-job"));
	rc = fy_vs_vm_relocate(c, &vmref, &ds);
	CHECK(rc == -EPERM);
	CHECK(!strcmp(fy_vs_last_fault()->type, "MethodDisabled"));
	fprintf(stderr, "expected refusal: %s\n", fy_err_msg());
	/* A second job: relocation stays blocked; its End leaves ours. */
	CHECK_RC(fy_vs_prepare_for_access(c, &vmref, "sim-test-job2"));
	CHECK_RC(fy_vs_end_access(c, &vmref, "sim-test-job2"));
	CHECK(fy_vs_vm_relocate(c, &vmref, &ds) == -EPERM);
	CHECK_RC(fy_vs_end_access(c, &vmref, "sim-test-job"));
	rc = fy_vs_vm_relocate(c, &vmref, &ds);
	CHECK(rc == 0 || strcmp(fy_vs_last_fault()->type, "MethodDisabled"));

	/* A Prepare never ended: the client ends it when freed. */
	CHECK_RC(fy_vs_prepare_for_access(c, &vmref, "sim-test-forgotten"));
	fy_vs_client_free(c);
	c = NULL;
	c2 = open_client(cfg);
	if (c2) {
		rc = fy_vs_vm_relocate(c2, &vmref, &ds);
		CHECK(rc == 0 ||
		      strcmp(fy_vs_last_fault()->type, "MethodDisabled"));
	}
out:
	fy_vs_client_free(c);
	fy_vs_client_free(c2);
	fy_config_free(cfg);
}

static void test_consolidation(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_moref vmref;
	struct fy_vs_vm *vm = NULL;

	if (!c)
		goto out;
	vm_ref(cfg, "vm-two-disks", &vmref);
	CHECK(control(cfg, "consolidation-needed?vm=vm-two-disks", NULL, 0,
		      true) == 200);
	CHECK_RC(fy_vs_vm_get(c, &vmref, &vm));
	CHECK(vm && vm->consolidation_needed);
	fy_vs_vm_free(vm);
	vm = NULL;
	CHECK_RC(fy_vs_vm_consolidate(c, &vmref));
	CHECK_RC(fy_vs_vm_get(c, &vmref, &vm));
	CHECK(vm && !vm->consolidation_needed);
	fy_vs_vm_free(vm);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

static const struct fy_vs_vm *inv_vm(const struct fy_vs_inventory *inv,
				     const char *name)
{
	size_t i;

	for (i = 0; i < inv->n_vms; i++)
		if (!strcmp(inv->vms[i]->name, name))
			return inv->vms[i];
	return NULL;
}

static void test_inventory(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_inventory *inv = NULL;
	const struct fy_vs_vm *proxy, *three, *indep, *two;
	size_t i;

	if (!c)
		goto out;
	CHECK_RC(fy_vs_inventory_get(c, true, &inv));
	if (!inv)
		goto out;
	CHECK(inv->n_datastores == 2 && inv->n_hosts == 2);
	for (i = 0; i < inv->n_datastores; i++) {
		const struct fy_vs_datastore *d = &inv->datastores[i];

		if (!strcmp(d->name, "ds1"))
			CHECK(d->n_hosts == 2);
		else
			CHECK(d->n_hosts == 1);
	}
	proxy = inv_vm(inv, "ferry-proxy");
	three = inv_vm(inv, "vm-three-disks");
	indep = inv_vm(inv, "vm-independent");
	two = inv_vm(inv, "vm-two-disks");
	CHECK(proxy && three && indep && two);
	if (!proxy || !three || !indep || !two)
		goto out;
	CHECK(!strcmp(two->datacenter_name, get(cfg, "test.datacenter")));
	CHECK(two->devices.n_controllers >= 2);
#define RULE(vm, key) fy_vs_hotadd_check(inv, proxy, vm,                   \
				 fy_vs_devices_disk(&(vm)->devices, key), NULL, 0)
	CHECK(RULE(two, 2000) == FY_VS_HOTADD_OK);
	CHECK(RULE(two, 2016) == FY_VS_HOTADD_OK);
	CHECK(RULE(three, 2000) == FY_VS_HOTADD_OK);
	CHECK(RULE(three, 2001) == FY_VS_HOTADD_NOT_MOUNTED);
	CHECK(RULE(three, 3000) == FY_VS_HOTADD_IDE);
	CHECK(RULE(indep, 2001) == FY_VS_HOTADD_INDEPENDENT);
	CHECK(RULE(proxy, 2000) == FY_VS_HOTADD_PROXY_IS_TARGET);
#undef RULE
out:
	fy_vs_inventory_free(inv);
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

/* Faults scripted through the simulator's /ferry-test/faults. */
static void test_injected_faults(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c;
	struct fy_vs_snapshot_opts o = { NULL, NULL, false, true };
	struct fy_vs_moref vmref, snap, m;
	char rule[256];
	int rc;

	fy_config_set(cfg, "ferry.vcenter.stallTimeoutSeconds", "1");
	c = open_client(cfg);
	if (!c)
		goto out;
	vm_ref(cfg, "vm-two-disks", &vmref);
	/* A task that ends in error. */
	snprintf(rule, sizeof(rule), "faults?method=CreateSnapshot_Task&entity=%s"
		 "&fault=FileLocked&message=disk+locked+by+test", vmref.value);
	CHECK(control(cfg, rule, NULL, 0, true) == 200);
	rc = fy_vs_snapshot_create(c, &vmref, &o, &snap);
	CHECK(rc == -EBUSY);
	CHECK(!strcmp(fy_vs_last_fault()->type, "FileLocked"));
	CHECK(strstr(fy_err_msg(), "CreateSnapshot_Task on") &&
	      strstr(fy_err_msg(), "disk locked by test"));
	/* The call itself refused with a SOAP fault. */
	snprintf(rule, sizeof(rule), "faults?method=CreateSnapshot_Task&entity=%s"
		 "&fault=NoPermission&in_call=true", vmref.value);
	CHECK(control(cfg, rule, NULL, 0, true) == 200);
	rc = fy_vs_snapshot_create(c, &vmref, &o, &snap);
	CHECK(rc == -EPERM && !strcmp(fy_vs_last_fault()->type, "NoPermission"));
	/* A Storage vMotion in the way once: PrepareForAccess retries. */
	CHECK(control(cfg, "faults?method=DisableMethods&fault=TaskInProgress",
		      NULL, 0, true) == 200);
	CHECK_RC(fy_vs_prepare_for_access(c, &vmref, "retry-job"));
	CHECK_RC(fy_vs_end_access(c, &vmref, "retry-job"));
	/* A stalled answer fails in bounded time; the next call works. */
	CHECK(control(cfg, "faults?method=RetrievePropertiesEx&delay_ms=4000",
		      NULL, 0, true) == 200);
	rc = fy_vs_find_vm(c, FY_VS_BY_MOREF, vmref.value, &m);
	fprintf(stderr, "expected stall: %d: %s\n", rc, fy_err_msg());
	CHECK(rc == -ETIMEDOUT);
	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_INSTANCE_UUID,
			       get(cfg, "test.vms.vm-two-disks.instance_uuid"),
			       &m));
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

/* ---- concurrent calls on one session ----------------------------------- */

struct worker {
	struct fy_vs_client *c;
	const struct fy_config *cfg;
	int failures;
	int calls;
};

static volatile int stop_workers;

static void *work(void *opaque)
{
	struct worker *w = opaque;
	struct fy_vs_moref m;
	int i;

	/* Busy until told to stop, so that every expiry hits calls. */
	for (i = 0; i < 15 || !__atomic_load_n(&stop_workers, __ATOMIC_SEQ_CST);
	     i++) {
		struct fy_vs_vm *vm = NULL;
		int rc;

		rc = fy_vs_find_vm(w->c, FY_VS_BY_INSTANCE_UUID,
				   get(w->cfg, "test.vms.vm-three-disks."
					       "instance_uuid"), &m);
		if (rc == 0)
			rc = fy_vs_vm_get(w->c, &m, &vm);
		if (rc == 0 && vm->devices.n_disks != 3)
			rc = -EIO;
		if (rc < 0) {
			fprintf(stderr, "worker: %s\n", fy_err_msg());
			w->failures++;
		}
		fy_vs_vm_free(vm);
		w->calls++;
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct worker w[8];
	pthread_t t[8];
	int i, failures = 0, calls = 0;

	if (!c)
		goto out;
	for (i = 0; i < 8; i++) {
		w[i] = (struct worker){ c, cfg, 0, 0 };
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	/* Expire the session under the running threads, twice. */
	usleep(200000);
	CHECK(control(cfg, "expire-sessions", NULL, 0, true) == 200);
	usleep(300000);
	CHECK(control(cfg, "expire-sessions", NULL, 0, true) == 200);
	usleep(300000);
	__atomic_store_n(&stop_workers, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
		calls += w[i].calls;
	}
	CHECK(failures == 0);
	CHECK(calls >= 8 * 15);
	/* One login each time the session was lost, not one per thread. */
	fprintf(stderr, "concurrent: %d calls, %u logins\n", calls,
		fy_vs_client_logins(c));
	CHECK(fy_vs_client_logins(c) >= 2 && fy_vs_client_logins(c) <= 3);
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

/* ---- straight to ESXi --------------------------------------------------- */

static void test_esx(void)
{
	struct fy_config *cfg = config();
	struct fy_vs_client *c = open_client(cfg);
	struct fy_vs_about about;
	struct fy_vs_moref vmref, m;

	if (!c)
		goto out;
	fy_vs_client_about(c, &about);
	CHECK(!strcmp(about.api_type, "HostAgent"));
	CHECK(!fy_vs_client_is_vcenter(c));
	vm_ref(cfg, "vm-two-disks", &vmref);
	/* A warning, not a failure; End matches it. */
	CHECK_RC(fy_vs_prepare_for_access(c, &vmref, "esx-job"));
	CHECK_RC(fy_vs_end_access(c, &vmref, "esx-job"));
	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_MOREF, vmref.value, &m));
out:
	fy_vs_client_free(c);
	fy_config_free(cfg);
}

int main(int argc, char **argv)
{
	const char *only = getenv("VS_TEST");
	char *slash;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CONF [--esx]\n", argv[0]);
		return 2;
	}
	conf_path = argv[1];
	snprintf(tmpdir, sizeof(tmpdir), "%s", conf_path);
	slash = strrchr(tmpdir, '/');
	if (slash)
		*slash = '\0';
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fy_log_set_level(FY_LOG_WARN);
	if (argc > 2 && !strcmp(argv[2], "--esx")) {
		test_esx();
		CHECK_DONE();
	}
#define T(name)                                                          \
	do {                                                             \
		if (!only || !strcmp(only, #name)) {                     \
			fprintf(stderr, "--- %s\n", #name);              \
			test_##name();                                   \
		}                                                        \
	} while (0)
	T(connect);
	T(wrong_password);
	T(certificates);
	T(expired_session);
	T(find);
	T(snapshots);
	T(reconfig);
	T(task_fault);
	T(cbt);
	T(access);
	T(consolidation);
	T(inventory);
	T(injected_faults);
	T(concurrent);
#undef T
	CHECK_DONE();
}
