/* The journal: parsing (bounds, malformed lines), and the file's add,
 * update, remove round trip under a state directory. */
#include "hotadd/hotadd.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *text)
{
	struct fy_journal j;
	int rc = fy_journal_parse(text, strlen(text), "t", &j);

	if (rc == 0)
		fy_journal_release(&j);
	return rc;
}

int main(void)
{
	char dir[] = "/tmp/ferry-journal-test.XXXXXX", path[128];
	struct fy_journal_file *jf;
	struct fy_journal j;
	struct fy_journal_entry a = { .kind = FY_JOURNAL_ATTACH, .pid = 7,
				      .device_key = -1 };
	struct fy_journal_entry s = { .kind = FY_JOURNAL_SNAPSHOT, .pid = 7,
				      .device_key = -1 };
	char f1[37], f2[37];

	fy_log_set_level(FY_LOG_QUIET);
	CHECK(parse("") == 0);
	CHECK(parse("ferry-journal 1\n") == 0);
	CHECK(parse("ferry-journal 2\n") == -EBADMSG);
	CHECK(parse("ferry-journal 1\n1\tattach\t5\t2001\tvm-1\t-\t[ds1] a.vmdk\n") == 0);
	/* A VM a restore created (kind "restore"): its moref and its name. */
	CHECK(parse("ferry-journal 1\n1\trestore\t5\t-1\tvm-54\t-\tweb01 restored\n") == 0);
	CHECK(parse("ferry-journal 1\n1\trestore\t5\t-1\t-\t-\tweb01\n") == -EBADMSG);
	/* torn last line, unknown kind, bad pid, empty vm, duplicate id */
	CHECK(parse("ferry-journal 1\n1\tattach\t5\t2001\tvm-1\t-\tx") == -EBADMSG);
	CHECK(parse("ferry-journal 1\n1\tdestroy\t5\t2001\tvm-1\t-\tx\n") == -EBADMSG);
	CHECK(parse("ferry-journal 1\n1\tattach\t-5\t2001\tvm-1\t-\tx\n") == -EBADMSG);
	CHECK(parse("ferry-journal 1\n1\tattach\t5\t2001\t-\t-\tx\n") == -EBADMSG);
	CHECK(parse("ferry-journal 1\n1\town\t5\t1\tvm-1\t-\tx\n1\town\t5\t1\tvm-1\t-\tx\n") == -EBADMSG);
	CHECK(parse("ferry-journal 1\n1\town\t5\t1\tvm 1\t-\tx\n") == -EBADMSG);

	/* BIOS UUID forms: the first three fields swap. */
	CHECK(fy_hotadd_bios_uuid_forms("42a08064-0e35-4309-8ad6-74101d27590d", f1, f2) == 0);
	CHECK(!strcmp(f2, "6480a042-350e-0943-8ad6-74101d27590d"));
	CHECK(fy_hotadd_bios_uuid_forms("6480A042-350E-0943-8AD6-74101D27590D", f1, f2) == 0);
	CHECK(!strcmp(f2, "42a08064-0e35-4309-8ad6-74101d27590d"));
	CHECK(fy_hotadd_bios_uuid_forms("not-a-uuid", f1, f2) == -EINVAL);

	if (!mkdtemp(dir))
		return 1;
	CHECK_RC(fy_journal_open(dir, &jf));
	snprintf(a.vm, sizeof(a.vm), "vm-28");
	snprintf(a.file, sizeof(a.file), "[ds1] vm-two-disks/vm-two-disks.vmdk");
	snprintf(s.vm, sizeof(s.vm), "vm-31");
	snprintf(s.file, sizeof(s.file), "ferry-1-2");
	CHECK_RC(fy_journal_add(jf, &a));
	CHECK_RC(fy_journal_add(jf, &s));
	CHECK(a.id == 1 && s.id == 2);
	snprintf(s.object, sizeof(s.object), "snapshot-41");
	CHECK_RC(fy_journal_update(jf, &s));
	CHECK_RC(fy_journal_remove(jf, a.id));
	CHECK_RC(fy_journal_read(jf, &j));
	CHECK(j.n == 1 && j.entries[0].kind == FY_JOURNAL_SNAPSHOT &&
	      !strcmp(j.entries[0].object, "snapshot-41"));
	fy_journal_release(&j);
	/* a tab in a field is refused, the file unchanged */
	snprintf(a.file, sizeof(a.file), "bad\tname");
	CHECK(fy_journal_add(jf, &a) == -EINVAL);
	fy_journal_close(jf);
	snprintf(path, sizeof(path), "%s/journal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/journal.lock", dir);
	unlink(path);
	rmdir(dir);
	CHECK_DONE();
}
