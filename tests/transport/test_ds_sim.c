/*
 * The https transport (vsphere/ds_source.c) against the simulated vCenter:
 * reads compared byte for byte with the datastore's files, sessions that
 * expire or carry a wrong cookie, renewal, 404s, refused descriptors,
 * several flat extents, scripted truncation and errors on /folder, and
 * the SOAP client's certificate policy applied to datastore reads.
 *
 * CONF is tests/vsphere/ready2conf.py's output: the ferry.vcenter.* keys
 * and the ready file under "test." (test.control, test.datastores.ds1...).
 *
 * usage: test_ds_sim CONF [--esx]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/transport/sim_util.h"
#include "vsphere/vs_int.h"

#define MIB (1024u * 1024)

static struct fy_vs_client *c;
static const char *ds1;   /* the local directory behind [ds1] */

static void write_file(const char *rel, const void *data, size_t len)
{
	char path[1024], dir[1024], *slash;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", ds1, rel);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	*slash = '\0';
	fy_mkdirs(dir, 0755);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || fy_write_all(fd, data, len) < 0) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
	close(fd);
}

static void fill_random(uint8_t *p, size_t n, unsigned seed)
{
	size_t i;

	srand(seed);
	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(rand() >> 7);
}

static struct fy_source *open_ds(const char *dc, const char *file,
				 const struct fy_vs_ds_opts *o)
{
	struct fy_source *src = NULL;
	int rc = fy_vs_datastore_source_open(c, dc, file, o, &src);

	if (rc < 0) {
		fprintf(stderr, "open %s: %s\n", file, fy_err_msg());
		check_failures++;
	}
	return src;
}

/* Opening must fail with want and a message holding words. */
static void open_fails(const char *dc, const char *file, int want,
		       const char *words, const char *words2)
{
	struct fy_source *src = NULL;
	int rc = fy_vs_datastore_source_open(c, dc, file, NULL, &src);

	printf("  %s: %s\n", file, rc < 0 ? fy_err_msg() : "opened");
	if (rc != want || !strstr(fy_err_msg(), words) ||
	    (words2 && !strstr(fy_err_msg(), words2))) {
		fprintf(stderr, "open %s: want %d with '%s', got %d: %s\n",
			file, want, words, rc, fy_err_msg());
		check_failures++;
	}
	fy_source_close(src);
}

static const char *two_disks_file(void)
{
	return sim_get("test.vms.vm-two-disks.disks.0.file");
}

static void test_whole_disk(void)
{
	size_t len;
	uint8_t *flat = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.0.flat_path"), &len);
	struct fy_source *src = open_ds(NULL, two_disks_file(), NULL);

	if (src) {
		CHECK(!strcmp(src->ops->name, "https"));
		CHECK(!strcmp(src->name, two_disks_file()));
		sim_same_as(src, flat, len, 8);
	}
	fy_source_close(src);
	free(flat);
}

/* Reads that are not block-shaped: unaligned, across request boundaries,
 * across the end, past the end. */
static void test_odd_reads(void)
{
	struct fy_vs_ds_opts o;
	struct fy_source *src;
	size_t len, i;
	uint8_t *flat = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.0.flat_path"), &len);
	struct fy_io ios[6];
	uint8_t *bufs[6];
	static const struct {
		uint64_t off;
		size_t len;
	} cases[6] = {
		{ 1, 100000 }, { 65535, 2 }, { 3 * MIB - 7, 300000 },
		{ 0, 0 }, { 0, 0 }, { 0, 0 },
	};

	fy_vs_ds_opts_default(&o);
	o.request_size = 64 * 1024;
	o.max_in_flight = 3;
	src = open_ds("ferry-dc", two_disks_file(), &o);
	if (!src)
		goto out;
	for (i = 0; i < 6; i++) {
		ios[i].offset = cases[i].off;
		ios[i].len = cases[i].len;
	}
	ios[3].offset = len - 100;  /* across the end */
	ios[3].len = 4096;
	ios[4].offset = len + 4096; /* past it */
	ios[4].len = 512;
	ios[5].offset = 12345;      /* nothing at all */
	ios[5].len = 0;
	for (i = 0; i < 6; i++) {
		bufs[i] = malloc(ios[i].len + 1);
		memset(bufs[i], 0xAA, ios[i].len + 1);
		ios[i].buf = bufs[i];
	}
	CHECK_RC(fy_source_read_batch(src, ios, 6));
	for (i = 0; i < 3; i++)
		CHECK(!memcmp(bufs[i], flat + ios[i].offset, ios[i].len));
	CHECK(!memcmp(bufs[3], flat + len - 100, 100));
	CHECK(fy_is_zero(bufs[3] + 100, 4096 - 100));
	CHECK(fy_is_zero(bufs[4], 512));
	/* Nothing written beyond what was asked. */
	for (i = 0; i < 6; i++)
		CHECK(bufs[i][ios[i].len] == 0xAA);
	for (i = 0; i < 6; i++)
		free(bufs[i]);
	fy_source_close(src);
out:
	free(flat);
}

static void test_datacenter_paths(void)
{
	struct fy_source *src = open_ds("/ferry-dc", two_disks_file(), NULL);

	fy_source_close(src);
	open_fails("no-such-dc", two_disks_file(), -ENOENT,
		   "vm-two-disks.vmdk not found (HTTP 404", "dcPath=no-such-dc");
}

static int read_first_mib(struct fy_source *src, const uint8_t *flat)
{
	uint8_t *buf = malloc(MIB);
	int rc = fy_source_read(src, buf, MIB, 0);

	if (rc == 0 && memcmp(buf, flat, MIB))
		rc = -EILSEQ;
	free(buf);
	return rc;
}

static void test_sessions(void)
{
	size_t len;
	uint8_t *flat = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.0.flat_path"), &len);
	struct fy_source *src = open_ds(NULL, two_disks_file(), NULL);
	struct fy_vs_ds_opts o;
	unsigned logins;

	if (!src)
		goto out;
	/* The server forgets every session (a vCenter restart). */
	logins = fy_vs_client_logins(c);
	CHECK(sim_control("expire-sessions", NULL, 0, NULL) == 200);
	CHECK_RC(read_first_mib(src, flat));
	CHECK(fy_vs_client_logins(c) == logins + 1);

	/* A wrong cookie: 401, a new login, the read goes through. */
	pthread_mutex_lock(&c->lock);
	snprintf(c->cookie, sizeof(c->cookie), "vmware_soap_session=\"bogus\"");
	pthread_mutex_unlock(&c->lock);
	CHECK_RC(read_first_mib(src, flat));
	CHECK(fy_vs_client_logins(c) == logins + 2);

	/* A 403 from /folder is treated the same way. */
	CHECK(sim_control("faults?method=folder&status=403&count=1", NULL, 0,
			  NULL) == 200);
	CHECK_RC(read_first_mib(src, flat));
	CHECK(fy_vs_client_logins(c) == logins + 3);

	/* A session refused again after the new login is an error. */
	CHECK(sim_control("faults?method=folder&status=401&count=2", NULL, 0,
			  NULL) == 200);
	CHECK(read_first_mib(src, flat) == -EACCES);
	CHECK(strstr(fy_err_msg(), "even after logging in again") != NULL);
	CHECK_RC(read_first_mib(src, flat));
	fy_source_close(src);

	/* Renewal before expiry, as virt-v2v does every 25 minutes. */
	fy_vs_ds_opts_default(&o);
	o.renew_seconds = 1;
	src = open_ds(NULL, two_disks_file(), &o);
	if (!src)
		goto out;
	logins = fy_vs_client_logins(c);
	CHECK_RC(read_first_mib(src, flat));
	CHECK(fy_vs_client_logins(c) == logins);
	sleep(2);
	CHECK_RC(read_first_mib(src, flat));
	CHECK(fy_vs_client_logins(c) == logins + 1);
	fy_source_close(src);
out:
	free(flat);
}

static void test_refusals(void)
{
	size_t len;
	const char *text;
	char *data, sample[1024];
	char *big;

	open_fails(NULL, "[ds1] vm-two-disks/missing.vmdk", -ENOENT,
		   "[ds1] vm-two-disks/missing.vmdk not found (HTTP 404", NULL);
	open_fails(NULL, "[nods] a/b.vmdk", -ENOENT,
		   "no datastore named nods", NULL);
	open_fails(NULL, "ds1/a.vmdk", -EINVAL, "not a datastore path", NULL);
	open_fails(NULL, "[ds1] a/../b.vmdk", -EINVAL, "'..'", NULL);

	/* An extent the descriptor names is missing. */
	text = "# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\n"
	       "createType=\"vmfs\"\nRW 2048 VMFS \"gone-flat.vmdk\"\n";
	write_file("tdir/orphan.vmdk", text, strlen(text));
	open_fails(NULL, "[ds1] tdir/orphan.vmdk", -ENOENT,
		   "extent file [ds1] tdir/gone-flat.vmdk of "
		   "[ds1] tdir/orphan.vmdk not found", NULL);
	/* An extent file shorter than the descriptor says. */
	text = "# Disk DescriptorFile\nCID=1\nparentCID=ffffffff\n"
	       "createType=\"vmfs\"\nRW 4096 VMFS \"short-flat.vmdk\"\n";
	write_file("tdir/short.vmdk", text, strlen(text));
	write_file("tdir/short-flat.vmdk", text, strlen(text));
	open_fails(NULL, "[ds1] tdir/short.vmdk", -EIO, "shorter than", NULL);

	/* A delta disk (SEsparse), as VMFS6 writes it for snapshots. */
	snprintf(sample, sizeof(sample), "%s/sesparse_delta.vmdk",
		 sim_get("test.samples"));
	data = sim_read_local(sample, &len);
	write_file("tdir/web01-000001.vmdk", data, len);
	free(data);
	open_fails(NULL, "[ds1] tdir/web01-000001.vmdk", -ENOTSUP,
		   "delta disk (SEsparse) chains are not supported by the https "
		   "transport yet; use hotadd or nbd", NULL);

	/* Not descriptors: too large, binary. */
	big = malloc(70000);
	memset(big, '#', 70000);
	write_file("tdir/big.vmdk", big, 70000);
	open_fails(NULL, "[ds1] tdir/big.vmdk", -EFBIG, "larger than 65536",
		   NULL);
	memset(big, 0, 70000);
	memcpy(big, "KDMV", 4);
	write_file("tdir/sparse.vmdk", big, 70000);
	open_fails(NULL, "[ds1] tdir/sparse.vmdk", -ENOTSUP,
		   "binary sparse VMDK", NULL);
	free(big);
}

/* A snapshot moves the VM to a delta: refused; the frozen base reads. */
static void test_snapshot(void)
{
	struct fy_vs_moref vm, snap;
	struct fy_vs_vm *v = NULL;
	struct fy_vs_snapshot_opts so = { .name = "ds-test" };
	size_t len;
	uint8_t *flat = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.0.flat_path"), &len);
	struct fy_source *src;

	CHECK_RC(fy_vs_find_vm(c, FY_VS_BY_NAME, "vm-two-disks", &vm));
	CHECK_RC(fy_vs_snapshot_create(c, &vm, &so, &snap));
	CHECK_RC(fy_vs_vm_get(c, &vm, &v));
	if (!v || !v->devices.n_disks)
		goto out;
	printf("  live disk after the snapshot: %s\n",
	       v->devices.disks[0].file_name);
	CHECK(strcmp(v->devices.disks[0].file_name, two_disks_file()) != 0);
	open_fails(NULL, v->devices.disks[0].file_name, -ENOTSUP,
		   "delta disk (child of vm-two-disks.vmdk) chains are not "
		   "supported", NULL);
	src = open_ds(NULL, two_disks_file(), NULL);
	if (src)
		sim_same_as(src, flat, len, 8);
	fy_source_close(src);
	/* The owner of a frozen file, for VDDK: the VM itself. */
	{
		struct fy_vs_moref owner;

		CHECK_RC(fy_vs_find_disk_vm(c, two_disks_file(), &owner));
		CHECK(!strcmp(owner.value, vm.value));
		CHECK(fy_vs_find_disk_vm(c, "[ds1] nobody/x.vmdk", &owner) ==
		      -ENOENT);
	}
	CHECK_RC(fy_vs_snapshot_remove(c, &snap));
out:
	fy_vs_vm_free(v);
	free(flat);
}

/* twoGbMaxExtentFlat-style: several flat files, a ZERO extent between
 * them, an extent that starts inside its file. */
static void test_several_extents(void)
{
	const size_t a = MIB, b = 3 * MIB + 512, z = 2 * MIB, f3 = 2 * MIB;
	const size_t c3 = MIB; /* the last extent: f3's second MiB */
	size_t total = a + b + z + c3;
	uint8_t *fa = malloc(a), *fb = malloc(b), *ff = malloc(f3);
	uint8_t *want = calloc(1, total);
	struct fy_vs_ds_opts o;
	struct fy_source *src;
	char text[1024];

	fill_random(fa, a, 1);
	fill_random(fb, b, 2);
	fill_random(ff, f3, 3);
	write_file("multi/disk-f001.vmdk", fa, a);
	write_file("multi/disk-f002.vmdk", fb, b);
	write_file("multi/disk-f003.vmdk", ff, f3);
	snprintf(text, sizeof(text),
		 "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
		 "parentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\n\n"
		 "RW %zu FLAT \"disk-f001.vmdk\" 0\n"
		 "RW %zu FLAT \"disk-f002.vmdk\" 0\n"
		 "RW %zu ZERO\n"
		 "RW %zu FLAT \"disk-f003.vmdk\" %zu\n",
		 a / 512, b / 512, z / 512, c3 / 512, (f3 - c3) / 512);
	write_file("multi/disk.vmdk", text, strlen(text));
	memcpy(want, fa, a);
	memcpy(want + a, fb, b);
	memcpy(want + a + b + z, ff + (f3 - c3), c3);
	fy_vs_ds_opts_default(&o);
	o.request_size = 256 * 1024;
	src = open_ds(NULL, "[ds1] multi/disk.vmdk", &o);
	if (src)
		sim_same_as(src, want, total, 8);
	fy_source_close(src);
	free(fa);
	free(fb);
	free(ff);
	free(want);
}

/* /folder misbehaving: a connection cut short, an error status. The
 * source stays usable afterwards. */
static void test_folder_faults(void)
{
	size_t len;
	uint8_t *flat = sim_read_local(
		sim_get("test.vms.vm-two-disks.disks.0.flat_path"), &len);
	struct fy_source *src = open_ds(NULL, two_disks_file(), NULL);
	int rc;

	if (!src)
		goto out;
	CHECK(sim_control("faults?method=folder&truncate_after=100000", NULL, 0,
			  NULL) == 200);
	rc = read_first_mib(src, flat);
	printf("  truncated: %s\n", fy_err_msg());
	CHECK(rc < 0 && rc != -EILSEQ);
	CHECK(strstr(fy_err_msg(), "vm-two-disks-flat.vmdk") != NULL);
	CHECK_RC(read_first_mib(src, flat));

	CHECK(sim_control("faults?method=folder&status=500", NULL, 0, NULL) ==
	      200);
	rc = read_first_mib(src, flat);
	printf("  status 500: %s\n", fy_err_msg());
	CHECK(rc == -EIO && strstr(fy_err_msg(), "HTTP 500") != NULL);
	CHECK_RC(read_first_mib(src, flat));
	fy_source_close(src);
out:
	free(flat);
}

/* Datastore reads check the certificate exactly as SOAP calls do. */
static void test_certificates(void)
{
	struct fy_config *cfg2;
	struct fy_vs_client *c2 = NULL;
	struct fy_source *src = NULL;
	uint8_t pin[32];
	int rc;

	/* A pin that no longer matches: refused before any byte of ours. */
	memcpy(pin, c->pin, 32);
	c->pin[0] ^= 0xff;
	rc = fy_vs_datastore_source_open(c, "ferry-dc", two_disks_file(), NULL,
					 &src);
	printf("  wrong pin: %s\n", fy_err_msg());
	CHECK(rc == -EPERM && strstr(fy_err_msg(), "thumbprint") != NULL);
	memcpy(c->pin, pin, 32);

	/* The CA file instead of a pin. */
	cfg2 = fy_config_new();
	fy_config_set(cfg2, "ferry.vcenter.server",
		      sim_get("ferry.vcenter.server"));
	fy_config_set(cfg2, "ferry.vcenter.user",
		      sim_get("ferry.vcenter.user"));
	fy_config_set(cfg2, "ferry.vcenter.passwordFile",
		      sim_get("ferry.vcenter.passwordFile"));
	fy_config_set(cfg2, "ferry.vcenter.caFile", sim_get("test.cert_file"));
	CHECK_RC(fy_vs_client_open(cfg2, &c2));
	if (c2) {
		char tp[64];

		CHECK_RC(fy_vs_datastore_source_open(c2, NULL, two_disks_file(),
						     NULL, &src));
		fy_source_close(src);
		/* What VDDK would get: the SHA-1 of the checked certificate. */
		CHECK_RC(fy_vs_client_sha1_thumbprint(c2, tp, sizeof(tp)));
		CHECK(!strcasecmp(tp, sim_get("test.sha1_thumbprint")));
	}
	fy_vs_client_free(c2);
	fy_config_free(cfg2);
}

int main(int argc, char **argv)
{
	bool esx = argc > 2 && !strcmp(argv[2], "--esx");

	if (argc < 2) {
		fprintf(stderr, "usage: %s CONF [--esx]\n", argv[0]);
		return 2;
	}
	fy_log_set_level(FY_LOG_WARN);
	c = sim_start(argv[1]);
	ds1 = sim_get("test.datastores.ds1");
	SIM_TEST(whole_disk);
	if (!esx) {
		SIM_TEST(odd_reads);
		SIM_TEST(datacenter_paths);
		SIM_TEST(sessions);
		SIM_TEST(refusals);
		SIM_TEST(snapshot);
		SIM_TEST(several_extents);
		SIM_TEST(folder_faults);
		SIM_TEST(certificates);
	}
	sim_stop(c);
	CHECK_DONE();
}
