/*
 * When an incremental falls back to a full read of a disk, and the reason
 * it gives (agent/job.c fy_job_parent_disk). The end-to-end cases with a
 * simulated vCenter are in tests/hotadd/cbt_incr.sh.
 */
#include <string.h>

#include "agent/job.h"
#include "tests/unit/check.h"

static struct fy_manifest_disk disks[2];
static struct fy_backup_info parent = {
	.id = "20261101T000000Z-00000001", .block_size = 1 << 20,
	.n_disks = 2, .disks = disks,
};

static struct fy_incr_check base(void)
{
	struct fy_incr_check c = {
		.mode = FY_JOB_AUTO, .parent = &parent, .source = "web01",
		.block_size = 1 << 20, .disk_id = "6000C29-b",
		.base_file = "[ds1] web01/web01_1.vmdk",
		.change_id = "52 aa bb-cc dd/9", .capacity = 8ull << 30,
		.cbt_enabled = true,
	};
	return c;
}

static const char *reason(const struct fy_incr_check *c)
{
	static char why[512];

	why[0] = '\0';
	if (fy_job_parent_disk(c, why, sizeof(why)))
		return NULL;
	return why;
}

/* Falls back, and the reason contains what. */
static int says(const struct fy_incr_check *c, const char *what)
{
	const char *r = reason(c);

	if (!r)
		return 0;
	if (!strstr(r, what)) {
		fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", r, what);
		return 0;
	}
	return 1;
}

int main(void)
{
	struct fy_incr_check c;

	strcpy(disks[0].disk_id, "6000C29-a");
	strcpy(disks[0].label, "[ds1] web01/web01.vmdk");
	strcpy(disks[0].change_id, "52 11 22-33 44/3");
	disks[0].size = 16ull << 30;
	disks[0].index = 0;
	strcpy(disks[1].disk_id, "6000C29-b");
	strcpy(disks[1].label, "[ds1] web01/web01_1.vmdk");
	strcpy(disks[1].change_id, "52 aa bb-cc dd/4");
	disks[1].size = 8ull << 30;
	disks[1].index = 1;

	c = base();
	CHECK(fy_job_parent_disk(&c, (char[64]){ 0 }, 64) == &disks[1]);

	c = base();
	c.mode = FY_JOB_FULL;
	CHECK(says(&c, "a full backup was asked for"));

	c = base();
	c.parent = NULL;
	CHECK(says(&c, "no earlier backup of web01"));

	c = base();
	c.block_size = 4 << 20;
	CHECK(says(&c, "blocks of 1048576 bytes, this one 4194304"));

	c = base();
	c.disk_id = "6000C29-z";
	CHECK(says(&c, "has no disk 6000C29-z"));

	c = base();
	c.change_id = "";
	CHECK(says(&c, "changed block tracking is off"));

	disks[1].change_id[0] = '\0';
	c = base();
	CHECK(says(&c, "no change ID for it"));
	strcpy(disks[1].change_id, "52 aa bb-cc dd/4");

	c = base();
	c.capacity = 10ull << 30;
	CHECK(says(&c, "resized from 8589934592 to 10737418240"));

	c = base();
	c.base_file = "[ds2] web01/web01_1.vmdk";
	CHECK(says(&c, "moved from [ds1] web01/web01_1.vmdk to "
				 "[ds2] web01/web01_1.vmdk"));

	c = base();
	c.change_id = "52 ee ff-00 11/1";
	CHECK(says(&c, "CBT was reset"));
	/* A shorter epoch with the same prefix is another epoch too. */
	c.change_id = "52 aa/5";
	CHECK(says(&c, "CBT was reset"));

	CHECK_DONE();
}
