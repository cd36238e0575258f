/*
 * The agent service's requests about jobs (docs/CONTROL.md): StartBackup,
 * StartRestoreVm, Cleanup, Watch and Cancel, each checked and answered
 * here and run through the job registry (service_jobs.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/service_int.h"

/* Finds the VM as vCenter names it, so that two jobs cannot work on one
 * VM whatever name each was given. */
static int resolve_vm(const struct fy_config *cfg, const char *spec,
		      char *moref, size_t len)
{
	struct fy_vs_client *vc = NULL;
	struct fy_vs_moref vm;
	int rc = fy_vs_client_open(cfg, &vc);

	if (rc == 0)
		rc = fy_vs_find_vm_spec(vc, spec, &vm);
	if (rc == 0)
		snprintf(moref, len, "%s", vm.value);
	if (vc) {
		fy_vs_client_logout(vc);
		fy_vs_client_free(vc);
	}
	return rc;
}

static void copy_field(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

int svc_start_backup(struct svc *svc, struct fy_conn *c,
			const Ferry__Control__StartBackup *sb)
{
	struct svc_job *j;
	struct svc_cfg *cfg;
	unsigned i;
	int rc;

	if (!sb->vm || !sb->vm[0]) {
		fy_control_send_error(c, -EINVAL, "StartBackup: no VM given");
		return 0;
	}
	if (repository_allowed(svc, sb->repository) < 0) {
		fy_warn("control: %s: %s", fy_conn_peer(c), fy_err_msg());
		fy_control_send_error(c, -EACCES, fy_err_msg());
		return 0;
	}
	for (i = 0; i < sb->n_disks; i++) {
		char msg[64];
		unsigned k;

		if (sb->disks[i] >= 4096) {
			fy_control_send_error(c, -EINVAL, "StartBackup: disk "
					      "index out of range");
			return 0;
		}
		for (k = 0; k < i; k++)
			if (sb->disks[k] == sb->disks[i]) {
				snprintf(msg, sizeof(msg), "StartBackup: disk "
					 "%u is given twice", sb->disks[i]);
				fy_control_send_error(c, -EINVAL, msg);
				return 0;
			}
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->result = calloc(1, sizeof(*j->result)))) {
		free(j);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	j->svc = svc;
	j->refs = 1;
	j->kind = &svc_kinds[KIND_BACKUP];
	atomic_init(&j->cancel, false);
	snprintf(j->client, sizeof(j->client), "%s", fy_conn_peer(c));
	copy_field(j->vm, sizeof(j->vm), sb->vm);
	copy_field(j->transports, sizeof(j->transports), sb->transports);
	copy_field(j->name, sizeof(j->name), sb->name);
	copy_field(j->repository, sizeof(j->repository), sb->repository);
	copy_field(j->snapshot, sizeof(j->snapshot), sb->snapshot);
	j->spec.n_disks = (unsigned)sb->n_disks;
	for (i = 0; i < sb->n_disks; i++)
		j->spec.disks[i] = sb->disks[i];
	j->spec.transports = j->transports[0] ? j->transports : NULL;
	j->spec.snapshot = j->snapshot[0] ? j->snapshot : NULL;
	j->spec.mode = sb->mode == FERRY__CONTROL__MODE__MODE_FULL
			       ? FY_JOB_FULL
		       : sb->mode == FERRY__CONTROL__MODE__MODE_INCREMENTAL
			       ? FY_JOB_INCREMENTAL
			       : FY_JOB_AUTO;
	j->spec.enable_cbt = sb->enable_cbt;
	j->spec.quiesce = sb->quiesce;
	j->spec.name = j->name[0] ? j->name : NULL;
	j->spec.repository = j->repository[0] ? j->repository : NULL;

	pthread_mutex_lock(&svc->lock);
	cfg = svc->cfg;
	cfg->refs++;
	pthread_mutex_unlock(&svc->lock);
	j->cfg = cfg;
	rc = resolve_vm(cfg->cfg, j->vm, j->vm_moref, sizeof(j->vm_moref));
	if (rc < 0) {
		char msg[FY_ERR_MAX + 64];

		snprintf(msg, sizeof(msg), "cannot back up VM %s: %s", j->vm,
			 fy_err_msg());
		fy_warn("%s (asked by %s)", msg, j->client);
		fy_control_send_error(c, rc, msg);
		pthread_mutex_lock(&svc->lock);
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		return 0;
	}
	snprintf(j->vm_spec, sizeof(j->vm_spec), "moref:%s", j->vm_moref);
	j->spec.vm = j->vm_spec;
	snprintf(j->what, sizeof(j->what), "backup of VM %s", j->vm);
	snprintf(j->key, sizeof(j->key), "%s", j->vm_moref);
	return svc_launch(svc, c, j, sb->watch);
}

int svc_start_restore_vm(struct svc *svc, struct fy_conn *c,
			    const Ferry__Control__StartRestoreVm *m)
{
	struct svc_job *j = calloc(1, sizeof(*j));
	struct restore_req *r = calloc(1, sizeof(*r));
	struct fy_restore_vm_spec *sp;
	size_t i;

	if (!j || !r || !(j->result = calloc(1, sizeof(*j->result)))) {
		free(j);
		free(r);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	j->svc = svc;
	j->refs = 1;
	j->kind = &svc_kinds[KIND_RESTORE_VM];
	j->restore = r;
	atomic_init(&j->cancel, false);
	snprintf(j->client, sizeof(j->client), "%s", fy_conn_peer(c));
	copy_field(j->vm, sizeof(j->vm), m->into && m->into[0] ? m->into
								 : m->name);
	copy_field(j->transports, sizeof(j->transports), m->transports);
	copy_field(r->backup_id, sizeof(r->backup_id), m->backup_id);
	copy_field(r->datastore, sizeof(r->datastore), m->datastore);
	copy_field(r->host, sizeof(r->host), m->host);
	copy_field(r->pool, sizeof(r->pool), m->resource_pool);
	copy_field(r->folder, sizeof(r->folder), m->folder);
	copy_field(r->provisioning, sizeof(r->provisioning),
		   m->disk_provisioning);
	copy_field(r->into, sizeof(r->into), m->into);
	if (r->into[0] && m->name && m->name[0]) {
		fy_control_send_error(c, -EINVAL, "StartRestoreVm: name (a new "
				      "VM) and into (an existing one) both "
				      "given");
		pthread_mutex_lock(&svc->lock);
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		return 0;
	}
	sp = &r->spec;
	sp->backup_id = r->backup_id;
	sp->into = r->into[0] ? r->into : NULL;
	sp->name = sp->into ? NULL : j->vm;
	for (i = 0; i < m->n_disks && i < FY_JOB_DISKS_MAX; i++)
		sp->disks[i] = m->disks[i];
	sp->n_disks = (unsigned)i;
	sp->datastore = r->datastore[0] ? r->datastore : NULL;
	sp->host = r->host[0] ? r->host : NULL;
	sp->pool = r->pool[0] ? r->pool : NULL;
	sp->folder = r->folder[0] ? r->folder : NULL;
	sp->provisioning = r->provisioning[0] ? r->provisioning : NULL;
	sp->transports = j->transports[0] ? j->transports : NULL;
	sp->keep_mac = m->keep_mac;
	sp->power_on = m->power_on;
	for (i = 0; i < m->n_networks && i < FY_CONTROL_NETWORKS_MAX; i++) {
		copy_field(r->networks[i], sizeof(r->networks[i]),
			   m->networks[i]);
		sp->networks[i] = r->networks[i];
	}
	sp->n_networks = (unsigned)i;
	snprintf(j->what, sizeof(j->what), "restore of backup %s %s VM %s",
		 r->backup_id, sp->into ? "into" : "as", j->vm);
	snprintf(j->key, sizeof(j->key), "restore:%s", j->vm);
	if (fy_restore_vm_check(sp) < 0) {
		fy_warn("refused a %s asked by %s: %s", j->what, j->client,
			fy_err_msg());
		fy_control_send_error(c, -EINVAL, fy_err_msg());
		pthread_mutex_lock(&svc->lock);
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		return 0;
	}
	pthread_mutex_lock(&svc->lock);
	j->cfg = svc->cfg;
	j->cfg->refs++;
	pthread_mutex_unlock(&svc->lock);
	if (sp->into) {
		/* Keyed by the VM's moref, as its backups are: a backup and a
		 * rollback of one VM never run at once. */
		if (resolve_vm(j->cfg->cfg, sp->into, j->vm_moref,
			       sizeof(j->vm_moref)) < 0) {
			char msg[FY_ERR_MAX + 64];

			snprintf(msg, sizeof(msg), "cannot restore into VM %s: "
				 "%s", sp->into, fy_err_msg());
			fy_control_send_error(c, -ENOENT, msg);
			pthread_mutex_lock(&svc->lock);
			job_unref_locked(j);
			pthread_mutex_unlock(&svc->lock);
			return 0;
		}
		snprintf(j->vm_spec, sizeof(j->vm_spec), "moref:%s",
			 j->vm_moref);
		sp->into = j->vm_spec;
		snprintf(j->key, sizeof(j->key), "%s", j->vm_moref);
	}
	return svc_launch(svc, c, j, m->watch);
}

int svc_cleanup(struct svc *svc, struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__CleanupReply r = FERRY__CONTROL__CLEANUP_REPLY__INIT;
	Ferry__Control__CleanupResult cr;
	struct svc_job *j;
	double last = fy_now();
	int rc;

	pthread_mutex_lock(&svc->lock);
	j = svc_cleanup_job_new(svc, svc->cfg, fy_conn_peer(c));
	if (!j) {
		pthread_mutex_unlock(&svc->lock);
		return -ENOMEM;
	}
	rc = svc_start_locked(svc, j);
	if (rc < 0) {
		job_unref_locked(j);
		pthread_mutex_unlock(&svc->lock);
		fy_control_send_error(c, rc, rc == -ESHUTDOWN
				      ? "the agent is stopping; its next "
					"start runs the self-cleanup"
				      : fy_err_msg());
		return 0;
	}
	fy_warn("self-cleanup asked by %s (job %s)", fy_conn_peer(c), j->id);
	/*
	 * A cleanup that detaches disks and removes snapshots takes minutes;
	 * the controller waiting for CleanupReply must hear from us
	 * meanwhile, as it does while a job runs, or its read timeout
	 * (ferry.timeoutSeconds) gives up. CleanupReply is the one frame it
	 * expects, so the heartbeat is a TLS KeyUpdate, which its TLS layer
	 * consumes. A controller that goes away does not stop the cleanup:
	 * the error is sticky and the reply fails too.
	 */
	while (!j->res) {
		timed_wait(svc, 1000);
		if (j->res || fy_now() - last < HEARTBEAT_SECONDS)
			continue;
		pthread_mutex_unlock(&svc->lock);
		fy_conn_keepalive(c);
		last = fy_now();
		pthread_mutex_lock(&svc->lock);
	}
	pthread_mutex_unlock(&svc->lock);
	/* Ended: nothing writes j->cleanup or j->res any more. */
	if (!j->cleanup->ran) {
		fy_control_send_error(c, j->res->rc, j->res->error);
		rc = 0;
	} else {
		cleanup_msg(j->cleanup, &cr);
		r.result = &cr;
		f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP_REPLY;
		f.cleanup_reply = &r;
		rc = send_frame(c, &f);
	}
	pthread_mutex_lock(&svc->lock);
	job_unref_locked(j);
	pthread_mutex_unlock(&svc->lock);
	return rc;
}

/* A Watch or Cancel of a job this agent does not have. */
static int no_such_job(struct fy_conn *c, const char *id)
{
	char msg[FY_CONTROL_NAME_MAX + 64];

	snprintf(msg, sizeof(msg), "no job %s on this agent", id);
	fy_control_send_error(c, -ENOENT, msg);
	return 0;
}

int svc_watch(struct svc *svc, struct fy_conn *c, const char *id)
{
	struct svc_job *j;
	uint64_t first;
	int rc;

	pthread_mutex_lock(&svc->lock);
	j = find_job_locked(svc, id);
	if (j) {
		j->refs++;
		first = j->n_phases > PHASES_KEPT ? j->n_phases - PHASES_KEPT : 0;
	}
	pthread_mutex_unlock(&svc->lock);
	if (!j)
		return no_such_job(c, id);
	rc = svc_watch_job(svc, c, j, first);
	pthread_mutex_lock(&svc->lock);
	job_unref_locked(j);
	pthread_mutex_unlock(&svc->lock);
	return rc;
}

int svc_cancel(struct svc *svc, struct fy_conn *c, const char *id)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__CancelReply r = FERRY__CONTROL__CANCEL_REPLY__INIT;
	char job_id[sizeof(((struct svc_job *)0)->id)];
	bool running_cleanup = false;
	struct svc_job *j;

	pthread_mutex_lock(&svc->lock);
	j = find_job_locked(svc, id);
	if (j) {
		if (!j->res)
			atomic_store(&j->cancel, true);
		running_cleanup = j->kind->cleanup && j->reserved && !j->res;
		r.state = j->state;
		snprintf(job_id, sizeof(job_id), "%s", j->id);
		/* A queued job waits on the condition: wake it to see it. */
		pthread_cond_broadcast(&svc->cond);
	}
	pthread_mutex_unlock(&svc->lock);
	if (!j)
		return no_such_job(c, id);
	fy_warn("job %s: cancel asked by %s%s", job_id, fy_conn_peer(c),
		running_cleanup ? "; a self-cleanup that runs is not "
				  "cancelled (it undoes what others left)"
				: "");
	r.job_id = job_id;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL_REPLY;
	f.cancel_reply = &r;
	return send_frame(c, &f);
}
