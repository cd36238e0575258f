/*
 * The agent service's controller connections (docs/CONTROL.md): each
 * authenticated by the gate, greeted, checked against
 * ferry.control.allowedClients, then served on its own thread: Status,
 * ListJobs and the requests about jobs (service_cmds.c). Also the frames
 * the service sends: copies made under the lock, sent outside it.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/service_int.h"

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
void svc_on_controller(void *opaque, struct fy_conn *c)
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
