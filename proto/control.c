/*
 * The control protocol's frames (proto/control.proto): decoding, the
 * bounds every received frame must meet, and sending over a fy_conn.
 * Nothing a controller or an agent sends reaches the service or the
 * client before fy_control_check passed it.
 */
#include <errno.h>
#include <string.h>

#include "proto/wire.h"

static int check_str(const char *s, size_t max, const char *what)
{
	size_t n;

	if (!s)
		return 0;
	n = strnlen(s, max + 1);
	if (n > max)
		return fy_err_set(-EBADMSG, "%s is longer than %zu bytes", what,
				  max);
	return 0;
}

static int check_name(const char *s, const char *what)
{
	return check_str(s, FY_CONTROL_NAME_MAX, what);
}

static int check_count(size_t n, size_t max, const char *what)
{
	if (n > max)
		return fy_err_set(-EBADMSG, "%s lists %zu entries, more than %zu",
				  what, n, max);
	return 0;
}

static int check_state(Ferry__Control__JobState s, const char *what)
{
	switch (s) {
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_RUNNING:
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_SUCCEEDED:
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_FAILED:
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_CANCELLED:
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_QUEUED:
		return 0;
	default:
		return fy_err_set(-EBADMSG, "%s: unknown job state %d", what,
				  (int)s);
	}
}

static int check_progress(const Ferry__Control__DiskProgress *p,
			  const char *what)
{
	if (!p)
		return 0;
	if (p->n_disks > FY_CONTROL_DISKS_MAX ||
	    (p->n_disks && p->disk >= p->n_disks))
		return fy_err_set(-EBADMSG, "%s: disk %u of %u is outside "
				  "0..%u", what, p->disk, p->n_disks,
				  FY_CONTROL_DISKS_MAX - 1);
	return 0;
}

static int check_cleanup(const Ferry__Control__CleanupResult *r,
			 const char *what)
{
	int rc;

	if (!r)
		return 0;
	if ((rc = check_str(r->error, FY_STRING_MAX, what)) < 0 ||
	    (rc = check_str(r->log, FY_CONTROL_LOG_MAX, what)) < 0)
		return rc;
	return 0;
}

static int check_job_info(const Ferry__Control__JobInfo *j)
{
	int rc;

	if ((rc = check_name(j->job_id, "JobInfo.job_id")) < 0 ||
	    (rc = check_name(j->vm, "JobInfo.vm")) < 0 ||
	    (rc = check_name(j->vm_moref, "JobInfo.vm_moref")) < 0 ||
	    (rc = check_name(j->name, "JobInfo.name")) < 0 ||
	    (rc = check_state(j->state, "JobInfo.state")) < 0 ||
	    (rc = check_name(j->phase, "JobInfo.phase")) < 0 ||
	    (rc = check_name(j->backup_id, "JobInfo.backup_id")) < 0 ||
	    (rc = check_str(j->error, FY_STRING_MAX, "JobInfo.error")) < 0 ||
	    (rc = check_name(j->client, "JobInfo.client")) < 0 ||
	    (rc = check_name(j->kind, "JobInfo.kind")) < 0)
		return rc;
	if (j->n_disks > FY_CONTROL_DISKS_MAX)
		return fy_err_set(-EBADMSG, "JobInfo has %u disks, more than %u",
				  j->n_disks, FY_CONTROL_DISKS_MAX);
	return 0;
}

static int check_jobs(Ferry__Control__JobInfo **jobs, size_t n,
		      const char *what)
{
	size_t i;
	int rc = check_count(n, FY_CONTROL_JOBS_MAX, what);

	for (i = 0; rc == 0 && i < n; i++)
		rc = check_job_info(jobs[i]);
	return rc;
}

static int check_result(const Ferry__Control__JobResult *r)
{
	size_t i;
	int rc;

	if (!r)
		return 0;
	if ((rc = check_str(r->error, FY_STRING_MAX, "JobResult.error")) < 0 ||
	    (rc = check_name(r->backup_id, "JobResult.backup_id")) < 0 ||
	    (rc = check_name(r->parent_id, "JobResult.parent_id")) < 0 ||
	    (rc = check_name(r->vm_name, "JobResult.vm_name")) < 0 ||
	    (rc = check_name(r->vm_moref, "JobResult.vm_moref")) < 0 ||
	    (rc = check_name(r->notes, "JobResult.notes")) < 0 ||
	    (rc = check_name(r->kind, "JobResult.kind")) < 0 ||
	    (rc = check_name(r->source, "JobResult.source")) < 0 ||
	    (rc = check_name(r->datastore, "JobResult.datastore")) < 0 ||
	    (rc = check_name(r->host, "JobResult.host")) < 0 ||
	    (rc = check_count(r->n_disks, FY_CONTROL_DISKS_MAX,
			      "JobResult.disks")) < 0)
		return rc;
	for (i = 0; i < r->n_disks; i++) {
		const Ferry__Control__DiskResult *d = r->disks[i];

		if ((rc = check_name(d->file, "DiskResult.file")) < 0 ||
		    (rc = check_name(d->transport, "DiskResult.transport")) < 0 ||
		    (rc = check_name(d->full_reason,
				     "DiskResult.full_reason")) < 0 ||
		    (rc = check_name(d->change_id, "DiskResult.change_id")) < 0 ||
		    (rc = check_progress(d->counters, "DiskResult.counters")) < 0)
			return rc;
	}
	return 0;
}

static int check_start(const Ferry__Control__StartBackup *s)
{
	int rc;

	if ((rc = check_name(s->vm, "StartBackup.vm")) < 0 ||
	    (rc = check_count(s->n_disks, FY_CONTROL_DISKS_MAX,
			      "StartBackup.disks")) < 0 ||
	    (rc = check_name(s->transports, "StartBackup.transports")) < 0 ||
	    (rc = check_name(s->name, "StartBackup.name")) < 0 ||
	    (rc = check_name(s->repository, "StartBackup.repository")) < 0 ||
	    (rc = check_name(s->snapshot, "StartBackup.snapshot")) < 0)
		return rc;
	switch (s->mode) {
	case FERRY__CONTROL__MODE__MODE_AUTO:
	case FERRY__CONTROL__MODE__MODE_FULL:
	case FERRY__CONTROL__MODE__MODE_INCREMENTAL:
		return 0;
	default:
		return fy_err_set(-EBADMSG, "StartBackup.mode %d is unknown",
				  (int)s->mode);
	}
}

static int check_restore(const Ferry__Control__StartRestoreVm *s)
{
	size_t i;
	int rc;

	if ((rc = check_name(s->backup_id, "StartRestoreVm.backup_id")) < 0 ||
	    (rc = check_name(s->name, "StartRestoreVm.name")) < 0 ||
	    (rc = check_name(s->datastore, "StartRestoreVm.datastore")) < 0 ||
	    (rc = check_name(s->host, "StartRestoreVm.host")) < 0 ||
	    (rc = check_name(s->resource_pool,
			     "StartRestoreVm.resource_pool")) < 0 ||
	    (rc = check_name(s->folder, "StartRestoreVm.folder")) < 0 ||
	    (rc = check_count(s->n_networks, FY_CONTROL_NETWORKS_MAX,
			      "StartRestoreVm.networks")) < 0 ||
	    (rc = check_name(s->disk_provisioning,
			     "StartRestoreVm.disk_provisioning")) < 0 ||
	    (rc = check_name(s->transports, "StartRestoreVm.transports")) < 0 ||
	    (rc = check_name(s->into, "StartRestoreVm.into")) < 0 ||
	    (rc = check_count(s->n_disks, FY_CONTROL_DISKS_MAX,
			      "StartRestoreVm.disks")) < 0)
		return rc;
	for (i = 0; i < s->n_networks; i++)
		if ((rc = check_name(s->networks[i],
				     "StartRestoreVm.networks")) < 0)
			return rc;
	return 0;
}

int fy_control_check(const fy_control_frame *f)
{
	size_t i;
	int rc = 0;

	switch (f->body_case) {
	case FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO:
		rc = check_name(f->hello->software, "Hello.software");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO_REPLY:
		rc = check_name(f->hello_reply->software, "HelloReply.software");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS_REQUEST:
	case FERRY__CONTROL__CONTROL_FRAME__BODY_LIST_JOBS:
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP:
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS: {
		const Ferry__Control__Status *s = f->status;

		if ((rc = check_name(s->software, "Status.software")) < 0 ||
		    (rc = check_name(s->transports, "Status.transports")) < 0 ||
		    (rc = check_name(s->config_file, "Status.config_file")) < 0 ||
		    (rc = check_count(s->n_transport_modes, FY_CONTROL_MODES_MAX,
				      "Status.transport_modes")) < 0 ||
		    (rc = check_jobs(s->jobs, s->n_jobs, "Status.jobs")) < 0 ||
		    (rc = check_cleanup(s->last_cleanup,
					"Status.last_cleanup")) < 0)
			break;
		for (i = 0; rc == 0 && i < s->n_transport_modes; i++) {
			rc = check_name(s->transport_modes[i]->name,
					"Transport.name");
			if (!rc)
				rc = check_str(s->transport_modes[i]->reason,
					       FY_STRING_MAX, "Transport.reason");
		}
		break;
	}
	case FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP:
		rc = check_start(f->start_backup);
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM:
		rc = check_restore(f->start_restore_vm);
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_STARTED:
		rc = check_name(f->job_started->job_id, "JobStarted.job_id");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH:
		rc = check_name(f->watch->job_id, "Watch.job_id");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT: {
		const Ferry__Control__JobEvent *e = f->job_event;

		if ((rc = check_name(e->job_id, "JobEvent.job_id")) < 0 ||
		    (rc = check_name(e->phase, "JobEvent.phase")) < 0 ||
		    (rc = check_str(e->detail, FY_STRING_MAX,
				    "JobEvent.detail")) < 0 ||
		    (rc = check_progress(e->progress, "JobEvent.progress")) < 0 ||
		    (rc = check_result(e->result)) < 0 ||
		    (rc = check_state(e->state, "JobEvent.state")) < 0)
			break;
		if (e->final && !e->result)
			rc = fy_err_set(-EBADMSG, "final JobEvent without a "
					"result");
		break;
	}
	case FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_LIST:
		rc = check_jobs(f->job_list->jobs, f->job_list->n_jobs,
				"JobList.jobs");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL:
		rc = check_name(f->cancel->job_id, "Cancel.job_id");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL_REPLY:
		rc = check_name(f->cancel_reply->job_id, "CancelReply.job_id");
		if (!rc)
			rc = check_state(f->cancel_reply->state,
					 "CancelReply.state");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP_REPLY:
		rc = check_cleanup(f->cleanup_reply->result,
				   "CleanupReply.result");
		break;
	case FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR:
		rc = check_str(f->error->message, FY_STRING_MAX,
			       "Error.message");
		break;
	default:
		rc = fy_err_set(-EBADMSG, "control frame of unknown type %d",
				(int)f->body_case);
	}
	return rc;
}

int fy_control_decode(const uint8_t *buf, size_t len, fy_control_frame **out)
{
	fy_control_frame *f;
	int rc;

	if (len == 0 || len > FY_CONTROL_FRAME_MAX)
		return fy_err_set(-EMSGSIZE, "control frame of %zu bytes is "
				  "outside 1..%u", len, FY_CONTROL_FRAME_MAX);
	f = ferry__control__control_frame__unpack(NULL, len, buf);
	if (!f)
		return fy_err_set(-EBADMSG, "malformed control frame (%zu "
				  "bytes) that does not decode", len);
	rc = fy_control_check(f);
	if (rc < 0) {
		ferry__control__control_frame__free_unpacked(f, NULL);
		return rc;
	}
	*out = f;
	return 0;
}

void fy_control_free(fy_control_frame *f)
{
	if (f)
		ferry__control__control_frame__free_unpacked(f, NULL);
}

const char *fy_control_name(const fy_control_frame *f)
{
	switch (f->body_case) {
	case FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO: return "Hello";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO_REPLY: return "HelloReply";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS_REQUEST:
		return "StatusRequest";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS: return "Status";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP:
		return "StartBackup";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM:
		return "StartRestoreVm";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_STARTED: return "JobStarted";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH: return "Watch";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT: return "JobEvent";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_LIST_JOBS: return "ListJobs";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_LIST: return "JobList";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL: return "Cancel";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL_REPLY:
		return "CancelReply";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP: return "Cleanup";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP_REPLY:
		return "CleanupReply";
	case FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR: return "Error";
	default: return "unknown";
	}
}

int fy_control_send(struct fy_conn *c, const fy_control_frame *f)
{
	return fy_conn_send_message(c, &f->base, FY_CONTROL_FRAME_MAX,
				    fy_control_name(f));
}

int fy_control_recv(struct fy_conn *c, fy_control_frame **out)
{
	const uint8_t *body;
	size_t len;
	int rc = fy_conn_recv_body(c, FY_CONTROL_FRAME_MAX, &body, &len);

	if (rc < 0)
		return rc;
	rc = fy_control_decode(body, len, out);
	if (rc < 0) {
		rc = fy_err_wrap(rc, "from %s", fy_conn_peer(c));
		fy_conn_set_rx_error(c, rc);
	}
	return rc;
}

void fy_control_send_error(struct fy_conn *c, int code, const char *msg)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Error e = FERRY__CONTROL__ERROR__INIT;
	char buf[FY_STRING_MAX];

	snprintf(buf, sizeof(buf), "%s", msg);
	e.code = code;
	e.message = buf;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR;
	f.error = &e;
	if (fy_control_send(c, &f) == 0)
		fy_conn_flush(c);
}
