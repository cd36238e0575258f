/*
 * ferry's half that talks to an agent service (ferry-agent run) over the
 * control API (docs/CONTROL.md): agent status, backup, restore-vm, jobs,
 * watch, cancel, cleanup. The repository's commands are in ferry_main.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/ferry_cli.h"

/* Connects to the agent (--agent, else ferry.agent) with this side's
 * certificate (ferry.tls.cert, ferry.tls.key) and the CA the agent's
 * certificate must chain to (ferry.tls.ca), and greets it. */
static int connect_agent(struct cli *cli, struct fy_conn **conn)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Hello h = FERRY__CONTROL__HELLO__INIT;
	struct fy_config *cfg = NULL;
	struct fy_tls_opts o = { 0 };
	struct fy_tls *tls = NULL;
	fy_control_frame *r = NULL;
	const char *agent;
	char software[64];
	int64_t timeout;
	int rc;

	*conn = NULL;
	if ((rc = ferry_load_config(cli, &cfg)) < 0)
		return rc;
	agent = cli->agent ? cli->agent : fy_config_get(cfg, "ferry.agent");
	if (!agent) {
		rc = fy_err_set(-EINVAL, "which agent? --agent HOST:PORT, or "
				"ferry.agent in the configuration");
		goto out;
	}
	o.cert = fy_config_get(cfg, "ferry.tls.cert");
	o.key = fy_config_get(cfg, "ferry.tls.key");
	o.ca = fy_config_get(cfg, "ferry.tls.ca");
	o.crl = fy_config_get(cfg, "ferry.tls.crl");
	if ((rc = fy_config_get_int(cfg, "ferry.timeoutSeconds", 300, 1, 86400,
				    &timeout)) < 0 ||
	    (rc = fy_tls_new_client(&o, &tls)) < 0)
		goto out;
	rc = fy_conn_connect(tls, agent,
			     fy_config_get(cfg, "ferry.agent.serverName"),
			     (int)timeout * 1000, conn);
	if (rc == 0) {
		rc = fy_check_server_role(*conn, FY_ROLE_AGENT, "agent");
		if (rc < 0) {
			fy_conn_close(*conn);
			*conn = NULL;
		}
	}
	if (rc < 0) {
		rc = fy_err_wrap(rc, "agent %s", agent);
		goto out;
	}
	snprintf(software, sizeof(software), "ferry %s", FERRY_VERSION);
	h.protocol_version = FY_CONTROL_PROTOCOL_VERSION;
	h.software = software;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO;
	f.hello = &h;
	if ((rc = fy_control_send(*conn, &f)) < 0 ||
	    (rc = fy_control_recv(*conn, &r)) < 0) {
		rc = fy_err_wrap(rc, "agent %s", agent);
		goto out;
	}
	if (r->body_case == FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR)
		rc = fy_err_set(r->error->code < 0 ? r->error->code : -EPROTO,
				"agent %s refused us: %s", agent,
				r->error->message);
	else if (r->body_case != FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO_REPLY)
		rc = fy_err_set(-EPROTO, "agent %s answered Hello with %s",
				agent, fy_control_name(r));
	else if (r->hello_reply->protocol_version != FY_CONTROL_PROTOCOL_VERSION)
		rc = fy_err_set(-EPROTONOSUPPORT, "agent %s speaks control "
				"protocol %u, we speak %u", agent,
				r->hello_reply->protocol_version,
				FY_CONTROL_PROTOCOL_VERSION);
out:
	fy_control_free(r);
	if (rc < 0) {
		fy_conn_close(*conn);
		*conn = NULL;
	}
	fy_tls_free(tls);
	fy_config_free(cfg);
	return rc;
}

/* Sends one request and receives its answer, which must be of type want;
 * an Error frame becomes the error it carries. */
static int request(struct fy_conn *c, fy_control_frame *req,
		   Ferry__Control__ControlFrame__BodyCase want,
		   fy_control_frame **out)
{
	fy_control_frame *r = NULL;
	int rc = fy_control_send(c, req);

	if (rc == 0)
		rc = fy_control_recv(c, &r);
	if (rc < 0)
		return rc;
	if (r->body_case == FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR) {
		rc = fy_err_set(r->error->code < 0 ? r->error->code : -EPROTO,
				"%s", r->error->message);
		fy_control_free(r);
		return rc;
	}
	if (r->body_case != want) {
		rc = fy_err_set(-EPROTO, "the agent answered %s with %s",
				fy_control_name(req), fy_control_name(r));
		fy_control_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* Connects to the agent and sends req. With reply, receives the answer,
 * which must be of type want; without, the caller receives what follows
 * (a Watch's events). With conn the connection stays open for the
 * caller, else it is closed; on failure nothing stays open. */
static int ask(struct cli *cli, fy_control_frame *req,
	       Ferry__Control__ControlFrame__BodyCase want,
	       fy_control_frame **reply, struct fy_conn **conn)
{
	struct fy_conn *c = NULL;
	int rc = connect_agent(cli, &c);

	if (rc == 0)
		rc = reply ? request(c, req, want, reply)
			   : fy_control_send(c, req);
	if (rc < 0 || !conn) {
		fy_conn_close(c);
		c = NULL;
	}
	if (conn)
		*conn = c;
	return rc;
}

static void time_text(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t) {
		snprintf(buf, len, "-");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void job_info_json(const Ferry__Control__JobInfo *j)
{
	printf("{\"job_id\":");
	fy_json_string(stdout, j->job_id);
	printf(",\"kind\":");
	fy_json_string(stdout, j->kind[0] ? j->kind : FY_JOB_KIND_BACKUP);
	printf(",\"vm\":");
	fy_json_string(stdout, j->vm);
	printf(",\"vm_moref\":");
	fy_json_string(stdout, j->vm_moref);
	printf(",\"name\":");
	fy_json_string(stdout, j->name);
	printf(",\"state\":\"%s\",\"phase\":", fy_control_state_name(j->state));
	fy_json_string(stdout, j->phase);
	printf(",\"started_unix\":%" PRId64 ",\"finished_unix\":%" PRId64
	       ",\"disks\":%u,\"size\":%" PRIu64 ",\"bytes_read\":%" PRIu64
	       ",\"backup_id\":", j->started_unix, j->finished_unix, j->n_disks,
	       j->size, j->bytes_read);
	fy_json_string(stdout, j->backup_id);
	printf(",\"error\":");
	fy_json_string(stdout, j->error);
	printf(",\"client\":");
	fy_json_string(stdout, j->client);
	printf("}");
}

static void jobs_table(Ferry__Control__JobInfo **jobs, size_t n)
{
	size_t i;

	printf("%-20s %-9s %-8s %-20s %-20s %s\n", "JOB", "STATE", "PHASE",
	       "VM", "STARTED (UTC)", "BACKUP / ERROR");
	for (i = 0; i < n; i++) {
		const Ferry__Control__JobInfo *j = jobs[i];
		char when[32];

		time_text(j->started_unix, when, sizeof(when));
		/* A cleanup is about no one VM. */
		printf("%-20s %-9s %-8s %-20s %-20s %s\n", j->job_id,
		       fy_control_state_name(j->state), j->phase,
		       !strcmp(j->kind, FY_JOB_KIND_CLEANUP) ? "(cleanup)"
							     : j->vm, when,
		       j->error[0] ? j->error : j->backup_id);
	}
}

static void cleanup_json(const Ferry__Control__CleanupResult *c)
{
	printf("{\"ran\":%s,\"ok\":%s,\"error\":", c->ran ? "true" : "false",
	       c->ran && c->code == 0 ? "true" : "false");
	fy_json_string(stdout, c->error);
	printf(",\"time_unix\":%" PRId64 ",\"numCleanedUp\":%u,"
	       "\"numRemaining\":%u,\"log\":", c->time_unix, c->num_cleaned_up,
	       c->num_remaining);
	fy_json_string(stdout, c->log);
	printf("}");
}

static void cleanup_text(const Ferry__Control__CleanupResult *c, FILE *f)
{
	char when[32];

	time_text(c->time_unix, when, sizeof(when));
	if (!c->ran)
		fprintf(f, "not run yet\n");
	else if (c->code < 0)
		fprintf(f, "failed at %s: %s\n", when, c->error);
	else
		fprintf(f, "%s numCleanedUp=%u numRemaining=%u\n", when,
			c->num_cleaned_up, c->num_remaining);
}

int ferry_cmd_agent(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StatusRequest sr = FERRY__CONTROL__STATUS_REQUEST__INIT;
	fy_control_frame *r = NULL;
	const Ferry__Control__Status *s;
	char when[32];
	size_t i;

	if (argc != 1 || strcmp(argv[0], "status")) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"agent status [--json]\n");
		return 2;
	}
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS_REQUEST;
	req.status_request = &sr;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS, &r,
		NULL) < 0)
		return ferry_fail("agent status");
	s = r->status;
	if (cli->json) {
		printf("{\"software\":");
		fy_json_string(stdout, s->software);
		printf(",\"protocol_version\":%u,\"started_unix\":%" PRId64
		       ",\"config_file\":", s->protocol_version, s->started_unix);
		fy_json_string(stdout, s->config_file);
		printf(",\"transports\":");
		fy_json_string(stdout, s->transports);
		printf(",\"transport_modes\":[");
		for (i = 0; i < s->n_transport_modes; i++) {
			printf("%s{\"name\":", i ? "," : "");
			fy_json_string(stdout, s->transport_modes[i]->name);
			printf(",\"available\":%s,\"reason\":",
			       s->transport_modes[i]->available ? "true"
								: "false");
			fy_json_string(stdout, s->transport_modes[i]->reason);
			printf("}");
		}
		printf("],\"max_jobs\":%u,\"jobs\":[", s->max_jobs);
		for (i = 0; i < s->n_jobs; i++) {
			printf("%s", i ? "," : "");
			job_info_json(s->jobs[i]);
		}
		printf("],\"last_cleanup\":");
		if (s->last_cleanup)
			cleanup_json(s->last_cleanup);
		else
			printf("null");
		printf("}\n");
	} else {
		time_text(s->started_unix, when, sizeof(when));
		printf("agent:        %s (control protocol %u), up since %s\n",
		       s->software, s->protocol_version, when);
		printf("config:       %s\n", s->config_file);
		printf("transports:   %s\n",
		       s->transports[0] ? s->transports : "(none)");
		for (i = 0; i < s->n_transport_modes; i++)
			if (!s->transport_modes[i]->available)
				printf("              %s: %s\n",
				       s->transport_modes[i]->name,
				       s->transport_modes[i]->reason);
		printf("jobs:         %zu running (at most %u)\n", s->n_jobs,
		       s->max_jobs);
		if (s->n_jobs)
			jobs_table(s->jobs, s->n_jobs);
		printf("last cleanup: ");
		if (s->last_cleanup)
			cleanup_text(s->last_cleanup, stdout);
		else
			printf("unknown\n");
	}
	fy_control_free(r);
	return 0;
}

/* What a watcher prints while a job runs: phases as lines, and on a
 * terminal the progress line of the disk being read. */
struct watch_state {
	bool tty, quiet, line_open;
	unsigned disk;
};

/* "disk 1/2  45% of 64.0 MiB  ETA 3s  12.0 MiB/s  read ...", fitted to
 * the terminal. */
static void progress_line(unsigned disk, unsigned n_disks,
			  const struct fy_disk_stats *st, bool done)
{
	char prefix[32], line[512];

	snprintf(prefix, sizeof(prefix), "disk %u/%u", disk + 1, n_disks);
	fy_progress_format(line, sizeof(line), fy_term_width(), prefix, st,
			   done);
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
}

static void show_event(struct watch_state *w, const Ferry__Control__JobEvent *e)
{
	if (w->quiet)
		return;
	if (e->phase && e->phase[0] && strcmp(e->phase, "done")) {
		if (w->line_open)
			fprintf(stderr, "\n");
		w->line_open = false;
		fprintf(stderr, "job %s: %s%s%s\n", e->job_id, e->phase,
			e->detail[0] ? " " : "", e->detail);
	}
	if (e->progress && w->tty) {
		struct fy_disk_stats st;

		fy_control_progress_from(e->progress, &st);
		if (w->line_open && e->progress->disk != w->disk)
			fprintf(stderr, "\n");
		w->disk = e->progress->disk;
		progress_line(e->progress->disk, e->progress->n_disks, &st,
			      e->progress->done);
		w->line_open = !e->progress->done;
		if (e->progress->done)
			fprintf(stderr, "\n");
	}
}

/* Receives a job's events until its final one; the result is filled from
 * it. */
static int follow_job(struct fy_conn *c, bool quiet, struct fy_job_result *res)
{
	struct watch_state w = { .tty = isatty(STDERR_FILENO), .quiet = quiet };
	int rc;

	for (;;) {
		fy_control_frame *r = NULL;

		rc = fy_control_recv(c, &r);
		if (rc < 0)
			break;
		if (r->body_case == FERRY__CONTROL__CONTROL_FRAME__BODY_ERROR) {
			rc = fy_err_set(r->error->code < 0 ? r->error->code
							   : -EPROTO,
					"%s", r->error->message);
			fy_control_free(r);
			break;
		}
		if (r->body_case != FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_EVENT) {
			rc = fy_err_set(-EPROTO, "the agent sent %s amid a job's "
					"events", fy_control_name(r));
			fy_control_free(r);
			break;
		}
		show_event(&w, r->job_event);
		if (r->job_event->final) {
			fy_control_result_from(r->job_event->result, res);
			fy_control_free(r);
			break;
		}
		fy_control_free(r);
	}
	if (w.line_open)
		fprintf(stderr, "\n");
	return rc;
}

/* Follows a job to its end and reports it as ferry backup does: the
 * result (JSON with --json), and its error on stderr. 0 when it made a
 * backup, 1 otherwise. */
static int follow_and_report(struct cli *cli, struct fy_conn *c,
			     const char *job, struct fy_job_result *res)
{
	unsigned i;

	int rc = follow_job(c, cli->quiet, res);

	if (rc == -ENOENT) {
		fprintf(stderr, "ferry: %s\n", fy_err_msg());
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "ferry: lost job %s: %s; it may still run on "
			"the agent (ferry watch %s, ferry jobs)\n", job,
			fy_err_msg(), job);
		return 1;
	}
	if (cli->json) {
		fy_job_result_json(stdout, res);
		printf("\n");
	} else if (res->rc == 0 && !strcmp(res->kind, FY_JOB_KIND_RESTORE_VM)) {
		fy_restore_vm_result_text(stdout, res);
	} else if (res->rc == 0 && !strcmp(res->kind, FY_JOB_KIND_CLEANUP)) {
		printf("self-cleanup: %s, %.1f s (job %s)\n", res->notes,
		       res->seconds, job);
	} else if (res->rc == 0) {
		printf("backup %s: VM %s, %u disk(s)", res->backup_id,
		       res->vm_name, res->n);
		for (i = 0; i < res->n; i++) {
			unsigned k;

			/* Each transport once: "over hotadd,nbdssl". */
			for (k = 0; k < i; k++)
				if (!strcmp(res->disks[k].transport,
					    res->disks[i].transport))
					break;
			if (k == i)
				printf("%s%s", i ? "," : " over ",
				       res->disks[i].transport);
		}
		printf(", %.1f s (job %s)\n", res->seconds, job);
	}
	if (res->rc < 0) {
		fprintf(stderr, "ferry: %s %s: %s\n",
			!strcmp(res->kind, FY_JOB_KIND_RESTORE_VM) ? "restore-vm"
			: !strcmp(res->kind, FY_JOB_KIND_CLEANUP)  ? "self-cleanup"
								   : "backup",
			res->cancelled ? "cancelled" : "failed", res->error);
		return 1;
	}
	return 0;
}

/* ferry watch JOB: follows a job already running (after ferry backup was
 * interrupted, or one another controller started) to its end. */
int ferry_cmd_watch(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Watch wt = FERRY__CONTROL__WATCH__INIT;
	struct fy_job_result *res;
	struct fy_conn *c = NULL;
	int status;

	if (argc != 1) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"watch JOB [--json] [--quiet]\n");
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		fprintf(stderr, "ferry: out of memory\n");
		return 1;
	}
	wt.job_id = argv[0];
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH;
	req.watch = &wt;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY__NOT_SET, NULL,
		&c) < 0) {
		free(res);
		return ferry_fail("watch");
	}
	status = follow_and_report(cli, c, argv[0], res);
	fy_conn_close(c);
	free(res);
	return status;
}

/* Shared by backup and restore-vm: asks for a job, then follows it, or
 * prints its id with --detach. */
static int start_and_follow(struct cli *cli, fy_control_frame *req,
			    const char *what, struct fy_job_result *res)
{
	fy_control_frame *r = NULL;
	struct fy_conn *c = NULL;
	char job[FY_CONTROL_NAME_MAX + 1] = "";
	int status = 1;

	if (ask(cli, req, FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_STARTED, &r,
		&c) < 0) {
		ferry_fail(!strcmp(res->kind, FY_JOB_KIND_RESTORE_VM) ? "restore-vm"
								: "backup");
		goto out;
	}
	snprintf(job, sizeof(job), "%s", r->job_started->job_id);
	fy_control_free(r);
	if (cli->detach) {
		/* The job runs on without us: ferry watch, jobs, cancel. */
		if (cli->json) {
			printf("{\"job_id\":");
			fy_json_string(stdout, job);
			printf("}\n");
		} else {
			printf("%s\n", job);
		}
		status = 0;
		goto out;
	}
	if (!cli->quiet)
		fprintf(stderr, "job %s: %s started (ferry cancel %s stops "
			"it)\n", job, what, job);
	status = follow_and_report(cli, c, job, res);
out:
	fy_conn_close(c);
	return status;
}

/* ferry restore-vm: the agent service creates the VM and writes its
 * disks (docs/RESTORE.md); the same as ferry-agent restore-vm there. */
int ferry_cmd_restore_vm(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StartRestoreVm m = FERRY__CONTROL__START_RESTORE_VM__INIT;
	struct fy_restore_vm_spec sp = { 0 };
	struct fy_job_result *res;
	char what[2 * FY_CONTROL_NAME_MAX];
	uint32_t disks[FY_JOB_DISKS_MAX];
	unsigned i;
	int status;

	if (argc != 1 || (!cli->name && !cli->into)) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"restore-vm BACKUP (--name NEW | --into VM) [...]\n"
			"       (ferry restore-vm --help)\n");
		return 2;
	}
	sp.backup_id = argv[0];
	sp.name = cli->name;
	sp.into = cli->into;
	sp.datastore = cli->datastore;
	sp.host = cli->host;
	sp.pool = cli->pool;
	sp.folder = cli->folder;
	sp.keep_mac = cli->keep_mac;
	sp.provisioning = cli->provisioning;
	sp.transports = cli->transport;
	sp.n_networks = cli->n_networks;
	for (i = 0; i < cli->n_networks; i++)
		sp.networks[i] = cli->networks[i];
	sp.n_disks = cli->n_disks;
	for (i = 0; i < cli->n_disks; i++)
		disks[i] = sp.disks[i] = cli->disks[i];
	/* What needs no agent is checked here, with the agent's words. */
	if (fy_restore_vm_check(&sp) < 0) {
		fprintf(stderr, "ferry: %s\n", fy_err_msg());
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		fprintf(stderr, "ferry: out of memory\n");
		return 1;
	}
	snprintf(res->kind, sizeof(res->kind), "%s", FY_JOB_KIND_RESTORE_VM);
	m.backup_id = argv[0];
	m.name = (char *)(cli->name ? cli->name : "");
	m.into = (char *)(cli->into ? cli->into : "");
	m.n_disks = cli->n_disks;
	m.disks = disks;
	m.datastore = (char *)(cli->datastore ? cli->datastore : "");
	m.host = (char *)(cli->host ? cli->host : "");
	m.resource_pool = (char *)(cli->pool ? cli->pool : "");
	m.folder = (char *)(cli->folder ? cli->folder : "");
	m.n_networks = cli->n_networks;
	m.networks = (char **)cli->networks;
	m.disk_provisioning = (char *)(cli->provisioning ? cli->provisioning
							 : "");
	m.keep_mac = cli->keep_mac;
	m.power_on = cli->power_on;
	m.transports = (char *)(cli->transport ? cli->transport : "");
	m.watch = !cli->detach;
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM;
	req.start_restore_vm = &m;
	snprintf(what, sizeof(what), "restore of backup %s %s VM %s", argv[0],
		 cli->into ? "into" : "as", cli->into ? cli->into : cli->name);
	status = start_and_follow(cli, &req, what, res);
	free(res);
	return status;
}

int ferry_cmd_backup(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__StartBackup sb = FERRY__CONTROL__START_BACKUP__INIT;
	struct fy_job_result *res;
	uint32_t disks[FY_JOB_DISKS_MAX];
	char what[FY_CONTROL_NAME_MAX + 32];
	unsigned i;
	int status;

	(void)argv;
	if (argc || !cli->vm) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"backup --vm NAME|MOREF [--disk N ...]\n"
			"         [--transport LIST] [--full|--incremental] "
			"[--enable-cbt] [--quiesce]\n"
			"         [--name NAME] [--snapshot MOREF] "
			"[--repository HOST:PORT] [--json] [--quiet] "
			"[--detach]\n");
		return 2;
	}
	res = calloc(1, sizeof(*res));
	if (!res) {
		fprintf(stderr, "ferry: out of memory\n");
		return 1;
	}
	for (i = 0; i < cli->n_disks; i++)
		disks[i] = cli->disks[i];
	sb.vm = (char *)cli->vm;
	sb.n_disks = cli->n_disks;
	sb.disks = disks;
	sb.transports = (char *)(cli->transport ? cli->transport : "");
	sb.quiesce = cli->quiesce;
	sb.mode = cli->mode == FY_JOB_FULL ? FERRY__CONTROL__MODE__MODE_FULL
		  : cli->mode == FY_JOB_INCREMENTAL
		      ? FERRY__CONTROL__MODE__MODE_INCREMENTAL
		      : FERRY__CONTROL__MODE__MODE_AUTO;
	sb.enable_cbt = cli->enable_cbt;
	sb.name = (char *)(cli->name ? cli->name : "");
	sb.repository = (char *)(cli->repository ? cli->repository : "");
	sb.snapshot = (char *)(cli->snapshot ? cli->snapshot : "");
	sb.watch = !cli->detach;
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP;
	req.start_backup = &sb;
	snprintf(what, sizeof(what), "backup of VM %s", cli->vm);
	status = start_and_follow(cli, &req, what, res);
	free(res);
	return status;
}

int ferry_cmd_jobs(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__ListJobs lj = FERRY__CONTROL__LIST_JOBS__INIT;
	fy_control_frame *r = NULL;
	size_t i;

	(void)argv;
	if (argc) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"jobs [--json]\n");
		return 2;
	}
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_LIST_JOBS;
	req.list_jobs = &lj;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_JOB_LIST, &r,
		NULL) < 0)
		return ferry_fail("jobs");
	if (cli->json) {
		printf("[");
		for (i = 0; i < r->job_list->n_jobs; i++) {
			printf("%s", i ? "," : "");
			job_info_json(r->job_list->jobs[i]);
		}
		printf("]\n");
	} else if (!r->job_list->n_jobs) {
		printf("no jobs\n");
	} else {
		jobs_table(r->job_list->jobs, r->job_list->n_jobs);
	}
	fy_control_free(r);
	return 0;
}

int ferry_cmd_cancel(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Cancel cn = FERRY__CONTROL__CANCEL__INIT;
	Ferry__Control__Watch wt = FERRY__CONTROL__WATCH__INIT;
	fy_control_frame *r = NULL;
	struct fy_conn *c = NULL;
	Ferry__Control__JobState state;
	struct fy_job_result *res;
	int rc;

	if (argc != 1) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"cancel JOB [--wait]\n");
		return 2;
	}
	cn.job_id = argv[0];
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL;
	req.cancel = &cn;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL_REPLY, &r,
		&c) < 0)
		return ferry_fail("cancel");
	state = r->cancel_reply->state;
	fy_control_free(r);
	if (state != FERRY__CONTROL__JOB_STATE__JOB_STATE_RUNNING &&
	    state != FERRY__CONTROL__JOB_STATE__JOB_STATE_QUEUED) {
		printf("job %s already ended: %s\n", argv[0],
		       fy_control_state_name(state));
		fy_conn_close(c);
		return 0;
	}
	printf("job %s: cancelling; it undoes what it did (a backup detaches "
	       "its disks, removes its snapshot and ends access; a restore "
	       "destroys the VM it created, or names the disks it left partly "
	       "written)\n", argv[0]);
	if (!cli->wait) {
		fy_conn_close(c);
		return 0;
	}
	fflush(stdout);
	res = calloc(1, sizeof(*res));
	wt.job_id = argv[0];
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH;
	req.watch = &wt;
	rc = res ? fy_control_send(c, &req)
		 : fy_err_set(-ENOMEM, "out of memory");
	if (rc == 0)
		rc = follow_job(c, true, res);
	fy_conn_close(c);
	if (rc < 0) {
		free(res);
		return ferry_fail("cancel --wait");
	}
	printf("job %s: %s%s%s\n", argv[0],
	       res->cancelled ? "cancelled" : res->rc < 0 ? "failed" : "done",
	       res->rc < 0 ? ": " : "", res->rc < 0 ? res->error : "");
	free(res);
	return 0;
}

int ferry_cmd_cleanup(struct cli *cli, int argc, char **argv)
{
	fy_control_frame req = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Cleanup cl = FERRY__CONTROL__CLEANUP__INIT;
	fy_control_frame *r = NULL;
	const Ferry__Control__CleanupResult *cr;
	int status;

	(void)argv;
	if (argc) {
		fprintf(stderr, "usage: ferry [--config FILE] [--agent HOST:PORT] "
			"cleanup [--json]\n");
		return 2;
	}
	req.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP;
	req.cleanup = &cl;
	if (ask(cli, &req, FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP_REPLY,
		&r, NULL) < 0)
		return ferry_fail("cleanup");
	cr = r->cleanup_reply->result;
	if (!cr) {
		fy_control_free(r);
		fy_err_set(-EPROTO, "the agent sent no cleanup result");
		return ferry_fail("cleanup");
	}
	if (cli->json) {
		cleanup_json(cr);
		printf("\n");
	} else {
		fputs(cr->log, stdout);
		if (cr->log[0] && cr->log[strlen(cr->log) - 1] != '\n')
			printf("\n");
		if (cr->code == 0)
			printf("cleanup: numCleanedUp=%u numRemaining=%u\n",
			       cr->num_cleaned_up, cr->num_remaining);
	}
	status = cr->code < 0 ? 1 : 0;
	if (cr->code < 0)
		fprintf(stderr, "ferry: cleanup failed: %s\n", cr->error);
	fy_control_free(r);
	return status;
}

