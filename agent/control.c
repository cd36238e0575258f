/*
 * Job results and disk counters to and from the control protocol's
 * messages, shared by the service and the ferry client so both sides
 * agree on every field.
 */
#include <string.h>

#include "agent/control.h"

const char *const fy_service_config_keys[] = {
	"ferry.control.listen",     /* ferry-agent run: HOST:PORT */
	"ferry.control.maxClients", /* controller connections at once */
	"ferry.control.allowedClients", /* certificate names that may control */
	"ferry.repository.allowed", /* repositories a controller may name */
	"ferry.control.handshakeTimeout", /* s for a TLS handshake, 1..300 */
	"ferry.control.maxHandshakes", /* unauthenticated connections at once */
	"ferry.control.maxHandshakesPerAddress", /* of those, per address */
	"ferry.jobs.max",           /* backup jobs at once, 1..16 */
	"ferry.agent",              /* ferry: the agent service, HOST:PORT */
	"ferry.agent.serverName",   /* ferry: the name its certificate carries */
	NULL,
};

void fy_control_progress_msg(Ferry__Control__DiskProgress *m, unsigned disk,
			     unsigned n_disks, const struct fy_disk_stats *st,
			     bool done)
{
	ferry__control__disk_progress__init(m);
	m->disk = disk;
	m->n_disks = n_disks;
	m->size = st->size;
	m->blocks = st->blocks;
	m->bytes_read = st->bytes_read;
	m->bytes_zero = st->bytes_zero;
	m->bytes_deduplicated = st->bytes_dedup;
	m->bytes_new = st->bytes_new;
	m->bytes_sent = st->bytes_sent;
	m->blocks_sent = st->blocks_sent;
	m->bytes_unchanged = st->bytes_unchanged;
	m->restore = st->restore;
	m->seconds = st->seconds;
	m->done = done;
}

void fy_control_progress_from(const Ferry__Control__DiskProgress *m,
			      struct fy_disk_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!m)
		return;
	st->size = m->size;
	st->blocks = m->blocks;
	st->bytes_read = m->bytes_read;
	st->bytes_zero = m->bytes_zero;
	st->bytes_dedup = m->bytes_deduplicated;
	st->bytes_new = m->bytes_new;
	st->bytes_sent = m->bytes_sent;
	st->blocks_sent = m->blocks_sent;
	st->bytes_unchanged = m->bytes_unchanged;
	st->restore = m->restore;
	st->seconds = m->seconds;
}

void fy_control_result_msg(struct fy_control_result_msg *m,
			   const struct fy_job_result *res)
{
	unsigned i, n = res->n < FY_JOB_DISKS_MAX ? res->n : FY_JOB_DISKS_MAX;

	ferry__control__job_result__init(&m->r);
	m->r.code = res->rc;
	m->r.error = (char *)(res->rc < 0 ? res->error : "");
	m->r.cancelled = res->cancelled;
	m->r.backup_id = (char *)res->backup_id;
	m->r.parent_id = (char *)res->parent_id;
	m->r.vm_name = (char *)res->vm_name;
	m->r.vm_moref = (char *)res->vm_moref;
	m->r.notes = (char *)res->notes;
	m->r.seconds = res->seconds;
	m->r.kind = (char *)res->kind;
	m->r.source = (char *)res->source;
	m->r.datastore = (char *)res->datastore;
	m->r.host = (char *)res->host;
	m->r.powered_on = res->powered_on;
	m->r.into = res->into;
	for (i = 0; i < n; i++) {
		const struct fy_job_disk_result *d = &res->disks[i];

		ferry__control__disk_result__init(&m->d[i]);
		m->d[i].index = d->index;
		m->d[i].file = (char *)d->file;
		m->d[i].transport = (char *)d->transport;
		m->d[i].incremental = d->incremental;
		m->d[i].full_reason = (char *)d->full_reason;
		m->d[i].change_id = (char *)d->change_id;
		m->d[i].skipped = d->skipped;
		fy_control_progress_msg(&m->c[i], i, n, &d->st, true);
		m->d[i].counters = &m->c[i];
		m->dp[i] = &m->d[i];
	}
	m->r.n_disks = n;
	m->r.disks = m->dp;
}

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src) ? (src) : "")

void fy_control_result_from(const Ferry__Control__JobResult *m,
			    struct fy_job_result *res)
{
	size_t i;

	memset(res, 0, sizeof(*res));
	res->rc = m->code;
	COPY(res->error, m->error);
	res->cancelled = m->cancelled;
	COPY(res->backup_id, m->backup_id);
	COPY(res->parent_id, m->parent_id);
	COPY(res->vm_name, m->vm_name);
	COPY(res->vm_moref, m->vm_moref);
	COPY(res->notes, m->notes);
	res->seconds = m->seconds;
	COPY(res->kind, m->kind);
	COPY(res->source, m->source);
	COPY(res->datastore, m->datastore);
	COPY(res->host, m->host);
	res->powered_on = m->powered_on;
	res->into = m->into;
	for (i = 0; i < m->n_disks && i < FY_JOB_DISKS_MAX; i++) {
		const Ferry__Control__DiskResult *d = m->disks[i];
		struct fy_job_disk_result *r = &res->disks[i];

		r->index = d->index;
		COPY(r->file, d->file);
		COPY(r->transport, d->transport);
		r->incremental = d->incremental;
		COPY(r->full_reason, d->full_reason);
		COPY(r->change_id, d->change_id);
		r->skipped = d->skipped;
		fy_control_progress_from(d->counters, &r->st);
	}
	res->n = (unsigned)i;
}

const char *fy_control_state_name(Ferry__Control__JobState s)
{
	switch (s) {
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_RUNNING: return "running";
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_SUCCEEDED: return "succeeded";
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_FAILED: return "failed";
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_CANCELLED: return "cancelled";
	case FERRY__CONTROL__JOB_STATE__JOB_STATE_QUEUED: return "queued";
	default: return "unknown";
	}
}
