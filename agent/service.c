/*
 * ferry-agent run: the agent as a service. docs/CONTROL.md.
 *
 *   ferry-agent run --config FILE [--set KEY=VALUE] [--log-level N]
 *                   [--ready-file F]
 *
 * At start: the configuration, the log, then the self-cleanup (what a dead
 * agent left on this proxy), whose result Status reports; a vCenter that
 * cannot be reached is logged and the service serves anyway. Then the
 * control API (proto/control.proto) on ferry.control.listen over mutual
 * TLS 1.3: the agent presents ferry.tls.cert, a controller must present a
 * certificate that chains to ferry.tls.ca.
 *
 * Threads: the main thread accepts and handles signals (signalfd); one
 * thread per controller connection (at most ferry.control.maxClients); one
 * per job, backup or restore-vm (at most ferry.jobs.max; service_jobs.c). A job never waits for a
 * controller: it records its phases and counters here under the lock and
 * the connection threads that watch it send them on; a controller that
 * goes away only ends its own thread.
 *
 * SIGTERM/SIGINT: stop accepting, cancel every job, wait until each has
 * undone what it did (detach, snapshot removal, EndAccess) and for a
 * cleanup that runs (bounded), exit 0.
 * SIGHUP: reload the configuration file; jobs started from then on use it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/service_int.h"

/* ---- configuration ------------------------------------------------------- */

void cfg_unref(struct svc_cfg *c)
{
	if (c && --c->refs == 0) {
		fy_config_free(c->cfg);
		free(c);
	}
}

static int load_config(const char *path, const char *const *sets,
		       unsigned n_sets, struct svc_cfg **out)
{
	struct svc_cfg *c = calloc(1, sizeof(*c));
	unsigned i;
	int rc;

	if (!c || !(c->cfg = fy_config_new())) {
		free(c);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	c->refs = 1;
	rc = fy_config_load(c->cfg, path);
	for (i = 0; rc == 0 && i < n_sets; i++)
		rc = fy_config_set_pair(c->cfg, sets[i]);
	if (rc < 0) {
		cfg_unref(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* The service's own keys with their ranges. */
static int service_limits(const struct fy_config *cfg, unsigned *max_jobs,
			  unsigned *max_clients)
{
	int64_t v;
	int rc;

	if ((rc = fy_config_get_int(cfg, "ferry.jobs.max", 2, 1, 16, &v)) < 0)
		return rc;
	*max_jobs = (unsigned)v;
	if ((rc = fy_config_get_int(cfg, "ferry.control.maxClients", 32, 1,
				    256, &v)) < 0)
		return rc;
	*max_clients = (unsigned)v;
	return 0;
}

static bool same_value(const struct fy_config *a, const struct fy_config *b,
		       const char *key)
{
	const char *x = fy_config_get(a, key), *y = fy_config_get(b, key);

	return (!x && !y) || (x && y && !strcmp(x, y));
}

/* SIGHUP: the file again; a broken file keeps the running configuration. */
static void reload(struct svc *svc)
{
	static const char *const restart_keys[] = {
		"ferry.control.listen", "ferry.control.maxClients",
		"ferry.control.handshakeTimeout", "ferry.control.maxHandshakes",
		"ferry.control.maxHandshakesPerAddress", "ferry.tls.cert",
		"ferry.tls.key", "ferry.tls.ca", "ferry.tls.crl",
	};
	struct svc_cfg *c = NULL;
	unsigned max_jobs, max_clients, i;

	if (load_config(svc->config_path, svc->sets, svc->n_sets, &c) < 0 ||
	    service_limits(c->cfg, &max_jobs, &max_clients) < 0 ||
	    fy_agent_setup_logging(c->cfg, svc->log_level) < 0) {
		fy_error("SIGHUP: %s; keeping the running configuration",
			 fy_err_msg());
		if (c)
			cfg_unref(c);
		return;
	}
	for (i = 0; i < sizeof(restart_keys) / sizeof(restart_keys[0]); i++)
		if (!same_value(svc->cfg->cfg, c->cfg, restart_keys[i]))
			fy_warn("SIGHUP: %s changed; it takes effect when "
				"ferry-agent run restarts", restart_keys[i]);
	pthread_mutex_lock(&svc->lock);
	cfg_unref(svc->cfg);
	svc->cfg = c;
	svc->cfg_generation++;
	if (max_jobs != svc->max_jobs)
		fy_warn("SIGHUP: ferry.jobs.max is now %u (was %u)", max_jobs,
			svc->max_jobs);
	svc->max_jobs = max_jobs;
	pthread_mutex_unlock(&svc->lock);
	fy_warn("SIGHUP: reloaded %s; new jobs use it", svc->config_path);
}

/* Waits on svc->cond (svc->lock held) at most ms. */
void timed_wait(struct svc *svc, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&svc->cond, &svc->lock, &ts);
}

/* ---- jobs ---------------------------------------------------------------- */

/* ---- messages ------------------------------------------------------------ */

void cleanup_msg(const struct cleanup_state *c,
			Ferry__Control__CleanupResult *m)
{
	ferry__control__cleanup_result__init(m);
	m->ran = c->ran;
	m->code = c->rc;
	m->error = (char *)(c->rc < 0 ? c->error : "");
	m->num_cleaned_up = c->rep.cleaned;
	m->num_remaining = c->rep.remaining;
	m->log = (char *)c->rep.log;
	m->time_unix = c->when;
}

/*
 * A frame whose strings point into the jobs is packed under the lock and
 * sent from this copy once the lock is released: a slow controller must
 * never hold up the jobs, whose events take the same lock.
 */
fy_control_frame *frame_copy(const fy_control_frame *f)
{
	size_t n = protobuf_c_message_get_packed_size(&f->base);
	uint8_t *buf = malloc(n ? n : 1);
	fy_control_frame *copy = NULL;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(&f->base, buf);
	copy = ferry__control__control_frame__unpack(NULL, n, buf);
	free(buf);
	return copy;
}

int send_copy(struct fy_conn *c, fy_control_frame *copy)
{
	int rc;

	if (!copy)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = fy_control_send(c, copy);
	fy_control_free(copy);
	return rc < 0 ? rc : fy_conn_flush(c);
}

int send_frame(struct fy_conn *c, fy_control_frame *f)
{
	int rc = fy_control_send(c, f);

	return rc < 0 ? rc : fy_conn_flush(c);
}

static int send_status(struct svc *svc, struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__Status s = FERRY__CONTROL__STATUS__INIT;
	Ferry__Control__CleanupResult cr;
	Ferry__Control__Transport t[FY_TRANSPORT_N_MODES];
	Ferry__Control__Transport *tp[FY_TRANSPORT_N_MODES];
	Ferry__Control__JobInfo info[FY_CONTROL_JOBS_MAX];
	Ferry__Control__JobInfo *ip[FY_CONTROL_JOBS_MAX];
	struct fy_transport_status *modes = calloc(FY_TRANSPORT_N_MODES,
						   sizeof(*modes));
	struct fy_transport_env env;
	struct cleanup_state *cs = malloc(sizeof(*cs));
	unsigned generation;
	bool fresh;
	fy_control_frame *copy;
	char list[128] = "", software[64];
	struct svc_job *j;
	struct svc_cfg *cfg;
	unsigned i, n = 0;
	int rc;

	if (!modes || !cs) {
		free(modes);
		free(cs);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&svc->lock);
	cfg = svc->cfg;
	cfg->refs++;
	generation = svc->cfg_generation;
	fresh = svc->modes_at > 0 && generation == svc->modes_generation &&
		fy_now() - svc->modes_at < STATUS_MODES_SECONDS;
	if (fresh)
		memcpy(modes, svc->modes, sizeof(svc->modes));
	pthread_mutex_unlock(&svc->lock);
	if (!fresh) {
		/* The same rules as a job's, hotadd's proxy lookup included. */
		fy_transport_env_init(&env, cfg->cfg, NULL);
		fy_transport_status_all(&env, modes);
		fy_transport_env_release(&env);
		pthread_mutex_lock(&svc->lock);
		memcpy(svc->modes, modes, sizeof(svc->modes));
		svc->modes_at = fy_now();
		svc->modes_generation = generation;
		pthread_mutex_unlock(&svc->lock);
	}
	for (i = 0; i < FY_TRANSPORT_N_MODES; i++) {
		ferry__control__transport__init(&t[i]);
		t[i].name = (char *)modes[i].t->name;
		t[i].available = modes[i].available;
		t[i].reason = modes[i].available ? "" : modes[i].why;
		tp[i] = &t[i];
		if (modes[i].available)
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
				 "%s%s", list[0] ? ":" : "", modes[i].t->name);
	}
	snprintf(software, sizeof(software), "ferry-agent %s", FERRY_VERSION);
	s.software = software;
	s.protocol_version = FY_CONTROL_PROTOCOL_VERSION;
	s.transports = list;
	s.n_transport_modes = FY_TRANSPORT_N_MODES;
	s.transport_modes = tp;
	s.config_file = (char *)svc->config_path;

	pthread_mutex_lock(&svc->lock);
	for (j = svc->jobs; j && n < FY_CONTROL_JOBS_MAX; j = j->next)
		if (!j->res) {
			job_info_locked(j, &info[n]);
			ip[n] = &info[n];
			n++;
		}
	s.n_jobs = n;
	s.jobs = ip;
	s.max_jobs = svc->max_jobs;
	s.started_unix = svc->started;
	*cs = svc->cleanup;
	cleanup_msg(cs, &cr);
	s.last_cleanup = &cr;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS;
	f.status = &s;
	copy = frame_copy(&f);
	cfg_unref(cfg);
	pthread_mutex_unlock(&svc->lock);
	rc = send_copy(c, copy);
	free(modes);
	free(cs);
	return rc;
}

/* Runs the self-cleanup and records its result for Status. */
void run_cleanup(struct svc *svc, struct svc_cfg *cfg, bool own_jobs,
			struct cleanup_state *out)
{
	memset(out, 0, sizeof(*out));
	out->ran = true;
	out->when = time(NULL);
	out->rc = fy_job_cleanup(cfg->cfg, own_jobs, &out->rep);
	if (out->rc < 0) {
		snprintf(out->error, sizeof(out->error), "%s", fy_err_msg());
		fy_error("self-cleanup failed: %s", out->error);
	} else {
		fy_warn("self-cleanup: numCleanedUp=%u numRemaining=%u",
			out->rep.cleaned, out->rep.remaining);
	}
	pthread_mutex_lock(&svc->lock);
	svc->cleanup = *out;
	pthread_mutex_unlock(&svc->lock);
}

/* ---- connections --------------------------------------------------------- */

struct client_arg {
	struct svc *svc;
	struct fy_conn *conn; /* authenticated by the gate */
};

static int greet(struct fy_conn *c)
{
	fy_control_frame f = FERRY__CONTROL__CONTROL_FRAME__INIT;
	Ferry__Control__HelloReply r = FERRY__CONTROL__HELLO_REPLY__INIT;
	fy_control_frame *in = NULL;
	char software[64];
	int rc = fy_control_recv(c, &in);

	if (rc < 0)
		return rc;
	if (in->body_case != FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO)
		rc = fy_err_set(-EPROTO, "the first frame must be Hello, not %s",
				fy_control_name(in));
	else if (in->hello->protocol_version != FY_CONTROL_PROTOCOL_VERSION)
		rc = fy_err_set(-EPROTONOSUPPORT, "%s speaks control protocol "
				"%u; this agent speaks %u", in->hello->software,
				in->hello->protocol_version,
				FY_CONTROL_PROTOCOL_VERSION);
	fy_control_free(in);
	if (rc < 0)
		return rc;
	snprintf(software, sizeof(software), "ferry-agent %s", FERRY_VERSION);
	r.protocol_version = FY_CONTROL_PROTOCOL_VERSION;
	r.software = software;
	f.body_case = FERRY__CONTROL__CONTROL_FRAME__BODY_HELLO_REPLY;
	f.hello_reply = &r;
	return send_frame(c, &f);
}

/* Who may control this agent (docs/SECURITY.md): certificates of role
 * controller or admin, and when ferry.control.allowedClients is set only
 * those of its names (comma separated). An agent's or a repository's
 * certificate never may, even if listed. Returns 0 or -EACCES with the
 * reason, which the controller is told. */
static int client_allowed(struct svc *svc, const struct fy_conn *c)
{
	char list[4096], *tok, *save = NULL;
	struct fy_identity id;
	enum fy_role role;
	const char *v;
	bool listed = false;
	int rc = fy_conn_identity(c, &id);

	if (rc < 0)
		return rc;
	role = fy_identity_role(&id);
	if (role != FY_ROLE_CONTROLLER && role != FY_ROLE_ADMIN)
		return fy_err_set(-EACCES, "certificate %s has role %s: only "
				  "controller and admin certificates may "
				  "control an agent", id.name,
				  fy_role_name(role));
	pthread_mutex_lock(&svc->lock);
	v = fy_config_get(svc->cfg->cfg, "ferry.control.allowedClients");
	snprintf(list, sizeof(list), "%s", v ? v : "");
	pthread_mutex_unlock(&svc->lock);
	if (!list[0])
		return 0;
	for (tok = strtok_r(list, ", ", &save); tok && !listed;
	     tok = strtok_r(NULL, ", ", &save))
		listed = !strcmp(tok, id.name);
	if (!listed)
		return fy_err_set(-EACCES, "%s may not control this agent: its "
				  "certificate's name is not in "
				  "ferry.control.allowedClients",
				  fy_conn_peer(c));
	return 0;
}

/* ferry.repository.allowed: the repositories a controller may send this
 * agent's backups to (HOST:PORT, comma separated). Unset: only
 * ferry.repository, so a stolen controller certificate cannot redirect
 * backups to a machine of the attacker's. */
int repository_allowed(struct svc *svc, const char *repo)
{
	char list[4096], *tok, *save = NULL;
	const char *v, *own;
	bool ok = false;

	if (!repo || !repo[0])
		return 0;
	pthread_mutex_lock(&svc->lock);
	v = fy_config_get(svc->cfg->cfg, "ferry.repository.allowed");
	own = fy_config_get(svc->cfg->cfg, "ferry.repository");
	snprintf(list, sizeof(list), "%s%s%s", own ? own : "",
		 v && v[0] ? "," : "", v ? v : "");
	pthread_mutex_unlock(&svc->lock);
	for (tok = strtok_r(list, ", ", &save); tok && !ok;
	     tok = strtok_r(NULL, ", ", &save))
		ok = !strcmp(tok, repo);
	if (!ok)
		return fy_err_set(-EACCES, "StartBackup: repository %.256s is "
				  "neither ferry.repository nor in "
				  "ferry.repository.allowed", repo);
	return 0;
}

static void *client_main(void *arg)
{
	struct client_arg *ca = arg;
	struct svc *svc = ca->svc;
	struct fy_conn *c = ca->conn;
	double idle_since;
	int rc;

	free(ca);
	fy_info("control: %s connected", fy_conn_peer(c));
	rc = client_allowed(svc, c);
	if (rc == 0)
		rc = greet(c);
	idle_since = fy_now();
	while (rc == 0) {
		fy_control_frame *in = NULL;
		bool stopping;

		pthread_mutex_lock(&svc->lock);
		stopping = svc->stopping;
		pthread_mutex_unlock(&svc->lock);
		if (stopping) {
			rc = fy_err_set(-ESHUTDOWN, "the agent is stopping");
			break;
		}
		rc = fy_conn_wait_readable(c, 500);
		if (rc == 0) {
			if (fy_now() - idle_since > IDLE_SECONDS) {
				rc = fy_err_set(-ETIMEDOUT, "idle for %d s",
						IDLE_SECONDS);
				break;
			}
			continue;
		}
		if (rc < 0)
			break;
		rc = fy_control_recv(c, &in);
		if (rc < 0)
			break;
		/* SIGHUP may have narrowed ferry.control.allowedClients since
		 * this controller connected: it applies at once. */
		rc = client_allowed(svc, c);
		if (rc < 0) {
			fy_control_free(in);
			break;
		}
		switch (in->body_case) {
		case FERRY__CONTROL__CONTROL_FRAME__BODY_STATUS_REQUEST:
			rc = send_status(svc, c);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_START_BACKUP:
			rc = svc_start_backup(svc, c, in->start_backup);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_START_RESTORE_VM:
			rc = svc_start_restore_vm(svc, c, in->start_restore_vm);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_WATCH:
			rc = svc_watch(svc, c, in->watch->job_id);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_LIST_JOBS:
			rc = svc_send_job_list(svc, c);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_CANCEL:
			rc = svc_cancel(svc, c, in->cancel->job_id);
			break;
		case FERRY__CONTROL__CONTROL_FRAME__BODY_CLEANUP:
			rc = svc_cleanup(svc, c);
			break;
		default: {
			char msg[128];

			/* A well-formed frame that is no request: refused,
			 * the conversation goes on. */
			snprintf(msg, sizeof(msg), "%s is not a request the "
				 "agent serves", fy_control_name(in));
			fy_control_send_error(c, -EPROTO, msg);
		}
		}
		fy_control_free(in);
		idle_since = fy_now();
	}
	if (rc != -ECONNRESET) {
		fy_warn("control: %s: %s", fy_conn_peer(c), fy_err_msg());
		fy_control_send_error(c, rc, fy_err_msg());
	} else {
		fy_info("control: %s disconnected", fy_conn_peer(c));
	}
	fy_conn_close(c);
	pthread_mutex_lock(&svc->lock);
	svc->clients--;
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
	return NULL;
}

/* The gate's callback: an authenticated controller takes a client slot
 * and a thread, or is told the agent is full. */
static void on_controller(void *opaque, struct fy_conn *c)
{
	struct svc *svc = opaque;
	struct client_arg *ca;
	pthread_attr_t attr;
	pthread_t t;

	pthread_mutex_lock(&svc->lock);
	if (svc->clients >= svc->max_clients) {
		pthread_mutex_unlock(&svc->lock);
		fy_warn("control: refusing %s: %u controllers connected "
			"(ferry.control.maxClients)", fy_conn_peer(c),
			svc->max_clients);
		fy_control_send_error(c, -EBUSY, "the agent serves "
				      "ferry.control.maxClients controllers "
				      "already; try again later");
		fy_conn_close(c);
		return;
	}
	svc->clients++;
	pthread_mutex_unlock(&svc->lock);
	ca = malloc(sizeof(*ca));
	if (ca) {
		ca->svc = svc;
		ca->conn = c;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, client_main, ca) == 0) {
			pthread_attr_destroy(&attr);
			return;
		}
		pthread_attr_destroy(&attr);
		free(ca);
	}
	fy_conn_close(c);
	pthread_mutex_lock(&svc->lock);
	svc->clients--;
	pthread_mutex_unlock(&svc->lock);
}

static void write_ready_file(const char *path, const char *bound)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		fy_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", bound);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		fy_warn("cannot write %s: %s", path, strerror(errno));
}

/* SIGTERM: every job is cancelled and undoes what it did; we wait for all
 * of them (a supervisor's stop timeout bounds this), then for a cleanup
 * that runs (bounded), then a little for the controllers to get their
 * final events. */
static void shut_down(struct svc *svc)
{
	struct svc_job *j;
	double start = fy_now(), said = start;
	int64_t limit;
	bool busy;

	pthread_mutex_lock(&svc->lock);
	svc->stopping = true;
	if (svc->active)
		fy_warn("stopping: cancelling %u job(s) and waiting for them "
			"to undo what they did", svc->active);
	for (j = svc->jobs; j; j = j->next)
		if (!j->res)
			atomic_store(&j->cancel, true);
	pthread_cond_broadcast(&svc->cond);
	while (svc->active) {
		timed_wait(svc, 1000);
		if (svc->active && fy_now() - said >= 10) {
			said = fy_now();
			fy_warn("stopping: still waiting for %u job(s)",
				svc->active);
		}
	}
	/* A cleanup detaches disks, removes snapshots and rewrites the
	 * journal: let it end, as long as a controller would wait for it.
	 * No cleanup starts once stopping is set. */
	if (fy_config_get_int(svc->cfg->cfg, "ferry.timeoutSeconds", 300, 1,
			      86400, &limit) < 0)
		limit = 300;
	if (svc->cleanup_running)
		fy_warn("stopping: waiting (at most %" PRId64 " s) for the "
			"self-cleanup to end", limit);
	start = fy_now();
	while (svc->cleanup_running && fy_now() - start < (double)limit)
		timed_wait(svc, 1000);
	start = fy_now();
	while (svc->clients && fy_now() - start < 5)
		timed_wait(svc, 200);
	busy = svc->clients || svc->cleanup_running;
	if (busy)
		fy_warn("stopping: %u controller connection(s)%s still busy; "
			"exiting without them", svc->clients,
			svc->cleanup_running ? " and the self-cleanup" : "");
	pthread_mutex_unlock(&svc->lock);
	/* Returning runs the atexit handlers (OpenSSL's teardown among them)
	 * under the threads still at work: leave without them. The journal
	 * is rewritten durably, so a cleanup cut short leaves its entries
	 * for the next start. */
	if (busy) {
		fy_warn("ferry-agent run: stopped");
		fflush(NULL);
		_exit(0);
	}
}

/* Before authentication (proto/wire.h, the handshake gate): the keys
 * ferry.control.handshakeTimeout, maxHandshakes, maxHandshakesPerAddress. */
static int gate_options(const struct fy_config *cfg, struct fy_gate_opts *go)
{
	int64_t timeout, pending, per_address;
	int rc;

	if ((rc = fy_config_get_int(cfg, "ferry.control.handshakeTimeout", 10,
				    1, 300, &timeout)) < 0 ||
	    (rc = fy_config_get_int(cfg, "ferry.control.maxHandshakes", 16, 1,
				    256, &pending)) < 0 ||
	    (rc = fy_config_get_int(cfg, "ferry.control.maxHandshakesPerAddress",
				    pending < 4 ? pending : 4, 1, pending,
				    &per_address)) < 0)
		return rc;
	*go = (struct fy_gate_opts){
		.what = "control",
		.handshake_timeout_ms = (int)timeout * 1000,
		.max_pending = (unsigned)pending,
		.max_per_address = (unsigned)per_address,
		.io_timeout_ms = REQUEST_MS,
	};
	return 0;
}

static int serve(struct svc *svc, const char *ready_file)
{
	const char *listen = fy_config_get(svc->cfg->cfg, "ferry.control.listen");
	struct fy_settings s;
	struct fy_gate_opts go;
	struct fy_gate *gate = NULL;
	struct pollfd pfd[1];
	char bound[300] = "";
	sigset_t mask;
	int lfd = -1, sfd = -1, rc;

	if (!listen)
		return fy_err_set(-EINVAL, "ferry.control.listen is not set: "
				  "the address the control API listens on, "
				  "HOST:PORT");
	if ((rc = fy_settings_load(svc->cfg->cfg, &s)) < 0 ||
	    (rc = fy_tls_new_server(&s.tls, &svc->tls)) < 0)
		return rc;
	rc = fy_listen(listen, &lfd, bound, sizeof(bound));
	if (rc < 0)
		return rc;
	snprintf(svc->listen, sizeof(svc->listen), "%s", bound);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		rc = fy_err_set(-errno, "signalfd: %s", strerror(errno));
		close(lfd);
		return rc;
	}
	fy_warn("ferry-agent %s serving the control API on %s (at most %u "
		"jobs at once)", FERRY_VERSION, bound, svc->max_jobs);
	if ((rc = gate_options(svc->cfg->cfg, &go)) < 0 ||
	    (rc = fy_gate_start(svc->tls, lfd, &go, on_controller, svc,
				&gate)) < 0) {
		close(lfd);
		close(sfd);
		return rc;
	}
	if (ready_file)
		write_ready_file(ready_file, bound);
	pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		struct signalfd_siginfo si;

		if (poll(pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = fy_err_set(-errno, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				reload(svc);
				continue;
			}
			fy_warn("%s: stopping", strsignal((int)si.ssi_signo));
			rc = 0;
			break;
		}
	}
	fy_gate_stop(gate);
	close(lfd);
	close(sfd);
	shut_down(svc);
	return rc;
}

int agent_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, RO_CONFIG },
		{ "set", required_argument, NULL, RO_SET },
		{ "log-level", required_argument, NULL, RO_LOG_LEVEL },
		{ "ready-file", required_argument, NULL, RO_READY_FILE },
		{ NULL, 0, NULL, 0 },
	};
	static struct svc svc; /* its threads may outlive a stack frame */
	struct cleanup_state *cs = NULL;
	const char *sets[64], *ready_file = NULL;
	unsigned n_sets = 0;
	sigset_t mask;
	int c, rc = 0;

	pthread_mutex_init(&svc.lock, NULL);
	pthread_cond_init(&svc.cond, NULL);
	svc.log_level = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case RO_CONFIG: svc.config_path = optarg; break;
		case RO_READY_FILE: ready_file = optarg; break;
		case RO_LOG_LEVEL: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || !*optarg || v < 0 || v > 6) {
				fprintf(stderr, "ferry-agent: --log-level takes "
					"0..6\n");
				return 2;
			}
			svc.log_level = (int)v;
			break;
		}
		case RO_SET:
			if (n_sets == 64) {
				fprintf(stderr, "ferry-agent: at most 64 --set\n");
				return 2;
			}
			sets[n_sets++] = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind < argc || !svc.config_path)
		goto usage;
	/* Status carries the path, and a controller refuses a longer
	 * string: better not to start than to serve a Status nobody reads. */
	if (strlen(svc.config_path) > FY_CONTROL_NAME_MAX) {
		rc = fy_err_set(-ENAMETOOLONG, "--config: the path is %zu bytes, "
				"more than the %d a controller accepts in "
				"Status; give a shorter one",
				strlen(svc.config_path), FY_CONTROL_NAME_MAX);
		goto fail;
	}
	svc.sets = sets;
	svc.n_sets = n_sets;
	svc.started = time(NULL);

	/* Before any thread starts, so that every thread inherits the mask
	 * and only the signalfd sees these signals. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	if ((rc = load_config(svc.config_path, sets, n_sets, &svc.cfg)) < 0 ||
	    (rc = fy_agent_setup_logging(svc.cfg->cfg, svc.log_level)) < 0 ||
	    (rc = service_limits(svc.cfg->cfg, &svc.max_jobs,
				 &svc.max_clients)) < 0)
		goto fail;
	if (!fy_config_get(svc.cfg->cfg, "ferry.control.listen")) {
		rc = fy_err_set(-EINVAL, "ferry.control.listen is not set: the "
				"address the control API listens on, HOST:PORT");
		goto fail;
	}
	/* The self-cleanup first: what a dead agent left on this proxy is
	 * undone before any job of ours starts. */
	cs = malloc(sizeof(*cs));
	if (!cs) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	run_cleanup(&svc, svc.cfg, false, cs);
	if (cs->rc < 0)
		fy_warn("serving anyway; `ferry agent status` reports the "
			"failed cleanup and `ferry cleanup` retries it");
	free(cs);
	rc = serve(&svc, ready_file);
	if (rc < 0)
		goto fail;
	fy_warn("ferry-agent run: stopped");
	return 0;
usage:
	fprintf(stderr, "usage: ferry-agent run --config FILE [--set KEY=VALUE] "
		"[--log-level N] [--ready-file F]\n"
		"  The agent service: self-cleanup, then the control API on "
		"ferry.control.listen\n  (mutual TLS; docs/CONTROL.md).\n");
	return 2;
fail:
	fprintf(stderr, "ferry-agent: run: %s\n", fy_err_msg());
	return 1;
}
