/* The control protocol's messages: a job result survives the trip through
 * a JobEvent (the agent's struct, the wire, the client's struct), and every
 * bound of fy_control_check refuses what breaks it with a message naming
 * the field. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/control.h"
#include "../unit/check.h"

static int decode(const fy_control_frame *f, fy_control_frame **out)
{
	size_t len = protobuf_c_message_get_packed_size(&f->base);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	protobuf_c_message_pack(&f->base, buf);
	rc = fy_control_decode(buf, len, out);
	free(buf);
	return rc;
}

static int decode_rc(const fy_control_frame *f)
{
	fy_control_frame *out = NULL;
	int rc = decode(f, &out);

	fy_control_free(out);
	return rc;
}

static void result_round_trip(void)
{
	struct fy_job_result *in = calloc(1, sizeof(*in));
	struct fy_job_result *back = calloc(1, sizeof(*back));
	struct fy_control_result_msg *m = malloc(sizeof(*m));
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__JobEvent e = FERRY__CONTROL__JOB_EVENT__INIT;
	fy_control_frame *out = NULL;
	unsigned i;

	in->rc = -ECANCELED;
	snprintf(in->error, sizeof(in->error), "cancelled by central");
	in->cancelled = true;
	snprintf(in->parent_id, sizeof(in->parent_id), "P");
	snprintf(in->vm_name, sizeof(in->vm_name), "vm-two-disks");
	snprintf(in->vm_moref, sizeof(in->vm_moref), "vm-31");
	snprintf(in->notes, sizeof(in->notes), "CBT enabled");
	in->seconds = 1.5;
	in->n = 2;
	for (i = 0; i < 2; i++) {
		struct fy_job_disk_result *d = &in->disks[i];

		d->index = i + 3;
		snprintf(d->file, sizeof(d->file), "[ds1] vm/vm_%u.vmdk", i);
		snprintf(d->transport, sizeof(d->transport), "hotadd");
		d->incremental = i == 1;
		snprintf(d->full_reason, sizeof(d->full_reason), "%s",
			 i ? "" : "no earlier backup");
		snprintf(d->change_id, sizeof(d->change_id), "52 aa/%u", i);
		d->st = (struct fy_disk_stats){
			.size = 64u << 20, .blocks = 64, .bytes_read = 1 << 20,
			.bytes_zero = 2 << 20, .bytes_dedup = 3 << 20,
			.bytes_new = 4 << 20, .bytes_sent = 5 << 20,
			.blocks_sent = 6, .bytes_unchanged = 7 << 20,
			.seconds = 0.25, .restore = i == 1,
		};
	}
	fy_control_result_msg(m, in);
	e.job_id = "job-1";
	e.final = true;
	e.result = &m->r;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT;
	f.job_event = &e;
	CHECK_RC(decode(&f, &out));
	if (out) {
		fy_control_result_from(out->job_event->result, back);
		CHECK(!strcmp(fy_control_name(out), "JobEvent"));
	}
	CHECK(back->rc == in->rc && back->cancelled);
	CHECK(!strcmp(back->error, in->error));
	CHECK(!strcmp(back->parent_id, "P") && !strcmp(back->vm_moref, "vm-31"));
	CHECK(!strcmp(back->notes, in->notes) && back->seconds == 1.5);
	CHECK(back->n == 2);
	for (i = 0; i < 2; i++) {
		CHECK(back->disks[i].index == i + 3);
		CHECK(!strcmp(back->disks[i].file, in->disks[i].file));
		CHECK(back->disks[i].incremental == in->disks[i].incremental);
		CHECK(!strcmp(back->disks[i].full_reason,
			      in->disks[i].full_reason));
		CHECK(!strcmp(back->disks[i].change_id, in->disks[i].change_id));
		{
			const struct fy_disk_stats *a = &in->disks[i].st;
			const struct fy_disk_stats *b = &back->disks[i].st;

			CHECK(a->size == b->size && a->blocks == b->blocks);
			CHECK(a->bytes_read == b->bytes_read &&
			      a->bytes_zero == b->bytes_zero);
			CHECK(a->bytes_dedup == b->bytes_dedup &&
			      a->bytes_new == b->bytes_new);
			CHECK(a->bytes_sent == b->bytes_sent &&
			      a->blocks_sent == b->blocks_sent);
			CHECK(a->bytes_unchanged == b->bytes_unchanged);
			CHECK(a->seconds == b->seconds &&
			      a->restore == b->restore);
		}
	}
	fy_control_free(out);
	free(m);
	free(in);
	free(back);
}

static void bounds(void)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StartBackup sb = FERRY__CONTROL__START_BACKUP__INIT;
	Ferry__Control__StartRestoreVm rv = FERRY__CONTROL__START_RESTORE_VM__INIT;
	char *nets[FY_CONTROL_NETWORKS_MAX + 1];
	Ferry__Control__JobEvent e = FERRY__CONTROL__JOB_EVENT__INIT;
	Ferry__Control__DiskProgress p = FERRY__CONTROL__DISK_PROGRESS__INIT;
	Ferry__Control__JobList l = FERRY__CONTROL__JOB_LIST__INIT;
	Ferry__Control__JobInfo info = FERRY__CONTROL__JOB_INFO__INIT;
	Ferry__Control__JobInfo *infos[FY_CONTROL_JOBS_MAX + 1];
	uint32_t disks[FY_CONTROL_DISKS_MAX + 1] = { 0 };
	char *long_name = malloc(FY_CONTROL_NAME_MAX + 2);
	fy_control_frame *out = NULL;
	uint8_t byte = 0;
	unsigned i;

	memset(long_name, 'v', FY_CONTROL_NAME_MAX + 1);
	long_name[FY_CONTROL_NAME_MAX + 1] = '\0';

	/* A good StartBackup, then each bound broken in turn. */
	sb.vm = "vm-two-disks";
	sb.n_disks = FY_CONTROL_DISKS_MAX;
	sb.disks = disks;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP;
	f.start_backup = &sb;
	CHECK_RC(decode_rc(&f));
	sb.n_disks = FY_CONTROL_DISKS_MAX + 1;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "StartBackup.disks") != NULL);
	sb.n_disks = 1;
	sb.vm = long_name;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "StartBackup.vm is longer than") != NULL);
	sb.vm = "vm";
	sb.mode = (Ferry__Control__Mode)9;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "StartBackup.mode 9") != NULL);

	/* A good StartRestoreVm, then its bounds. */
	for (i = 0; i <= FY_CONTROL_NETWORKS_MAX; i++)
		nets[i] = "VM Network=restore-net";
	rv.backup_id = "20261205T000000Z-00000000";
	rv.name = "web01-restored";
	rv.networks = nets;
	rv.n_networks = FY_CONTROL_NETWORKS_MAX;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM;
	f.start_restore_vm = &rv;
	CHECK_RC(decode_rc(&f));
	rv.n_networks = FY_CONTROL_NETWORKS_MAX + 1;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "StartRestoreVm.networks") != NULL);
	rv.n_networks = 1;
	nets[0] = long_name;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "StartRestoreVm.networks is longer") != NULL);
	nets[0] = "a=b";
	rv.folder = long_name;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "StartRestoreVm.folder is longer") != NULL);
	rv.folder = "";

	/* A final event must carry its result; a disk is within its job. */
	e.job_id = "j";
	e.final = true;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT;
	f.job_event = &e;
	CHECK(decode_rc(&f) == -EBADMSG);
	e.final = false;
	p.disk = 2;
	p.n_disks = 2;
	e.progress = &p;
	CHECK(decode_rc(&f) == -EBADMSG);
	CHECK(strstr(fy_err_msg(), "JobEvent.progress") != NULL);
	p.disk = 1;
	CHECK_RC(decode_rc(&f));

	/* At most FY_CONTROL_JOBS_MAX jobs in a list. */
	info.job_id = "j";
	for (i = 0; i <= FY_CONTROL_JOBS_MAX; i++)
		infos[i] = &info;
	l.n_jobs = FY_CONTROL_JOBS_MAX + 1;
	l.jobs = infos;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_LIST;
	f.job_list = &l;
	CHECK(decode_rc(&f) == -EBADMSG);
	l.n_jobs = FY_CONTROL_JOBS_MAX;
	CHECK_RC(decode_rc(&f));
	info.state = (Ferry__Control__JobState)42;
	CHECK(decode_rc(&f) == -EBADMSG);

	/* Sizes and bytes that are no frame. */
	CHECK(fy_control_decode(&byte, 0, &out) == -EMSGSIZE);
	CHECK(fy_control_decode(&byte, FY_CONTROL_FRAME_MAX + 1, &out) ==
	      -EMSGSIZE);
	byte = 0xff;
	CHECK(fy_control_decode(&byte, 1, &out) == -EBADMSG);
	/* A frame with only a field this version does not know has no body:
	 * refused as of unknown type. */
	{
		uint8_t unknown[] = { 0xf8, 0x07, 0x01 }; /* field 127 = 1 */

		CHECK(fy_control_decode(unknown, sizeof(unknown), &out) ==
		      -EBADMSG);
	}
	free(long_name);
}

int main(void)
{
	fy_log_set_level(FY_LOG_QUIET);
	result_round_trip();
	bounds();
	CHECK_DONE();
}
