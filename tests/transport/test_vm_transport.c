/*
 * VM disks over the network transport modes (agent/transport.c, the transport table) against
 * the simulated vCenter, whose snapshots keep a real frozen chain of files:
 *
 *  - transport lists: the default, every mode, unknown, empty, repeated,
 *    too long, too many for the caller's array;
 *  - https: a snapshot's frozen disks read byte for byte while the guest
 *    writes its live disk after the snapshot (the writes are not seen); a
 *    live disk passed by mistake, a disk the snapshot lacks, no snapshot
 *    on a running VM, an independent disk: refused with the reason; the
 *    frozen file of a second snapshot is a delta: refused by the parser
 *    with the reason; a powered-off VM read without a snapshot, on both
 *    datastores; dcPath taken from the VM's inventory path;
 *  - san, and nbdssl/nbd without VDDK: refused at once, with the reason;
 *  - nbdssl/nbd through the VDDK path, with a stand-in for nbdkit + vddk +
 *    VDDK (VDDK is proprietary and not installed here): a script run as
 *    ferry.nbd.nbdkit records the command line the vddk plugin gets (vm,
 *    snapshot, frozen file, thumbprint, server, mode...), then serves the
 *    flat extent of the file it was given with nbdkit's file plugin, so
 *    the data read proves which file reached "VDDK". nbdkit exits and its
 *    directory goes when the source closes.
 *
 * CONF is tests/vsphere/ready2conf.py's output; WORKDIR an empty
 * directory (TMPDIR is set below it).
 *
 * usage: test_vm_transport CONF WORKDIR   (vCenter or ESXi alike)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/transport.h"
#include "tests/transport/sim_util.h"

#define MIB (1024u * 1024)

static struct fy_vs_client *c;
static char work[512], tmp[600];
static bool have_nbdkit;

/* A string field of a flat JSON answer ("flat_path"). */
static bool json_field(const char *json, const char *key, char *out,
		       size_t outlen)
{
	char pat[64];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\"%s\"", key);
	p = strstr(json, pat);
	if (!p)
		return false;
	p += strlen(pat);
	while (*p == ' ' || *p == ':')
		p++;
	if (*p++ != '"' || !(end = strchr(p, '"')) ||
	    (size_t)(end - p) >= outlen)
		return false;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return true;
}

/* fy_vm_disk_open must fail with want, a message starting "MODE: " and
 * holding words (and words2). */
static void open_fails(const struct fy_config *conf, const char *mode,
		       const struct fy_vs_vm *vm,
		       const struct fy_vs_moref *snap,
		       const struct fy_vs_disk *d, int want, const char *words,
		       const char *words2)
{
	struct fy_source *src = (struct fy_source *)1;
	char prefix[32];
	int rc;

	rc = fy_vm_disk_open(c, conf, mode, vm, snap, d, &src);
	printf("  %s\n", rc < 0 ? fy_err_msg() : "opened");
	snprintf(prefix, sizeof(prefix), "%s: ", mode);
	if (rc != want || strncmp(fy_err_msg(), prefix, strlen(prefix)) ||
	    !strstr(fy_err_msg(), words) ||
	    (words2 && !strstr(fy_err_msg(), words2))) {
		fprintf(stderr, "%s on %s: want %d with '%s', got %d: %s\n",
			mode, d->file_name, want, words, rc, fy_err_msg());
		check_failures++;
	}
	CHECK(src == NULL);
	if (rc == 0)
		fy_source_close(src);
}

static struct fy_source *open_ok(const struct fy_config *conf,
				 const char *mode, const struct fy_vs_vm *vm,
				 const struct fy_vs_moref *snap,
				 const struct fy_vs_disk *d)
{
	struct fy_source *src = NULL;

	if (fy_vm_disk_open(c, conf, mode, vm, snap, d, &src) < 0) {
		fprintf(stderr, "%s on %s: %s\n", mode, d->file_name,
			fy_err_msg());
		check_failures++;
		return NULL;
	}
	CHECK(!strcmp(src->ops->name, mode));
	CHECK(!strcmp(src->name, d->file_name));
	return src;
}

static const struct fy_vs_disk *disk_by_key(const struct fy_vs_devices *devs,
					    int32_t key)
{
	const struct fy_vs_disk *d = fy_vs_devices_disk(devs, key);

	if (!d) {
		fprintf(stderr, "no disk %d\n", (int)key);
		exit(1);
	}
	return d;
}

static struct fy_vs_vm *vm_named(const char *name)
{
	struct fy_vs_moref m;
	struct fy_vs_vm *vm = NULL;

	if (fy_vs_find_vm(c, FY_VS_BY_NAME, name, &m) < 0 ||
	    fy_vs_vm_get(c, &m, &vm) < 0) {
		fprintf(stderr, "%s: %s\n", name, fy_err_msg());
		exit(1);
	}
	return vm;
}

/* The ferry-vddk.* directories nbdkit's runs leave in TMPDIR. */
static int vddk_dirs(void)
{
	DIR *d = opendir(tmp);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, "ferry-vddk", 10))
			n++;
	if (d)
		closedir(d);
	return n;
}

/* ---- transport lists ------------------------------------------------------ */

static void list_ok(const char *list, const char *want)
{
	const struct fy_transport *modes[FY_TRANSPORT_N_MODES];
	char got[128] = "";
	unsigned n = 99, i;

	CHECK_RC(fy_transport_list_parse(list, modes, FY_TRANSPORT_N_MODES,
					 &n));
	for (i = 0; i < n && i < FY_TRANSPORT_N_MODES; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
			 i ? ":" : "", modes[i]->name);
	if (strcmp(got, want)) {
		fprintf(stderr, "list '%s': got '%s', want '%s'\n",
			list ? list : "(null)", got, want);
		check_failures++;
	}
}

static void list_fails(const char *list, unsigned max, int want,
		       const char *words)
{
	const struct fy_transport *modes[FY_TRANSPORT_N_MODES];
	unsigned n = 99;
	int rc = fy_transport_list_parse(list, modes, max, &n);

	printf("  '%.40s': %s\n", list, rc < 0 ? fy_err_msg() : "accepted");
	CHECK(n == 0);
	if (rc != want || !strstr(fy_err_msg(), words)) {
		fprintf(stderr, "list '%s': want %d with '%s', got %d: %s\n",
			list, want, words, rc, fy_err_msg());
		check_failures++;
	}
}

static void test_lists(void)
{
	char longer[200];
	unsigned i;

	/* The table is indexed by its modes, and each name finds its entry. */
	for (i = 0; i < FY_TRANSPORT_N_MODES; i++) {
		CHECK(fy_transports[i].mode == (enum fy_transport_mode)i);
		CHECK(fy_transports[i].possible && fy_transports[i].open);
		CHECK(fy_transports[i].open_file || fy_transports[i].file_why);
		CHECK(fy_transport_find(fy_transports[i].name,
					strlen(fy_transports[i].name)) ==
		      &fy_transports[i]);
	}
	CHECK(fy_transport_find("nbds", 4) == NULL);
	CHECK(fy_transport_find("nbdssl", 3) == &fy_transports[FY_TRANSPORT_NBD]);

	list_ok(NULL, "san:hotadd:nbdssl:nbd");
	list_ok("", "san:hotadd:nbdssl:nbd");
	list_ok("san:hotadd:nbdssl:nbd:https", "san:hotadd:nbdssl:nbd:https");
	list_ok("https", "https");
	list_ok("nbd:https:nbdssl", "nbd:https:nbdssl");
	list_fails("nbdssl:bogus", 5, -EINVAL,
		   "'bogus' is not a transport mode (san, hotadd, nbdssl, nbd, "
		   "https)");
	list_fails("NBD", 5, -EINVAL, "'NBD' is not a transport mode");
	list_fails("nbd:https:nbd", 5, -EINVAL, "names nbd twice");
	list_fails("nbd::https", 5, -EINVAL, "empty mode");
	list_fails(":nbd", 5, -EINVAL, "empty mode");
	list_fails("nbd:", 5, -EINVAL, "empty mode");
	list_fails(":", 5, -EINVAL, "empty mode");
	memset(longer, 0, sizeof(longer));
	while (strlen(longer) < 100)
		strcat(longer, "nbd:");
	strcat(longer, "nbd");
	list_fails(longer, 5, -EINVAL, "longer than 64 bytes");
	list_fails("nbdssl:nbd:https", 2, -E2BIG, "more than 2 modes");
}

/* ---- the VDDK stand-in -------------------------------------------------- */

static char fake_nbdkit[700], fake_log[700], libdir[700];

/*
 * Run as ferry.nbd.nbdkit with the vddk plugin: what nbdkit + vddk + VDDK
 * would do for file=, as far as data goes. It records its arguments, one
 * a line, then serves the flat extent of the file it was given from the
 * simulator's datastore directory with the real nbdkit's file plugin, on
 * the socket and pid file Ferry chose. exec keeps the pid, the process
 * group and --exit-with-parent.
 */
static void write_fake_nbdkit(void)
{
	const char *script =
	    "#!/bin/sh\n"
	    "for a in \"$@\"; do [ \"$a\" = --dump-plugin ] && exit 0; done\n"
	    "printf '%s\\n' \"$@\" >\"$FAKE_VDDK_LOG\"\n"
	    "unix= pidf= file=\n"
	    "for a in \"$@\"; do\n"
	    "  case \"$a\" in\n"
	    "    --unix=*) unix=\"$a\" ;;\n"
	    "    --pidfile=*) pidf=\"$a\" ;;\n"
	    "    file=*) file=\"${a#file=}\" ;;\n"
	    "  esac\n"
	    "done\n"
	    "ds=${file#\\[}; ds=${ds%%\\]*}; rel=${file#*\\] }\n"
	    "flat=\"$FAKE_VDDK_DSROOT/$ds/${rel%.vmdk}-flat.vmdk\"\n"
	    "[ -f \"$flat\" ] || { echo \"fake VDDK: no $flat for $file\"; "
	    "exit 1; }\n"
	    "exec \"$FAKE_VDDK_NBDKIT\" --exit-with-parent --readonly "
	    "--tls=off \"$unix\" \"$pidf\" file \"$flat\"\n";
	char path[800], dsroot[600];
	FILE *f;

	snprintf(fake_nbdkit, sizeof(fake_nbdkit), "%s/fake-nbdkit", work);
	snprintf(fake_log, sizeof(fake_log), "%s/fake-nbdkit.args", work);
	f = fopen(fake_nbdkit, "w");
	if (!f || fputs(script, f) < 0 || fclose(f) < 0 ||
	    chmod(fake_nbdkit, 0755) < 0) {
		fprintf(stderr, "cannot write %s\n", fake_nbdkit);
		exit(1);
	}
	/* What fy_nbd_vddk_available looks for before it runs the plugin. */
	snprintf(libdir, sizeof(libdir), "%s/vmware-vix-disklib-distrib",
		 work);
	snprintf(path, sizeof(path), "%s/lib64", libdir);
	fy_mkdirs(path, 0755);
	snprintf(path, sizeof(path), "%s/lib64/libvixDiskLib.so.8", libdir);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	snprintf(dsroot, sizeof(dsroot), "%s", sim_get("test.datastores.ds1"));
	*strrchr(dsroot, '/') = '\0';
	setenv("FAKE_VDDK_DSROOT", dsroot, 1);
	setenv("FAKE_VDDK_LOG", fake_log, 1);
}

/* The configuration with VDDK "installed": libDir and the stand-in. */
static struct fy_config *vddk_config(void)
{
	struct fy_config *v = fy_config_new();

	if (fy_config_load(v, sim_conf_path) < 0 ||
	    fy_config_set(v, "libDir", libdir) < 0 ||
	    fy_config_set(v, "ferry.nbd.nbdkit", fake_nbdkit) < 0 ||
	    fy_config_set(v, "ferry.nbd.vddkStartTimeoutSeconds", "20") < 0) {
		fprintf(stderr, "%s\n", fy_err_msg());
		exit(1);
	}
	return v;
}

static bool arg_seen(const char *args, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = args; (p = strstr(p, line)); p += n)
		if ((p == args || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* The arguments the vddk plugin got for d of vm in snapshot snap. */
static void check_vddk_args(const char *mode, const struct fy_vs_vm *vm,
			    const struct fy_vs_moref *snap,
			    const struct fy_vs_disk *d)
{
	size_t len;
	char *args = (char *)sim_read_local(fake_log, &len);
	char line[1024];

	args = realloc(args, len + 1);
	args[len] = '\0';
#define SEEN(...)                                                        \
	do {                                                             \
		snprintf(line, sizeof(line), __VA_ARGS__);               \
		if (!arg_seen(args, line)) {                             \
			fprintf(stderr, "vddk plugin lacks '%s' in:\n%s", \
				line, args);                             \
			check_failures++;                                \
		}                                                        \
	} while (0)
	SEEN("vddk");
	SEEN("--readonly");
	SEEN("libdir=%s", libdir);
	SEEN("server=%s", sim_get("test.host"));
	SEEN("port=%s", sim_get("test.port"));
	SEEN("user=%s", sim_get("ferry.vcenter.user"));
	SEEN("password=+%s", sim_get("ferry.vcenter.passwordFile"));
	SEEN("thumbprint=%s", sim_get("test.sha1_thumbprint"));
	SEEN("vm=moref=%s", vm->moref.value);
	SEEN("snapshot=%s", snap->value);
	SEEN("transports=%s", mode);
	SEEN("file=%s", d->file_name);
#undef SEEN
	free(args);
	unlink(fake_log);
}

/* ---- the tests -------------------------------------------------------------- */

static void test_snapshot(void)
{
	struct fy_vs_vm *vm = vm_named("vm-two-disks"), *after = NULL;
	struct fy_vs_snapshot_opts so = { .name = "vm-transport-1" };
	struct fy_vs_moref snap = { "", "" }, snap2 = { "", "" };
	struct fy_vs_devices *frozen = NULL, *frozen2 = NULL;
	struct fy_config *nocfg = fy_config_new(), *vcfg = NULL;
	struct fy_config *dccfg = fy_config_new();
	const struct fy_vs_disk *d0, *d1;
	struct fy_vs_disk fake;
	struct fy_vs_backing rdm_backing;
	struct fy_vs_vm moved;
	struct fy_source *src;
	struct sim_body resp;
	char live_flat[1024] = "", nested[300], nested_dc[300];
	uint8_t *want0, *want1, *pattern = malloc(MIB), *live;
	size_t len0, len1, len;
	double t0;

	/* The base files the snapshot freezes (the ready file's paths). */
	want0 = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.0.flat_path"), &len0);
	want1 = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.1.flat_path"), &len1);
	CHECK_RC(fy_vs_snapshot_create(c, &vm->moref, &so, &snap));
	CHECK_RC(fy_vs_snapshot_devices(c, &snap, &frozen));
	if (!frozen)
		goto out;
	d0 = disk_by_key(frozen, 2000);
	d1 = disk_by_key(frozen, 2016);
	CHECK(!strcmp(d0->file_name,
		      sim_get("test.vms.vm-two-disks.disks.0.file")));
	CHECK(!strcmp(d1->file_name,
		      sim_get("test.vms.vm-two-disks.disks.1.file")));

	/* The guest writes its disk after the snapshot: the live file (a new
	 * delta) changes, the frozen one does not. */
	memset(pattern, 0xA5, MIB);
	CHECK(sim_control("write?vm=vm-two-disks&disk=2000&offset=0", pattern,
			  MIB, &resp) == 200);
	CHECK(json_field(resp.data, "flat_path", live_flat, sizeof(live_flat)));
	CHECK(sim_control("write?vm=vm-two-disks&disk=2000&offset=5242880",
		      pattern, MIB, NULL) == 200);
	printf("  written after the snapshot: %s\n", live_flat);
	if (live_flat[0]) {
		live = sim_read_local(live_flat, &len);
		CHECK(len == len0 && !memcmp(live, pattern, MIB) &&
		      !memcmp(live + 5 * MIB, pattern, MIB));
		CHECK(memcmp(want0, pattern, MIB) != 0);
		free(live);
	}

	printf("https: the snapshot's frozen disks\n");
	src = open_ok(sim_cfg, "https", vm, &snap, d0);
	if (src)
		sim_same_as(src, want0, len0, 4);
	fy_source_close(src);
	src = open_ok(sim_cfg, "https", vm, &snap, d1);
	if (src)
		sim_same_as(src, want1, len1, 4);
	fy_source_close(src);

	printf("refusals that hold for every mode\n");
	/* The live disk (read after the snapshot) is not what it froze. */
	after = vm_named("vm-two-disks");
	open_fails(sim_cfg, "https", after, &snap,
		   fy_vs_devices_disk(&after->devices, 2000), -EINVAL,
		   "is not the file snapshot", "a live file is never read");
	fake = *d0;
	fake.key = 2999;
	open_fails(sim_cfg, "https", vm, &snap, &fake, -ENOENT,
		   "has no disk with key 2999", NULL);
	/* A physical RDM (the simulator has none: its backing says so). */
	fake = *d0;
	rdm_backing = d0->chain[0];
	rdm_backing.compatibility_mode = "physicalMode";
	fake.chain = &rdm_backing;
	fake.chain_len = 1;
	fake.rdm = true;
	open_fails(sim_cfg, "https", vm, &snap, &fake, -ENOTSUP,
		   "physical-mode raw device mapping", NULL);
	open_fails(sim_cfg, "https", vm, NULL, d0, -EINVAL,
		   "vm-two-disks is poweredOn", "none was given");
	/* dcPath comes from the VM's inventory path: a datacenter nested in
	 * a folder "Nested" would be "Nested/ferry-dc". */
	moved = *vm;
	snprintf(nested, sizeof(nested), "/Nested/%s/vm/vm-two-disks",
		 sim_get("test.datacenter"));
	moved.path = nested;
	snprintf(nested_dc, sizeof(nested_dc), "dcPath=Nested%%2F%s",
		 sim_get("test.datacenter"));
	open_fails(sim_cfg, "https", &moved, &snap, d0, -ENOENT,
		   "not found (HTTP 404", nested_dc);
	/* ferry.vcenter.datacenter, when set, wins over the VM's path. */
	fy_config_load(dccfg, sim_conf_path);
	fy_config_set(dccfg, "ferry.vcenter.datacenter",
		      sim_get("test.datacenter"));
	src = open_ok(dccfg, "https", &moved, &snap, d0);
	fy_source_close(src);

	printf("modes that cannot work here fail at once\n");
	t0 = fy_now();
	open_fails(sim_cfg, "san", vm, &snap, d0, -ENOTSUP,
		   "san: ", "VMFS"); /* no VMFS LUN here, or ds1 is not VMFS */
	open_fails(sim_cfg, "nbdssl", vm, &snap, d0, -ENOTSUP,
		   "needs VMware's VDDK, which is not configured",
		   "set libDir");
	open_fails(sim_cfg, "nbd", vm, &snap, d0, -ENOTSUP,
		   "needs VMware's VDDK, which is not configured",
		   "set libDir");
	/* VDDK configured but not there. */
	fy_config_set(nocfg, "libDir", "/nonexistent/vddk");
	open_fails(nocfg, "nbdssl", vm, &snap, d0, -ENOTSUP,
		   "the VDDK path cannot run", "is not a directory");
	CHECK(fy_now() - t0 < 2.0);
	open_fails(sim_cfg, "hotadd", vm, &snap, d0, -EINVAL,
		   "fy_hotadd_open", NULL);
	src = (struct fy_source *)1;
	CHECK(fy_vm_disk_open(c, sim_cfg, "nfc", vm, &snap, d0, &src) ==
	      -EINVAL);
	CHECK(strstr(fy_err_msg(), "nfc: not a transport mode") != NULL);
	CHECK(src == NULL);

	if (have_nbdkit) {
		printf("nbdssl and nbd through the VDDK path (stand-in)\n");
		vcfg = vddk_config();
		src = open_ok(vcfg, "nbdssl", vm, &snap, d0);
		if (src) {
			CHECK(vddk_dirs() == 1);
			sim_same_as(src, want0, len0, 4);
			check_vddk_args("nbdssl", vm, &snap, d0);
		}
		fy_source_close(src);
		CHECK(vddk_dirs() == 0);
		src = open_ok(vcfg, "nbd", vm, &snap, d1);
		if (src) {
			sim_same_as(src, want1, len1, 4);
			check_vddk_args("nbd", vm, &snap, d1);
		}
		fy_source_close(src);
		CHECK(vddk_dirs() == 0);
		/* The same refusals before nbdkit is started. */
		open_fails(vcfg, "nbdssl", after, &snap,
			   fy_vs_devices_disk(&after->devices, 2000), -EINVAL,
			   "is not the file snapshot", NULL);
		CHECK(vddk_dirs() == 0);
	} else {
		printf("(nbdkit is not installed: the VDDK path is not "
		       "exercised)\n");
	}

	printf("a second snapshot: its frozen file is a delta\n");
	so.name = "vm-transport-2";
	CHECK_RC(fy_vs_snapshot_create(c, &vm->moref, &so, &snap2));
	CHECK_RC(fy_vs_snapshot_devices(c, &snap2, &frozen2));
	if (frozen2) {
		const struct fy_vs_disk *f = disk_by_key(frozen2, 2000);
		uint8_t *now = malloc(len0);

		CHECK(f->chain_len >= 2);
		open_fails(sim_cfg, "https", vm, &snap2, f, -ENOTSUP,
			   "delta disk", "use hotadd or nbd");
		/* VDDK reads chains: the stand-in serves the delta's file,
		 * which the simulator keeps whole. It holds the writes. */
		if (vcfg) {
			memcpy(now, want0, len0);
			memcpy(now, pattern, MIB);
			memcpy(now + 5 * MIB, pattern, MIB);
			src = open_ok(vcfg, "nbdssl", vm, &snap2, f);
			if (src) {
				sim_same_as(src, now, len0, 4);
				check_vddk_args("nbdssl", vm, &snap2, f);
			}
			fy_source_close(src);
			CHECK(vddk_dirs() == 0);
		}
		free(now);
	}
out:
	if (snap2.value[0])
		CHECK_RC(fy_vs_snapshot_remove(c, &snap2));
	if (snap.value[0])
		CHECK_RC(fy_vs_snapshot_remove(c, &snap));
	fy_vs_devices_free(frozen);
	fy_vs_devices_free(frozen2);
	fy_vs_vm_free(vm);
	fy_vs_vm_free(after);
	fy_config_free(nocfg);
	fy_config_free(dccfg);
	fy_config_free(vcfg);
	free(want0);
	free(want1);
	free(pattern);
}

static void test_independent(void)
{
	struct fy_vs_vm *vm = vm_named("vm-independent");
	struct fy_vs_snapshot_opts so = { .name = "vm-transport-ind" };
	struct fy_vs_moref snap = { "", "" };
	struct fy_vs_devices *frozen = NULL;
	struct fy_source *src;
	size_t len;
	uint8_t *want = sim_read_local(
		sim_get("test.vms.vm-independent.disks.0.flat_path"), &len);

	CHECK_RC(fy_vs_snapshot_create(c, &vm->moref, &so, &snap));
	CHECK_RC(fy_vs_snapshot_devices(c, &snap, &frozen));
	if (frozen) {
		open_fails(sim_cfg, "https", vm, &snap,
			   disk_by_key(frozen, 2001), -ENOTSUP,
			   "is independent (independent_persistent)",
			   "snapshots do not freeze it");
		open_fails(sim_cfg, "nbd", vm, &snap,
			   disk_by_key(frozen, 2001), -ENOTSUP,
			   "needs VMware's VDDK", NULL);
		/* Its other disk is frozen as usual. */
		src = open_ok(sim_cfg, "https", vm, &snap,
			      disk_by_key(frozen, 2000));
		if (src)
			sim_same_as(src, want, len, 4);
		fy_source_close(src);
	}
	if (snap.value[0])
		CHECK_RC(fy_vs_snapshot_remove(c, &snap));
	fy_vs_devices_free(frozen);
	fy_vs_vm_free(vm);
	free(want);
}

/* A powered-off VM's disks need no snapshot: nobody writes them. Its
 * disks sit on both datastores (ds2 too). */
static void test_powered_off(void)
{
	struct fy_vs_vm *vm;
	struct fy_source *src;
	unsigned i;

	CHECK(sim_control("power?vm=vm-three-disks&state=off", NULL, 0, NULL) ==
	      200);
	vm = vm_named("vm-three-disks");
	CHECK(!strcmp(vm->power_state, "poweredOff"));
	for (i = 0; i < 3; i++) {
		char key[80];
		size_t len;
		uint8_t *want;
		const struct fy_vs_disk *d;

		snprintf(key, sizeof(key), "test.vms.vm-three-disks.disks.%u.key",
			 i);
		d = disk_by_key(&vm->devices, atoi(sim_get(key)));
		snprintf(key, sizeof(key),
			 "test.vms.vm-three-disks.disks.%u.flat_path", i);
		want = sim_read_local(sim_get(key), &len);
		src = open_ok(sim_cfg, "https", vm, NULL, d);
		if (src)
			sim_same_as(src, want, len, 4);
		fy_source_close(src);
		free(want);
	}
	fy_vs_vm_free(vm);
	CHECK(sim_control("power?vm=vm-three-disks&state=on", NULL, 0, NULL) ==
	      200);
}

static bool nbdkit_installed(char *out, size_t outlen)
{
	const char *path = getenv("PATH");
	const char *p;

	for (p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		snprintf(out, outlen, "%.*s/nbdkit", (int)n, p);
		if (n && access(out, X_OK) == 0)
			return true;
		p += n;
		if (*p == ':')
			p++;
	}
	return false;
}

int main(int argc, char **argv)
{
	char nbdkit[1024];

	if (argc != 3) {
		fprintf(stderr, "usage: %s CONF WORKDIR\n", argv[0]);
		return 2;
	}
	snprintf(work, sizeof(work), "%s", argv[2]);
	snprintf(tmp, sizeof(tmp), "%s/tmp", work);
	mkdir(tmp, 0700);
	setenv("TMPDIR", tmp, 1);
	fy_log_set_level(FY_LOG_ERROR);
	c = sim_start(argv[1]);
	have_nbdkit = nbdkit_installed(nbdkit, sizeof(nbdkit));
	if (have_nbdkit) {
		setenv("FAKE_VDDK_NBDKIT", nbdkit, 1);
		write_fake_nbdkit();
	}
	SIM_TEST(lists);
	SIM_TEST(snapshot);
	SIM_TEST(independent);
	SIM_TEST(powered_off);
	sim_stop(c);
	CHECK(vddk_dirs() == 0);
	CHECK_DONE();
}
