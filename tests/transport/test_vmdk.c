/*
 * The VMDK descriptor parser and the https transport's verdict on sample
 * descriptors (tests/fuzz/fuzz_vmdk.seeds/, also the fuzzer's seeds) and
 * on broken ones made here: every truncation, binary garbage, oversize,
 * too many extents, overflowing sizes.
 *
 * usage: test_vmdk SAMPLES_DIR
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "vsphere/vsphere.h"

static const char *dir;
static struct fy_vmdk_descriptor d;

static char *load(const char *name, size_t *len)
{
	char path[1024];
	void *data = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (fy_read_file(path, 1u << 20, &data, len) < 0) {
		fprintf(stderr, "cannot read %s: %s\n", path, fy_err_msg());
		exit(2);
	}
	return data;
}

/* Parses a sample; returns parse rc, and the check's rc in *check. */
static int sample(const char *name, int *check)
{
	size_t len;
	char *text = load(name, &len);
	int rc = fy_vmdk_parse(text, len, name, &d);

	*check = rc == 0 ? fy_vmdk_check_flat(&d, name) : rc;
	if (*check < 0)
		printf("%s: %s\n", name, fy_err_msg());
	free(text);
	return rc;
}

static void expect_refused(const char *name, int want, const char *words)
{
	int check;

	sample(name, &check);
	if (check != want || !strstr(fy_err_msg(), words)) {
		fprintf(stderr, "%s: want %d with '%s', got %d: %s\n", name,
			want, words, check, fy_err_msg());
		check_failures++;
	}
}

static int parse_str(const char *text)
{
	return fy_vmdk_parse(text, strlen(text), "t.vmdk", &d);
}

static void expect_bad(const char *text, int want, const char *words)
{
	int rc = parse_str(text);

	if (rc != want || (words && !strstr(fy_err_msg(), words))) {
		fprintf(stderr, "want %d '%s' for:\n%s\ngot %d: %s\n", want,
			words ? words : "", text, rc, fy_err_msg());
		check_failures++;
	}
}

static void good_samples(void)
{
	int check;

	CHECK(sample("vmfs.vmdk", &check) == 0 && check == 0);
	CHECK(!strcmp(d.create_type, "vmfs"));
	CHECK(d.cid == 0x57550ba7 && d.parent_cid == 0xffffffffu);
	CHECK(d.n_extents == 1 && d.extents[0].kind == FY_VMDK_VMFS);
	CHECK(d.extents[0].access == FY_VMDK_RW);
	CHECK(!strcmp(d.extents[0].file, "vm-two-disks-flat.vmdk"));
	CHECK(d.capacity == 64ull << 20);

	CHECK(sample("monolithic_flat.vmdk", &check) == 0 && check == 0);
	CHECK(d.n_extents == 1 && d.extents[0].kind == FY_VMDK_FLAT);
	/* Spaces in a quoted file name are part of it. */
	CHECK(!strcmp(d.extents[0].file, "Windows 10 x64-flat.vmdk"));
	CHECK(d.capacity == 1ull << 30);

	/* Several flat extents: supported, read one after the other. */
	CHECK(sample("two_gb_max_extent_flat.vmdk", &check) == 0 && check == 0);
	CHECK(!strcmp(d.create_type, "twoGbMaxExtentFlat"));
	CHECK(d.n_extents == 3);
	CHECK(!strcmp(d.extents[2].file, "ubuntu-f003.vmdk"));
	CHECK(d.capacity == (4192256ull * 2 + 8192) * 512);

	CHECK(sample("zero_and_flat.vmdk", &check) == 0 && check == 0);
	CHECK(d.n_extents == 3 && d.extents[1].kind == FY_VMDK_ZERO);
	CHECK(d.extents[1].file[0] == '\0');
	CHECK(d.extents[2].access == FY_VMDK_RDONLY);
	CHECK(d.extents[2].offset == 2048);

	CHECK(sample("crlf.vmdk", &check) == 0 && check == 0);
	CHECK(!strcmp(d.extents[0].file, "crlf-flat.vmdk"));

	/* Long values of keys Ferry does not use are fine. */
	CHECK(sample("encrypted.vmdk", &check) == 0 && check == 0);
	CHECK(d.capacity == 8388608ull * 512);
}

static void refused_samples(void)
{
	expect_refused("sesparse_delta.vmdk", -ENOTSUP,
		       "delta disk (SEsparse) chains are not supported by the "
		       "https transport yet; use hotadd or nbd");
	expect_refused("vmfssparse_delta.vmdk", -ENOTSUP,
		       "delta disk (vmfsSparse) chains are not supported");
	expect_refused("vsansparse_delta.vmdk", -ENOTSUP,
		       "delta disk (vsanSparse)");
	/* A flat file with a parent is a delta all the same. */
	expect_refused("flat_child.vmdk", -ENOTSUP,
		       "delta disk (child of vm-two-disks.vmdk) chains");
	expect_refused("monolithic_sparse_text.vmdk", -ENOTSUP,
		       "sparse extents (appliance-disk1.vmdk, createType "
		       "monolithicSparse)");
	expect_refused("kdmv_binary.vmdk", -ENOTSUP, "binary sparse VMDK");
	expect_refused("rdm_virtual.vmdk", -ENOTSUP,
		       "raw device mapping (VMFSRDM)");
	expect_refused("rdm_physical.vmdk", -ENOTSUP,
		       "raw device mapping (VMFSRAW)");
	expect_refused("escape.vmdk", -ENOTSUP,
		       "not in the descriptor's folder");
	expect_refused("noaccess.vmdk", -ENOTSUP, "NOACCESS");
}

static void malformed(void)
{
	static const char head[] = "version=1\ncreateType=\"vmfs\"\n";
	char *big;
	size_t i, len;
	char *text;
	int rc, ok = 0;

	expect_bad("version=1\nRW 10 VMFS \"a-flat.vmdk\"\n", -EBADMSG,
		   "no createType");
	expect_bad(head, -EBADMSG, "names no extent");
	expect_bad("createType=\"vmfs\"\ncreateType=\"vmfs\"\n"
		   "RW 1 VMFS \"a\"\n", -EBADMSG, "createType given twice");
	expect_bad("createType=\"vmfs\"\nRW 10 VMFS \"a-flat.vmdk\n",
		   -EBADMSG, "unterminated");
	expect_bad("createType=\"vmfs\"\nRW ten VMFS \"a\"\n", -EBADMSG,
		   "not a number of sectors");
	expect_bad("createType=\"vmfs\"\nRW 0 VMFS \"a\"\n", -EBADMSG,
		   "out of range");
	expect_bad("createType=\"vmfs\"\nRW 36028797018963968 VMFS \"a\"\n",
		   -EBADMSG, "out of range");
	expect_bad("createType=\"vmfs\"\nRW 99999999999999999999999 VMFS "
		   "\"a\"\n", -EBADMSG, "not a number");
	/* Each extent fits, together they overflow 2^64 bytes. */
	expect_bad("createType=\"vmfs\"\nRW 36028797018963967 VMFS \"a\"\n"
		   "RW 1 VMFS \"b\"\n", -EBADMSG, "more than 2^64");
	expect_bad("createType=\"vmfs\"\nRW 10 FLAT \"a\" 36028797018963967\n",
		   -EBADMSG, "offset out of range");
	expect_bad("createType=\"vmfs\"\nRW 10 QCOW \"a\"\n", -EBADMSG,
		   "unknown extent type 'QCOW'");
	expect_bad("createType=\"vmfs\"\nRW 10 VMFS\n", -EBADMSG,
		   "extent file name");
	expect_bad("createType=\"vmfs\"\nRW 10 VMFS \"\"\n", -EBADMSG,
		   "empty extent file name");
	expect_bad("createType=\"vmfs\"\nRW 10 VMFS \"a\" 0 junk\n", -EBADMSG,
		   "unexpected text");
	expect_bad("createType=\"vmfs\"\nCID=xyz\nRW 1 VMFS \"a\"\n", -EBADMSG,
		   "CID is not");
	expect_bad("createType=\"vmfs\"\nparentCID=123456789\nRW 1 VMFS \"a\"\n",
		   -EBADMSG, "parentCID is not");
	expect_bad("createType=\"vmfs\"\nthis is not a descriptor\n", -EBADMSG,
		   "line 2");
	expect_bad("createType=\"vmfs\"\nke y=1\nRW 1 VMFS \"a\"\n", -EBADMSG,
		   "key with a character");
	expect_bad("createType=\"vmfs\"\nRW 1 VMFS \"a\x01\"\n", -EBADMSG,
		   "control byte 0x01");
	CHECK(fy_vmdk_parse("createType=\"vmfs\"\0RW", 21, "t", &d) == -EBADMSG);

	/* A line over the bound. */
	big = malloc(FY_VMDK_MAX_DESCRIPTOR + 2);
	memset(big, 'x', 2000);
	memcpy(big, "#", 1);
	big[2000] = '\0';
	expect_bad(big, -EBADMSG, "longer than 1024 bytes");

	/* Oversize: 64 KiB + 1 of comments. */
	memset(big, '\n', FY_VMDK_MAX_DESCRIPTOR + 1);
	big[0] = '#';
	CHECK(fy_vmdk_parse(big, FY_VMDK_MAX_DESCRIPTOR + 1, "big", &d) ==
	      -EFBIG);
	CHECK(strstr(fy_err_msg(), "larger than 65536 bytes") != NULL);

	/* 65 extents. */
	len = (size_t)snprintf(big, FY_VMDK_MAX_DESCRIPTOR, "%s", head);
	for (i = 0; i < FY_VMDK_MAX_EXTENTS + 1; i++)
		len += (size_t)snprintf(big + len, FY_VMDK_MAX_DESCRIPTOR - len,
					"RW 8 FLAT \"e%zu.vmdk\" 0\n", i);
	CHECK(fy_vmdk_parse(big, len, "many", &d) == -E2BIG);
	CHECK(strstr(fy_err_msg(), "more than 64 extents") != NULL);
	/* ... and exactly 64 is fine. */
	len = (size_t)snprintf(big, FY_VMDK_MAX_DESCRIPTOR, "%s", head);
	for (i = 0; i < FY_VMDK_MAX_EXTENTS; i++)
		len += (size_t)snprintf(big + len, FY_VMDK_MAX_DESCRIPTOR - len,
					"RW 8 FLAT \"e%zu.vmdk\" 0\n", i);
	CHECK_RC(fy_vmdk_parse(big, len, "64", &d));
	CHECK(d.n_extents == 64 && d.capacity == 64 * 8 * 512);
	CHECK_RC(fy_vmdk_check_flat(&d, "64"));

	/* Binary garbage: deterministic noise is refused, never accepted. */
	srand(7);
	for (i = 0; i < 4096; i++)
		big[i] = (char)(rand() & 0xff);
	CHECK(fy_vmdk_parse(big, 4096, "noise", &d) < 0);
	free(big);

	/* Every truncation of a good descriptor: a result or an error,
	 * and an error whenever the extent line is cut inside its quotes. */
	text = load("two_gb_max_extent_flat.vmdk", &len);
	for (i = 0; i <= len; i++) {
		rc = fy_vmdk_parse(text, i, "cut", &d);
		CHECK(rc == 0 || rc == -EBADMSG);
		if (rc == 0) {
			ok++;
			CHECK(d.n_extents >= 1 && d.n_extents <= 3);
		}
	}
	CHECK(ok > 0 && (size_t)ok < len);
	free(text);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SAMPLES_DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	fy_log_set_level(FY_LOG_ERROR);
	CHECK(!strcmp(fy_vmdk_extent_kind_name(FY_VMDK_SESPARSE), "SESPARSE"));
	good_samples();
	refused_samples();
	malformed();
	CHECK_DONE();
}
